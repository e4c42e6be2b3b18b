"""The prepared-dataset folder: one versioned place for everything later stages read.

    DATASET/
      dataset.json          format, version, UV size, unwrap method, split seed
      manifest-*.jsonl      one line per input photo and shard: status, reason, faces found
      index.csv             one row per usable face: id, photo, pose, visible and occluded fractions, split
      summary.json          status and reason counts over all photos
      atlas.png             the UV atlas mask
      uv/ID.png  vis/ID.png  mesh/ID.npy   texture, visibility mask, fitted image-space mesh (468 x 3)
      vis_unfiltered/ID.png                visibility before occluders (hands, hair, objects) were taken out
      shards/               the maps of uv/ and vis/ as uint8 arrays per split, read lazily (uvlib.data.shards)

vis/ is what later stages use: texels the camera saw and no occluder covered (uvlib.data.occluders). uv/ keeps the
colour of every texel in vis_unfiltered/ so the occluders can be studied; the readers zero what vis/ hides.
occluded_fraction (hand_fraction) is the share of the vis_unfiltered texels that occluders (hands) covered.
"""
import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from uvlib.data.shards import MapReader, build_shards, open_shards, stamp

FORMAT = "uvface-dataset"
VERSION = 4   # 2: split groups hashed, no texels outside the photo, unique escaped ids, checksums in the manifest
#               3: occluders taken out of vis/, vis_unfiltered/, occluded_fraction and hand_fraction in the index
#               4: head_yaw (the body-pose model's turn of the largest turned face) and under_turn_fraction in the
#                  index; vis/ also leaves out what the camera would not see were the head turned to head_yaw
SPLITS = ("train", "val", "test")
INDEX_FIELDS = ("id", "photo", "group", "split", "face", "yaw", "pitch", "roll", "visible_fraction",
                "occluded_fraction", "hand_fraction", "under_turn_fraction", "score", "head_yaw")
NUMBER_FIELDS = ("yaw", "pitch", "roll", "visible_fraction", "occluded_fraction", "hand_fraction",
                 "under_turn_fraction", "score")
OPTIONAL_NUMBER_FIELDS = ("head_yaw",)   # empty in the index, None in rows: the body-pose model was not asked
#                                          (not the largest face, or not turned) or had no answer


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or from another format version."""


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_json(path: Path, data):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def fingerprint(**parts) -> str:
    """A short digest of JSON-able parts: what a cache was built from, checked again when it is loaded."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def manifest_files(root: Path) -> list:
    return sorted(Path(root).glob("manifest-*.jsonl"))


def read_records(manifest: Path) -> list:
    """The records of one shard manifest; a line cut by a kill is skipped (its photo is simply done again)."""
    records = []
    for line in manifest.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def read_manifest(root: Path) -> list:
    return [r for shard_file in manifest_files(root) for r in read_records(shard_file)]


def check_records(records, listed) -> None:
    """Every listed photo key must have exactly one manifest record, else the index would silently lose or
    double a photo."""
    count = {}
    for r in records:
        count[r["key"]] = count.get(r["key"], 0) + 1
    doubled = sorted(k for k, n in count.items() if n > 1)
    if doubled:
        raise DatasetError(f"photo {doubled[0]!r} has {count[doubled[0]]} manifest records ({len(doubled)} photos "
                           f"have several): was one shard run twice at once? Prepare into a new folder")
    unrecorded = sorted(set(listed) - set(count))
    if unrecorded:
        raise DatasetError(f"{len(unrecorded)} photos of the source have no manifest record (first: "
                           f"{unrecorded[0]!r}); run `uvlib prep` again for every shard to process them")


def group_draw(seed: int, group: str) -> float:
    """A uniform number in [0, 1) that depends only on (seed, group): adding photos never moves a group."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def record_group(record: dict) -> str:
    """A manifest record's split group: its person or clip, else the photo itself."""
    return record.get("group") or f"photo:{record['key']}"


