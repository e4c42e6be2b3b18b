import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from uvlib.ops import composite
from uvlib.protocol.metrics import PSNR_CAP_DB, _gaussian_blur, aggregate, hole_scores, size_bin_of, ssim_map


def tiny_case():
    """4x4 map of grey 0.5; one texel unobserved, one outside the atlas; hole on 2 good texels
    (errors 0.1 on all channels and 0.3 on one channel) plus the two bad texels."""
    target = torch.full((1, 3, 4, 4), 0.5)
    observed = torch.ones(1, 1, 4, 4)
    observed[0, 0, 3, 3] = 0
    atlas = torch.ones(4, 4, dtype=torch.bool)
    atlas[0, 0] = False
    target = target * observed * atlas
    hole = torch.zeros(1, 1, 4, 4)
    for y, x in [(1, 1), (1, 2), (3, 3), (0, 0)]:
        hole[0, 0, y, x] = 1
    pred = target.clone()
    pred[0, :, 1, 1] += 0.1
    pred[0, 0, 1, 2] += 0.3
    pred[0, :, 3, 3] = 1.0  # unobserved: never scored
    pred[0, :, 0, 0] = 1.0  # outside the atlas: never scored
    return pred, target, observed, hole, atlas


def test_hole_scores_match_hand_computed_values():
    scores = hole_scores(*tiny_case())
    # E = 2 texels x 3 channels; abs errors 0.1, 0.1, 0.1, 0.3, 0, 0
    assert scores["l1"].item() == pytest.approx(0.6 / 6, abs=1e-6)
    assert scores["psnr"].item() == pytest.approx(10 * math.log10(6 / 0.12), abs=1e-4)
    # whole atlas view: 14 observed atlas texels, 42 values, same squared error
    assert scores["composite_psnr"].item() == pytest.approx(10 * math.log10(42 / 0.12), abs=1e-4)
    assert scores["hole_fraction"].item() == pytest.approx(2 / 14)
    assert 0 < scores["ssim"].item() < 1
    assert all(v.shape == (1,) for v in scores.values())


def test_perfect_prediction_scores_ssim_one_and_capped_psnr():
    pred, target, observed, hole, atlas = tiny_case()
    scores = hole_scores(target.clone(), target, observed, hole, atlas)
    assert scores["ssim"].item() == pytest.approx(1.0, abs=1e-6)
    assert scores["l1"].item() == 0
    assert scores["psnr"].item() == pytest.approx(PSNR_CAP_DB)
    assert scores["composite_psnr"].item() == pytest.approx(PSNR_CAP_DB)


def test_texels_outside_atlas_or_unobserved_never_change_scores():
    pred, target, observed, hole, atlas = tiny_case()
    base = hole_scores(pred, target, observed, hole, atlas)
    outside = ((observed > 0) & atlas).logical_not().expand_as(pred)
    generator = torch.Generator().manual_seed(0)
    noisy_pred = torch.where(outside, torch.rand(pred.shape, generator=generator), pred)
    noisy_target = torch.where(outside, torch.rand(pred.shape, generator=generator), target)
    changed = hole_scores(noisy_pred, noisy_target, observed, hole, atlas)
    for name in base:
        assert changed[name].item() == pytest.approx(base[name].item(), abs=1e-6), name


def test_known_texel_predictions_never_change_scores():
    pred, target, observed, hole, atlas = tiny_case()
    base = hole_scores(pred, target, observed, hole, atlas)
    known = (observed * (1 - hole) * atlas).bool().expand_as(pred)
    changed = hole_scores(torch.where(known, 1 - pred, pred), target, observed, hole, atlas)
    for name in base:
        assert changed[name].item() == pytest.approx(base[name].item(), abs=1e-6), name


def test_empty_evaluation_region_raises():
    pred, target, observed, _, atlas = tiny_case()
    hole = torch.zeros(2, 1, 4, 4)
    hole[0, 0, 1, 1] = 1
    with pytest.raises(ValueError, match=r"images \[1\]"):
        hole_scores(pred.repeat(2, 1, 1, 1), target.repeat(2, 1, 1, 1), observed.repeat(2, 1, 1, 1), hole, atlas)


def test_bad_shapes_raise():
    pred, target, observed, hole, atlas = tiny_case()
    with pytest.raises(ValueError, match="atlas"):
        hole_scores(pred, target, observed, hole, atlas[:3])
    with pytest.raises(ValueError, match="hole"):
        hole_scores(pred, target, observed, hole[:, :, :3], atlas)


def test_composite_keeps_known_texels_and_fills_the_rest():
    target = torch.rand(2, 3, 5, 5)
    pred = torch.rand(2, 3, 5, 5)
    known = (torch.rand(2, 1, 5, 5) > 0.5).float()
    out = composite(pred, target, known)
    k = known.bool().expand_as(out)
    assert torch.equal(out[k], target[k])
    assert torch.equal(out[~k], pred[~k])


