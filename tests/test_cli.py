"""Every command: bad arguments fail before any work with one line; model files never run code."""
import csv
import json
import os
import pathlib

import pytest
import torch

from uvlib.app.cli import main
from uvlib.data.dataset import FORMAT, INDEX_FIELDS, VERSION
from uvlib.geometry.mesh import uv_atlas
from uvlib.models.mean_face import MeanFace
from uvlib.models.registry import save_model

NOT_WRITABLE = "/sys/uvlib-test-out"     # mkdir fails there for root too


def mean_face_model(path, size):
    atlas = torch.from_numpy(uv_atlas(size).mask)
    face = MeanFace().fit(torch.full((2, 3, size, size), 0.5), torch.ones(2, 1, size, size), atlas)
    save_model(path, "mean_face", size, {}, face.state_dict())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, face_photo):
    """A 64 x 64 dataset folder (no faces yet), models at 64 and 128, a photo and a plain file."""
    root = tmp_path_factory.mktemp("cli")
    ds = root / "dataset"
    ds.mkdir()
    (ds / "dataset.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, "uv_size": 64,
                                                 "method": "warp", "split_seed": 0, "source": "x"}))
    with (ds / "index.csv").open("w", newline="") as f:
        csv.DictWriter(f, fieldnames=INDEX_FIELDS).writeheader()
    (root / "stage").mkdir()
    (root / "photos").mkdir()
    (root / "photos" / "face.jpg").write_bytes(face_photo.read_bytes())
    (root / "note.txt").write_text("a plain file")
    return {"root": root, "dataset": ds, "model": mean_face_model(root / "stage" / "model-mean64.pt", 64),
            "model128": mean_face_model(root / "model-mean128.pt", 128), "photos": root / "photos",
            "photo": root / "photos" / "face.jpg", "file": root / "note.txt"}


def one_line_error(capsys, argv, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def command(name, files, out):
    return {"prep": ["prep", str(files["photos"]), out, "--quiet"],
            "baselines": ["baselines", str(files["dataset"]), out, "--quiet"],
            "evaluate": ["evaluate", str(files["model"]), str(files["dataset"]), "--out", out, "--quiet"],
            "complete": ["complete", str(files["photo"]), "--model", str(files["model"]), "--out", out, "--quiet"],
            }[name]


@pytest.mark.parametrize("name", ["prep", "baselines", "evaluate", "complete"])
@pytest.mark.parametrize("where, expected", [("a file", "is a file"), ("below a file", "which is a file"),
                                             ("not writable", "is not writable")])
def test_an_output_folder_that_cannot_be_one_fails_before_any_work(files, capsys, name, where, expected):
    out = {"a file": str(files["file"]), "below a file": str(files["file"] / "out"),
           "not writable": NOT_WRITABLE}[where]
    one_line_error(capsys, command(name, files, out), out, expected)
    assert files["file"].read_text() == "a plain file"


@pytest.mark.parametrize("name", ["prep", "baselines", "evaluate"])
@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_below_one_is_refused(files, tmp_path, capsys, name, limit):
    one_line_error(capsys, [*command(name, files, str(tmp_path / "out")), "--limit", limit], f"--limit {limit}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, expected", [
    (lambda f: ["prep", str(f["photo"]), str(f["root"] / "o")], "face.jpg is a file; pass a folder of photos"),
    (lambda f: ["baselines", str(f["file"]), str(f["root"] / "o")], "note.txt is a file; pass a prepared dataset"),
    (lambda f: ["evaluate", str(f["model"]), str(f["file"])], "note.txt is a file; pass a prepared dataset"),
    (lambda f: ["evaluate", str(f["file"]), str(f["dataset"])], "note.txt is not a uvlib model file"),
    (lambda f: ["evaluate", str(f["model128"]), str(f["dataset"])],
     "is 128x128, dataset is 64x64: prepare at 128 or pick another model"),
])
def test_wrong_kind_of_path_is_one_line(files, capsys, argv, expected):
    one_line_error(capsys, [*argv(files), "--quiet"], expected)
    assert not (files["root"] / "o").exists() and not list(files["root"].glob("**/evaluate-*"))


def test_complete_on_an_empty_folder_fails_like_prep(files, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["complete", str(tmp_path / "empty"), "--model", str(files["model"]),
                            "--out", str(tmp_path / "out"), "--quiet"], "holds no photos")
    one_line_error(capsys, ["prep", str(tmp_path / "empty"), str(tmp_path / "ds"), "--quiet"], "no photos")
    assert not (tmp_path / "out").exists() and not (tmp_path / "ds").exists()


def test_complete_says_so_when_an_image_cannot_be_written(files, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "face.jpg_0_incomplete.png").mkdir(parents=True)      # where the image should go, a folder
    one_line_error(capsys, ["complete", str(files["photo"]), "--model", str(files["model"]), "--out", str(out),
                            "--quiet", "--yaws=-30,30"], "could not write", "face.jpg_0_incomplete.png")


def test_complete_refuses_two_photos_that_would_share_their_outputs(files, tmp_path):
    from uvlib.app.complete import complete_photos
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "face.jpg"
    twin.write_bytes(files["photo"].read_bytes())
    with pytest.raises(ValueError) as e:
        complete_photos([files["photo"], twin], files["model"], tmp_path / "out", progress=False)
    assert str(files["photo"]) in str(e.value) and str(twin) in str(e.value)
    assert not (tmp_path / "out").exists()


class WritesAFile:
    """What a malicious model file can hold: unpickling it calls Path.touch (any callable would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


class RunsAShellCommand(WritesAFile):
    """The classic: os.system, whose module torch's weights-only unpickler blocks outright."""

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", [WritesAFile, RunsAShellCommand])
def test_a_crafted_model_file_is_refused_and_runs_nothing(files, tmp_path, capsys, payload):
    from uvlib.protocol.runs import stage_dir
    from uvlib.study.recipes import _saved
    marker = tmp_path / "pwned"
    stage = tmp_path / "run" / "01_pca"
    stage.mkdir(parents=True)
    evil = stage / "model-masked_pca_k32.pt"
    torch.save({"kind": "mean_face", "uv_size": 64, "config": {}, "state": payload(marker)}, evil)
    one_line_error(capsys, ["complete", str(files["photo"]), "--model", str(evil), "--out", str(tmp_path / "out"),
                            "--quiet"], "was refused", "could run code")
    one_line_error(capsys, ["evaluate", str(stage), str(files["dataset"]), "--quiet"], "was refused")

    class Ctx:                                    # what the stage loaders of 04/06/07 see of a stage context
        out_dir = stage_dir(tmp_path / "run", "04_pca_pconv_cascade")
    with pytest.raises(ValueError, match="was refused"):
        _saved(Ctx, "01_pca", "masked_pca_k32")
    assert not marker.exists() and not (tmp_path / "out").exists()
