"""`uvlib train STAGE --params PROFILE`: under torchrun it writes the model the stage notebook then finds and reuses."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from test_distributed import free_port

from uvlib.app.cli import main
from uvlib.study.params import load_profile
from uvlib.study.stages import open_stage_for, stage_name, stage_parameters, train_03

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, face_copies):
    """The twelve rotated and mirrored face copies at 64x64: 8 train, 2 val, 2 test."""
    from uvlib.data.prep import PrepConfig, prepare
    from uvlib.data.sources import Photo
    out = tmp_path_factory.mktemp("ds") / "ds"
    splits = ["train"] * 8 + ["val", "val", "test", "test"]
    prepare([Photo(path.stem, path, split) for path, split in zip(face_copies, splits)], out,
            PrepConfig(uv_size=64, workers=1, split_seed=3), progress=False)
    return out


def write_profile(folder: Path, dataset: Path) -> Path:
    profile = {"run_dir": str(folder / "run"), "dataset_dir": str(dataset), "device": "cpu", "eval_limit": 2,
               "pconv_defaults": {"base_width": 4, "steps": 2, "fine_tune_steps": 2, "batch_size": 4,
                                  "feature_net": "none"},
               "pconv_experiments": [{"name": "pconv"}], "checkpoint_every": 2}
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def test_torchrun_trains_what_the_notebook_then_reuses(tmp_path, tiny_dataset):
    profile = write_profile(tmp_path, tiny_dataset)
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}",
                           "-m", "uvlib", "train", "03", "--params", str(profile), "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "03_pconv: model-pconv.pt in" in done.stdout and "(2 processes)" in done.stdout
    stage = tmp_path / "run" / "03_pconv"
    model = stage / "model-pconv.pt"
    made = model.stat().st_mtime_ns
    assert (stage / "train" / "pconv" / "log.csv").is_file()

    # what notebooks/03_pconv.ipynb does with the same profile: the model is found, not trained again
    params = stage_parameters("03_pconv", load_profile(profile))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # "made by another run" would be a warning
        methods = train_03(open_stage_for("03_pconv", params, progress=False), params)
    assert list(methods) == ["pconv"] and model.stat().st_mtime_ns == made
    assert not list((stage / "train").glob("*.superseded-*"))


def test_stage_names_and_bad_arguments(tmp_path, capsys):
    assert stage_name("03") == stage_name("pconv") == stage_name("03_pconv") == "03_pconv"
    assert stage_name("blended_pca_pconv") == "07_blended_pca_pconv"
    assert main(["train", "08", "--params", "tiny"]) == 2
    assert "no trainable stage '08'" in capsys.readouterr().err
    assert main(["train", "03", "--params", str(tmp_path / "nothing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("pconv_defaults: {steps: 2}\nstep: 3\n")
    assert main(["train", "03", "--params", str(bad)]) == 2
    assert "no notebook has a parameter 'step'" in capsys.readouterr().err
