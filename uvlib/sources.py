"""Where photos come from: any folder, CelebA/MAFL, or the embedded demo set.

A source lists `Photo`s: a stable key (used for item ids and resuming), a path, and an optional split
that the source imposes (MAFL's training/testing lists).
"""
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

IGNORED_SUFFIXES = {".txt", ".csv", ".json", ".jsonl", ".md", ".yaml", ".yml", ".npz", ".npy", ".py"}
DEMO_PHOTOS = Path(__file__).resolve().parents[1] / "demo" / "photos"


@dataclass(frozen=True)
class Photo:
    key: str
    path: Path
    split: str = ""          # "", or "train"/"test" when the source fixes it


def _key(relative: Path) -> str:
    """A photo's id, also the stem of its files: its path below the source, suffix kept, with '/', '%' and
    every character but letters, digits, '_', '.', '-' and '~' percent-escaped, so two paths never share an id
    (`x.jpg` / `x.png`, `a b.jpg` / `a_b.jpg`)."""
    return quote(relative.as_posix(), safe="")


def photo_key(path) -> str:
    """The id of a photo given on its own (not found below a source folder): its escaped file name."""
    return _key(Path(Path(path).name))


def check_unique_keys(photos):
    """Two photos with one id would overwrite each other's files: refuse, naming both. Ids that differ only in
    case count as one, since they name the same files on a case-insensitive file system."""
    seen = {}
    for photo in photos:
        first = seen.setdefault(photo.key.lower(), photo)
        if first is not photo:
            raise ValueError(f"photos {first.path} and {photo.path} would write the same files (id {photo.key!r}); "
                             f"rename or remove one of them")


def folder_photos(root) -> list:
    """Every non-hidden file below `root` (any layout) except obvious side files such as lists and notes.

    Non-images are kept on purpose: the manifest records them with their reason instead of hiding them.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"photo folder {root} does not exist; pass a folder of photos, 'demo', or use --mafl")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts)
                   and p.suffix.lower() not in IGNORED_SUFFIXES)
    return [Photo(_key(p.relative_to(root)), p) for p in files]


def mafl_photos(image_dir, lists_dir) -> list:
    """CelebA's img_align_celeba restricted to MAFL's training.txt / testing.txt, which fix the split."""
    image_dir, lists_dir = Path(image_dir), Path(lists_dir)
    if not image_dir.is_dir():
        raise ValueError(f"CelebA image folder {image_dir} does not exist; point SOURCE at img_align_celeba")
    photos = []
    for split, name in (("train", "training.txt"), ("test", "testing.txt")):
        listing = lists_dir / name
        if not listing.is_file():
            raise ValueError(f"MAFL list {listing} is missing; --mafl must be the folder with training.txt and testing.txt")
        for line in listing.read_text().split():
            photos.append(Photo(_key(Path(line)), image_dir / line, split))
    return photos


def resolve_source(spec, mafl=None) -> list:
    """'demo' -> the embedded demo set; a folder -> its photos; with mafl -> the MAFL subset of CelebA."""
    if mafl:
        return mafl_photos(spec, mafl)
    if str(spec) == "demo":
        if not DEMO_PHOTOS.is_dir():
            raise ValueError(f"embedded demo set {DEMO_PHOTOS} is missing; rebuild it with scripts/build_demo_set.py")
        return folder_photos(DEMO_PHOTOS)
    return folder_photos(spec)
