"""How well stage 00 keeps occluders out of the seen texels: real occluders pasted at known places.

    python benchmarks/bench_occluders.py [--targets ../shared/data/celeba-dev] [--n 150] [--size 128]

Each target photo (celeba-dev) gets one occluder, in turn:
- hand: a hand cut from the demo's WolfgangLanger frames (the dilated hull of its detected landmarks, so some
  background between the fingers comes with it), scaled to the face and pasted over its lower half;
- hair: the band above the forehead of a cfp-dev frontal photo of another person (hair, or hat/background),
  pasted so that it comes down over the target's forehead like a fringe;
- object: a patch of a scikit-image sample photo (coffee cup, rocket, cat) shaped as a microphone, a band over
  the eyes (dark glasses) or a round object, at a random place on the face.
The pasted pixels are the truth; the texels they cover (among the texels the mesh says are seen, on the mesh
fitted to the occluded photo) are the occluder texels. Precision and recall of those texels are pooled over
faces, per occluder kind and per test (hands only, appearance only, both). Texels flagged on the *clean* photo
are reported apart (share of seen texels: real hair, beards and shadows there count against precision), and
precision is also given without them ("precision new": only texels not flagged on the clean photo count).
Nothing is written; the numbers are printed.
"""
import argparse
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from uvlib.data.facefit import FaceFitter
from uvlib.data.occluders import HandDetector, find_occluders, hand_region, texels_in_region
from uvlib.data.photo import read_photo
from uvlib.data.sources import DEMO_PHOTOS, folder_photos
from uvlib.geometry.unwrap import unwrap

DATA = Path(__file__).resolve().parents[2] / "shared/data"
MODES = {"hands": ("hands",), "appearance": ("appearance",), "combined": ("hands", "appearance")}


