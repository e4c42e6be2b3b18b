"""Stage 00 end to end on real photos and on every kind of bad input."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from uvlib.app.cli import main
from uvlib.data.dataset import DatasetError, open_dataset, read_manifest
from uvlib.data.photo import PhotoError, read_photo
from uvlib.data.prep import PrepConfig, parse_shard, prepare
from uvlib.data.sources import folder_photos


def small_face(face_rgb, fitter, side):
    """The photo's face shrunk to `side` px and pasted on a grey canvas."""
    x, y, w, h = (int(v) for v in fitter.fit(face_rgb)[0][0].box)
    m = w // 2
    crop = face_rgb[max(0, y - m): y + h + m, max(0, x - m): x + w + m]
    small = cv2.resize(crop, None, fx=side / w, fy=side / w, interpolation=cv2.INTER_AREA)
    canvas = np.full((400, 400, 3), 128, np.uint8)
    canvas[100:100 + small.shape[0], 100:100 + small.shape[1]] = small
    return canvas


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, face_photo, face_rgb, fitter):
    """Good photos and every kind of bad one, in a nested folder."""
    d = tmp_path_factory.mktemp("photos")
    (d / "sub").mkdir()
    im = Image.fromarray(face_rgb)
    im.save(d / "good.jpg")
    im.convert("L").save(d / "gray.png")
    im.convert("RGBA").save(d / "sub" / "rgba.png")
    im.convert("CMYK").save(d / "cmyk.jpg")
    rotated = im.rotate(90, expand=True)            # stored sideways, EXIF says "rotate back"
    exif = Image.Exif()
    exif[0x0112] = 8
    rotated.save(d / "exif_rotated.jpg", exif=exif)
    raw = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    (d / "unreadable.jpg").write_bytes(b"\x00\x01garbage" * 50)
    (d / "notes.dat").write_text("not an image at all")
    Image.new("RGB", (8001, 8), "white").save(d / "huge.png")
    Image.fromarray(small_face(face_rgb, fitter, 14)).save(d / "tiny_face.png")   # its box: 20 px
    Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))[..., None].repeat(3, 2)).save(
        d / "no_face.png")
    (d / "list.txt").write_text("side files like this are ignored")
    return d


