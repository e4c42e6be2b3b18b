"""Profiles are checked against the parameters the notebooks declare, when loaded and before any notebook runs."""
import json

import pytest

from uvlib.study.params import PROJECT_ROOT, ProfileError, declared_parameters, load_profile


def write(tmp_path, text):
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("profile", sorted((PROJECT_ROOT / "params").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_profile_passes_the_check(profile):
    assert load_profile(profile)["run_dir"].startswith("runs/")


def test_declared_parameters_come_from_the_notebooks_parameters_cells(tmp_path):
    declared = declared_parameters()
    assert declared["uv_size"] == (128, "00_data_prep.ipynb")
    assert declared["checkpoint_every"][0] == 100 and declared["gan_epochs"][0] == [43, 53, 97]
    notebook = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [],
                           "source": ["# a comment\n", "hue = 0.5   # the new knob\n"]},
                          {"cell_type": "code", "metadata": {}, "outputs": [], "source": ["unrelated = 1\n"]}]}
    (tmp_path / "09_new.ipynb").write_text(json.dumps(notebook))
    assert declared_parameters(tmp_path) == {"hue": (0.5, "09_new.ipynb")}


@pytest.mark.parametrize("text, message", [
    ("uv_sise: 64\n", "no notebook has a parameter 'uv_sise'; did you mean 'uv_size'?"),
    ("checkpoint_every: \"2\"\n", "checkpoint_every must be an integer as in notebooks/03_pconv.ipynb"),
    ("checkpoint_every: true\n", "checkpoint_every must be an integer"),
    ("gan_epochs: 3\n", "gan_epochs must be a list"),
    ("pconv_defaults: [1]\n", "pconv_defaults must be a mapping"),
    ("dataset_dir:\n", "dataset_dir must be a string"),
    ("seed: [0\n", "is not valid YAML at line 2"),
])
def test_unknown_or_wrong_typed_keys_fail_with_one_line(tmp_path, text, message):
    with pytest.raises(ProfileError) as e:
        load_profile(write(tmp_path, text))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_quoted_number_gets_the_unquoted_fix_and_numbers_fit_float_knobs(tmp_path):
    with pytest.raises(ProfileError, match="write e.g. checkpoint_every: 2$"):
        load_profile(write(tmp_path, "checkpoint_every: \"2\"\n"))
    assert load_profile(write(tmp_path, "pca_tol: 0\ngan_lr: 1.0e-4\n")) == {"pca_tol": 0, "gan_lr": 1e-4}
