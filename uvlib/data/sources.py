"""Where photos come from: any folder, CelebA/MAFL, or the embedded demo set.

A source lists `Photo`s: a stable key (used for item ids and resuming), a path, the group the photo belongs to
(its person or video clip, so that a split never puts one person on both sides), and an optional split that
the source imposes (MAFL's training/testing lists). Groups come from, in this order: an identity file
(CelebA's identity_CelebA.txt: `FILE ID` per line), the demo set's MANIFEST.csv, the folder layout
(`group_by="folder"`: the photo's parent folder is its person; `"prefix"`: the file name up to its first `_`,
as CFP's `III_KK.jpg`), else the photo itself.
"""
import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

IGNORED_SUFFIXES = {".txt", ".csv", ".json", ".jsonl", ".md", ".yaml", ".yml", ".npz", ".npy", ".py"}
DEMO_PHOTOS = Path(__file__).resolve().parents[2] / "demo" / "photos"
GROUP_BY = ("photo", "folder", "prefix")


@dataclass(frozen=True)
class Photo:
    key: str
    path: Path
    split: str = ""          # "", or the split the source fixes: train / val / test / trainval (MAFL's training list)
    group: str = ""          # person or clip; "" = the photo is its own group


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


def _layout_group(relative: Path, group_by: str) -> str:
    if group_by == "folder":
        return f"folder:{relative.parent.as_posix()}" if relative.parent != Path(".") else ""
    if group_by == "prefix":
        head, sep, _ = relative.stem.partition("_")
        return f"prefix:{head}" if sep and head else ""
    return ""


def folder_photos(root, group_by="photo") -> list:
    """Every non-hidden file below `root` (any layout) except obvious side files such as lists and notes.

    Non-images are kept on purpose: the manifest records them with their reason instead of hiding them.
    """
    if group_by not in GROUP_BY:
        raise ValueError(f"--group-by {group_by!r} is unknown; use one of {GROUP_BY}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"photo folder {root} does not exist; pass a folder of photos, 'demo', or use --mafl")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts)
                   and p.suffix.lower() not in IGNORED_SUFFIXES)
    return [Photo(_key(p.relative_to(root)), p, group=_layout_group(p.relative_to(root), group_by)) for p in files]


def demo_photos() -> list:
    """The embedded demo set, grouped by the clip or person that MANIFEST.csv names for each file."""
    if not DEMO_PHOTOS.is_dir():
        raise ValueError(f"embedded demo set {DEMO_PHOTOS} is missing; rebuild it with scripts/build_demo_set.py")
    with (DEMO_PHOTOS.parent / "MANIFEST.csv").open(newline="") as f:
        manifest = {row["file"]: row for row in csv.DictReader(f)}
    photos = []
    for photo in folder_photos(DEMO_PHOTOS):
        row = manifest.get(photo.path.name)
        if row is None:
            raise ValueError(f"demo photo {photo.path.name} is not in demo/MANIFEST.csv; add its row (with its group)")
        photos.append(replace(photo, group=f"demo:{row['group']}", split=row.get("split", "")))
    return photos


def read_identities(path) -> dict:
    """CelebA's identity_CelebA.txt (`000001.jpg 2880` per line) -> {file stem: identity}."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"identity file {path} does not exist; pass CelebA's identity_CelebA.txt (FILE ID per line)")
    identities = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"{path} line {n} is not `FILE ID`: {line.strip()!r}")
        identities[Path(parts[0]).stem] = parts[1]
    return identities


def with_identities(photos, identities: dict) -> list:
    """Photos whose file stem is in `identities` take that person as their group."""
    return [replace(p, group=f"identity:{identities[p.path.stem]}") if p.path.stem in identities else p
            for p in photos]


def mafl_photos(image_dir, lists_dir) -> list:
    """CelebA's img_align_celeba restricted to MAFL's training.txt / testing.txt, which fix the split."""
    image_dir, lists_dir = Path(image_dir), Path(lists_dir)
    if not image_dir.is_dir():
        raise ValueError(f"CelebA image folder {image_dir} does not exist; point SOURCE at img_align_celeba")
    photos = []
    for split, name in (("trainval", "training.txt"), ("test", "testing.txt")):
        listing = lists_dir / name
        if not listing.is_file():
            raise ValueError(f"MAFL list {listing} is missing; --mafl must be the folder with training.txt and testing.txt")
        for line in listing.read_text().split():
            photos.append(Photo(_key(Path(line)), image_dir / line, split))
    return photos


def resolve_source(spec, mafl=None, group_by="photo", identities=None) -> list:
    """'demo' -> the embedded demo set; a folder -> its photos; with mafl -> the MAFL subset of CelebA.

    identities: a CelebA-style identity file giving each photo's person (wins over group_by).
    """
    if mafl:
        photos = mafl_photos(spec, mafl)
    elif str(spec) == "demo":
        photos = demo_photos()
    else:
        photos = folder_photos(spec, group_by)
    return with_identities(photos, read_identities(identities)) if identities else photos


def grouping(spec, mafl=None, group_by="photo", identities=None) -> str:
    """How resolve_source groups photos, as recorded in dataset.json (a resumed prep must group the same way)."""
    if identities:
        return f"identities:{hashlib.sha256(Path(identities).read_bytes()).hexdigest()[:12]}"
    if str(spec) == "demo" and not mafl:
        return "demo-manifest"
    return "photo" if mafl else group_by
