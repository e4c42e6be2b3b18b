"""Hole masks, fixed test cases and scoring on a tiny prepared dataset."""
import numpy as np
import pytest
import torch

from uvlib.data.dataset import open_dataset
from uvlib.data.prep import PrepConfig, prepare
from uvlib.data.sources import Photo
from uvlib.geometry.mesh import uv_atlas
from uvlib.protocol.cases import build_test_cases, load_benchmark, load_test_cases, score
from uvlib.protocol.holes import borrowed_hole, box_hole, pose_hole, yaw_bin_of
from uvlib.train.batches import HoleSampler, TrainingBatches, build_hole_bank


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, face_copies):
    """Twelve copies of one photo, some mirrored, so every split has faces."""
    out = tmp_path_factory.mktemp("ds") / "ds"
    photos = [Photo(path.stem, path) for path in face_copies]
    prepare(photos, out, PrepConfig(uv_size=64, workers=1, split_seed=3), progress=False)
    return open_dataset(out)


def test_yaw_bins():
    assert [yaw_bin_of(y) for y in (3, -20, 44.9, 45, -74, 80)] == [
        "under-15", "15-30", "30-45", "45-60", "60-75", "over-75"]


def test_pose_holes_grow_with_yaw_and_stay_inside_the_atlas(tiny_dataset):
    landmarks = tiny_dataset.mesh(tiny_dataset.rows[0]["id"])
    sizes = [pose_hole(landmarks, 64, yaw).sum() for yaw in (0, 30, 60, 75)]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]
    hole = pose_hole(landmarks, 64, 60)
    assert not (hole & ~uv_atlas(64).mask).any()


def test_borrowed_and_box_holes():
    atlas = uv_atlas(64).mask
    seen = atlas.copy()
    seen[:, :32] = False
    assert (borrowed_hole(seen) == (atlas & ~seen)).all()
    box = box_hole(64, np.random.default_rng(0), n_boxes=1, box=30)
    assert 0 < box.sum() <= 15 * 15 and not (box & ~atlas).any()


def test_test_cases_are_fixed_by_the_seed_and_cached(tiny_dataset):
    split = tiny_dataset.rows[0]["split"]
    a = build_test_cases(tiny_dataset, split, seed=1, progress=False)
    b = build_test_cases(tiny_dataset, split, seed=1, progress=False)
    c = build_test_cases(tiny_dataset, split, seed=2, progress=False)
    assert (a.hole == b.hole).all() and (a.image == b.image).all()
    assert not (len(a.hole) == len(c.hole) and (a.hole == c.hole).all())
    cached = load_test_cases(tiny_dataset, split, seed=1, progress=False)
    again = load_test_cases(tiny_dataset, split, seed=1, progress=False)
    assert (cached.hole == a.hole).all() and (again.hole == a.hole).all() and list(again.kind) == list(a.kind)


def test_scores_reward_the_truth_and_ignore_what_the_method_cannot_know(tiny_dataset):
    split = tiny_dataset.rows[0]["split"]
    bench = load_benchmark(tiny_dataset, split, seed=0, progress=False)
    perfect = lambda uv_in, known: bench_truth(bench, uv_in)
    grey = lambda uv_in, known: torch.full_like(uv_in, 0.5)
    s_grey, records = score(grey, bench, batch_size=4, progress=False)
    assert len(records) == len(bench)
    assert set(s_grey) >= {"overall", "by_yaw_bin", "by_size_bin", "by_kind"}
    assert s_grey["overall"]["n"] == len(bench)
    s_true, _ = score(perfect, bench, batch_size=4, progress=False)
    assert s_true["overall"]["psnr"] > s_grey["overall"]["psnr"] + 20
    assert s_true["overall"]["l1"] < 1e-6 < s_grey["overall"]["l1"]


def bench_truth(bench, uv_in):
    """Look the inputs up among the split's maps (test-only cheat) and return the full truth."""
    flat = bench.uv.flatten(1)
    out = []
    for x in uv_in:
        keep = x.flatten() > 0
        err = ((flat[:, keep] - x.flatten()[keep]) ** 2).sum(1)
        out.append(bench.uv[int(err.argmin())])
    return torch.stack(out)


def test_hole_bank_and_batches(tiny_dataset):
    bank = build_hole_bank(tiny_dataset, "train", seed=0, n_pose=4, progress=False)
    n_train = len(tiny_dataset.split_rows("train"))
    assert bank.shape == (n_train + 4, 64, 64) and bank.dtype == torch.bool
    again = build_hole_bank(tiny_dataset, "train", seed=0, n_pose=4, progress=False)
    assert torch.equal(bank, again)
    uv, observed, _ = tiny_dataset.load("train")
    batches = TrainingBatches(uv, observed, HoleSampler(bank), batch_size=2, seed=5)
    b1, b2 = batches(3), TrainingBatches(uv, observed, HoleSampler(bank), batch_size=2, seed=5)(3)
    assert b1["uv"].shape == (2, 3, 64, 64) and b1["hole"].shape == (2, 1, 64, 64)
    assert all(torch.equal(b1[k], b2[k]) for k in b1)
    assert not torch.equal(batches(0)["hole"], batches(1)["hole"]) or not torch.equal(batches(0)["uv"], batches(1)["uv"])
    with pytest.raises(ValueError, match="hole bank"):
        HoleSampler(torch.zeros(0, 64, 64, dtype=torch.bool))


