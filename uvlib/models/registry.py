"""Trained models as self-contained artefacts.

A model file (runs/PROFILE/NN_stage/model-NAME.pt) holds everything `uvlib complete` and `uvlib evaluate`
need: its kind, its config, its weights and the UV size. So a model trained on a GPU is copied to a laptop
and used on its CPU. Each kind names the function (module:function) that rebuilds a completion function
`fn(uv_in, known) -> uv_out` from (config, state, device).

Files are read with torch.load(weights_only=True): tensors and plain values only, so a downloaded file that
pickles code (which would run as it is unpickled) is refused instead of executed.
"""
from importlib import import_module
from pathlib import Path

import torch

BUILDERS = {
    "mean_face": "uvlib.models.builders:mean_face",
    "masked_pca": "uvlib.models.builders:masked_pca",
    "linear_ae": "uvlib.models.builders:linear_ae",
    "fc_ae": "uvlib.models.builders:fc_ae",
    "pconv": "uvlib.models.builders:pconv",
    "pca_pconv": "uvlib.models.builders:pca_pconv",
    "mirror_poisson_pconv": "uvlib.models.builders:mirror_poisson_pconv",
    "gan": "uvlib.models.builders:gan",
    "pca_pconv_gan": "uvlib.models.builders:pca_pconv_gan",
    "mirror_poisson_gan": "uvlib.models.builders:mirror_poisson_gan",
    "blend": "uvlib.models.builders:blend",
}


def save_model(path, kind: str, uv_size: int, config: dict, state: dict, run: dict = None, budget: dict = None):
    """run: what made the model (spec, data fingerprint, how stacked inputs were made), plain types only.
    budget: what training it cost ({images_seen, train_seconds, device}; uvlib.train.loop.Budget), if it learned."""
    if kind not in BUILDERS:
        raise ValueError(f"model kind {kind!r} is unknown; use one of {sorted(BUILDERS)}")
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save({"kind": kind, "uv_size": uv_size, "config": config, "state": state, "run": run or {},
                "budget": budget or {}}, tmp)
    tmp.replace(path)


def model_files(stage_dir) -> list:
    return sorted(Path(stage_dir).glob("model-*.pt"))


def read_model_file(path) -> dict:
    """The saved dict of a model file, loaded as weights only; ValueError (one line) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist; train its stage first")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:       # arbitrary bytes make the unpickler raise almost anything
        if "unsupported global" in str(e).lower():    # a class or function not allowed, or a blocked module
            raise ValueError(f"{path} was refused: it pickles Python objects besides tensors and plain values, "
                             f"which could run code as it is loaded; use a model file written by uvlib") from None
        raise ValueError(f"{path} is not a uvlib model file (unreadable: {type(e).__name__}); "
                         f"pick a model-*.pt of a stage folder") from None
    if not isinstance(saved, dict) or saved.get("kind") not in BUILDERS:
        raise ValueError(f"{path} is not a uvlib model file (no known 'kind'); pick a model-*.pt of a stage folder")
    return saved


def model_budget(path) -> dict:
    """The training budget a model file records ({} for one that did not learn or predates budgets)."""
    return read_model_file(path).get("budget") or {}


def load_model(path, device="cpu"):
    """(completion function, info dict with kind, uv_size, config, name) from a model file."""
    path = Path(path)
    saved = read_model_file(path)
    module, function = BUILDERS[saved["kind"]].split(":")
    try:
        fn = getattr(import_module(module), function)(saved["config"], saved["state"], torch.device(device))
    except (KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"{path} holds a {saved['kind']} model that this uvlib cannot rebuild "
                         f"({type(e).__name__}); retrain its stage") from None
    info = {k: saved[k] for k in ("kind", "uv_size", "config")}
    info["name"] = path.stem.removeprefix("model-")
    return fn, info


def load_stage_models(stage_dir, device="cpu") -> dict:
    """{name: completion function} for every model file of a stage folder."""
    files = model_files(stage_dir)
    if not files:
        raise FileNotFoundError(f"{stage_dir} holds no model-*.pt; run its stage notebook first")
    return {f.stem.removeprefix("model-"): load_model(f, device)[0] for f in files}


def load_models(paths, device="cpu") -> dict:
    """{"stage/name": (completion function, info)} for model files, stage folders (every model-*.pt) and run
    folders (every stage folder in them holding model files), in the order given, stages sorted by name."""
    files = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif model_files(path):
            files += model_files(path)
        elif path.is_dir() and any(model_files(stage) for stage in path.iterdir() if stage.is_dir()):
            files += [f for stage in sorted(p for p in path.iterdir() if p.is_dir()) for f in model_files(stage)]
        else:
            raise FileNotFoundError(f"{path} is neither a model file, a stage folder with model-*.pt nor a run "
                                    f"folder holding such stages; train a stage first or fix the path")
    return {f"{f.parent.name}/{f.stem.removeprefix('model-')}": load_model(f, device) for f in files}