def hand_patches(detector):
    """(patch, mask) of every hand detected in the demo's WolfgangLanger frames."""
    out = []
    for path in sorted(DEMO_PHOTOS.glob("pyfeat_WolfgangLanger_*.jpg")):
        image = read_photo(path)
        for hand in detector.detect(image)[:1]:
            region = hand_region(image.shape, [hand])
            ys, xs = np.nonzero(region)
            box = np.s_[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
            out.append((image[box], region[box]))
    return out


def hair_patches(fitter, n):
    """(patch, mask) of the band above the forehead (mesh vertex 10) of cfp-dev frontal photos."""
    out = []
    for path in sorted((DATA / "cfp-dev/frontal").glob("*_01.jpg"))[:n]:
        image = read_photo(path)
        faces, _ = fitter.fit(image)
        if not faces:
            continue
        lm = faces[0].landmarks
        (x0, _), (x1, _) = lm[:, :2].min(0), lm[:, :2].max(0)
        top, height = lm[10, 1], np.ptp(lm[:, 1])
        y0 = int(max(0, top - 0.35 * height))
        if top - y0 < 0.2 * height:
            continue
        patch = image[y0: int(top + 0.05 * height), int(max(0, x0)): int(x1)]
        hh, ww = patch.shape[:2]
        mask = np.zeros((hh, ww), np.uint8)
        cv2.ellipse(mask, (ww // 2, 0), (ww // 2, hh), 0, 0, 180, 1, -1)   # a cap, round at the bottom
        out.append((patch, mask.astype(bool)))
    return out


def object_patch(rng, shape):
    """A (patch, mask) of a sample photo in one of three shapes, `shape` = (h, w) of the face."""
    source = [skimage.data.coffee, skimage.data.rocket, skimage.data.chelsea][rng.integers(3)]()
    fh, fw = shape
    kind = rng.integers(3)
    h, w = [(0.7 * fh, 0.18 * fw), (0.22 * fh, 1.1 * fw), (0.4 * fh, 0.4 * fw)][kind]
    h, w = max(4, int(h)), max(4, int(w))
    y, x = rng.integers(0, source.shape[0] - h), rng.integers(0, source.shape[1] - w)
    mask = np.zeros((h, w), np.uint8)
    if kind == 2:
        cv2.ellipse(mask, (w // 2, h // 2), (w // 2, h // 2), 0, 0, 360, 1, -1)
    else:
        mask[:] = 1
    return source[y: y + h, x: x + w], mask.astype(bool), kind


def paste(image, patch, mask, top, left):
    """`image` with the masked patch at (top, left), clipped to the image; and the pasted-pixel mask."""
    out, pasted = image.copy(), np.zeros(image.shape[:2], bool)
    h, w = image.shape[:2]
    t0, l0 = max(0, top), max(0, left)
    t1, l1 = min(h, top + patch.shape[0]), min(w, left + patch.shape[1])
    if t1 <= t0 or l1 <= l0:
        return out, pasted
    sub = np.s_[t0 - top: t1 - top, l0 - left: l1 - left]
    pasted[t0:t1, l0:l1] = mask[sub]
    out[pasted] = patch[sub][mask[sub]]
    return out, pasted


def occlude(image, landmarks, kind, hands, hairs, rng):
    """One occluder of `kind` pasted on the face; returns (photo, pasted mask)."""
    (x0, y0), (x1, y1) = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    fw, fh = x1 - x0, y1 - y0
    if kind == "hand":
        patch, mask = hands[rng.integers(len(hands))]
        k = rng.uniform(0.8, 1.1) * fw / max(patch.shape[:2])
        top, left = y0 + rng.uniform(0.4, 0.6) * fh, x0 + rng.uniform(-0.2, 0.4) * fw
    elif kind == "hair":
        patch, mask = hairs[rng.integers(len(hairs))]
        k = 1.1 * fw / patch.shape[1]
        top, left = landmarks[10, 1] + rng.uniform(0.1, 0.3) * fh - k * patch.shape[0], x0 - 0.05 * fw
    else:
        patch, mask, shape = object_patch(rng, (fh, fw))
        k = 1.0
        top, left = [(y0 + rng.uniform(0.3, 0.6) * fh, x0 + rng.uniform(0.2, 0.7) * fw),
                     (landmarks[159, 1] - 0.1 * fh, x0 - 0.05 * fw),
                     (y0 + rng.uniform(0.1, 0.6) * fh, x0 + rng.uniform(0.0, 0.6) * fw)][shape]
    patch = cv2.resize(patch, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), patch.shape[1::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    return paste(image, patch, mask, int(top), int(left))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=str(DATA / "celeba-dev"))
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    fitter, detector = FaceFitter(), HandDetector()
    hands, hairs = hand_patches(detector), hair_patches(fitter, 60)
    print(f"occluders: {len(hands)} hands (demo WolfgangLanger frames), {len(hairs)} hair bands (cfp-dev), "
          f"objects from skimage.data (coffee, rocket, chelsea); UV {args.size}x{args.size}; seed {args.seed}")

    kinds = ("hand", "hair", "object")
    tally = {(k, m): np.zeros(5) for k in (*kinds, "all") for m in MODES}   # tp, flagged, truth, tp new, flagged new
    clean_flagged = {m: [0, 0] for m in MODES}
    faces = skipped = 0
    for n, photo in enumerate(folder_photos(args.targets)[: args.n]):
        image = read_photo(photo.path)
        fit, _ = fitter.fit(image)
        if not fit:
            skipped += 1
            continue
        kind = kinds[n % 3]
        occluded, pasted = occlude(image, fit[0].landmarks, kind, hands, hairs, rng)
        refit, _ = fitter.fit(occluded)
        if not refit or not pasted.any():
            skipped += 1
            continue
        faces += 1
        lm = refit[0].landmarks
        seen = unwrap(occluded, lm, args.size)
        truth = texels_in_region(pasted, lm, args.size) & seen.visible
        clean = unwrap(image, lm, args.size)      # the same mesh on the clean photo: what is flagged there anyway
        found_hands, clean_hands = detector.detect(occluded), detector.detect(image)
        for mode, tests in MODES.items():
            flagged = find_occluders(seen.texture, seen.visible, lm, image.shape, found_hands, tests).occluded
            before = find_occluders(clean.texture, clean.visible, lm, image.shape, clean_hands, tests).occluded
            before &= clean.visible
            clean_flagged[mode][0] += before.sum()
            clean_flagged[mode][1] += clean.visible.sum()
            row = np.array([(flagged & truth).sum(), flagged.sum(), truth.sum(), (flagged & truth & ~before).sum(),
                            (flagged & ~before).sum()])
            tally[kind, mode] += row
            tally["all", mode] += row

    print(f"{faces} occluded faces ({skipped} skipped: no face fitted before or after pasting)")
    print(f"{'occluder':8s} {'test':11s} {'precision':>9s} {'recall':>7s} {'prec. new':>9s} {'truth texels':>12s}")
    for kind in (*kinds, "all"):
        for mode in MODES:
            tp, flagged, truth, tp_new, new = tally[kind, mode]
            print(f"{kind:8s} {mode:11s} {tp / max(flagged, 1):9.3f} {tp / max(truth, 1):7.3f} "
                  f"{tp_new / max(new, 1):9.3f} {int(truth):12d}")
    for mode, (flagged, seen) in clean_flagged.items():
        print(f"clean photos, {mode:11s}: {flagged / max(seen, 1):.3f} of seen texels flagged")


if __name__ == "__main__":
    main()
