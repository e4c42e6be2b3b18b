import pytest
import torch

from uvlib.models.pca import MaskedPCA, _texel_outer, gram_by_products, gram_by_texel_outer

S = 8


def make_atlas():
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    return ((yy - 3.5) ** 2 + (xx - 3.5) ** 2) < 14  # a disc: the corners are outside


def low_rank_maps(n, rank=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, 3 * S * S, generator=g)
    codes = torch.randn(n, rank, generator=g)
    maps = 0.5 + 0.02 * (codes @ basis)
    return maps.reshape(n, 3, S, S).clamp(0, 1) * make_atlas()  # clamping is a no-op at this scale


def random_mask(n, p_missing, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, S, S, generator=g) > p_missing).float()


@pytest.fixture(scope="module")
def fitted():
    uv, observed = low_rank_maps(60), random_mask(60, 0.3)
    pca = MaskedPCA(2, max_iter=300, tol=1e-6).fit(uv * observed, observed, make_atlas(), progress=False)
    return pca, uv, observed


def test_recovers_rank2_data_with_missing_entries(fitted):
    pca, uv, observed = fitted
    atlas = make_atlas()
    missing = (1 - observed) * atlas
    recon = pca.complete(uv * observed, observed)
    hole_rmse = (((recon - uv) ** 2 * missing).sum() / (3 * missing.sum())).sqrt()
    mean_rmse = (((pca.mean_map() - uv) ** 2 * missing).sum() / (3 * missing.sum())).sqrt()
    assert hole_rmse < 0.01 * mean_rmse
    assert pca.history[-1]["observed_rmse"] < 1e-3
    assert pca.history[-1]["rel_change"] < pca.history[0]["rel_change"]


