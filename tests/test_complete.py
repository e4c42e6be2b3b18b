import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from uvlib.app.complete import add_parser, complete_photos, parse_yaws, resolve_model, summary_line
from uvlib.geometry.mesh import uv_atlas
from uvlib.geometry.render import gif_yaws
from uvlib.models.mean_face import MeanFace
from uvlib.models.registry import save_model


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """A stage folder with two tiny mean-face models fitted on random 64 x 64 maps."""
    folder = tmp_path_factory.mktemp("stage")
    atlas = torch.from_numpy(uv_atlas(64).mask)
    g = torch.Generator().manual_seed(0)
    for name in ("b_second", "a_first"):
        uv = torch.rand(3, 3, 64, 64, generator=g) * 0.5 + 0.25
        face = MeanFace().fit(uv, torch.ones(3, 1, 64, 64), atlas)
        save_model(folder / f"model-{name}.pt", "mean_face", 64, {}, face.state_dict())
    return folder


@pytest.fixture(scope="module")
def bad_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    Image.new("RGB", (160, 120), (120, 160, 200)).save(folder / "sky.png")
    (folder / "broken.jpg").write_text("not an image")
    return folder


def run_cli(argv):
    """As uvlib/cli.py's main runs a subcommand: parse, then call args.run."""
    parser = argparse.ArgumentParser(prog="uvlib")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.run(args)


def test_completes_the_demo_photo_and_writes_every_output(stage, face_photo, tmp_path, capsys):
    out = tmp_path / "out"
    run_cli(["complete", str(face_photo), "--model", str(stage), "--out", str(out), "--yaws=-60,0,60", "--quiet"])
    printed = capsys.readouterr().out
    assert "1 faces completed with model 'a_first'" in printed and "0 of 1 photos skipped" in printed

    stem = out / "skimage_astronaut.jpg_0"
    incomplete = np.asarray(Image.open(f"{stem}_incomplete.png"))
    completed = np.asarray(Image.open(f"{stem}_completed.png"))
    atlas = uv_atlas(64).mask
    assert incomplete.shape == completed.shape == (64, 64, 3)
    assert (incomplete[atlas] == 0).all(-1).any()                   # the photo leaves holes ...
    assert not (completed[atlas] == 0).all(-1).any()                # ... that the model fills
    assert (completed[~atlas] == 0).all()
    seen = (incomplete != 0).any(-1)
    assert np.array_equal(completed[seen], incomplete[seen])        # what the camera saw is kept
    with Image.open(f"{stem}_turntable.gif") as gif:
        assert gif.n_frames == 2 * len(gif_yaws((-60, 0, 60))) - 2
    views = np.asarray(Image.open(f"{stem}_views.png"))
    assert views.shape == (256, 6 * 256 + 5 * 4, 3)                 # crop, 2 UV maps, 3 yaws


def test_without_a_model_the_mirror_poisson_fill_completes_the_face(face_photo, tmp_path, capsys):
    out = tmp_path / "out"
    run_cli(["complete", str(face_photo), "--out", str(out), "--size", "64", "--yaws=0", "--quiet"])
    assert "1 faces completed with model 'mirror_poisson'" in capsys.readouterr().out
    stem = out / "skimage_astronaut.jpg_0"
    incomplete = np.asarray(Image.open(f"{stem}_incomplete.png"))
    completed = np.asarray(Image.open(f"{stem}_completed.png"))
    atlas = uv_atlas(64).mask
    hidden = atlas & (incomplete == 0).all(-1)
    assert completed.shape == (64, 64, 3) and hidden.any() and not (completed[hidden] == 0).all(-1).any()
    seen = (incomplete != 0).any(-1)
    assert np.array_equal(completed[seen], incomplete[seen])
    for kind in ("turntable.gif", "views.png"):
        assert (out / f"skimage_astronaut.jpg_0_{kind}").is_file()


@pytest.mark.parametrize("extra, message", [(["--name", "a_first"], "add --model or drop --name"),
                                            (["--size", "96"], "UV size 96 is not supported")])
def test_without_a_model_bad_options_fail_with_one_line(extra, message, face_photo, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_cli(["complete", str(face_photo), "--out", str(tmp_path / "out"), "--quiet", *extra])
    assert not (tmp_path / "out").exists()


def test_size_with_a_model_is_refused(stage, face_photo, tmp_path):
    with pytest.raises(ValueError, match="drop --size"):
        run_cli(["complete", str(face_photo), "--model", str(stage), "--size", "64", "--out", str(tmp_path / "o")])


def test_no_face_and_unreadable_photos_are_reported_and_skipped(stage, bad_photos, tmp_path):
    summary = complete_photos(bad_photos, stage / "model-b_second.pt", tmp_path / "out", progress=False)
    assert summary["faces"] == [] and summary["photos"] == 2 and summary["model"] == "b_second"
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped"]}
    assert reasons == {"sky.png": "no face found", "broken.jpg": "not an image (unrecognised format)"}
    assert "2 of 2 photos skipped" in summary_line(summary) and "no face found: 1" in summary_line(summary)


@pytest.mark.parametrize("case, error", [
    ("missing model dir", FileNotFoundError),
    ("stage folder without models", FileNotFoundError),
    ("not a model file", ValueError),
    ("not a uvlib model", ValueError),
    ("missing input", FileNotFoundError),
    ("unknown model name", ValueError),
    ("bad yaws", ValueError),
])
def test_bad_input_fails_with_one_line_and_writes_nothing(case, error, stage, bad_photos, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    torch.save({"weights": [1, 2]}, tmp_path / "foreign.pt")
    model, photo, extra = str(stage), str(bad_photos), []
    if case == "missing model dir":
        model = str(tmp_path / "no_such_stage")
    elif case == "stage folder without models":
        model = str(tmp_path)
    elif case == "not a model file":
        model = str(junk)
    elif case == "not a uvlib model":
        model = str(tmp_path / "foreign.pt")
    elif case == "missing input":
        photo = str(tmp_path / "no_such_photo.jpg")
    elif case == "unknown model name":
        extra = ["--name", "nope"]
    else:
        extra = ["--yaws=left,right"]
    out = tmp_path / "out"
    with pytest.raises(error) as e:
        run_cli(["complete", photo, "--model", model, "--out", str(out), "--quiet", *extra])
    assert "\n" not in str(e.value)
    assert not out.exists()


def test_model_resolution_in_a_stage_folder(stage):
    assert resolve_model(stage).name == "model-a_first.pt"          # first alphabetically
    assert resolve_model(stage, "b_second").name == "model-b_second.pt"
    assert resolve_model(stage / "model-b_second.pt").name == "model-b_second.pt"


def test_yaw_parsing():
    assert parse_yaws("-75,-45,15") == (-75.0, -45.0, 15.0)
    assert gif_yaws((-45, 15, 45)) == [-45, -30, -15, 0, 15, 30, 45]
    for bad in ("", "a", "0,,10", "100"):
        with pytest.raises(ValueError):
            parse_yaws(bad)


def test_photos_differing_only_in_suffix_get_their_own_outputs(stage, face_photo, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    im = Image.open(face_photo)
    im.save(src / "x.jpg")
    im.transpose(Image.FLIP_LEFT_RIGHT).save(src / "x.png")
    summary = complete_photos(src, stage, tmp_path / "out", yaws=(-30, 30), progress=False)
    assert len(summary["faces"]) == 2
    written = sorted(p.name for p in (tmp_path / "out").glob("*_completed.png"))
    assert written == ["x.jpg_0_completed.png", "x.png_0_completed.png"]
