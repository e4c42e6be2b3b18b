"""docs/occluders_wolfganglanger.png: the demo's WolfgangLanger frames before and after occluder filtering.

    python scripts/occluder_figure.py [--out docs/occluders_wolfganglanger.png] [--size 128]

Per frame: the photo with the detected hands' landmarks, the UV map as the mesh alone sees it (before), and the
UV map stage 00 keeps (after), with the texels taken out shown in colour: magenta by the hand test, cyan by
the appearance test. Demo photos only (they may be shown).
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from uvlib.data.facefit import FaceFitter
from uvlib.data.occluders import HandDetector, find_occluders
from uvlib.data.photo import read_photo
from uvlib.data.sources import DEMO_PHOTOS
from uvlib.geometry.unwrap import unwrap

FRAMES = (0, 60, 98, 132, 146, 212, 226, 300)
HAND, LOOK = (255, 0, 255), (0, 255, 255)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs/occluders_wolfganglanger.png"))
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    fitter, detector = FaceFitter(), HandDetector()
    fig, axes = plt.subplots(3, len(FRAMES), figsize=(2.1 * len(FRAMES), 6.6))
    for col, frame in enumerate(FRAMES):
        image = read_photo(DEMO_PHOTOS / f"pyfeat_WolfgangLanger_Pexels_{frame:06d}.jpg")
        face = fitter.fit(image)[0][0]
        hands = detector.detect(image)
        seen = unwrap(image, face.landmarks, args.size)
        found = find_occluders(seen.texture, seen.visible, face.landmarks, image.shape, hands)
        after = seen.texture.copy()
        after[found.appearance] = LOOK
        after[found.hands] = HAND
        x0, y0 = face.landmarks[:, :2].min(0) - 30
        x1, y1 = face.landmarks[:, :2].max(0) + 30
        axes[0, col].imshow(image)
        for hand in hands:
            axes[0, col].plot(*hand.T, ".", color="magenta", ms=2)
        axes[0, col].set_xlim(max(0, x0), min(image.shape[1], x1))
        axes[0, col].set_ylim(min(image.shape[0], y1), max(0, y0))
        axes[0, col].set_title(f"frame {frame}", fontsize=9)
        axes[1, col].imshow(seen.texture)
        axes[2, col].imshow(after)
        axes[2, col].set_title(f"occluded {found.occluded.sum() / seen.visible.sum():.0%}", fontsize=9)
    axes[1, 0].set_ylabel("before: mesh visibility", fontsize=9)
    axes[2, 0].set_ylabel("after: occluders out", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("WolfgangLanger (demo): texels taken out by the hand test (magenta) and the appearance test (cyan)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
