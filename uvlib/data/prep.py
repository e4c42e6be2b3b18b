"""Stage 00: photos -> fitted faces -> incomplete UV maps, written into a dataset folder.

Every photo ends as one manifest line, `ok` or `failed` with its reason, so a bad photo never stops the run
and a re-run skips what is done, after checking it: each output file is written atomically with its checksum
in the record, and a finished photo whose files are missing or changed is done again (`retry_failed` also
redoes the failed ones). A record always starts on a fresh line, so a kill mid-append loses only that record.

Work is spread over processes (each owns its MediaPipe graphs; what one does with a photo is uvlib.data.worker) and can be sharded over machines with
shard=(i, n): shard i takes every n-th photo and writes manifest-i-of-n.jsonl; the index is built once every
shard's manifest is complete, and checked to hold exactly one record per photo.
"""
import json
import os
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from uvlib import __version__
from uvlib.data.dataset import (FORMAT, VERSION, finalize, manifest_files, read_json, read_manifest, read_records,
                                write_json)
from uvlib.data.sources import check_unique_keys
from uvlib.data.worker import OUTPUTS, PrepConfig, checksum, init_worker, process
from uvlib.geometry.mesh import uv_atlas

def parse_shard(text: str) -> tuple:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} is invalid; use i/n with 0 <= i < n, e.g. 0/4") from None
    return i, n


def outputs_intact(out: Path, record: dict) -> bool:
    """Whether every file of a finished record is there with the content it was written with."""
    for face in record["faces"]:
        for kind, ext in OUTPUTS:
            try:
                data = (out / kind / f"{face['id']}.{ext}").read_bytes()
            except OSError:
                return False
            if checksum(data) != face.get("checksum", {}).get(kind):
                return False
    return True


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
            init_worker(verbose, cfg.occluders, cfg.mesh)
            results = map(process, jobs)
        else:
            pool = get_context("spawn").Pool(workers, initializer=init_worker, initargs=(verbose, cfg.occluders, cfg.mesh))
            results = pool.imap_unordered(process, jobs, chunksize=4)
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
