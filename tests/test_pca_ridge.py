"""The masked PCA's completion ridge is chosen on validation cases, stored in the model, never chosen on test."""
import numpy as np
import pytest
import torch

from uvlib.models.pca import MaskedPCA
from uvlib.models.registry import load_model, save_model
from uvlib.protocol import cases as evaluation
from uvlib.protocol.cases import Benchmark, score
from uvlib.train.pca_ridge import choose_ridge

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
    psnr = [score(lambda u, k, m=m: pca.complete_with_ridges(u, k, [m * pca.noise_ridge()])[0], val,
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
    assert torch.equal(loaded(u * known, known), pca.complete_with_ridges(u * known, known, [choice["chosen_ridge"]])[0])


def test_test_cases_are_refused(pca):
    with pytest.raises(ValueError, match="validation cases"):
        choose_ridge(pca, benchmark("test"))
    with pytest.raises(ValueError, match="positive"):
        choose_ridge(pca, benchmark("val"), multiples=(0.0, 1.0))