def assign_splits(records, seed, fractions=(0.8, 0.1, 0.1)) -> dict:
    """Split by group (all photos of a person or clip stay together); {photo key: split}.

    A group's split is a pure function of (seed, group), so it does not depend on which other photos exist or
    on the processing order. A split the source fixes wins: "train", "val" or "test" as given, and "trainval"
    (MAFL's training list) gives the val fraction of its groups to val and the rest to train.
    """
    train_cut, val_cut = fractions[0], fractions[0] + fractions[1]
    split = {}
    for r in records:
        u, fixed = group_draw(seed, record_group(r)), r.get("split", "")
        if fixed in SPLITS:
            split[r["key"]] = fixed
        elif fixed == "trainval":
            split[r["key"]] = "val" if u < fractions[1] else "train"
        else:
            split[r["key"]] = "train" if u < train_cut else "val" if u < val_cut else "test"
    return split


def finalize(root: Path, listed=(), progress=False) -> dict:
    """Merge the shard manifests into index.csv and summary.json, and (re)build each split's uint8 map shards;
    returns the summary.

    listed: the keys of every photo of the source, each of which must have exactly one record.
    """
    info = read_json(root / "dataset.json")
    records = read_manifest(root)
    check_records(records, listed)
    ok = [r for r in records if r["status"] == "ok"]
    split = assign_splits(ok, info["split_seed"])
    rows = []
    for r in sorted(ok, key=lambda r: r["key"]):
        for face in r["faces"]:
            rows.append({"id": face["id"], "photo": r["path"], "group": record_group(r), "split": split[r["key"]],
                         "face": face["face"],
                         "yaw": face["yaw"], "pitch": face["pitch"], "roll": face["roll"],
                         "visible_fraction": face["visible_fraction"], "occluded_fraction": face["occluded_fraction"],
                         "hand_fraction": face["hand_fraction"], "under_turn_fraction": face["under_turn_fraction"],
                         "score": face["score"],
                         "head_yaw": face["head_yaw"]})
    tmp = root / "index.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(root / "index.csv")
    reasons = {}
    for r in records:
        if r["status"] != "ok":
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    statuses = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    summary = {"photos": len(records), "status": statuses, "reasons": reasons, "faces": len(rows),
               "faces_per_split": {s: sum(row["split"] == s for row in rows) for s in SPLITS},
               "groups_per_split": {s: len({row["group"] for row in rows if row["split"] == s}) for s in SPLITS}}
    write_json(root / "summary.json", summary)
    ds = open_dataset(root)
    for s in SPLITS:
        if ds.split_rows(s):
            ds.maps(s, progress=progress)
    return summary


