"""The real cross-pose test on a small dataset folder written by hand (no face fitting needed)."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from uvlib.app.cli import main
from uvlib.data.dataset import FORMAT, INDEX_FIELDS, VERSION, DatasetError, open_dataset
from uvlib.models.mean_face import MeanFace
from uvlib.models.registry import save_model
from uvlib.protocol.crosspose import apply_colour, build_pairs, candidate_pairs, fit_colour, score_pairs, table_rows
from uvlib.protocol.metrics import PSNR_CAP_DB

SIZE = 64
GAIN, OFFSET = 0.5, 20          # the turned photos' colours: GAIN * reference + OFFSET (8-bit), exact in uint8


def _atlas():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - SIZE / 2 + 0.5) ** 2 + (xx - SIZE / 2 + 0.5) ** 2 < (SIZE / 2 - 1) ** 2


def _texture():
    """Even 8-bit values with structure in every channel, so GAIN * texture + OFFSET stays integer."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.stack([(4 * xx + 2 * yy) % 200, (6 * yy + 40) % 220, (xx * yy) % 180 + 20], -1).astype(np.uint8) // 2 * 2


def _visibility(yaw):
    """Seen: the whole atlas for a frontal face; a turned face loses the columns on the side it turns from."""
    seen = _atlas().copy()
    hidden = int(round(abs(yaw) / 90 * SIZE / 2))
    if yaw > 0:
        seen[:, :hidden] = False
    elif yaw < 0:
        seen[:, SIZE - hidden:] = False
    return seen


# (id, group, split, face, yaw, pitch)
FACES = [
    ("a_front", "person:a", "test", 0, 2.0, 1.0),
    ("a_tilted", "person:a", "test", 0, 1.0, 25.0),     # frontal in yaw but tilted: not the reference
    ("a_slight", "person:a", "test", 0, 10.0, 0.0),     # under 15 degrees: not turned
    ("a_right", "person:a", "test", 0, 30.0, 0.0),
    ("a_left", "person:a", "test", 0, -50.0, 5.0),
    ("a_other", "person:a", "test", 1, 45.0, 0.0),      # second face of a photo: someone else
    ("b_front", "person:b", "test", 0, 20.0, 0.0),
    ("b_turned", "person:b", "test", 0, 40.0, 0.0),
    ("c_alone", "person:c", "test", 0, 60.0, 0.0),      # nobody to compare with
    ("d_near", "person:d", "test", 0, 10.0, 0.0),
    ("d_turned", "person:d", "test", 0, 20.0, 0.0),     # only 10 degrees more turned than its reference
    ("e_front", "person:e", "train", 0, 0.0, 0.0),
    ("e_turned", "person:e", "train", 0, 70.0, 0.0),
]


