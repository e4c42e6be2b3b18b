"""Stage 00: photos -> fitted faces -> incomplete UV maps, written into a dataset folder.

Every photo ends as one manifest line, `ok` or `failed` with its reason, so a bad photo never stops the run
and a re-run skips what is done, after checking it: each output file is written atomically with its checksum
in the record, and a finished photo whose files are missing or changed is done again (`retry_failed` also
redoes the failed ones). A record always starts on a fresh line, so a kill mid-append loses only that record.

Work is spread over processes (each owns its MediaPipe graphs) and can be sharded over machines with
shard=(i, n): shard i takes every n-th photo and writes manifest-i-of-n.jsonl; the index is built once every
shard's manifest is complete, and checked to hold exactly one record per photo.
"""
import hashlib
import io
import json
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from uvlib import __version__
from uvlib.data.dataset import (FORMAT, VERSION, finalize, manifest_files, read_json, read_manifest, read_records,
                                write_json)
from uvlib.data.facefit import MESH_FITTERS, FaceFitter
from uvlib.data.occluders import HandDetector, find_occluders, parse_occluders
from uvlib.data.photo import PhotoError, read_photo
from uvlib.data.sources import check_unique_keys
from uvlib.geometry.mesh import check_uv_size, uv_atlas
from uvlib.geometry.unwrap import METHODS, unwrap


@dataclass(frozen=True)
class PrepConfig:
    uv_size: int = 128
    method: str = "warp"
    shard: tuple = (0, 1)
    workers: int = 0          # 0 = one per CPU core
    split_seed: int = 0
    groups: str = "photo"     # how photos were grouped for the split (uvlib.data.sources.grouping)
    occluders: str = "hands+appearance"   # tests that keep hands, hair, objects out of the seen texels
    mesh: str = "crops"       # FaceFitter's mesh fitting: "crops" or the old "graph" (kept for benchmarks)

    def validate(self):
        check_uv_size(self.uv_size)
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r} is unknown; use one of {METHODS}")
        i, n = self.shard
        if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {i}/{n} is invalid; use i/n with 0 <= i < n, e.g. 0/4")
        if self.mesh not in MESH_FITTERS:
            raise ValueError(f"mesh fitter {self.mesh!r} is unknown; use one of {MESH_FITTERS}")
        if self.workers < 0:
            raise ValueError(f"--workers {self.workers} is invalid; use 0 (one per core) or a positive count")
        parse_occluders(self.occluders)


def parse_shard(text: str) -> tuple:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} is invalid; use i/n with 0 <= i < n, e.g. 0/4") from None
    return i, n


OUTPUTS = (("uv", "png"), ("vis", "png"), ("vis_unfiltered", "png"), ("mesh", "npy"))
_fitter = _hands = None


