"""What made a model: the run record stored in checkpoints and model files, and what happens when it changes.

A run record is a dict of plain types: the spec, which maps (a digest of their ids), the upstream models (a
digest of their weights) and how stacked inputs were made. A model file whose record equals the requested one
is reused; one made by another run is moved, with its training folder, to NAME.superseded-N (nothing made is
lost) and one line names the differing keys.
"""
import hashlib
import warnings
from pathlib import Path

import torch

from uvlib.train import distributed
from uvlib.train.loop import config_differences, set_aside, summarise_differences


def ids_digest(rows) -> str:
    """A short digest of the maps' ids, in order: a fingerprint of which maps a run used."""
    return hashlib.sha1("\n".join(r["id"] for r in rows).encode()).hexdigest()[:16]


def state_digest(value) -> str:
    """A short sha1 of a model state: tensors by dtype, shape and bytes; dicts, lists and plain values by content."""
    sha = hashlib.sha1()

    def feed(v):
        if torch.is_tensor(v):
            sha.update(f"{v.dtype}{tuple(v.shape)}".encode())
            sha.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, dict):
            for key in sorted(v, key=str):
                sha.update(str(key).encode())
                feed(v[key])
        elif isinstance(v, (list, tuple)):
            for item in v:
                feed(item)
        else:
            sha.update(repr(v).encode())
    feed(value)
    return sha.hexdigest()[:16]


def data_record(rows, split, external=None) -> dict:
    """Which maps a run learned on; `external`: what it took from other datasets (maps, holes: a StageContext's
    external_record), kept only when there is any, so the records of runs without it stay as they were."""
    record = {"split": split, "maps": len(rows), "ids": ids_digest(rows)}
    return (record | {"external": external}) if external else record


def held_out_record(split, rows, inputs) -> dict:
    """How a stacked stage's inputs were made when it learns on a split its earlier stages never fitted."""
    return {"inputs": inputs, "split": split, "maps": len(rows), "why": "maps the earlier stages never fitted"}


def stored_run(path) -> dict:
    """The run record of a model file ({} for files made before runs were recorded)."""
    return torch.load(path, map_location="cpu", weights_only=True).get("run") or {}


def reusable(train_dir, path, run, made_together=()) -> bool:
    """True when the model file `path` exists and was made by `run`.

    A model file of another run is moved, with its training folder `train_dir` and the model files made
    together with it (a GAN's snapshots), into train_dir.superseded-N; the caller then trains afresh.
    Under torchrun rank 0 decides (and moves) and every rank gets its answer.
    """
    return distributed.from_main(lambda: _reusable(train_dir, path, run, list(made_together)))


def _reusable(train_dir, path, run, made_together) -> bool:
    path, train_dir = Path(path), Path(train_dir)
    if not path.is_file():
        return False
    differences = config_differences(stored_run(path), run)
    if not differences:
        return True
    train_dir.mkdir(parents=True, exist_ok=True)
    moved = set_aside(train_dir)
    for old in {path, *made_together}:
        if old.is_file():
            old.rename(moved / old.name)
    warnings.warn(f"{path.name} was made by another run ({summarise_differences(differences)}); moved it and "
                  f"{train_dir.name}/ to {moved}; training afresh", stacklevel=6)
    return False
