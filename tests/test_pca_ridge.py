"""The masked PCA's completion ridge is chosen on validation cases, stored in the model, never chosen on test."""
import numpy as np
import pytest
import torch

from uvlib.models.pca import MaskedPCA
from uvlib.models.registry import load_model, save_model
from uvlib.protocol import cases as evaluation
from uvlib.protocol.cases import Benchmark, score
from uvlib.protocol.crosspose import score_pairs
from uvlib.train.pca_ridge import choose_misfit_gate, choose_ridge

S = 16


def noisy_low_rank(n, seed):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(4, 3 * S * S, generator=g)
    maps = 0.5 + 0.03 * (torch.randn(n, 4, generator=g) @ basis) + 0.05 * torch.randn(n, 3 * S * S, generator=g)
    return maps.reshape(n, 3, S, S).clamp(0, 1)


def benchmark(split, n=6, seed=1):
    uv = noisy_low_rank(n, seed)
    observed = torch.ones(n, 1, S, S)
    hole = np.zeros((n, S, S), dtype=bool)
    hole[:, :, : S // 2] = True  # the left half is hidden
    cases = evaluation.TestCases(np.arange(n), hole, np.array(["pose"] * n), np.full(n, 40.0))
    rows = [{"id": f"{split}{i}", "split": split} for i in range(n)]
    return Benchmark(uv, observed, torch.ones(S, S, dtype=torch.bool), cases, rows)


@pytest.fixture(scope="module")
def pca():
    uv = noisy_low_rank(10, seed=0)  # few maps: the noise variance is a poor guess of the best λ
    return MaskedPCA(6, max_iter=5).fit(uv, torch.ones(10, 1, S, S), torch.ones(S, S, dtype=torch.bool),
                                        progress=False)


def test_the_best_validation_multiple_is_chosen_stored_and_saved(pca, tmp_path):
    val = benchmark("val")
    multiples = (0.01, 1.0, 100.0)
    psnr = [score(lambda u, k, m=m: pca.complete_with(u, k, [(m * pca.noise_ridge(), None)])[0], val,
                  progress=False)[0]["overall"]["psnr"] for m in multiples]  # the protocol's own scoring
    assert max(psnr) - min(psnr) > 0.1  # the choice matters on these maps
    choice = choose_ridge(pca, val, multiples)
    best = int(np.argmax(psnr))
    assert choice["chosen_multiple"] == multiples[best]
    assert [g["val_psnr"] for g in choice["grid"]] == pytest.approx(psnr)
    assert pca.config.ridge == pytest.approx(multiples[best] * choice["noise_variance"])
    save_model(tmp_path / "model-pca.pt", "masked_pca", S, {"n_components": 6}, pca.state_dict())
    loaded, _ = load_model(tmp_path / "model-pca.pt")
    u, _, _, known = val.case(np.arange(len(val)))
    assert torch.equal(loaded(u * known, known),
                       pca.complete_with(u * known, known, [(choice["chosen_ridge"], None)])[0])


def test_test_cases_are_refused(pca):
    with pytest.raises(ValueError, match="validation cases"):
        choose_ridge(pca, benchmark("test"))
    with pytest.raises(ValueError, match="positive"):
        choose_ridge(pca, benchmark("val"), multiples=(0.0, 1.0))


def crosspose_pairs(split, n=4, seed=2):
    """n synthetic pairs: the turned face sees the left half, its reference (same maps) sees everything."""
    from uvlib.protocol.crosspose import CrossPose
    uv = (noisy_low_rank(n, seed).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    visible = np.ones((2 * n, S, S), dtype=bool)
    visible[:n, :, S // 2:] = False
    pairs = [{"turned": f"t{i}", "reference": f"r{i}", "group": f"p{i}", "turned_yaw": 60.0, "reference_yaw": 0.0,
              "yaw_bin": "60-75", "gain": np.ones(3), "offset": np.zeros(3), "turned_index": i,
              "reference_index": n + i} for i in range(n)]
    return CrossPose(np.concatenate([uv, uv]), visible, np.ones((S, S), dtype=bool), pairs, {}, {"split": split})


def test_with_real_pairs_the_mean_of_both_validation_scores_decides_and_the_robust_scale_is_stored(pca):
    pca = MaskedPCA(6).load_state_dict(pca.state_dict())
    choice = choose_ridge(pca, benchmark("val"), (0.01, 1.0, 100.0), robust_scales=(None, 0.05),
                          crosspose=crosspose_pairs("val"))
    assert len(choice["grid"]) == 6 and {g["robust_scale"] for g in choice["grid"]} == {None, 0.05}
    pairs = crosspose_pairs("val")
    for g in choice["grid"]:
        assert g["score"] == pytest.approx((g["val_psnr"] + g["crosspose_val_psnr"]) / 2)
        scored = score_pairs(lambda u, k, g=g: pca.complete_with(u, k, [(g["ridge"], g["robust_scale"])])[0], pairs,
                             progress=False)[0]["overall"]["psnr"]       # the cross-pose test's own scoring
        assert g["crosspose_val_psnr"] == pytest.approx(scored, abs=1e-4)
    best = max(choice["grid"], key=lambda g: g["score"])
    assert (choice["chosen_multiple"], choice["chosen_robust_scale"]) == (best["multiple"], best["robust_scale"])
    assert (pca.config.ridge, pca.config.robust_scale) == (best["ridge"], best["robust_scale"])


def test_test_pairs_and_bad_scales_are_refused(pca):
    with pytest.raises(ValueError, match="validation split"):
        choose_ridge(pca, benchmark("val"), crosspose=crosspose_pairs("test"))
    with pytest.raises(ValueError, match="robust scales"):
        choose_ridge(pca, benchmark("val"), robust_scales=(0.0,))


def test_the_misfit_gate_routes_the_items_a_second_setting_serves_better():
    """Simulated items fit well and prefer setting 0; real ones fit badly and prefer setting 1: the chosen gate sends
    exactly the badly fitted ones to setting 1 and beats either setting alone. With nothing to gain, no threshold."""
    rng = np.random.default_rng(0)
    sim_psnr = np.stack([np.full(50, 24.0), np.full(50, 22.0)])
    real_psnr = np.stack([np.full(20, 13.0), np.full(20, 16.0)])
    sim_misfit = np.tile(rng.uniform(0.01, 0.03, 50), (2, 1))
    real_misfit = np.tile(rng.uniform(0.05, 0.08, 20), (2, 1))
    gate = choose_misfit_gate((sim_psnr, sim_misfit), (real_psnr, real_misfit))
    assert (gate["first"], gate["misfit"]) == (0, 1) and 0.03 <= gate["threshold"] < 0.05
    assert (gate["val_psnr"], gate["crosspose_val_psnr"], gate["score"]) == pytest.approx((24.0, 16.0, 20.0))
    same = choose_misfit_gate((sim_psnr, sim_misfit), (real_psnr[[0, 0]], real_misfit))
    assert (same["first"] == same["misfit"] or not np.isfinite(same["threshold"]))
    assert same["score"] == pytest.approx((24.0 + 13.0) / 2)


def test_a_chosen_misfit_gate_is_stored_and_scores_what_was_recorded(pca):
    """Real pairs whose seen texels are corrupted want a far larger ridge than the clean simulated cases: the
    gated model the choice stores must score, under the protocol's own scoring, what the choice recorded."""
    pca = MaskedPCA(6).load_state_dict(pca.state_dict())
    pairs = crosspose_pairs("val", n=6)
    noise = np.random.default_rng(3).integers(-60, 60, pairs.uv[:6].shape)
    pairs.uv[:6] = np.clip(pairs.uv[:6].astype(int) + noise, 0, 255).astype(np.uint8)
    val = benchmark("val")
    choice = choose_ridge(pca, val, (0.01, 1.0, 100.0), crosspose=pairs, misfit_gate=True)
    gate = choice["misfit_gate"]
    assert gate["multiple"] > choice["chosen_multiple"] and gate["score"] > max(g["score"] for g in choice["grid"])
    assert (pca.config.misfit_threshold, pca.config.misfit_ridge) == (gate["threshold"], gate["ridge"])
    assert score(pca.complete, val, progress=False)[0]["overall"]["psnr"] == pytest.approx(gate["val_psnr"], abs=1e-4)
    assert score_pairs(pca.complete, pairs, progress=False)[0]["overall"]["psnr"] == pytest.approx(
        gate["crosspose_val_psnr"], abs=1e-4)
    without = choose_ridge(pca, val, (0.01, 1.0, 100.0), crosspose=pairs)    # the default: one setting for all
    assert "misfit_gate" not in without and pca.config.misfit_threshold is None
