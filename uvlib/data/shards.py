"""A split's maps as uint8 array shards on disk, read lazily: data larger than memory, masks without colour.

    DATASET/shards/SPLIT-uv.npy    (N, S, S, 3) uint8   textures of the split, in index.csv order, as
                                                        Dataset.item gives them (zero where not visible)
    DATASET/shards/SPLIT-vis.npy   (N, S, S)    bool    visibility (the observed texels)
    DATASET/shards/SPLIT.json      what they were built from: the split's ids and each PNG's (size, mtime)

Plain .npy files (np.load(path, mmap_mode="r") opens them too). The PNGs stay the dataset's record, for
people and for prep's checksums; the shards are a cache of them, built by `finalize` (or on first use of an
older dataset) and rebuilt, reusing the rows whose files did not change, as soon as a split's ids or any of
its PNG files differ from what the shards were built from: they are never silently stale.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

SHARD_VERSION = 1
CHUNK = 256          # maps decoded and written per step while building


def as_tensors(uv: np.ndarray, visible: np.ndarray, dtype=torch.float32):
    """(n,S,S,3) uint8 maps and (n,S,S) bool masks -> (uv (n,3,S,S), observed (n,1,S,S)).

    float32 (what Dataset.load returns): uv in [0, 1], observed 0/1. uint8: uv 0-255 and observed 0/1, a
    quarter of the memory, for moving many maps to a device (MaskedPCA.fit takes them as they are).
    """
    uv, observed = torch.from_numpy(uv).permute(0, 3, 1, 2), torch.from_numpy(visible).unsqueeze(1)
    if dtype == torch.uint8:
        return uv.contiguous(), observed.to(torch.uint8)
    return uv.float().div_(255), observed.float()


def sample_rows(count: int, n: int, seed: int) -> np.ndarray:
    """n of range(count), seeded and sorted (all of them when n is 0 or at least count)."""
    if n <= 0 or n >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, n, replace=False))


class MapReader:
    """Random access to a split's maps: `reader[idx] -> (uv (n,S,S,3) uint8, visible (n,S,S) bool)`.

    idx: an int, a slice or an integer array (any order, repeats allowed); the result is always a batch, in
    idx order. `reader.visible(idx)` reads the masks only. `reader.tensors(idx, dtype)` gives Dataset.load's
    tensors (see as_tensors). For a torch DataLoader, sample whole batches: DataLoader(reader,
    sampler=BatchSampler(RandomSampler(reader), 64, False), batch_size=None).
    """

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, idx):
        raise NotImplementedError

    def visible(self, idx) -> np.ndarray:
        raise NotImplementedError

    def tensors(self, idx, dtype=torch.float32):
        return as_tensors(*self[idx], dtype=dtype)

    def _rows(self, idx) -> np.ndarray:
        rows = np.arange(len(self))[idx if isinstance(idx, slice) else np.asarray(idx)]
        return np.atleast_1d(rows)


class NpyRows:
    """Rows of one .npy file read with plain file reads: memory holds only the rows asked for (a memory
    map would keep every page it touched resident), and every call opens the file itself, so a reader is
    safe to share with threads and DataLoader worker processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with self.path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"{path} is .npy format {version}; rebuild the shards")
            shape, fortran, self.dtype = read_header[version](f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{path} is stored in Fortran order; rebuild the shards")
        self.shape = shape
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows),) + self.shape[1:], self.dtype)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        in_place = bool((order == np.arange(len(rows))).all())
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1          # runs of consecutive rows: one read each
        with self.path.open("rb", buffering=0) as f:
            for run in np.split(np.arange(len(rows)), breaks):
                if not len(run):
                    continue
                target = out[run[0]:run[-1] + 1] if in_place else np.empty((len(run),) + self.shape[1:], self.dtype)
                f.seek(self.offset + int(ordered[run[0]]) * self.row_bytes)
                view, done = memoryview(target).cast("B"), 0
                while done < len(view):
                    got = f.readinto(view[done:])
                    if not got:
                        raise OSError(f"{self.path} ends early; delete the shards folder to rebuild it")
                    done += got
                if not in_place:
                    out[order[run]] = target
        return out


class MapShards(MapReader):
    """One split's shards (see the module docstring): `len`, `[idx]`, `visible(idx)`, `tensors(idx, dtype)`."""

    def __init__(self, folder: Path, split: str):
        self.uv = NpyRows(Path(folder) / f"{split}-uv.npy")
        self.vis = NpyRows(Path(folder) / f"{split}-vis.npy")

    def __len__(self):
        return self.uv.shape[0]

    def __getitem__(self, idx):
        rows = self._rows(idx)
        return self.uv.read(rows), self.vis.read(rows)

    def visible(self, idx) -> np.ndarray:
        return self.vis.read(self._rows(idx))