def _init_worker(verbose=False, occluders=PrepConfig.occluders, mesh=PrepConfig.mesh):
    global _fitter, _hands
    _fitter = FaceFitter(native_logs=verbose, mesh=mesh)
    _hands = HandDetector(native_logs=verbose) if "hands" in parse_occluders(occluders) else None


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _write(path: Path, data: bytes) -> str:
    """Write atomically (a kill never leaves a half-written file); returns the content's checksum."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return _checksum(data)


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def outputs_intact(out: Path, record: dict) -> bool:
    """Whether every file of a finished record is there with the content it was written with."""
    for face in record["faces"]:
        for kind, ext in OUTPUTS:
            try:
                data = (out / kind / f"{face['id']}.{ext}").read_bytes()
            except OSError:
                return False
            if _checksum(data) != face.get("checksum", {}).get(kind):
                return False
    return True


def process_photo(photo, out: Path, cfg: PrepConfig) -> dict:
    """Fit, unwrap and write every face of one photo; returns its manifest record."""
    record = {"key": photo.key, "path": str(photo.path), "split": photo.split, "group": photo.group, "faces": []}
    try:
        image = read_photo(photo.path)
    except PhotoError as e:
        return {**record, "status": "failed", "reason": str(e)}
    faces, reason = _fitter.fit(image)
    if not faces:
        return {**record, "status": "failed", "reason": reason}
    tests = parse_occluders(cfg.occluders)
    hands = _hands.detect(image) if "hands" in tests else []
    for j, face in enumerate(faces):
        item = f"{photo.key}_{j}"
        result = unwrap(image, face.landmarks, cfg.uv_size, method=cfg.method)
        occlusion = find_occluders(result.texture, result.visible, face.landmarks, image.shape, hands, tests)
        seen = result.visible & ~occlusion.occluded
        atlas_area, geometric = uv_atlas(cfg.uv_size).mask.sum(), max(result.visible.sum(), 1)
        checksum = {"uv": _write(out / "uv" / f"{item}.png", _png(result.texture)),
                    "vis": _write(out / "vis" / f"{item}.png", _png(seen.astype(np.uint8) * 255)),
                    "vis_unfiltered": _write(out / "vis_unfiltered" / f"{item}.png",
                                             _png(result.visible.astype(np.uint8) * 255)),
                    "mesh": _write(out / "mesh" / f"{item}.npy", _npy(face.landmarks))}
        record["faces"].append({"id": item, "face": j, "yaw": round(face.yaw, 2), "pitch": round(face.pitch, 2),
                                "roll": round(face.roll, 2), "visible_fraction": round(seen.sum() / atlas_area, 4),
                                "occluded_fraction": round(occlusion.occluded.sum() / geometric, 4),
                                "hand_fraction": round(occlusion.hands.sum() / geometric, 4),
                                "score": round(face.score, 3), "box": [round(v, 1) for v in face.box],
                                "checksum": checksum})
    return {**record, "status": "ok", "reason": ""}


def _process(args):
    return process_photo(*args)


def _open_or_create(out: Path, cfg: PrepConfig, source_name: str):
    info_path = out / "dataset.json"
    if info_path.exists():
        info = read_json(info_path)
        if info.get("format") != FORMAT or info.get("version") != VERSION:
            raise ValueError(f"{out} holds a dataset of another format/version; prepare into a new folder")
        for key, value in (("uv_size", cfg.uv_size), ("method", cfg.method), ("split_seed", cfg.split_seed),
                           ("groups", cfg.groups), ("occluders", cfg.occluders), ("mesh", cfg.mesh)):
            stored = info.get(key, "graph" if key == "mesh" else None)   # datasets from before "mesh": the graph
            if stored != value:
                raise ValueError(f"{out} was prepared with {key}={stored}, not {value}; "
                                 f"use a new folder or the same setting")
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; give a folder for the dataset")
    for sub, _ in OUTPUTS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(uv_atlas(cfg.uv_size).mask.astype(np.uint8) * 255).save(out / "atlas.png")
    write_json(info_path, {"format": FORMAT, "version": VERSION, "uv_size": cfg.uv_size, "method": cfg.method,
                           "split_seed": cfg.split_seed, "groups": cfg.groups, "occluders": cfg.occluders,
                           "mesh": cfg.mesh, "source": source_name,
                           "uvlib": __version__})


def _redo(out: Path, keys: set, retry_failed: bool) -> tuple:
    """Drop from the manifests the records of `keys` that must be done again: finished ones whose files are
    missing or changed, and with retry_failed the failed and missing ones. Returns (damaged, retried) counts."""
    damaged = retried = 0
    for manifest in manifest_files(out):
        records = read_records(manifest)
        kept = []
        for r in records:
            if r["key"] in keys and r["status"] == "ok" and not outputs_intact(out, r):
                damaged += 1
            elif r["key"] in keys and r["status"] != "ok" and retry_failed:
                retried += 1
            else:
                kept.append(r)
        if len(kept) < len(records):
            tmp = manifest.with_name(manifest.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(manifest)
    return damaged, retried


def _open_manifest(path: Path):
    """The shard manifest, opened for appending on a fresh line: a record cut short by a kill must not
    swallow the next one."""
    torn = False
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    log = path.open("a")
    if torn:
        log.write("\n")
    return log


def prepare(photos, out, cfg: PrepConfig = PrepConfig(), source_name="", progress=True, retry_failed=False,
            verbose=False) -> dict:
    """Prepare `photos` (from uvlib.data.sources) into dataset folder `out`; returns this run's summary.

    The summary counts this shard's photos by status and reason, the finished ones redone because their files
    were damaged (`redone`) and the failed ones tried again (`retried`, with retry_failed); when every shard is
    complete it also holds the dataset-wide summary (`dataset`) written to summary.json. verbose shows
    MediaPipe's own log lines.
    """
    cfg.validate()
    if not photos:
        raise ValueError("the source has no photos; check the path")
    check_unique_keys(photos)
    out = Path(out)
    _open_or_create(out, cfg, source_name)
    i, n = cfg.shard
    mine = [p for k, p in enumerate(sorted(photos, key=lambda p: p.key)) if k % n == i]
    damaged, retried = _redo(out, {p.key for p in mine}, retry_failed)
    done = {r["key"] for r in read_manifest(out)}
    todo = [p for p in mine if p.key not in done]
    missing = [p for p in todo if not p.path.exists()]
    todo = [p for p in todo if p.path.exists()]

    manifest = out / f"manifest-{i}-of-{n}.jsonl"
    counts = {"skipped_done": len(mine) - len(todo) - len(missing), "ok": 0, "failed": 0, "missing": 0,
              "redone": damaged, "retried": retried, "reasons": {}}
    workers = cfg.workers or os.cpu_count() or 1
    with _open_manifest(manifest) as log:
        def record(rec):
            log.write(json.dumps(rec) + "\n")
            log.flush()
            counts[rec["status"]] += 1
            if rec["reason"]:
                counts["reasons"][rec["reason"]] = counts["reasons"].get(rec["reason"], 0) + 1
        for p in missing:
            record({"key": p.key, "path": str(p.path), "split": p.split, "group": p.group, "faces": [],
                    "status": "missing", "reason": "file not found"})
        jobs = [(p, out, cfg) for p in todo]
        bar = tqdm(total=len(jobs), desc=f"prep {out.name}", unit="photo", disable=not progress)
        if workers == 1 or len(jobs) < 8:
            _init_worker(verbose, cfg.occluders, cfg.mesh)
            results = map(_process, jobs)
        else:
            pool = get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(verbose, cfg.occluders, cfg.mesh))
            results = pool.imap_unordered(_process, jobs, chunksize=4)
        try:
            for rec in results:
                record(rec)
                bar.update()
        finally:
            bar.close()
            if workers > 1 and len(jobs) >= 8:
                pool.terminate()
    (out / f"shard-{i}-of-{n}.done").touch()
    if all((out / f"shard-{k}-of-{n}.done").exists() for k in range(n)):
        counts["dataset"] = finalize(out, [p.key for p in photos], progress=progress)
    return counts
