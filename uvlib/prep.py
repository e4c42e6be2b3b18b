"""Stage 00: photos -> fitted faces -> incomplete UV maps, written into a dataset folder.

Every photo ends as one manifest line, `ok` or `failed` with its reason, so a bad photo never stops the run
and a re-run skips what is done. Work is spread over processes (each owns its MediaPipe graphs) and can be
sharded over machines with shard=(i, n): shard i takes every n-th photo and writes manifest-i-of-n.jsonl;
the index is built once every shard's manifest is complete.
"""
import json
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from . import __version__
from .dataset import FORMAT, VERSION, finalize, read_json, read_manifest, write_json
from .mesh import check_uv_size, uv_atlas
from .photo import PhotoError, read_photo
from .unwrap import METHODS, unwrap


@dataclass(frozen=True)
class PrepConfig:
    uv_size: int = 128
    method: str = "warp"
    shard: tuple = (0, 1)
    workers: int = 0          # 0 = one per CPU core
    split_seed: int = 0
    groups: str = "photo"     # how photos were grouped for the split (uvlib.sources.grouping)

    def validate(self):
        check_uv_size(self.uv_size)
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r} is unknown; use one of {METHODS}")
        i, n = self.shard
        if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {i}/{n} is invalid; use i/n with 0 <= i < n, e.g. 0/4")
        if self.workers < 0:
            raise ValueError(f"--workers {self.workers} is invalid; use 0 (one per core) or a positive count")


def parse_shard(text: str) -> tuple:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} is invalid; use i/n with 0 <= i < n, e.g. 0/4") from None
    return i, n


_fitter = None


def _init_worker():
    global _fitter
    from .facefit import FaceFitter
    _fitter = FaceFitter()


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
    for j, face in enumerate(faces):
        item = f"{photo.key}_{j}"
        result = unwrap(image, face.landmarks, cfg.uv_size, method=cfg.method)
        Image.fromarray(result.texture).save(out / "uv" / f"{item}.png", compress_level=1)
        Image.fromarray(result.visible.astype(np.uint8) * 255).save(out / "vis" / f"{item}.png", compress_level=1)
        np.save(out / "mesh" / f"{item}.npy", face.landmarks)
        record["faces"].append({"id": item, "face": j, "yaw": round(face.yaw, 2), "pitch": round(face.pitch, 2),
                                "roll": round(face.roll, 2), "visible_fraction": round(result.visible_fraction, 4),
                                "score": round(face.score, 3), "box": [round(v, 1) for v in face.box]})
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
                           ("groups", cfg.groups)):
            if info[key] != value:
                raise ValueError(f"{out} was prepared with {key}={info[key]}, not {value}; "
                                 f"use a new folder or the same setting")
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; give a folder for the dataset")
    for sub in ("uv", "vis", "mesh"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(uv_atlas(cfg.uv_size).mask.astype(np.uint8) * 255).save(out / "atlas.png")
    write_json(info_path, {"format": FORMAT, "version": VERSION, "uv_size": cfg.uv_size, "method": cfg.method,
                           "split_seed": cfg.split_seed, "groups": cfg.groups, "source": source_name,
                           "uvlib": __version__})


def prepare(photos, out, cfg: PrepConfig = PrepConfig(), source_name="", progress=True) -> dict:
    """Prepare `photos` (from uvlib.sources) into dataset folder `out`; returns this run's summary.

    The summary counts this shard's photos by status and reason; when every shard is complete it also holds
    the dataset-wide summary (`dataset`) written to summary.json.
    """
    cfg.validate()
    if not photos:
        raise ValueError("the source has no photos; check the path")
    out = Path(out)
    _open_or_create(out, cfg, source_name)
    i, n = cfg.shard
    mine = [p for k, p in enumerate(sorted(photos, key=lambda p: p.key)) if k % n == i]
    done = {r["key"] for r in read_manifest(out)}
    todo = [p for p in mine if p.key not in done]
    missing = [p for p in todo if not p.path.exists()]
    todo = [p for p in todo if p.path.exists()]

    manifest = out / f"manifest-{i}-of-{n}.jsonl"
    counts = {"skipped_done": len(mine) - len(todo) - len(missing), "ok": 0, "failed": 0, "missing": 0, "reasons": {}}
    workers = cfg.workers or os.cpu_count() or 1
    with manifest.open("a") as log:
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
            _init_worker()
            results = map(_process, jobs)
        else:
            pool = get_context("spawn").Pool(workers, initializer=_init_worker)
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
        counts["dataset"] = finalize(out)
    return counts
