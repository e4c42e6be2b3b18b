"""Run profiles (params/*.yaml) and paths that mean the same whether a notebook runs by hand or by papermill."""
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_path(path) -> Path:
    """Relative paths in parameters are relative to the project root, not to the notebook's folder."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def load_profile(name_or_path) -> dict:
    """params/NAME.yaml (or a path to a YAML file) as a dict."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROJECT_ROOT / "params" / f"{name_or_path}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (PROJECT_ROOT / "params").glob("*.yaml"))
        raise ValueError(f"profile {name_or_path!r} not found; use one of {choices} or a YAML path")
    return yaml.safe_load(path.read_text()) or {}


def dataset_path(run_dir, dataset_dir="") -> Path:
    """The dataset a run uses: `dataset_dir` when given, else the one stage 00 wrote into the run folder."""
    return project_path(dataset_dir) if dataset_dir else project_path(run_dir) / "00_data_prep" / "dataset"
