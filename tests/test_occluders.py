"""Occluders: a real hand pasted over a demo face is kept out of the seen texels; the unfiltered mask is kept."""
import cv2
import numpy as np
import pytest
from PIL import Image

from uvlib.data.dataset import open_dataset
from uvlib.data.occluders import appearance_outliers, hand_region, parse_occluders, texels_in_region
from uvlib.data.photo import read_photo
from uvlib.data.prep import PrepConfig, prepare
from uvlib.data.sources import DEMO_PHOTOS, folder_photos
from uvlib.geometry.unwrap import unwrap

HAND_FRAME = DEMO_PHOTOS / "pyfeat_WolfgangLanger_Pexels_000146.jpg"   # a hand on the cheek, wholly in the frame


def paste_hand(target, face_box, detector):
    """`target` with the hand of HAND_FRAME (its dilated landmark hull) pasted over the lower face, and the
    (H, W) bool mask of the pasted pixels."""
    source = read_photo(HAND_FRAME)
    region = hand_region(source.shape, detector.detect(source)[:1])
    ys, xs = np.nonzero(region)
    patch, keep = source[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1], region[ys.min(): ys.max() + 1,
                                                                             xs.min(): xs.max() + 1]
    x, y, w, h = face_box
    k = 1.4 * w / max(patch.shape[:2])
    patch = cv2.resize(patch, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    keep = cv2.resize(keep.astype(np.uint8), patch.shape[1::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    top, left = int(y + 0.4 * h), int(x)
    pasted = np.zeros(target.shape[:2], bool)
    pasted[top: top + patch.shape[0], left: left + patch.shape[1]] = keep
    out = target.copy()
    out[pasted] = patch[keep]
    return out, pasted


@pytest.fixture(scope="module")
def hands():
    from uvlib.data.occluders import HandDetector
    detector = HandDetector()
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, face_rgb, fitter, hands):
    """The astronaut as she is and with a hand over her mouth and cheek, prepared at 64 x 64."""
    photos = tmp_path_factory.mktemp("occluded")
    with_hand, pasted = paste_hand(face_rgb, fitter.fit(face_rgb)[0][0].box, hands)
    Image.fromarray(face_rgb).save(photos / "clean.png")
    Image.fromarray(with_hand).save(photos / "hand.png")
    out = tmp_path_factory.mktemp("ds") / "dataset"
    prepare(folder_photos(photos), out, PrepConfig(uv_size=64, workers=1), progress=False)
    return open_dataset(out), pasted


def test_texels_under_a_pasted_hand_are_not_seen_but_kept_in_the_unfiltered_mask(prepared):
    ds, pasted = prepared
    seen_raw = ds.item("hand.png_0", unfiltered=True)[1]
    seen = ds.item("hand.png_0")[1]
    under_hand = texels_in_region(pasted, ds.mesh("hand.png_0"), ds.uv_size) & seen_raw
    assert under_hand.sum() > 150                              # the hand covers a good part of the seen face
    assert (under_hand & seen).sum() <= 0.05 * under_hand.sum()
    assert not (seen & ~seen_raw).any()                        # filtering only takes texels away


def test_occluded_fraction_is_recorded_per_face(prepared):
    ds, _ = prepared
    row = {r["id"]: r for r in ds.rows}
    hand, clean = row["hand.png_0"], row["clean.png_0"]
    seen_raw = ds.item("hand.png_0", unfiltered=True)[1]
    seen = ds.item("hand.png_0")[1]
    assert hand["occluded_fraction"] == pytest.approx(1 - seen.sum() / seen_raw.sum(), abs=1e-3)
    assert hand["hand_fraction"] > 0.2 and clean["hand_fraction"] == 0
    assert hand["occluded_fraction"] >= hand["hand_fraction"]
    assert clean["occluded_fraction"] < hand["occluded_fraction"]


def test_readers_zero_the_texels_occluders_hide(prepared):
    ds, _ = prepared
    split = next(r["split"] for r in ds.rows if r["id"] == "hand.png_0")
    uv, observed, rows = ds.load(split)
    k = [r["id"] for r in rows].index("hand.png_0")
    assert not (uv[k] * (1 - observed[k])).any()
    texture, seen = ds.item("hand.png_0")
    texture_raw, seen_raw = ds.item("hand.png_0", unfiltered=True)
    assert not texture[~seen].any() and texture_raw[seen_raw & ~seen].any()


def test_appearance_test_finds_a_foreign_object_over_skin(face_rgb, fitter):
    face = fitter.fit(face_rgb)[0][0]
    clean = unwrap(face_rgb, face.landmarks, 64)
    covered = face_rgb.copy()
    x, y, w, h = (int(v) for v in face.box)
    covered[y + h // 2: y + h, x: x + w // 2] = (30, 60, 200)   # a blue object over the left lower face
    blocked = unwrap(covered, face.landmarks, 64)
    truth = texels_in_region(np.all(covered == (30, 60, 200), axis=2), face.landmarks, 64) & clean.visible
    found = appearance_outliers(blocked.texture, blocked.visible)
    assert (found & truth).sum() >= 0.8 * truth.sum()
    assert (appearance_outliers(clean.texture, clean.visible) & truth).sum() <= 0.05 * truth.sum()   # skin there


def test_an_unknown_occluder_test_is_refused_with_the_choices():
    assert parse_occluders("none") == () and parse_occluders("hands+appearance") == ("hands", "appearance")
    with pytest.raises(ValueError, match="--occluders 'hand' is unknown; use one of"):
        PrepConfig(occluders="hand").validate()