@dataclass
class Dataset:
    """A finished dataset folder. `rows` are index.csv's rows with numbers parsed."""
    root: Path
    info: dict
    rows: list

    @property
    def uv_size(self) -> int:
        return int(self.info["uv_size"])

    def atlas(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(self.root / "atlas.png")) > 127)

    def split_fingerprint(self, split: str, limit=None, **parts) -> str:
        """Digest of a split's face ids (first `limit`), the UV size and the unwrap method, plus `parts`."""
        ids = [r["id"] for r in self.split_rows(split)[:limit]]
        return fingerprint(ids=ids, uv_size=self.uv_size, method=self.info.get("method"),
                           dataset_version=self.info.get("version"), **parts)

    def split_rows(self, split: str) -> list:
        if split not in SPLITS:
            raise DatasetError(f"split {split!r} is unknown; use one of {SPLITS}")
        return [r for r in self.rows if r["split"] == split]

    def load(self, split: str, limit=None):
        """(uv (N,3,S,S) in [0,1], observed (N,1,S,S), rows) of one split, in index order."""
        rows = self._rows_to_load(split, limit)
        uv, observed = self.maps(split).tensors(slice(0, len(rows)))
        return uv, observed, rows

    def load_visible(self, split: str, limit=None) -> np.ndarray:
        """(N,S,S) bool visibility of one split's maps, in index order; no colour is read."""
        return self.maps(split).visible(slice(0, len(self._rows_to_load(split, limit))))

    def maps(self, split: str, progress=None) -> MapReader:
        """A lazy reader of the whole split (uvlib.data.shards.MapReader): its uint8 shards, built here when they
        are missing or were built from other ids or files (a bar shows for 2,048 maps or more, unless progress
        says otherwise), or, with one line on stderr, the PNGs themselves when the shards cannot be written."""
        ids = [r["id"] for r in self.split_rows(split)]
        uv, vis = str(self.root / "uv"), str(self.root / "vis")        # plain strings: 50,000 stats in under a second
        stamps = [stamp(os.path.join(uv, f"{i}.png"), os.path.join(vis, f"{i}.png")) for i in ids]
        folder = self.root / "shards"
        shards = open_shards(folder, split, ids, stamps, self.uv_size)
        if shards is not None:
            return shards
        try:
            return build_shards(folder, split, ids, stamps, self.uv_size, lambda i: self.item(ids[i]),
                                progress=len(ids) >= 2048 if progress is None else progress)
        except OSError as e:
            print(f"cannot write the map shards of split {split!r} into {folder} ({e}); reading the PNGs instead",
                  file=sys.stderr)
            return PngMaps(self, ids)

    def _rows_to_load(self, split, limit):
        rows = self.split_rows(split)[:limit]
        if not rows:
            raise DatasetError(f"split {split!r} of {self.root} has no faces; prepare more photos")
        return rows

    def item(self, item_id: str, unfiltered=False):
        """(texture (S,S,3) uint8 with zeros where not visible, visible (S,S) bool) of one face; unfiltered: the
        visibility before occluders were taken out, and the texture over it."""
        visible = self._read("vis_unfiltered" if unfiltered else "vis", item_id) > 127
        return self._read("uv", item_id) * visible[..., None].astype(np.uint8), visible

    def mesh(self, item_id: str) -> np.ndarray:
        return self._read("mesh", item_id)

    def _read(self, kind: str, item_id: str) -> np.ndarray:
        """One stored array, checked, or a one-line DatasetError naming the file and how to redo it."""
        path = self.root / kind / f"{item_id}.{'npy' if kind == 'mesh' else 'png'}"
        side = (self.uv_size, self.uv_size)
        shape = {"uv": (*side, 3), "vis": side, "vis_unfiltered": side, "mesh": (468, 3)}[kind]
        try:
            if kind == "mesh":
                array = np.load(path, allow_pickle=False)
            else:
                with Image.open(path) as im:
                    array = np.asarray(im)
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            problem = f"is unreadable ({type(e).__name__})"
        else:
            if array.shape == shape:
                return array
            problem = f"has shape {array.shape}, not {shape}"
        raise DatasetError(f"{path} {problem}; re-run `uvlib prep {self.info.get('source') or 'SOURCE'} {self.root}`, "
                           f"which redoes damaged files")


class PngMaps(MapReader):
    """A split's maps decoded from their PNGs at every read: the reader where no shards can be written."""

    def __init__(self, ds: Dataset, ids: list):
        self.ds, self.ids = ds, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, idx):
        rows = self._rows(idx)
        size = self.ds.uv_size
        uv, visible = np.empty((len(rows), size, size, 3), np.uint8), np.empty((len(rows), size, size), bool)
        for j, i in enumerate(rows):
            uv[j], visible[j] = self.ds.item(self.ids[i])
        return uv, visible

    def visible(self, idx) -> np.ndarray:
        rows = self._rows(idx)
        visible = np.empty((len(rows), self.ds.uv_size, self.ds.uv_size), bool)
        for j, i in enumerate(rows):
            visible[j] = self.ds._read("vis", self.ids[i]) > 127
        return visible


def open_dataset(root) -> Dataset:
    """Open a finished dataset folder, or fail with one line saying what to run."""
    root = Path(root)
    if not (root / "dataset.json").is_file():
        raise DatasetError(f"{root} is not a prepared dataset (no dataset.json); run `uvlib prep SOURCE {root}` first")
    info = read_json(root / "dataset.json")
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise DatasetError(f"{root} is format {info.get('format')} v{info.get('version')}, this uvlib reads "
                           f"{FORMAT} v{VERSION}; re-run `uvlib prep` into a new folder")
    if not (root / "index.csv").is_file():
        raise DatasetError(f"{root} has no index.csv (preparation unfinished); re-run `uvlib prep` to finish it")
    with (root / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for key in NUMBER_FIELDS:
            r[key] = float(r[key])
        for key in OPTIONAL_NUMBER_FIELDS:
            r[key] = float(r[key]) if r[key] else None
        r["face"] = int(r["face"])
    return Dataset(root, info, rows)
