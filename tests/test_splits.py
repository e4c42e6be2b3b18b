"""Splits by group: a person or clip never straddles two splits, and adding photos never moves one."""
import csv
from collections import defaultdict

import pytest

from uvlib.data.dataset import SPLITS, assign_splits, group_draw
from uvlib.data.sources import DEMO_PHOTOS, demo_photos, folder_photos, grouping, read_identities, resolve_source


def records(n_groups, per_group, offset=0, fixed=""):
    return [{"key": f"g{g}_p{p}", "group": f"person:{g}", "split": fixed}
            for g in range(offset, offset + n_groups) for p in range(per_group)]


def test_every_group_lands_in_exactly_one_split():
    recs = records(200, 5)
    split = assign_splits(recs, seed=0)
    by_group = defaultdict(set)
    for r in recs:
        by_group[r["group"]].add(split[r["key"]])
    assert all(len(s) == 1 for s in by_group.values())
    assert {s for (s,) in by_group.values()} == set(SPLITS)


def test_adding_photos_and_groups_never_moves_an_earlier_photo():
    before = records(100, 3)
    grown = records(100, 5) + records(300, 4, offset=100)    # more photos of old groups, and new groups
    old, new = assign_splits(before, seed=3), assign_splits(grown[::-1], seed=3)
    assert all(new[key] == split for key, split in old.items())


def test_split_is_a_pure_function_of_seed_and_group():
    assert group_draw(0, "person:7") == group_draw(0, "person:7")
    assert group_draw(0, "person:7") != group_draw(1, "person:7")
    shares = [sum(group_draw(seed, f"p{g}") < 0.8 for g in range(2000)) / 2000 for seed in range(3)]
    assert all(0.76 < s < 0.84 for s in shares)


def test_photos_without_a_group_are_their_own_group():
    recs = [{"key": f"photo{k}", "group": "", "split": ""} for k in range(300)]
    split = assign_splits(recs, seed=0)
    assert set(split.values()) == set(SPLITS)


def test_fixed_splits_win_and_trainval_gives_val_a_share():
    recs = records(50, 2, fixed="test") + records(50, 2, offset=50, fixed="train") + \
        records(400, 2, offset=100, fixed="trainval")
    split = assign_splits(recs, seed=0)
    assert all(split[r["key"]] == "test" for r in recs[:100])
    assert all(split[r["key"]] == "train" for r in recs[100:200])
    trainval = {split[r["key"]] for r in recs[200:]}
    assert trainval == {"train", "val"}


def test_folder_layouts_give_the_person(tmp_path):
    for rel in ("alice/1.jpg", "alice/2.jpg", "bob/1.jpg", "frontal/001_01.jpg", "profile/001_02.jpg",
                "frontal/002_01.jpg", "loose.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    rel = lambda p: p.path.relative_to(tmp_path).as_posix()
    by_folder = {rel(p): p.group for p in folder_photos(tmp_path, "folder")}
    assert by_folder["alice/1.jpg"] == by_folder["alice/2.jpg"] != by_folder["bob/1.jpg"]
    assert by_folder["loose.jpg"] == ""
    by_prefix = {rel(p): p.group for p in folder_photos(tmp_path, "prefix")}
    assert by_prefix["frontal/001_01.jpg"] == by_prefix["profile/001_02.jpg"] == "prefix:001"
    assert by_prefix["frontal/002_01.jpg"] == "prefix:002"
    assert {p.group for p in folder_photos(tmp_path)} == {""}
    with pytest.raises(ValueError, match="--group-by 'person' is unknown"):
        folder_photos(tmp_path, "person")


def test_identity_file_groups_celeba_photos(tmp_path):
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        (tmp_path / name).write_bytes(b"x")
    ids = tmp_path / "identity_CelebA.txt"
    ids.write_text("000001.jpg 2880\n000002.jpg 2880\n000003.jpg 17\n")
    photos = {p.path.stem: p.group for p in resolve_source(tmp_path, identities=ids)}
    assert photos == {"000001": "identity:2880", "000002": "identity:2880", "000003": "identity:17"}
    assert grouping(tmp_path, identities=ids).startswith("identities:")
    ids.write_text("000001.jpg\n")
    with pytest.raises(ValueError, match="line 1 is not `FILE ID`"):
        read_identities(ids)


def test_demo_clips_and_people_are_groups_and_the_test_split_has_several():
    photos = demo_photos()
    with (DEMO_PHOTOS.parent / "MANIFEST.csv").open() as f:
        manifest = list(csv.DictReader(f))
    assert len(photos) == len(manifest)
    group = {p.path.name: p.group for p in photos}
    frames = defaultdict(set)
    for row in manifest:
        if row["frame"]:
            frames[row["path_in_package"]].add(group[row["file"]])
    assert all(len(g) == 1 for g in frames.values())            # every frame of a clip: one group
    assert group["facerec_obama.jpg"] == group["facerec_obama2.jpg"]
    recs = [{"key": p.key, "group": p.group, "split": p.split} for p in photos]
    split = assign_splits(recs, seed=0)
    test_groups = {r["group"] for r in recs if split[r["key"]] == "test"}
    assert len(test_groups) >= 3 and {"demo:headpose_aws_office", "demo:headpose_aws_wall"} <= test_groups
    straddling = defaultdict(set)
    for r in recs:
        straddling[r["group"]].add(split[r["key"]])
    assert all(len(s) == 1 for s in straddling.values())
