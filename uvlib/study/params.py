"""Run profiles (params/*.yaml) and paths that mean the same whether a notebook runs by hand or by papermill.

A profile may only set parameters that some notebook declares in its `parameters`-tagged cell, with a value of
the declared default's type: `load_profile` checks both, so `uv_sise: 64` or `checkpoint_every: "2"` fails
with one line before any work instead of being ignored or failing deep in a notebook.
"""
import ast
import difflib
import json
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = PROJECT_ROOT / "notebooks"
TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
              dict: "a mapping"}


class ProfileError(ValueError):
    """A profile that names an unknown parameter or gives one a value of the wrong type."""


def project_path(path) -> Path:
    """Relative paths in parameters are relative to the project root, not to the notebook's folder."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def notebook_parameters(notebook) -> dict:
    """{name: default} of the assignments in a notebook's `parameters`-tagged cell (literals only)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    source = "".join(next((c["source"] for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), []))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}


def declared_parameters(notebooks=NOTEBOOKS) -> dict:
    """{name: (default, notebook)} over every numbered notebook, the first notebook declaring a name."""
    declared = {}
    for notebook in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        for name, default in notebook_parameters(notebook).items():
            declared.setdefault(name, (default, notebook.name))
    return declared


def _fits(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def check_profile(profile: dict, source="profile", declared=None) -> None:
    """Raise ProfileError (one line) for the first key no notebook declares or whose value has the wrong type."""
    declared = declared_parameters() if declared is None else declared
    for key, value in profile.items():
        if key not in declared:
            close = difflib.get_close_matches(str(key), list(declared), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see the notebooks' parameters cells for the names"
            raise ProfileError(f"{source}: no notebook has a parameter {key!r}; {hint}")
        default, notebook = declared[key]
        if not _fits(value, default):
            raise ProfileError(f"{source}: {key} must be {TYPE_NAMES[type(default)]} as in notebooks/{notebook} "
                               f"({key} = {default!r}), not {value!r}; write e.g. {_example(key, value, default)}")


def _example(key, value, default) -> str:
    """`key: 2` for a quoted "2" where a number is expected, else the notebook's default as YAML."""
    if isinstance(value, str):
        try:
            unquoted = yaml.safe_load(value)
        except yaml.YAMLError:
            unquoted = None
        if unquoted is not None and _fits(unquoted, default):
            return f"{key}: {value}"
    return f"{key}: {json.dumps(default)}"


def load_profile(name_or_path) -> dict:
    """params/NAME.yaml (or a path to a YAML file) as a dict, checked against the notebooks' parameters."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROJECT_ROOT / "params" / f"{name_or_path}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (PROJECT_ROOT / "params").glob("*.yaml"))
        raise ProfileError(f"profile {name_or_path!r} not found; use one of {choices} or a YAML path")
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ProfileError(f"{path} is not valid YAML{where} ({getattr(e, 'problem', None) or e}); fix it") from None
    if not isinstance(profile, dict):
        raise ProfileError(f"{path} must map parameter names to values (name: value per line)")
    check_profile(profile, str(path))
    return profile


def dataset_path(run_dir, dataset_dir="") -> Path:
    """The dataset a run uses: `dataset_dir` when given, else the one stage 00 wrote into the run folder."""
    return project_path(dataset_dir) if dataset_dir else project_path(run_dir) / "00_data_prep" / "dataset"
