"""Stacked stages learn from earlier stages' outputs on maps those stages never saw; runs are never mixed up.

Stage recipes (uvlib.study.recipes) on a tiny in-memory StageContext: 20 training maps (two faces per photo),
6 validation maps, box holes.
"""
from types import SimpleNamespace

import pytest
import torch

from uvlib.models.blend import BlendedPCAPConv
from uvlib.models.cascade import MirrorPoissonGAN, PCAPConvCascade
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.models.registry import load_model
from uvlib.ops import composite
from uvlib.study import recipes
from uvlib.study.context import StageContext
from uvlib.study.recipes import GANSpec, PConvSpec, stacking_record, train_blend, train_gan, train_pconv
from uvlib.train.batches import HoleSampler, TrainingBatches
from uvlib.train.crossfit import CrossFittedPCA, FoldedBatches, group_folds
from uvlib.train.provenance import state_digest
from uvlib.train.trainers import CascadeTrainer, GANTrainer

S = 16


def atlas():
    a = torch.ones(S, S, dtype=torch.bool)
    a[:, :2] = False
    return a


def maps(n, seed, split):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(5, 3 * S * S, generator=g)
    uv = 0.5 + 0.04 * (torch.randn(n, 5, generator=g) @ basis) + 0.04 * torch.randn(n, 3 * S * S, generator=g)
    observed = (torch.rand(n, 1, S, S, generator=g) > 0.15).float()
    rows = [{"id": f"{split}{i}", "photo": f"{split}-photo{i // 2}.jpg", "split": split} for i in range(n)]
    return uv.reshape(n, 3, S, S).clamp(0, 1) * atlas(), observed, rows


class Splits:
    """The part of a Dataset a StageContext uses here."""
    uv_size = S

    def __init__(self, **splits):
        self.splits = splits

    def load(self, split, limit=None):
        return self.splits[split]