def test_ssim_map_matches_skimage():
    rng = np.random.default_rng(0)
    x = rng.random((20, 24, 3))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    mean_ssim, full = structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1, full=True
    )
    ours = ssim_map(torch.from_numpy(x).permute(2, 0, 1)[None], torch.from_numpy(y).permute(2, 0, 1)[None])[0, 0]
    np.testing.assert_allclose(ours.numpy(), full.mean(-1), atol=1e-6)
    assert ours[5:-5, 5:-5].mean().item() == pytest.approx(mean_ssim, abs=1e-6)  # skimage crops the borders
    single = ssim_map(torch.from_numpy(x).permute(2, 0, 1)[None].float(), torch.from_numpy(y).permute(2, 0, 1)[None].float())
    np.testing.assert_allclose(single[0, 0].numpy(), full.mean(-1), atol=1e-4)


def test_gaussian_window_reflects_like_scipy_even_on_maps_smaller_than_it():
    image = np.random.default_rng(1).random((4, 3))
    expected = gaussian_filter(image, sigma=1.5, truncate=3.5, mode="reflect")
    np.testing.assert_allclose(_gaussian_blur(torch.from_numpy(image)[None, None])[0, 0].numpy(), expected, atol=1e-12)


def test_size_bin_of():
    assert size_bin_of(0.0) == "0.00-0.10"
    assert size_bin_of(0.1) == "0.10-0.20"
    assert size_bin_of(torch.tensor(0.35)) == "0.20-0.40"
    assert size_bin_of(1.0) == "0.40-1.00"
    assert size_bin_of(0.3, edges=(0, 0.5, 1)) == "0.00-0.50"
    with pytest.raises(ValueError, match="edges"):
        size_bin_of(1.5)


def test_aggregate_means_per_group():
    records = [
        {"l1": torch.tensor(0.1), "psnr": 20.0, "yaw_bin": "30-45", "size_bin": "0.10-0.20", "case": 7},
        {"l1": torch.tensor(0.3), "psnr": 30.0, "yaw_bin": "30-45", "size_bin": "0.00-0.10", "image": "b.png"},
        {"l1": torch.tensor(0.5), "psnr": 10.0, "yaw_bin": "5-15", "size_bin": "0.10-0.20", "image": "c.png"},
    ]
    result = aggregate(records)
    assert result["overall"] == pytest.approx({"l1": 0.3, "psnr": 20.0, "n": 3})
    assert list(result["by_yaw_bin"]) == ["5-15", "30-45"]
    assert result["by_yaw_bin"]["30-45"] == pytest.approx({"l1": 0.2, "psnr": 25.0, "n": 2})
    assert result["by_size_bin"]["0.10-0.20"] == pytest.approx({"l1": 0.3, "psnr": 15.0, "n": 2})
    assert isinstance(result["overall"]["l1"], float)
    assert aggregate(records, by=("yaw_bin",), metrics=["psnr"])["overall"] == {"psnr": 20.0, "n": 3}


def test_aggregate_rejects_missing_keys_and_empty_input():
    with pytest.raises(ValueError, match="no records"):
        aggregate([])
    with pytest.raises(ValueError, match="size_bin"):
        aggregate([{"l1": 0.1, "yaw_bin": "0-15"}])
    with pytest.raises(ValueError, match="metrics="):
        aggregate([{"lpips": 0.1, "yaw_bin": "0-15", "size_bin": "0.00-0.10"}])
    with pytest.raises(ValueError, match="non-numeric"):
        aggregate([{"l1": "bad", "yaw_bin": "0-15", "size_bin": "0.00-0.10"}])


def test_masked_ssim_a_flat_fill_scores_the_same_beside_an_unobserved_strip_as_in_the_interior():
    """Zeroed unobserved texels next to a hole must not enter the SSIM windows (they add fake shared structure).

    A: a 30-column hole running to the image border (windows reflect into more hole). B: the same hole shifted 8
    columns left, with an 8-column unobserved strip between it and the border. With masked local statistics every
    hole texel of B sees exactly what its twin in A sees, so the scores are equal.
    """
    s = 64
    target = torch.full((1, 3, s, s), 0.6)
    pred = torch.full((1, 3, s, s), 0.3)                       # a flat, wrong fill
    atlas = torch.ones(s, s)
    hole_a = torch.zeros(1, 1, s, s)
    hole_a[..., 34:] = 1
    observed_a = torch.ones(1, 1, s, s)
    hole_b = torch.zeros(1, 1, s, s)
    hole_b[..., 26:56] = 1
    observed_b = torch.ones(1, 1, s, s)
    observed_b[..., 56:] = 0
    a = hole_scores(pred, target, observed_a, hole_a, atlas)
    b = hole_scores(pred, target, observed_b, hole_b, atlas)
    assert a["psnr"].item() == pytest.approx(b["psnr"].item())
    assert b["ssim"].item() == pytest.approx(a["ssim"].item(), abs=1e-5)
    assert a["ssim"].item() < 0.9                             # the fill is wrong: no free SSIM


def test_masked_ssim_map_equals_plain_ssim_when_everything_is_observed():
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim_map(x, y, weight=torch.ones(2, 1, 32, 32)), ssim_map(x, y), atol=1e-5)
