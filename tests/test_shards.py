"""The dataset's uint8 map shards: written by finalize, read lazily, bit-identical to the PNGs, never stale."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from uvlib.data.dataset import FORMAT, VERSION, DatasetError, PngMaps, finalize, open_dataset
from uvlib.data.shards import MapShards, sample_rows
from uvlib.protocol.cases import build_test_cases
from uvlib.protocol.holes import borrowed_hole
from uvlib.train.batches import build_hole_bank

SIZE = 64


def add_photo(root, k, split, rng):
    """One face's PNGs (visibility with values on both sides of 127, as a resampled mask might have) and its
    manifest record, as stage 00 writes them."""
    item = f"p{k:02d}.jpg_0"
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "uv" / f"{item}.png")
    Image.fromarray(rng.choice(np.array([0, 100, 128, 200, 255], np.uint8), (SIZE, SIZE))).save(
        root / "vis" / f"{item}.png")
    face = {"id": item, "face": 0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "visible_fraction": 0.5,
            "occluded_fraction": 0.0, "hand_fraction": 0.0, "under_turn_fraction": 0.0, "score": 0.9,
            "head_yaw": None}
    record = {"key": f"p{k:02d}.jpg", "path": f"p{k:02d}.jpg", "split": split, "group": "", "faces": [face],
              "status": "ok", "reason": ""}
    with (root / "manifest-0-of-1.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record["key"]


def write_dataset(root, n_train=9, n_test=3, seed=0):
    (root / "uv").mkdir(parents=True)
    (root / "vis").mkdir()
    (root / "dataset.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, "uv_size": SIZE,
                                                   "method": "warp", "split_seed": 0, "groups": "photo"}))
    rng = np.random.default_rng(seed)
    keys = [add_photo(root, k, "train" if k < n_train else "test", rng) for k in range(n_train + n_test)]
    finalize(root, keys)
    return open_dataset(root)


def decoded(ds, split):
    """What Dataset.load returned before the shards: every PNG decoded, stacked and converted, colour zeroed
    where not visible."""
    ids = [r["id"] for r in ds.split_rows(split)]
    uv = np.stack([np.asarray(Image.open(ds.root / "uv" / f"{i}.png")) for i in ids])
    vis = np.stack([np.asarray(Image.open(ds.root / "vis" / f"{i}.png")) for i in ids])
    observed = torch.from_numpy(vis > 127).float().unsqueeze(1)
    return torch.from_numpy(uv).permute(0, 3, 1, 2).float().div_(255).mul_(observed), observed


@pytest.fixture
def ds(tmp_path):
    return write_dataset(tmp_path / "ds")


def test_finalize_writes_shards_and_load_gives_the_tensors_of_the_pngs_bit_for_bit(ds):
    for split, n in (("train", 9), ("test", 3)):
        uv_npy = np.load(ds.root / "shards" / f"{split}-uv.npy", mmap_mode="r")
        vis_npy = np.load(ds.root / "shards" / f"{split}-vis.npy", mmap_mode="r")
        assert uv_npy.shape == (n, SIZE, SIZE, 3) and uv_npy.dtype == np.uint8 and vis_npy.dtype == bool
        uv, observed = decoded(ds, split)
        loaded_uv, loaded_observed, rows = ds.load(split)
        assert torch.equal(loaded_uv, uv) and torch.equal(loaded_observed, observed)
        assert [r["id"] for r in rows] == [r["id"] for r in ds.split_rows(split)]
        assert np.array_equal(ds.load_visible(split), observed[:, 0].numpy() > 0.5)
        from_pngs = PngMaps(ds, [r["id"] for r in rows]).tensors(slice(None))
        assert torch.equal(from_pngs[0], uv) and torch.equal(from_pngs[1], observed)
    uv, observed = decoded(ds, "train")
    assert torch.equal(ds.load("train", limit=4)[0], uv[:4]) and ds.load_visible("train", limit=4).shape[0] == 4
    assert not (ds.root / "shards" / "val.json").exists()          # an empty split has none
    with pytest.raises(DatasetError, match="'val'.*no faces"):
        ds.load_visible("val")


def test_a_reader_gives_any_rows_in_the_order_asked_and_travels_to_workers(ds):
    reader = ds.maps("train")
    assert isinstance(reader, MapShards) and len(reader) == 9
    uv, observed = decoded(ds, "train")
    everything_uv, everything_vis = reader[:]
    idx = np.array([5, 0, 0, 8, 3, 4])
    got_uv, got_vis = reader[idx]
    assert np.array_equal(got_uv, everything_uv[idx]) and np.array_equal(got_vis, everything_vis[idx])
    assert np.array_equal(reader.visible(torch.tensor(idx)), everything_vis[idx])
    assert reader[-1][0].shape == (1, SIZE, SIZE, 3) and np.array_equal(reader[-1][0][0], everything_uv[8])
    small_uv, small_observed = reader.tensors([2, 1], dtype=torch.uint8)
    assert small_uv.dtype == torch.uint8 and small_uv.shape == (2, 3, SIZE, SIZE) and small_observed.shape == (2, 1, SIZE, SIZE)
    assert torch.equal(small_uv.float().div_(255), uv[[2, 1]]) and torch.equal(small_observed.float(), observed[[2, 1]])
    copy = pickle.loads(pickle.dumps(reader))
    assert np.array_equal(copy[idx][0], got_uv)
    loader = torch.utils.data.DataLoader(reader, batch_size=None, sampler=torch.utils.data.BatchSampler(
        torch.utils.data.SequentialSampler(reader), batch_size=4, drop_last=False))
    assert [len(batch[0]) for batch in loader] == [4, 4, 1]
    with pytest.raises(IndexError):
        reader[[9]]


def test_shards_are_rebuilt_when_a_png_changes_reusing_the_rows_that_did_not(ds, monkeypatch):
    first = ds.split_rows("train")[1]["id"]
    Image.fromarray(np.full((SIZE, SIZE, 3), 7, np.uint8)).save(ds.root / "uv" / f"{first}.png")
    decodes = []
    item = type(ds).item
    monkeypatch.setattr(type(ds), "item", lambda self, i: decodes.append(i) or item(self, i))
    uv, observed = decoded(ds, "train")
    assert torch.equal(ds.load("train")[0], uv) and int(round(float(uv[1].max()) * 255)) == 7
    assert decodes == [first]                     # the other eight rows were copied from the old shards
    assert torch.equal(ds.load("train")[0], uv) and decodes == [first]


def test_shards_follow_photos_added_and_faces_dropped(ds):
    rng = np.random.default_rng(5)
    keys = [r["photo"] for r in ds.rows] + [add_photo(ds.root, k, "train", rng) for k in (20, 21)]
    finalize(ds.root, keys)
    grown = open_dataset(ds.root)
    assert len(grown.maps("train")) == 11 and torch.equal(grown.load("train")[0], decoded(grown, "train")[0])
    rows = [r for r in grown.rows if r["id"] != grown.split_rows("train")[0]["id"]]
    shrunk = type(grown)(grown.root, grown.info, rows)
    assert torch.equal(shrunk.load("train")[0], decoded(shrunk, "train")[0]) and len(shrunk.load("train")[0]) == 10


def test_a_dataset_without_shards_builds_them_on_first_use(ds):
    shutil.rmtree(ds.root / "shards")
    assert torch.equal(ds.load("test")[0], decoded(ds, "test")[0])
    assert (ds.root / "shards" / "test-uv.npy").is_file() and isinstance(ds.maps("test"), MapShards)


def test_shards_that_cannot_be_written_fall_back_to_the_pngs_with_one_line(ds, capsys):
    shutil.rmtree(ds.root / "shards")
    (ds.root / "shards").write_text("a file where the shards folder would go")
    uv, observed = decoded(ds, "train")
    loaded = ds.load("train")
    assert torch.equal(loaded[0], uv) and torch.equal(loaded[1], observed)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reading the PNGs instead" in err and "'train'" in err


def test_a_damaged_png_is_named_and_the_shards_are_kept(ds):
    damaged = ds.root / "uv" / f"{ds.split_rows('test')[0]['id']}.png"
    shards_before = (ds.root / "shards" / "test-uv.npy").read_bytes()
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(DatasetError, match=rf"{damaged.name} is unreadable.*uvlib prep"):
        ds.load("test")
    assert (ds.root / "shards" / "test-uv.npy").read_bytes() == shards_before
    assert sorted(os.listdir(ds.root / "shards")) == sorted(f"{s}{e}" for s in ("test", "train")
                                                            for e in ("-uv.npy", "-vis.npy", ".json"))


def test_hole_bank_and_test_cases_read_the_masks_only(ds, monkeypatch):
    ds.maps("train"), ds.maps("test")
    monkeypatch.setattr(MapShards, "__getitem__", lambda self, idx: pytest.fail("colour was read"))
    visible = decoded(ds, "train")[1][:, 0].numpy() > 0.5
    bank = build_hole_bank(ds, "train", seed=0, n_pose=0, progress=False)
    assert np.array_equal(bank.numpy(), np.stack([borrowed_hole(v) for v in visible]))
    cases = build_test_cases(ds, "test", seed=0, kinds=("borrowed", "box"), progress=False)
    assert len(cases.image) > 0


def test_sample_rows_is_seeded_sorted_and_all_when_asked_for_zero():
    a = sample_rows(100, 10, seed=3)
    assert np.array_equal(a, sample_rows(100, 10, seed=3)) and not np.array_equal(a, sample_rows(100, 10, seed=4))
    assert len(np.unique(a)) == 10 and np.all(np.diff(a) > 0) and a.max() < 100
    assert np.array_equal(sample_rows(7, 0, seed=0), np.arange(7)) and len(sample_rows(7, 50, seed=0)) == 7
