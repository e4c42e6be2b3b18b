"""Training data lent by another prepared dataset (e.g. CFP): its turned faces' holes join the hole bank, its
near-frontal faces join the training maps, only from its train split, and the cross-pose test then refuses to
score a person a model trained on."""
import json
import shutil

import numpy as np
import pytest
import torch
from test_crosspose import write_dataset

from uvlib.app.cli import main
from uvlib.data.dataset import open_dataset
from uvlib.models.mean_face import MeanFace
from uvlib.models.registry import save_model
from uvlib.protocol.crosspose import check_unseen
from uvlib.protocol.holes import borrowed_hole
from uvlib.protocol.runs import read_metrics
from uvlib.study.context import open_stage
from uvlib.train.batches import RealHoles, build_hole_bank
from uvlib.train.crossfit import map_group
from uvlib.train.provenance import data_record

# (id, group, split, face, yaw, pitch): the lending dataset, 64 x 64 like the run's
OTHER = [
    ("p_front", "p", "train", 0, 2.0, 0.0),
    ("p_profile", "p", "train", 0, 60.0, 0.0),
    ("p_left", "p", "train", 0, -50.0, 0.0),
    ("q_front", "q", "train", 0, -5.0, 0.0),
    ("q_half", "q", "train", 0, 35.0, 0.0),       # neither near-frontal (< 30) nor turned (>= 45)
    ("q_second", "q", "train", 1, 0.0, 0.0),      # a photo's second face: maybe someone else, not a training map
    ("t_front", "t", "test", 0, 0.0, 0.0),
    ("t_profile", "t", "test", 0, 70.0, 0.0),     # test split: never lent
]


@pytest.fixture(scope="module")
def run_dataset(tmp_path_factory, face_copies):
    """The run's own dataset: the twelve face copies at 64x64, 8 train, 2 val, 2 test."""
    from uvlib.data.prep import PrepConfig, prepare
    from uvlib.data.sources import Photo
    out = tmp_path_factory.mktemp("run") / "ds"
    splits = ["train"] * 8 + ["val", "val", "test", "test"]
    prepare([Photo(path.stem, path, split) for path, split in zip(face_copies, splits)], out,
            PrepConfig(uv_size=64, workers=1, split_seed=3), progress=False)
    return open_dataset(out)


def lending(root, faces=OTHER, photos="/photos/cfp"):
    """A dataset folder written by hand, recorded as prepared from `photos`."""
    write_dataset(root, faces)
    info = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**info, "source": photos}))
    return root


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    return lending(tmp_path_factory.mktemp("other") / "cfp")


def opened(run_dataset, tmp_path, **external):
    return open_stage("01_pca", tmp_path / "run", str(run_dataset.root), eval_limit=2, val_limit=2, train_limit=3,
                      device="cpu", progress=False, **external)


def test_real_turned_faces_of_the_train_split_join_the_bank_and_a_changed_source_never_reuses_it(run_dataset,
                                                                                                 other_dir):
    other = open_dataset(other_dir)
    plain = build_hole_bank(run_dataset, "train", seed=0, n_pose=2, progress=False)
    bank = build_hole_bank(run_dataset, "train", seed=0, n_pose=2, progress=False, real=RealHoles(other, 45, "cfp"))
    assert torch.equal(bank[:len(plain)], plain)
    turned = np.stack([borrowed_hole(other.item(item)[1]) for item in ("p_profile", "p_left")])
    assert torch.equal(bank[len(plain):], torch.from_numpy(turned))
    assert torch.equal(build_hole_bank(run_dataset, "train", seed=0, n_pose=2, progress=False), plain)
    wider = build_hole_bank(run_dataset, "train", seed=0, n_pose=2, progress=False, real=RealHoles(other, 30, "cfp"))
    assert len(wider) == len(plain) + 3                         # q_half joins; t_profile (test split) never does
    again = build_hole_bank(run_dataset, "train", seed=0, n_pose=2, progress=False, real=RealHoles(other, 45, "cfp"))
    assert torch.equal(again, bank)