def test_complete_reproduces_held_out_map_from_half_its_texels(fitted):
    pca, _, _ = fitted
    held_out = low_rank_maps(61)[60:]  # same basis, a code never seen in training
    known = torch.zeros(1, 1, S, S)
    known[..., : S // 2, :] = 1  # only the top half is visible
    out = pca.complete(held_out * known, known)
    assert torch.allclose(out, held_out, atol=2e-3)
    assert (out[:, :, ~make_atlas()] == 0).all()


def test_unknown_texels_of_the_input_do_not_matter(fitted):
    pca, uv, observed = fitted
    noisy = uv * observed + (1 - observed) * torch.rand(uv.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(pca.complete(uv * observed, observed), pca.complete(noisy, observed))


def test_same_seed_same_model_and_caller_rng_untouched():
    uv, observed = low_rank_maps(30, rank=4), random_mask(30, 0.3)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = MaskedPCA(3, max_iter=5, seed=7).fit(uv, observed, make_atlas(), progress=False)
    assert torch.equal(torch.rand(3), before)
    b = MaskedPCA(3, max_iter=5, seed=7).fit(uv, observed, make_atlas(), progress=False)
    assert torch.equal(a.components_, b.components_) and torch.equal(a.mean_, b.mean_)


def test_explained_variance_sorted_and_bounded():
    uv, observed = low_rank_maps(40, rank=6), random_mask(40, 0.2)
    uv = (uv + 0.01 * torch.randn(uv.shape, generator=torch.Generator().manual_seed(5))) * make_atlas()
    pca = MaskedPCA(4, max_iter=20).fit(uv, observed, make_atlas(), progress=False)
    ratio = pca.explained_variance_ratio_
    assert (ratio[:-1] >= ratio[1:]).all() and ratio.sum() <= 1 and (ratio > 0).all()
    assert pca.noise_variance_ > 0


def test_state_round_trip_and_figures(fitted, tmp_path):
    pca, uv, observed = fitted
    pca.save(tmp_path / "pca.pt")
    loaded = MaskedPCA.load(tmp_path / "pca.pt")
    assert torch.equal(loaded.complete(uv, observed), pca.complete(uv, observed))
    maps = loaded.components_as_maps(2)
    assert maps.shape == (2, 3, S, S) and maps.min() >= 0 and maps.max() <= 1
    assert loaded.mean_map().shape == (3, S, S)


def test_bad_input_raises():
    uv, observed = low_rank_maps(10), random_mask(10, 0.3)
    with pytest.raises(ValueError, match="observed|mask"):
        MaskedPCA(2).fit(uv, observed[:, :, :4], make_atlas())
    with pytest.raises(ValueError, match="n_components"):
        MaskedPCA(50).fit(uv, observed, make_atlas())
    with pytest.raises(ValueError, match="not fitted"):
        MaskedPCA(2).complete(uv, observed)
    hidden_nan = uv.clone()
    hidden_nan[observed.expand_as(uv) == 0] = float("nan")  # NaN where unobserved is ignored
    fitted = MaskedPCA(2, max_iter=3).fit(hidden_nan, observed, make_atlas(), progress=False)
    assert torch.isfinite(fitted.components_).all()
    hidden_nan[observed.expand_as(uv) == 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        MaskedPCA(2).fit(hidden_nan, observed, make_atlas(), progress=False)


def test_noise_variance_averages_the_discarded_nonzero_eigenvalues():
    """N << D: the centred data have only N - 1 non-zero eigenvalues, so σ² divides by N - 1 - k, not D - k."""
    n, k = 12, 3
    uv = low_rank_maps(n, rank=6, seed=4)
    uv = (uv + 0.01 * torch.randn(uv.shape, generator=torch.Generator().manual_seed(6))) * make_atlas()
    everything = torch.ones(n, 1, S, S)
    pca = MaskedPCA(k, max_iter=1).fit(uv, everything, make_atlas(), progress=False)
    x = uv.reshape(n, 3, -1)[:, :, make_atlas().reshape(-1)].reshape(n, -1)
    eigenvalues = torch.linalg.svdvals(x - x.mean(0)).square() / (n - 1)
    assert x.shape[1] > 10 * n
    expected = eigenvalues[k:n - 1].sum() / (n - 1 - k)
    assert float(pca.noise_variance_) == pytest.approx(float(expected), rel=1e-3)


def test_completion_uses_the_chosen_ridge_and_shares_work_across_ridges(fitted):
    pca, uv, observed = fitted
    chosen = MaskedPCA(2).load_state_dict({**pca.state_dict(), "config": {**pca.state_dict()["config"], "ridge": 0.5}})
    assert chosen.ridge() == 0.5 and pca.ridge() == pca.noise_ridge()
    at_noise, at_half = pca.complete_with(uv * observed, observed, [(pca.noise_ridge(), None), (0.5, None)])
    assert torch.equal(at_noise, pca.complete(uv * observed, observed))
    assert torch.equal(at_half, chosen.complete(uv * observed, observed)) and not torch.equal(at_half, at_noise)


def test_uint8_maps_as_stored_fit_exactly_as_their_floats():
    g = torch.Generator().manual_seed(4)
    stored = torch.randint(0, 256, (20, 3, S, S), generator=g, dtype=torch.uint8)
    observed = random_mask(20, 0.3).to(torch.uint8)
    as_floats = MaskedPCA(3, max_iter=5, tol=0).fit(stored.float().div(255), observed.float(), make_atlas(),
                                                     progress=False)
    as_stored = MaskedPCA(3, max_iter=5, tol=0).fit(stored, observed, make_atlas(), progress=False)
    assert torch.equal(as_stored.components_, as_floats.components_) and torch.equal(as_stored.mean_, as_floats.mean_)
    assert as_stored.history == as_floats.history


def test_robust_completion_discounts_seen_texels_the_components_cannot_explain(fitted):
    """A real profile's seen texels include hair and background at the silhouette: paint a quarter of the seen
    texels a colour no face has, and the Cauchy-weighted posterior must complete the hidden half closer to the
    truth than the plain one, which bends every component towards the paint."""
    pca, _, _ = fitted
    uv, atlas = low_rank_maps(8, seed=5), make_atlas().float()
    seen = torch.zeros(8, 1, S, S)
    seen[..., : S // 2] = 1                                         # the left half seen, the right half hidden
    seen = seen * atlas
    painted = uv.clone()
    painted[:, 0, :2, : S // 2] = 1.0                               # the top rows of the seen half: saturated red
    painted[:, 1:, :2, : S // 2] = 0.0
    hidden = (1 - seen) * atlas

    def hidden_rmse(settings):
        pred = pca.complete_with(painted * seen, seen, [settings])[0]
        return float((((pred - uv) ** 2) * hidden).sum() / (3 * hidden.sum())) ** 0.5

    lam = pca.noise_ridge()
    plain, robust = hidden_rmse((lam, None)), hidden_rmse((lam, 0.02))
    unpainted = float((((pca.complete(uv * seen, seen) - uv) ** 2) * hidden).sum() / (3 * hidden.sum())) ** 0.5
    assert plain > 1.3 * unpainted and robust < 1.05 * unpainted   # as if the paint were not there
    clean = pca.complete_with(uv * seen, seen, [(lam, 0.02)])[0]   # nothing to discount: about the plain completion
    assert float((((clean - uv) ** 2) * hidden).sum() / (3 * hidden.sum())) ** 0.5 < 1.05 * unpainted


def test_the_stored_robust_scale_is_what_complete_uses_and_old_files_load_without_it(fitted):
    pca, uv, observed = fitted
    state = pca.state_dict()
    robust = MaskedPCA(2).load_state_dict({**state, "config": {**state["config"], "robust_scale": 0.05}})
    expected = pca.complete_with(uv * observed, observed, [(pca.ridge(), 0.05)])[0]
    assert torch.equal(robust.complete(uv * observed, observed), expected)
    old = {k: v for k, v in state["config"].items() if k not in ("robust_scale", "robust_iters")}
    assert MaskedPCA(2).load_state_dict({**state, "config": old}).config.robust_scale is None


def test_a_misfit_threshold_completes_the_badly_fitted_images_with_the_second_setting(fitted):
    """Images whose seen texels the first completion fits worse than the threshold (here: painted ones) are
    completed with the misfit setting, the others exactly as without a threshold; old files load without it."""
    pca, _, _ = fitted
    uv, atlas = low_rank_maps(8, seed=6), make_atlas().float()
    seen = torch.zeros(8, 1, S, S)
    seen[..., : S // 2] = 1
    seen = seen * atlas
    uv_in = uv * seen
    uv_in[4:, 0, :2, : S // 2] = 1.0   # the last four: a saturated red patch on their seen half
    state = pca.state_dict()
    gated = MaskedPCA(2).load_state_dict({**state, "config": {**state["config"], "misfit_threshold": 0.05,
                                                              "misfit_ridge": 100 * pca.ridge(),
                                                              "misfit_robust_scale": 0.02}})
    first, second = pca.complete_with(uv_in, seen, [(pca.ridge(), None), (100 * pca.ridge(), 0.02)])
    out = gated.complete(uv_in, seen)
    assert torch.equal(out[:4], first[:4]) and torch.equal(out[4:], second[4:])
    assert not torch.allclose(first[4:], second[4:], atol=1e-3)     # the two settings differ on those images
    old = {k: v for k, v in state["config"].items() if not k.startswith("misfit")}
    assert torch.equal(MaskedPCA(2).load_state_dict({**state, "config": old}).complete(uv_in, seen), first)


def test_small_and_large_batches_build_the_same_normal_equations():
    """A batch under k/3 images builds its Gram matrices by per-image products, a larger one from shared per-texel
    outer products: the two must give the same matrices, and an image the same completion in either batch."""
    g = torch.Generator().manual_seed(7)
    w, weight = torch.randn(3 * 40, 12, generator=g), torch.rand(5, 40, generator=g)
    by_products = gram_by_products(weight, w)
    expected = torch.stack([sum(w[c * 40:(c + 1) * 40].T @ torch.diag(d) @ w[c * 40:(c + 1) * 40] for c in range(3))
                            for d in weight])
    assert torch.allclose(by_products, expected, atol=1e-4)
    assert torch.allclose(gram_by_texel_outer(weight, _texel_outer(w), 12), expected, atol=1e-4)
    uv, observed = low_rank_maps(40, rank=12, seed=8), random_mask(40, 0.3, seed=9)
    pca = MaskedPCA(12, max_iter=20).fit(uv * observed, observed, make_atlas(), progress=False)
    inputs, seen = low_rank_maps(12, rank=12, seed=10) * observed[:12], observed[:12]
    alone = pca.complete_with(inputs[:2], seen[:2], [(pca.ridge(), 0.05)])[0]      # 2 * 3 < 12: per-image products
    in_batch = pca.complete_with(inputs, seen, [(pca.ridge(), 0.05)])[0][:2]       # 12 * 3 >= 12: outer products
    assert torch.allclose(alone, in_batch, atol=1e-5)