def box_holes(n=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    holes = torch.zeros(n, S, S, dtype=torch.bool)
    for hole, (y, x) in zip(holes, torch.randint(0, S - 6, (n, 2), generator=g).tolist()):
        hole[y:y + 6, x:x + 6] = True
    return holes


def make_ctx(folder, seed=0):
    train, val = maps(20, 0, "train"), maps(6, 1, "val")
    out = folder / "stage"
    out.mkdir(parents=True, exist_ok=True)
    return StageContext("stage", out, Splits(train=train, val=val), torch.device("cpu"), seed,
                        bench=SimpleNamespace(atlas=atlas()), val=None, train_uv=train[0], train_observed=train[1],
                        train_rows=train[2], progress=False, _sampler=HoleSampler(box_holes()))


def which_maps(uv_in, known, uv):
    """Index into uv of the map each input item was cut from (uv_in = map * known)."""
    index = []
    for x, k in zip(uv_in, known):
        match = [i for i in range(len(uv)) if torch.equal(uv[i] * k, x)]
        index.append(match[0] if len(match) == 1 else -1)
    return torch.tensor(index)


def spec(**kw):
    return PConvSpec(**{"name": "p", "base_width": 4, "steps": 2, "fine_tune_steps": 0, "batch_size": 4,
                        "feature_net": "none", **kw})


@pytest.fixture(scope="module")
def pca():
    train = maps(20, 0, "train")
    return MaskedPCA(4, max_iter=20).fit(train[0], train[1], atlas(), progress=False)


# ----------------------------------------------------------------------------------- cross-fitting

def test_folds_keep_groups_together_and_follow_the_seed():
    groups = [f"g{i // 3}" for i in range(30)]
    fold = group_folds(groups, 4, seed=0)
    assert set(fold.tolist()) == {0, 1, 2, 3}
    assert all(len({fold[i] for i in range(30) if groups[i] == g}) == 1 for g in set(groups))
    assert (group_folds(groups, 4, seed=0) == fold).all() and not (group_folds(groups, 4, seed=1) == fold).all()
    with pytest.warns(UserWarning, match="only 2 training groups"):
        fold = group_folds(["a", "a", "b"], 3, seed=0)
    assert fold[0] == fold[1] != fold[2] and set(fold.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="at least 2 training groups"):
        group_folds(["a", "a"], 3, seed=0)


def test_folded_batches_are_the_training_batches_plus_each_maps_fold():
    uv, observed, _ = maps(20, 0, "train")
    fold = torch.arange(20) % 4
    plain = TrainingBatches(uv, observed, HoleSampler(box_holes()), 4, seed=5)
    folded = FoldedBatches(uv, observed, fold, HoleSampler(box_holes()), 4, seed=5)
    for step in (1, 2, 7):
        a, b = plain(step), folded(step)
        assert all(torch.equal(a[k], b[k]) for k in ("uv", "observed", "hole"))
        assert torch.equal(b["fold"], fold[which_maps(b["uv"], torch.ones_like(b["observed"]), uv)])


def test_each_fold_pca_is_fitted_without_its_fold(pca):
    uv, observed, rows = maps(20, 0, "train")
    cross_fit = CrossFittedPCA(pca, uv, observed, rows, folds=4, seed=0).fit(progress=False)
    for f, fold_pca in enumerate(cross_fit.pcas):
        rest = cross_fit.fold != f
        assert 0 < (~rest).sum() < 20
        alone = MaskedPCA(4, max_iter=20).fit(uv[rest], observed[rest], atlas(), progress=False)
        assert torch.equal(fold_pca.components_, alone.components_)
    assert cross_fit.describe()["pca_fills"] == "4-fold cross-fitted"
    assert cross_fit.describe()["fold_sizes"] == torch.bincount(cross_fit.fold).tolist()


def test_a_fold_left_with_few_maps_gets_fewer_components_not_an_error(pca):
    """One long clip (16 of 20 maps) in one fold: the PCA fitted without it sees at most 4 maps, fewer than its
    6 components."""
    uv, observed, rows = maps(20, 0, "train")
    rows = [{**r, "group": "clip" if i < 16 else f"still{i}"} for i, r in enumerate(rows)]
    big = MaskedPCA(6, max_iter=5).fit(uv, observed, atlas(), progress=False)
    with pytest.warns(UserWarning, match="maps outside it, so its PCA has"):
        cross_fit = CrossFittedPCA(big, uv, observed, rows, folds=2, seed=0).fit(progress=False)
    clip_fold = int(cross_fit.fold[0])
    assert cross_fit.pcas[clip_fold].config.n_components == int((cross_fit.fold != clip_fold).sum()) < 6
    assert cross_fit.pcas[1 - clip_fold].config.n_components == 6


# ------------------------------------------------------------------------------- stacked stages

def test_cascade_learns_from_fills_of_pcas_that_never_saw_the_map(pca, tmp_path, monkeypatch):
    ctx = make_ctx(tmp_path)
    cross_fit = CrossFittedPCA(pca, ctx.train_uv, ctx.train_observed, ctx.train_rows, folds=4, seed=0)
    used, extra = [], CascadeTrainer.extra

    def recorded(self, uv_in, known, batch):
        fill = extra(self, uv_in, known, batch)
        used.append((uv_in, known, fill))
        return fill

    monkeypatch.setattr(CascadeTrainer, "extra", recorded)
    train_pconv(ctx, spec(), 2, pca=pca, cross_fit=cross_fit)
    assert used
    in_sample_error = out_of_fold_error = 0.0
    for uv_in, known, fill in used:
        index = which_maps(uv_in, known, ctx.train_uv)
        assert (index >= 0).all()
        truth, hole = ctx.train_uv[index], ctx.train_observed[index] * (1 - known) * atlas()
        in_sample = composite(pca.complete(uv_in, known), uv_in, known)
        for j, i in enumerate(index.tolist()):
            never_saw_it = cross_fit.pcas[int(cross_fit.fold[i])]
            expected = composite(never_saw_it.complete(uv_in[j:j + 1], known[j:j + 1]), uv_in[j:j + 1],
                                 known[j:j + 1])
            assert torch.allclose(fill[j:j + 1], expected, atol=1e-6)
            assert not torch.allclose(fill[j], in_sample[j], atol=1e-3)  # today's fill: the in-sample one
        in_sample_error += float(((in_sample - truth).abs() * hole).sum())
        out_of_fold_error += float(((fill - truth).abs() * hole).sum())
    assert in_sample_error < out_of_fold_error  # why it matters: a PCA fills its own maps too well
    saved = load_model(ctx.out_dir / "model-p.pt")[0]
    assert torch.equal(saved.pca.components_, pca.components_)  # test time: the PCA of all training maps
    assert stacking_record(ctx, "p")["p"]["pca_fills"] == "4-fold cross-fitted"


def test_a_cascade_without_cross_fitting_is_refused(pca, tmp_path):
    with pytest.raises(ValueError, match="cross_fit"):
        train_pconv(make_ctx(tmp_path), spec(), 2, pca=pca)


def test_blend_learns_on_validation_maps_only(pca, tmp_path, monkeypatch):
    ctx = make_ctx(tmp_path)
    torch.manual_seed(0)
    pconv = PConvUNet(PConvUNetConfig(uv_size=S, base_width=4)).eval()
    seen, fills = [], BlendedPCAPConv.fills

    def recorded(self, uv_in, known):
        seen.append((uv_in, known))
        return fills(self, uv_in, known)

    monkeypatch.setattr(BlendedPCAPConv, "fills", recorded)
    train_blend(ctx, pca, pconv, steps=2, batch_size=4, hidden=4, checkpoint_every=2)
    val_uv = ctx.maps("val")[0]
    assert seen and all((which_maps(u, k, val_uv) >= 0).all() for u, k in seen)
    assert all((which_maps(u, k, ctx.train_uv) < 0).all() for u, k in seen)
    assert stacking_record(ctx, "blend")["blend"]["split"] == "val"


def test_gan_refining_the_cascade_learns_on_validation_maps_only(pca, tmp_path, monkeypatch):
    ctx = make_ctx(tmp_path)
    torch.manual_seed(0)
    cascade = PCAPConvCascade(pca, PConvUNet(PConvUNetConfig(uv_size=S, base_width=4, extra_channels=3,
                                                             predict_residual_on_extra=True)).eval())
    seen, call = [], PCAPConvCascade.__call__

    def recorded(self, uv_in, known):
        seen.append((uv_in, known))
        return call(self, uv_in, known)

    monkeypatch.setattr(PCAPConvCascade, "__call__", recorded)
    train_gan(ctx, GANSpec(name="g", base_width=4, epochs=(1,), batch_size=4), 2, cascade=cascade)
    val_uv = ctx.maps("val")[0]
    assert seen and all((which_maps(u, k, val_uv) >= 0).all() for u, k in seen)
    assert stacking_record(ctx, "g_ep1")["g_ep1"]["split"] == "val"


def test_stage_05_gan_on_the_mirror_poisson_fill_learns_a_residual_and_saves_its_own_kind(pca, tmp_path, monkeypatch):
    ctx = make_ctx(tmp_path)
    fills = []

    def stand_in(uv_in, known):   # the real fill needs a mesh UV size (64 and up); here only its wiring counts
        fills.append(uv_in)
        return torch.full_like(uv_in, 0.5)

    monkeypatch.setattr(MirrorPoissonGAN, "first_fill", staticmethod(stand_in))
    gan = GANSpec(name="mpg", base_width=4, epochs=(1,), batch_size=4, first_fill="mirror_poisson")
    completion = train_gan(ctx, gan, 2)["mpg_ep1"]
    assert len(fills) >= len(ctx.train_uv) // 4       # each training step (and sample grid) filled first
    saved = torch.load(ctx.out_dir / "model-mpg_ep1.pt", weights_only=True)
    assert saved["kind"] == "mirror_poisson_gan" and saved["run"]["spec"]["first_fill"] == "mirror_poisson"
    uv_in, known = ctx.train_uv[:2] * ctx.train_observed[:2], ctx.train_observed[:2]
    assert isinstance(completion, MirrorPoissonGAN)
    assert not torch.equal(completion(uv_in, known), completion.fill(uv_in, known))
    with pytest.raises(ValueError, match="takes no first_fill"):
        train_gan(ctx, gan, 2, cascade=PCAPConvCascade(pca, PConvUNet(PConvUNetConfig(
            uv_size=S, base_width=4, extra_channels=3, predict_residual_on_extra=True))))


# ----------------------------------------------------------------------------- one run, one folder

def test_a_changed_spec_retrains_and_keeps_the_old_run(tmp_path):
    ctx = make_ctx(tmp_path)
    train_pconv(ctx, spec(steps=2), 1)
    old = load_model(ctx.out_dir / "model-p.pt")[0](ctx.train_uv[:2] * 0.5, ctx.train_observed[:2])
    with pytest.warns(UserWarning, match=r"another run \(.*spec\.steps: 2 -> 3"):
        train_pconv(ctx, spec(steps=3), 1)
    kept = ctx.out_dir / "train" / "p.superseded-1"
    assert (kept / "model-p.pt").is_file() and (kept / "checkpoints" / "step_00000002.pt").is_file()
    assert torch.equal(load_model(kept / "model-p.pt")[0](ctx.train_uv[:2] * 0.5, ctx.train_observed[:2]), old)
    fresh = make_ctx(tmp_path / "fresh")
    train_pconv(fresh, spec(steps=3), 1)
    for (name, a), b in zip(torch.load(ctx.out_dir / "model-p.pt")["state"].items(),
                            torch.load(fresh.out_dir / "model-p.pt")["state"].values()):
        assert torch.equal(a, b), name  # retrained from scratch, not resumed from the old run's step 2


def test_the_same_run_is_reused_and_every_gan_snapshot_keeps_its_epoch(tmp_path, recwarn):
    ctx = make_ctx(tmp_path)
    train_pconv(ctx, spec(), 1)
    made = (ctx.out_dir / "model-p.pt").stat().st_mtime_ns
    train_pconv(ctx, spec(), 1)
    assert (ctx.out_dir / "model-p.pt").stat().st_mtime_ns == made
    gan = GANSpec(name="g", base_width=4, epochs=(1, 2), batch_size=4)
    first = {name: state_digest(torch.load(ctx.out_dir / f"model-{name}.pt")["state"])
             for name in train_gan(ctx, gan, 2)}
    train_gan(ctx, gan, 2)
    again = {name: state_digest(torch.load(ctx.out_dir / f"model-{name}.pt")["state"]) for name in first}
    assert again == first and first["g_ep1"] != first["g_ep2"]
    assert not [w for w in recwarn if "another run" in str(w.message)]
    assert not list((ctx.out_dir / "train").glob("*.superseded-*"))


def test_gan_hole_weight_reaches_the_pixel_loss_and_a_changed_one_retrains(tmp_path, monkeypatch):
    ctx = make_ctx(tmp_path)
    made, init = [], GANTrainer.__init__

    def recorded(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self.hole_weight)

    monkeypatch.setattr(GANTrainer, "__init__", recorded)
    train_gan(ctx, GANSpec(name="g", base_width=4, epochs=(1,), batch_size=4), 2)
    assert made == [GANSpec().hole_weight] == [6.0]
    assert torch.load(ctx.out_dir / "model-g_ep1.pt")["run"]["spec"]["hole_weight"] == 6.0
    with pytest.warns(UserWarning, match=r"spec\.hole_weight: 6\.0 -> 1\.0"):
        train_gan(ctx, GANSpec(name="g", base_width=4, epochs=(1,), batch_size=4, hole_weight=1.0), 2)
    assert made == [6.0, 1.0]


def test_the_study_s_symmetric_gans_are_unets(tmp_path, monkeypatch):
    made = []

    class Built(Exception):
        pass

    def recorded(cfg):
        made.append(cfg)
        raise Built

    monkeypatch.setattr(recipes, "Generator", recorded)
    ctx = make_ctx(tmp_path)
    for symmetric, unet in ((False, True), (True, True), (True, False)):
        with pytest.raises(Built):
            train_gan(ctx, GANSpec(name="g", base_width=4, epochs=(1,), batch_size=4, symmetric=symmetric,
                                   symmetric_unet=unet), 2)
    assert [(c.symmetric, c.unet) for c in made] == [(False, False), (True, True), (True, False)]


def test_model_files_record_their_training_budget_and_gan_snapshots_add_up(tmp_path):
    ctx = make_ctx(tmp_path)
    train_pconv(ctx, spec(steps=2), 1)
    pconv = torch.load(ctx.out_dir / "model-p.pt", weights_only=True)["budget"]
    assert pconv["images_seen"] == 2 * 4 and pconv["train_seconds"] > 0 and pconv["device"].startswith("cpu")
    train_gan(ctx, GANSpec(name="g", base_width=4, epochs=(1, 2), batch_size=4), 2)
    first, second = (torch.load(ctx.out_dir / f"model-g_ep{e}.pt", weights_only=True)["budget"] for e in (1, 2))
    per_epoch = len(ctx.train_uv) // 4
    assert (first["images_seen"], second["images_seen"]) == (per_epoch * 4, 2 * per_epoch * 4)
    assert second["train_seconds"] > first["train_seconds"] > 0