def test_evaluate_command_scores_a_stage_folder_and_explains_bad_input(tiny_dataset, tmp_path, capsys):
    import json

    from uvlib.app.cli import main
    from uvlib.models.mean_face import MeanFace
    from uvlib.models.registry import save_model
    uv, observed, _ = tiny_dataset.load("train")
    stage = tmp_path / "09_mean"
    stage.mkdir()
    face = MeanFace().fit(uv, observed, tiny_dataset.atlas())
    save_model(stage / "model-mean_face.pt", "mean_face", 64, {}, face.state_dict())
    split = tiny_dataset.rows[0]["split"]
    assert main(["evaluate", str(stage), str(tiny_dataset.root), "--split", split, "--quiet"]) == 0
    data = json.loads((stage / f"evaluate-{split}-seed0" / "metrics.json").read_text())
    assert data["methods"]["mean_face"]["scores"]["overall"]["n"] > 0
    assert "| 09_mean | mean_face |" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "nothing"), str(tiny_dataset.root), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(stage), str(tmp_path), "--quiet"]) == 2
    assert "uvlib prep" in capsys.readouterr().err


def _drop_first_face_of(ds_root, split):
    """Rewrite index.csv without the split's first face, as if the dataset had been re-prepared differently."""
    import csv
    with (ds_root / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    first = next(r for r in rows if r["split"] == split)
    with (ds_root / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r is not first)
    return open_dataset(ds_root)


def test_cached_test_cases_and_hole_bank_are_rebuilt_when_the_split_changes(tiny_dataset, tmp_path, capsys):
    import shutil
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset.root, root)
    ds = open_dataset(root)
    split = max(("train", "val", "test"), key=lambda s: len(ds.split_rows(s)))
    load_test_cases(ds, split, seed=1, progress=False)
    bank = build_hole_bank(ds, split, seed=0, n_pose=4, progress=False)
    changed = _drop_first_face_of(root, split)
    again = load_test_cases(changed, split, seed=1, progress=False)
    fresh = build_test_cases(changed, split, seed=1, progress=False)
    assert (again.image == fresh.image).all() and (again.hole == fresh.hole).all()
    assert "rebuilding" in capsys.readouterr().err
    assert len(build_hole_bank(changed, split, seed=0, n_pose=4, progress=False)) == len(bank) - 1


def test_baselines_on_a_damaged_map_name_the_file_and_the_fix(tiny_dataset, tmp_path, capsys):
    import shutil

    from uvlib.app.cli import main
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset.root, root)
    damaged = root / "uv" / f"{tiny_dataset.rows[0]['id']}.png"
    damaged.write_bytes(damaged.read_bytes()[:200])
    split = tiny_dataset.rows[0]["split"]
    assert main(["baselines", str(root), str(tmp_path / "out"), "--split", split, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(damaged) in err and "uvlib prep" in err


@pytest.mark.parametrize("build", ["hole bank", "test cases"])
def test_two_processes_writing_the_same_cache_at_once_both_succeed(tiny_dataset, tmp_path, monkeypatch, build):
    """torchrun ranks may build a cache together: rank B writes and renames its file between rank A's write and
    rename. Each writes its own temporary file, so both finish and the cache is whole."""
    import os
    import shutil
    from pathlib import Path
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset.root, root)
    ds = open_dataset(root)
    make = {"hole bank": lambda: build_hole_bank(ds, "train", seed=0, n_pose=2, progress=False),
            "test cases": lambda: load_test_cases(ds, "train", seed=0, progress=False)}[build]
    real_replace, real_getpid, other_ran = Path.replace, os.getpid, []

    def replace_after_the_other_rank(self, target):
        if not other_ran:
            other_ran.append(True)
            monkeypatch.setattr(os, "getpid", lambda: real_getpid() + 1)   # the other rank's process
            make()
            monkeypatch.setattr(os, "getpid", real_getpid)
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace_after_the_other_rank)
    first = make()
    monkeypatch.setattr(Path, "replace", real_replace)
    again = make()
    if build == "hole bank":
        assert torch.equal(first, again)
    else:
        assert (first.image == again.image).all() and (first.hole == again.hole).all()
    assert not list((root / "protocol").glob("*.tmp.npz"))