def stamp(*paths) -> list:
    """(size, mtime) of each file, None where one is missing: what a shard row was built from."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append([st.st_size, st.st_mtime_ns])
    return out


def open_shards(folder: Path, split: str, ids: list, stamps: list, size: int):
    """The split's shards if they were built from exactly these ids and files, else None."""
    try:
        meta = json.loads((Path(folder) / f"{split}.json").read_text())
        shards = MapShards(folder, split)
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != _digest(ids, stamps, size) or len(shards) != len(ids):
        return None
    return shards


def build_shards(folder: Path, split: str, ids: list, stamps: list, size: int, read_map, progress=False):
    """Write the split's shards: rows whose id and stamp match the previous shards are copied from them,
    the others come from read_map(i) -> (uv (S,S,3) uint8, visible (S,S) bool). Written beside the old
    files and moved in place at the end, so a failure (a damaged PNG, a full disk) leaves them as they were.
    """
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    for leftover in folder.glob(f"{split}[-.]*.tmp"):      # of a build that was killed
        leftover.unlink(missing_ok=True)
    previous = _previous_rows(folder, split, size)
    paths = {kind: folder / f"{split}-{kind}.npy" for kind in ("uv", "vis")}
    tmp = {kind: path.with_name(f"{path.name}.{os.getpid()}.tmp") for kind, path in paths.items()}
    shapes = {"uv": (len(ids), size, size, 3), "vis": (len(ids), size, size)}
    dtypes = {"uv": np.uint8, "vis": np.bool_}
    files = {kind: tmp[kind].open("wb") for kind in paths}
    try:
        for kind, f in files.items():
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtypes[kind])), "fortran_order": False,
                      "shape": shapes[kind]}
            np.lib.format.write_array_header_1_0(f, header)
        with tqdm(total=len(ids), desc=f"shards {split}", unit="map", disable=not progress) as bar:
            for start in range(0, len(ids), CHUNK):
                rows = range(start, min(start + CHUNK, len(ids)))
                uv, vis = _chunk(rows, ids, stamps, size, previous, read_map)
                files["uv"].write(uv.tobytes())
                files["vis"].write(vis.tobytes())
                bar.update(len(rows))
        for f in files.values():
            f.close()
        (folder / f"{split}.json").unlink(missing_ok=True)     # the shards are stale until the meta is written
        for kind in paths:
            tmp[kind].replace(paths[kind])
        meta = {"version": SHARD_VERSION, "uv_size": size, "ids": ids, "stamps": stamps,
                "fingerprint": _digest(ids, stamps, size)}
        meta_tmp = folder / f"{split}.json.{os.getpid()}.tmp"
        meta_tmp.write_text(json.dumps(meta))
        meta_tmp.replace(folder / f"{split}.json")
    finally:
        for kind, f in files.items():
            f.close()
            tmp[kind].unlink(missing_ok=True)
    return MapShards(folder, split)


def _digest(ids, stamps, size) -> str:
    text = json.dumps({"version": SHARD_VERSION, "uv_size": size, "ids": ids, "stamps": stamps})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _previous_rows(folder: Path, split: str, size: int):
    """(shards, {id: (row, stamp)}) of the split's current shards, whose unchanged rows are copied, not decoded."""
    try:
        meta = json.loads((folder / f"{split}.json").read_text())
        shards = MapShards(folder, split)
    except (OSError, ValueError):
        return None, {}
    if meta.get("version") != SHARD_VERSION or meta.get("uv_size") != size or len(shards) != len(meta["ids"]):
        return None, {}
    return shards, {i: (row, s) for row, (i, s) in enumerate(zip(meta["ids"], meta["stamps"]))}


def _chunk(rows, ids, stamps, size, previous, read_map):
    shards, known = previous
    uv = np.empty((len(rows), size, size, 3), np.uint8)
    vis = np.empty((len(rows), size, size), np.bool_)
    at, old_rows = [], []
    for j, i in enumerate(rows):
        old = known.get(ids[i])
        if old is not None and old[1] == stamps[i] and None not in stamps[i]:
            at.append(j), old_rows.append(old[0])
        else:
            uv[j], vis[j] = read_map(i)
    if at:
        uv[at], vis[at] = shards[old_rows]
    return uv, vis