def test_extra_maps_are_the_near_frontal_train_faces_each_person_a_group_of_its_own(run_dataset, other_dir, tmp_path):
    plain = opened(run_dataset, tmp_path)
    ctx = opened(run_dataset, tmp_path, extra_train_dataset_dir=str(other_dir))
    assert len(plain.train_uv) == 3 and len(ctx.train_uv) == 5
    assert torch.equal(ctx.train_uv[:3], plain.train_uv) and ctx.train_rows[:3] == plain.train_rows
    uv, observed, rows = open_dataset(other_dir).load("train")
    assert torch.equal(ctx.train_uv[3:], uv[[0, 3]]) and torch.equal(ctx.train_observed[3:], observed[[0, 3]])
    assert [r["id"] for r in ctx.train_rows[3:]] == [f"{other_dir}:p_front", f"{other_dir}:q_front"]
    own_groups = {map_group(r) for r in plain.train_rows}
    lent_groups = [map_group(r) for r in ctx.train_rows[3:]]
    assert lent_groups == [f"{other_dir}:p", f"{other_dir}:q"] and not own_groups & set(lent_groups)
    assert "5 training maps (2 of them from" in ctx.describe()
    for c, pick in ((ctx, [4, 0, 3, 1]), (plain, [2, 0])):     # read from the shards as stored, in any order
        uv8, seen8 = c.training_maps(pick, dtype=torch.uint8)
        assert uv8.dtype == torch.uint8 and torch.equal(uv8.float() / 255, c.train_uv[pick])
        assert torch.equal(seen8.float(), c.train_observed[pick])


def test_run_records_change_with_the_lent_data_and_stay_as_they_were_without(run_dataset, other_dir, tmp_path):
    plain = opened(run_dataset, tmp_path)
    assert data_record(plain.train_rows, "train", plain.external_record()) == data_record(plain.train_rows, "train")
    assert set(data_record(plain.train_rows, "train", plain.external_record())) == {"split", "maps", "ids"}
    records = [data_record(c.train_rows, "train", c.external_record("train")) for c in (
        plain,
        opened(run_dataset, tmp_path, extra_train_dataset_dir=str(other_dir)),
        opened(run_dataset, tmp_path, extra_train_dataset_dir=str(other_dir), extra_train_max_yaw=40.0),
        opened(run_dataset, tmp_path, real_holes_dataset_dir=str(other_dir)),
        opened(run_dataset, tmp_path, real_holes_dataset_dir=str(other_dir), real_holes_min_yaw=30.0))]
    assert len({json.dumps(r, sort_keys=True) for r in records}) == len(records)
    holes_only = opened(run_dataset, tmp_path, extra_train_dataset_dir=str(other_dir),
                        real_holes_dataset_dir=str(other_dir)).external_record("val")
    assert list(holes_only) == ["holes"]                        # stacked stages learn on val: the holes still count


def test_a_stage_records_what_it_took_and_the_crosspose_test_refuses_people_it_trained_on(run_dataset, other_dir,
                                                                                         tmp_path):
    ctx = opened(run_dataset, tmp_path, real_holes_dataset_dir=str(other_dir))
    face = MeanFace().fit(ctx.train_uv, ctx.train_observed, ctx.atlas)
    ctx.evaluate({"mean_face": face}, params={})
    metrics = {"01_pca": read_metrics(ctx.out_dir)}
    lent = metrics["01_pca"]["external_data"]["holes"]
    assert lent["split"] == "train" and lent["path"] == str(other_dir.resolve()) and lent["holes"] == 2
    other = open_dataset(other_dir)
    for split in ("all", "train"):
        with pytest.raises(ValueError, match=f"split '{split}' of .* holds 2 people whose photos 01_pca trained on "
                                             r".*crosspose_dataset_split: test; uvlib crosspose --split test\)$") as e:
            check_unseen(other, split, metrics)
        assert "\n" not in str(e.value)
    check_unseen(other, "test", metrics)
    check_unseen(other, "all", {"01_pca": {"stage": "01_pca"}})   # a stage that took nothing from it