@pytest.fixture(scope="module")
def prepared(photo_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "dataset"
    summary = prepare(folder_photos(photo_folder), out, PrepConfig(uv_size=64, workers=1), progress=False)
    return out, summary


def test_bad_inputs_are_recorded_with_their_reason_and_good_ones_are_kept(prepared):
    out, summary = prepared
    records = {r["key"]: r for r in read_manifest(out)}
    assert {k for k, r in records.items() if r["status"] == "ok"} == {"good.jpg", "gray.png", "sub%2Frgba.png",
                                                                      "cmyk.jpg", "exif_rotated.jpg"}
    reason = {k: r["reason"] for k, r in records.items()}
    assert reason["truncated.jpg"].startswith("unreadable or truncated")
    assert reason["unreadable.jpg"].startswith("not an image")
    assert reason["notes.dat"].startswith("not an image")
    assert reason["huge.png"].startswith("image too large")
    assert reason["tiny_face.png"].startswith("face too small")
    assert reason["no_face.png"] == "no face found"
    assert "list.txt" not in records
    assert summary["ok"] == 5 and summary["failed"] == 6
    assert summary["dataset"]["reasons"]["no face found"] == 1


def test_exif_rotation_is_applied_before_fitting(prepared):
    out, _ = prepared
    ds = open_dataset(out)
    roll = {r["id"]: r["roll"] for r in ds.rows}
    assert abs(roll["exif_rotated.jpg_0"] - roll["good.jpg_0"]) < 5


def test_dataset_folder_holds_maps_masks_meshes_and_a_split(prepared):
    out, _ = prepared
    ds = open_dataset(out)
    assert len(ds.rows) == 5 and ds.uv_size == 64
    assert {r["split"] for r in ds.rows} <= {"train", "val", "test"}
    uv, observed, rows = ds.load(rows[0]["split"] if (rows := ds.rows) else "train")
    assert uv.shape[1:] == (3, 64, 64) and observed.shape[1:] == (1, 64, 64)
    assert ((uv.sum(1, keepdim=True) > 0).float() <= observed + 1e-6).all()   # colour only where seen
    assert ds.mesh(rows[0]["id"]).shape == (468, 3)
    assert (ds.atlas().numpy() == (np.asarray(Image.open(out / "atlas.png")) > 127)).all()
    assert 0.5 < rows[0]["visible_fraction"] < 0.95


def test_rerun_skips_finished_photos_and_keeps_their_files(prepared, photo_folder):
    out, _ = prepared
    before = (out / "uv" / "good.jpg_0.png").stat().st_mtime_ns
    again = prepare(folder_photos(photo_folder), out, PrepConfig(uv_size=64, workers=1), progress=False)
    assert again["skipped_done"] == 11 and again["ok"] == again["failed"] == 0
    assert (out / "uv" / "good.jpg_0.png").stat().st_mtime_ns == before


def test_shards_split_the_work_and_the_index_waits_for_all_of_them(photo_folder, tmp_path):
    photos = folder_photos(photo_folder)
    first = prepare(photos, tmp_path / "d", PrepConfig(uv_size=64, workers=1, shard=(0, 2)), progress=False)
    assert "dataset" not in first and not (tmp_path / "d" / "index.csv").exists()
    second = prepare(photos, tmp_path / "d", PrepConfig(uv_size=64, workers=1, shard=(1, 2)), progress=False)
    assert first["ok"] + first["failed"] + second["ok"] + second["failed"] == 11
    assert second["dataset"]["faces"] == 5


def test_same_photos_same_split_whatever_the_order(photo_folder, tmp_path):
    photos = folder_photos(photo_folder)
    a = prepare(photos, tmp_path / "a", PrepConfig(uv_size=64, workers=1), progress=False)
    b = prepare(photos[::-1], tmp_path / "b", PrepConfig(uv_size=64, workers=1), progress=False)
    split = lambda d: {r["id"]: r["split"] for r in open_dataset(d).rows}
    assert split(tmp_path / "a") == split(tmp_path / "b") and a["ok"] == b["ok"]


@pytest.mark.parametrize("args, message", [
    (["--size", "100"], "UV size 100"),
    (["--method", "splat"], "--method 'splat'"),
    (["--shard", "3/2"], "--shard 3/2"),
    (["--shard", "x"], "--shard 'x'"),
    (["--workers", "-1"], "--workers -1"),
    (["--mesh", "dense"], "mesh fitter 'dense'"),
])
def test_wrong_parameters_fail_before_any_work_with_one_line(photo_folder, tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main(["prep", str(photo_folder), str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_missing_source_and_mismatched_dataset_are_one_line_errors(prepared, photo_folder, tmp_path, capsys):
    assert main(["prep", str(tmp_path / "nowhere"), str(tmp_path / "o"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    out, _ = prepared
    assert main(["prep", str(photo_folder), str(out), "--size", "128", "--quiet"]) == 2
    assert "uv_size=64" in capsys.readouterr().err
    assert main(["prep", str(photo_folder), str(out), "--size", "64", "--mesh", "graph", "--quiet"]) == 2
    assert "mesh=crops, not graph" in capsys.readouterr().err     # a resumed prep never mixes mesh fitters


def test_cli_prepares_a_dataset(photo_folder, tmp_path, capsys):
    single = tmp_path / "one"
    single.mkdir()
    (single / "a.jpg").write_bytes((photo_folder / "good.jpg").read_bytes())
    assert main(["prep", str(single), str(tmp_path / "ds"), "--size", "64", "--quiet", "--workers", "1"]) == 0
    assert "1 ok, 0 failed" in capsys.readouterr().out
    assert json.loads((tmp_path / "ds" / "summary.json").read_text())["faces"] == 1


def test_open_dataset_explains_what_is_wrong(tmp_path):
    with pytest.raises(DatasetError, match="uvlib prep"):
        open_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "uvface-dataset", "version": 0}))
    with pytest.raises(DatasetError, match="v0"):
        open_dataset(tmp_path)


def test_read_photo_reasons(photo_folder):
    assert read_photo(photo_folder / "cmyk.jpg").shape[2] == 3
    with pytest.raises(PhotoError, match="file not found"):
        read_photo(photo_folder / "missing.jpg")


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5)


# ---------------------------------------------------------------------------------- nothing lost

@pytest.fixture(scope="module")
def face_jpg(photo_folder):
    return (photo_folder / "good.jpg").read_bytes()


def test_photos_whose_names_differ_only_in_suffix_or_punctuation_keep_their_own_faces(face_rgb, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    im = Image.fromarray(face_rgb)
    im.save(src / "x.jpg")
    im.transpose(Image.FLIP_LEFT_RIGHT).save(src / "x.png")
    im.rotate(5).save(src / "a b.jpg")
    im.rotate(-5).save(src / "a_b.jpg")
    summary = prepare(folder_photos(src), tmp_path / "ds", PrepConfig(uv_size=64, workers=1), progress=False)
    assert summary["ok"] == 4 and summary["dataset"]["faces"] == 4
    ids = {r["id"] for r in open_dataset(tmp_path / "ds").rows}
    assert ids == {"x.jpg_0", "x.png_0", "a%20b.jpg_0", "a_b.jpg_0"}
    assert len(list((tmp_path / "ds" / "uv").glob("*.png"))) == 4


def test_photos_that_would_still_share_files_stop_the_run_naming_both(face_jpg, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "Y.jpg").write_bytes(face_jpg)
    (src / "y.jpg").write_bytes(face_jpg)           # the same files on a case-insensitive file system
    assert main(["prep", str(src), str(tmp_path / "ds"), "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Y.jpg" in err and "y.jpg" in err
    assert not (tmp_path / "ds").exists()


def test_a_record_cut_by_a_kill_does_not_swallow_the_next_one(face_jpg, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (src / name).write_bytes(face_jpg)
    out = tmp_path / "ds"
    cfg = PrepConfig(uv_size=64, workers=1)
    prepare(folder_photos(src), out, cfg, progress=False)
    manifest = out / "manifest-0-of-1.jsonl"
    first, second = manifest.read_text().splitlines()
    manifest.write_text(first + "\n" + second[: len(second) // 2])     # killed while appending b's record
    again = prepare(folder_photos(src), out, cfg, progress=False)
    assert again["ok"] == 1 and again["skipped_done"] == 1               # b is done again ...
    assert {r["key"] for r in read_manifest(out)} == {"a.jpg", "b.jpg"}   # ... and its new record survives
    assert {r["id"] for r in open_dataset(out).rows} == {"a.jpg_0", "b.jpg_0"}
    assert prepare(folder_photos(src), out, cfg, progress=False)["skipped_done"] == 2


def test_finalize_cross_checks_one_record_per_listed_photo(face_jpg, tmp_path):
    from uvlib.data.dataset import finalize
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_bytes(face_jpg)
    out = tmp_path / "ds"
    prepare(folder_photos(src), out, PrepConfig(uv_size=64, workers=1), progress=False)
    with pytest.raises(DatasetError, match="'b.jpg'"):
        finalize(out, ["a.jpg", "b.jpg"])
    manifest = out / "manifest-0-of-1.jsonl"
    manifest.write_text(manifest.read_text() * 2)
    with pytest.raises(DatasetError, match="'a.jpg' has 2 manifest records"):
        finalize(out, ["a.jpg"])


def test_damaged_outputs_are_named_by_readers_and_redone_by_prep(face_jpg, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_bytes(face_jpg)
    out = tmp_path / "ds"
    cfg = PrepConfig(uv_size=64, workers=1)
    prepare(folder_photos(src), out, cfg, progress=False)
    uv_file = out / "uv" / "a.jpg_0.png"
    good = uv_file.read_bytes()
    uv_file.write_bytes(good[: len(good) // 2])
    ds = open_dataset(out)
    with pytest.raises(DatasetError, match=r"uv/a\.jpg_0\.png is unreadable.*uvlib prep"):
        ds.load(ds.rows[0]["split"])
    (out / "mesh" / "a.jpg_0.npy").unlink()
    with pytest.raises(DatasetError, match=r"mesh/a\.jpg_0\.npy is unreadable"):
        ds.mesh("a.jpg_0")
    again = prepare(folder_photos(src), out, cfg, progress=False)
    assert again["redone"] == 1 and again["ok"] == 1 and again["skipped_done"] == 0
    assert uv_file.read_bytes() == good and ds.mesh("a.jpg_0").shape == (468, 3)
    assert len(read_manifest(out)) == 1
    assert prepare(folder_photos(src), out, cfg, progress=False)["skipped_done"] == 1


def test_failed_photos_are_retried_on_request_and_the_summary_says_how(face_jpg, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.jpg").write_bytes(face_jpg)
    (src / "b.jpg").write_bytes(b"half a download")
    out = tmp_path / "ds"
    argv = ["prep", str(src), str(out), "--size", "64", "--quiet", "--workers", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 ok, 1 failed" in printed and "1 photos failed or are missing" in printed and "--retry-failed" in printed
    (src / "b.jpg").write_bytes(face_jpg)                 # the download finished
    assert main(argv) == 0
    assert "0 ok, 0 failed, 0 missing, 2 already done" in capsys.readouterr().out
    assert main([*argv, "--retry-failed"]) == 0
    printed = capsys.readouterr().out
    assert "1 ok, 0 failed, 0 missing, 1 already done, 1 retried" in printed and "--retry-failed" not in printed
    assert {r["id"] for r in open_dataset(out).rows} == {"a.jpg_0", "b.jpg_0"}
    assert len(read_manifest(out)) == 2


def test_a_16_bit_png_is_read_as_the_photo_it_is(face_rgb, fitter, tmp_path):
    gray = cv2.cvtColor(face_rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "g16.png"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "rgb16.png"), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    image = read_photo(tmp_path / "g16.png")
    assert np.abs(image[..., 0].astype(int) - gray).max() <= 1
    assert np.array_equal(read_photo(tmp_path / "rgb16.png"), face_rgb)
    faces, reason = fitter.fit(image)
    assert len(faces) == 1, reason


def test_mediapipe_logs_are_silenced_unless_verbose(face_jpg, tmp_path):
    import os
    import subprocess
    import sys
    src = tmp_path / "photos"
    src.mkdir()
    for k in range(8):                                    # 8 photos: the spawned worker pool runs
        (src / f"p{k}.jpg").write_bytes(face_jpg)
    run = lambda out, *extra: subprocess.run(
        [sys.executable, "-m", "uvlib", "prep", str(src), str(tmp_path / out), "--size", "64", "--quiet", *extra],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    quiet = run("a", "--workers", "2")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "8 ok" in quiet.stdout
    verbose = run("b", "--workers", "1", "--limit", "1", "--verbose")
    assert verbose.returncode == 0 and "W0000" in verbose.stderr


def test_the_index_holds_the_body_pose_head_yaw_of_turned_faces_only(face_photo, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "frontal.jpg").write_bytes(face_photo.read_bytes())
    (photos / "turned.jpg").write_bytes((face_photo.parent / "headpose_aws_IMG_1241.jpg").read_bytes())
    prepare(folder_photos(photos), tmp_path / "ds", PrepConfig(uv_size=64, workers=1), progress=False)
    rows = {r["photo"].rsplit("/", 1)[1]: r for r in open_dataset(tmp_path / "ds").rows}
    assert rows["frontal.jpg"]["head_yaw"] is None and abs(rows["frontal.jpg"]["yaw"]) < 30
    assert rows["turned.jpg"]["yaw"] < -30 and rows["turned.jpg"]["head_yaw"] < -30
    assert rows["frontal.jpg"]["under_turn_fraction"] == 0 and 0 < rows["turned.jpg"]["under_turn_fraction"] < 0.5