def write_dataset(root, faces=FACES):
    """A dataset folder in the prepared format: the *_front faces (the references) in the texture's colours,
    the others in GAIN * texture + OFFSET (another light), each with its yaw's visibility."""
    (root / "uv").mkdir(parents=True)
    (root / "vis").mkdir()
    (root / "dataset.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, "uv_size": SIZE,
                                                   "method": "warp", "split_seed": 0}))
    Image.fromarray((_atlas() * 255).astype(np.uint8)).save(root / "atlas.png")
    texture = _texture()
    rows = []
    for item, group, split, face, yaw, pitch in faces:
        colours = texture if item.endswith("_front") else texture // 2 + OFFSET
        seen = _visibility(yaw)
        Image.fromarray(colours * seen[..., None]).save(root / "uv" / f"{item}.png")
        Image.fromarray((seen * 255).astype(np.uint8)).save(root / "vis" / f"{item}.png")
        rows.append({"id": item, "photo": f"{item}.jpg", "group": group, "split": split, "face": face, "yaw": yaw,
                     "pitch": pitch, "roll": 0.0, "visible_fraction": seen.mean(), "occluded_fraction": 0.0,
                     "hand_fraction": 0.0, "under_turn_fraction": 0.0, "score": 0.9, "head_yaw": None})
    with (root / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return open_dataset(write_dataset(tmp_path_factory.mktemp("xpose") / "ds"))


def test_pairs_turned_faces_with_their_groups_most_frontal_face(ds):
    pairs = [(t["id"], r["id"]) for t, r in candidate_pairs(ds.split_rows("test"))]
    assert pairs == [("a_left", "a_front"), ("a_right", "a_front"), ("b_turned", "b_front")]
    everything = [(t["id"], r["id"]) for t, r in candidate_pairs(ds.rows)]
    assert everything == pairs + [("e_turned", "e_front")]
    assert [(t["id"], r["id"]) for t, r in candidate_pairs(ds.rows, min_yaw=45, min_gap=40)] == [
        ("a_left", "a_front"), ("e_turned", "e_front")]


def test_build_pairs_takes_one_split_or_all(ds):
    assert [p["turned"] for p in build_pairs(ds, "test").pairs] == ["a_left", "a_right", "b_turned"]
    assert [p["turned"] for p in build_pairs(ds, "all").pairs][-1] == "e_turned"
    assert [p["yaw_bin"] for p in build_pairs(ds, "all").pairs] == ["45-60", "30-45", "30-45", "60-75"]
    with pytest.raises(DatasetError, match="'all'"):
        build_pairs(ds, "everyone")


@pytest.mark.parametrize("method", ["moments", "least_squares"])
def test_colour_normalisation_recovers_a_known_gain_and_offset(method):
    rng = np.random.default_rng(0)
    source = rng.uniform(0.1, 0.6, (SIZE, SIZE, 3))
    gain, offset = np.array([0.7, 1.3, 0.9]), np.array([0.05, -0.02, 0.1])
    mask = rng.uniform(size=(SIZE, SIZE)) < 0.5
    target = np.where(mask[..., None], source * gain + offset, rng.uniform(size=(SIZE, SIZE, 3)))  # noise off the mask
    fitted_gain, fitted_offset = fit_colour(source, target, mask, method)
    np.testing.assert_allclose(fitted_gain, gain, atol=1e-12)
    np.testing.assert_allclose(fitted_offset, offset, atol=1e-12)
    np.testing.assert_allclose(apply_colour(source, gain, offset)[mask], target[mask], atol=1e-12)


def test_least_squares_shrinks_the_gain_of_loosely_matching_maps_and_moments_do_not():
    """Two photos of one skin under lights (gain 1.5) with independent texel noise (misfit, expression)."""
    rng = np.random.default_rng(1)
    skin = rng.uniform(0.2, 0.6, (SIZE, SIZE, 3))
    source = skin + rng.normal(0, 0.1, skin.shape)
    target = 1.5 * skin + 0.1 + rng.normal(0, 0.15, skin.shape)
    mask = np.ones((SIZE, SIZE), bool)
    assert np.all(np.abs(fit_colour(source, target, mask, "moments")[0] - 1.5) < 0.15)
    assert np.all(fit_colour(source, target, mask, "least_squares")[0] < 1.0)


def test_pairs_fit_the_turned_photos_colours_on_commonly_seen_texels(ds):
    xp = build_pairs(ds, "test")
    for p in xp.pairs:
        np.testing.assert_allclose(p["gain"], GAIN, atol=1e-9)
        np.testing.assert_allclose(p["offset"], OFFSET / 255, atol=1e-9)


def test_evaluation_texels_are_seen_in_the_reference_and_hidden_in_the_turned_map(ds):
    xp = build_pairs(ds, "test")
    atlas = _atlas()
    for i, p in enumerate(xp.pairs):
        expected = _visibility(p["reference_yaw"]) & ~_visibility(p["turned_yaw"]) & atlas
        assert expected.sum() > 0
        assert (xp.evaluation_mask(i) == expected).all()
        _, known, _, observed, hole = xp.batch([i])
        assert ((observed * hole)[0, 0].numpy().astype(bool) & atlas == expected).all()
        assert (known[0, 0].numpy().astype(bool) == (_visibility(p["turned_yaw"]) & atlas)).all()
    assert p["evaluation_texels"] == expected.sum()


def test_a_perfect_completion_scores_the_cap_and_the_table_counts_pairs(ds):
    xp = build_pairs(ds, "test")
    truth = torch.from_numpy(_texture() // 2 + OFFSET).permute(2, 0, 1).float() / 255   # the turned light, everywhere
    perfect = lambda uv_in, known: truth.expand_as(uv_in).clone()
    grey = lambda uv_in, known: torch.full_like(uv_in, 0.5)
    summary, records = score_pairs(perfect, xp, batch_size=2, progress=False)
    assert len(records) == 3 and summary["overall"]["n"] == 3
    assert summary["overall"]["psnr"] == pytest.approx(PSNR_CAP_DB)
    assert summary["overall"]["l1"] < 1e-6 and summary["overall"]["ssim"] == pytest.approx(1.0, abs=1e-5)
    worse, _ = score_pairs(grey, xp, progress=False)
    assert worse["overall"]["psnr"] < 30
    rows = table_rows({"perfect": {"scores": summary}, "grey": {"scores": worse}})
    assert [(r["turned yaw"], r["n pairs"], r["method"]) for r in rows] == [
        ("all", 3, "perfect"), ("all", 3, "grey"), ("30-45", 2, "perfect"), ("30-45", 2, "grey"),
        ("45-60", 1, "perfect"), ("45-60", 1, "grey")]


def test_pairs_without_enough_texels_are_skipped_with_their_reason(ds):
    xp = build_pairs(ds, "test", min_eval_fraction=0.2)
    assert [p["turned"] for p in xp.pairs] == ["a_left"]
    assert sum(xp.skipped.values()) == 2 and all("evaluation texels" in k for k in xp.skipped)
    with pytest.raises(DatasetError, match="were skipped"):
        build_pairs(ds, "test", min_common_fraction=0.99)


def test_cli_scores_baselines_and_writes_the_table(ds, tmp_path, capsys):
    assert main(["crosspose", str(ds.root), "--out", str(tmp_path / "xp"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "xp" / "metrics.json").read_text())
    assert metrics["pairs"] == 3 and set(metrics["methods"]) == {
        "baselines/mean_face", "baselines/symmetry", "baselines/telea", "baselines/navier_stokes",
        "baselines/mirror_poisson"}
    assert "| turned yaw | n pairs | method |" in (tmp_path / "xp" / "crosspose.md").read_text()
    assert (tmp_path / "xp" / "crosspose.png").is_file() and (tmp_path / "xp" / "pairs.csv").is_file()


def _save_mean_face(path, mean, size=SIZE):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, "mean_face", size, {}, MeanFace(mean).state_dict())


def test_cli_scores_every_model_of_a_run_folder(ds, tmp_path):
    truth = torch.from_numpy(_texture() // 2 + OFFSET).permute(2, 0, 1).float() / 255   # the turned light
    _save_mean_face(tmp_path / "run" / "03_stage" / "model-truth.pt", truth)
    _save_mean_face(tmp_path / "run" / "05_stage" / "model-grey.pt", torch.full_like(truth, 0.5))
    (tmp_path / "run" / "results").mkdir()
    assert main(["crosspose", str(ds.root), "--out", str(tmp_path / "xp"), "--models", str(tmp_path / "run"),
                 "--quiet"]) == 0
    methods = json.loads((tmp_path / "xp" / "metrics.json").read_text())["methods"]
    assert list(methods)[5:] == ["03_stage/truth", "05_stage/grey"]
    assert methods["03_stage/truth"]["scores"]["overall"]["psnr"] == pytest.approx(PSNR_CAP_DB)
    assert methods["05_stage/grey"]["scores"]["overall"]["psnr"] < 30


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_cli_errors_are_one_line(ds, tmp_path, capsys):
    err = _one_line_error(capsys, ["crosspose", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert "not a prepared dataset" in err and "uvlib prep" in err
    err = _one_line_error(capsys, ["crosspose", str(ds.root), "--out", str(tmp_path / "o"), "--split", "val"])
    assert "no cross-pose pairs" in err and "--group-by" in err
    err = _one_line_error(capsys, ["crosspose", str(ds.root), "--out", str(tmp_path / "o"), "--split", "all"])
    assert "--train-dataset" in err
    err = _one_line_error(capsys, ["crosspose", str(ds.root), "--out", str(tmp_path / "o"),
                                   "--models", str(tmp_path / "no_run")])
    assert "no_run" in err and "model" in err
    _save_mean_face(tmp_path / "big" / "model-m.pt", torch.zeros(3, 2 * SIZE, 2 * SIZE), size=2 * SIZE)
    err = _one_line_error(capsys, ["crosspose", str(ds.root), "--out", str(tmp_path / "o"),
                                   "--models", str(tmp_path / "big")])
    assert "big/m" in err and "UV size" in err
    assert not (tmp_path / "o").exists()


def test_photo_groups_give_no_pairs_and_say_why(tmp_path):
    lonely = [(f"p{k}", f"photo:p{k}", "test", 0, yaw, 0.0) for k, yaw in enumerate((0.0, 40.0, -60.0))]
    ds = open_dataset(write_dataset(tmp_path / "ds", lonely))
    with pytest.raises(DatasetError, match="3 groups, 0 groups with two or more faces, 2 faces turned"):
        build_pairs(ds, "test")