def test_the_crosspose_command_refuses_people_a_scored_model_trained_on(run_dataset, other_dir, tmp_path, capsys):
    ctx = opened(run_dataset, tmp_path, extra_train_dataset_dir=str(other_dir))
    face = MeanFace().fit(ctx.train_uv, ctx.train_observed, ctx.atlas)
    save_model(ctx.out_dir / "model-mean_face.pt", "mean_face", 64, {}, face.state_dict())
    ctx.evaluate({"mean_face": face}, params={})
    command = ["crosspose", str(other_dir), "--train-dataset", str(run_dataset.root), "--models", str(tmp_path / "run"),
               "--quiet"]
    assert main(command + ["--split", "all", "--out", str(tmp_path / "all")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds 2 people whose photos 01_pca trained on (maps from split 'train'" in err
    assert not (tmp_path / "all").exists()
    assert main(command + ["--split", "test", "--out", str(tmp_path / "test")]) == 0
    assert "01_pca/mean_face" in json.loads((tmp_path / "test" / "metrics.json").read_text())["methods"]


def test_the_same_photos_prepared_again_with_other_splits_are_still_caught(other_dir, tmp_path):
    """A second folder prepared from the same photos splits people differently: the photos decide who was seen."""
    moved = [(item, group, {"p": "test", "q": "val", "t": "train"}[group], face, yaw, pitch)
             for item, group, split, face, yaw, pitch in OTHER]
    again = open_dataset(lending(tmp_path / "cfp-again", moved))
    metrics = {"05_gan": {"external_data": {"maps": {"dataset": "cfp", "split": "train", "path": str(other_dir),
                                                     "photos": "/photos/cfp"}}}}
    with pytest.raises(ValueError, match="holds 1 people whose photos 05_gan trained on"):
        check_unseen(again, "test", metrics)                    # person p: train there, test here
    with pytest.raises(ValueError, match="holds 2 people"):
        check_unseen(again, "all", metrics)
    check_unseen(again, "train", metrics)                       # person t was never lent
    elsewhere = open_dataset(lending(tmp_path / "unrelated", moved, photos="/photos/other"))
    check_unseen(elsewhere, "test", metrics)


@pytest.mark.parametrize("external, message", [
    ({"extra_train_dataset_dir": "{other}", "extra_train_max_yaw": 1.0},
     "extra_train_dataset_dir .*: no face of its train split has |yaw| < 1; raise extra_train_max_yaw"),
    ({"real_holes_dataset_dir": "{other}", "real_holes_min_yaw": 80.0},
     "real_holes_dataset_dir .*: no face of its train split is turned |yaw| >= 80; lower real_holes_min_yaw"),
    ({"extra_train_dataset_dir": "{small}"}, "extra_train_dataset_dir .* is 32x32, this run's dataset 64x64; "
                                             "prepare it with --size 64"),
    ({"real_holes_dataset_dir": "{run}"}, "real_holes_dataset_dir .* is this run's own dataset"),
    ({"extra_train_dataset_dir": "{missing}"},
     "extra_train_dataset_dir .*missing: .* is not a prepared dataset .*uvlib prep"),
])
def test_bad_lending_datasets_stop_before_any_work_with_one_line(run_dataset, other_dir, tmp_path, external, message):
    small = tmp_path / "small"
    shutil.copytree(other_dir, small)
    info = json.loads((small / "dataset.json").read_text())
    (small / "dataset.json").write_text(json.dumps({**info, "uv_size": 32}))
    folders = {"other": other_dir, "small": small, "run": run_dataset.root, "missing": tmp_path / "missing"}
    external = {k: v.format(**folders) if isinstance(v, str) else v for k, v in external.items()}
    with pytest.raises(ValueError, match=message.replace("|", r"\|")) as e:
        opened(run_dataset, tmp_path, **external)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()
