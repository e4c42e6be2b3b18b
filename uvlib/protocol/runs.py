"""The run-folder contract: runs/PROFILE/NN_stage/ holds a stage's metrics.json, figures and artefacts."""
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from uvlib import __version__

STAGES = ("00_data_prep", "01_pca", "02_ann", "03_pconv", "04_pca_pconv_cascade", "05_gan",
          "06_pca_pconv_gan_cascade", "07_blended_pca_pconv")


class MissingStageError(FileNotFoundError):
    """An earlier stage's artefact is absent: the message names the stage and how to produce it."""


def stage_dir(run_dir, stage: str) -> Path:
    path = Path(run_dir) / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


def require(run_dir, stage: str, artefact: str) -> Path:
    """Path of an earlier stage's artefact, or a one-line error saying which notebook to run first."""
    path = Path(run_dir) / stage / artefact
    if not path.exists():
        raise MissingStageError(f"stage {stage} has not produced {path}; run notebooks/{stage}.ipynb "
                                f"(or ./run_all.sh) with the same run_dir first")
    return path


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
            "numpy": np.__version__, "uvlib": __version__, "commit": git_commit(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
            "threads": torch.get_num_threads()}


def write_metrics(directory, stage: str, methods: dict, seed: int, params: dict, **extra) -> Path:
    """metrics.json: {stage, seed, params, environment, methods: {name: {params, scores}}, ...extra}."""
    path = Path(directory) / "metrics.json"
    data = {"stage": stage, "seed": seed, "params": params, "environment": environment(), "methods": methods, **extra}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(path)
    return path


def read_metrics(directory) -> dict:
    path = Path(directory) / "metrics.json"
    if not path.is_file():
        raise MissingStageError(f"{directory} has no metrics.json; run its stage notebook first")
    return json.loads(path.read_text())


def collect_metrics(run_dir):
    """({stage: metrics} for every stage folder with metrics.json, [stages without])."""
    found, missing = {}, []
    for stage in STAGES[1:]:
        try:
            found[stage] = read_metrics(Path(run_dir) / stage)
        except MissingStageError:
            missing.append(stage)
    return found, missing
