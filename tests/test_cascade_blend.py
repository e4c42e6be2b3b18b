import pytest
import torch

from uvlib.geometry.mesh import uv_atlas
from uvlib.models import registry
from uvlib.models.blend import BlendedPCAPConv, BlendNet
from uvlib.models.cascade import CascadeThenGAN, MirrorPoissonGAN, MirrorPoissonPConvCascade, PCAPConvCascade
from uvlib.models.gan import Generator, GeneratorConfig, PatchDiscriminator
from uvlib.models.mirror_poisson import MirrorPoissonFill
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.train.loop import TrainConfig, train
from uvlib.train.losses import InpaintingLoss
from uvlib.train.trainers import BlendTrainer, CascadeTrainer, GANTrainer, PConvTrainer

S = 16




def atlas():
    a = torch.ones(S, S)
    a[:, :2] = 0
    return a


def random_batch(step, n=4):
    g = torch.Generator().manual_seed(step)
    ramp = torch.linspace(0, 1, S).view(1, 1, 1, S)
    uv = (ramp * torch.rand(n, 3, 1, 1, generator=g) + 0.1 * torch.rand(n, 3, S, S, generator=g)).clamp(0, 1)
    observed = (torch.rand(n, 1, S, S, generator=g) > 0.2).float()
    hole = torch.zeros(n, 1, S, S)
    hole[..., 4:10, 4:10] = 1
    return {"uv": uv, "observed": observed, "hole": hole}


def inputs(batch):
    known = batch["observed"] * (1 - batch["hole"]) * atlas()
    return batch["uv"] * known, known


@pytest.fixture(scope="module")
def pca():
    maps = random_batch(100, n=12)
    return MaskedPCA(n_components=2).fit(maps["uv"], maps["observed"], atlas(), progress=False)


def make_pconv(extra=True):
    torch.manual_seed(0)
    return PConvUNet(PConvUNetConfig(uv_size=S, base_width=4, extra_channels=3 if extra else 0,
                                     predict_residual_on_extra=extra))


def config(tmp_path, name, **kw):
    base = dict(max_steps=2, checkpoint_every=2, sample_every=2, log_every=1,
                seed=3, out_dir=str(tmp_path / name), progress=False)
    return TrainConfig(**{**base, **kw})


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def round_trip(tmp_path, kind, model):
    path = tmp_path / f"model-{kind}.pt"
    registry.save_model(path, kind, S, *model.state())
    fn, info = registry.load_model(path)
    assert info["kind"] == kind and info["uv_size"] == S
    return fn


def trained_cascade(pca, tmp_path):
    cascade = PCAPConvCascade(pca, make_pconv())
    stage = CascadeTrainer(cascade, InpaintingLoss({"perceptual": 0.0, "style": 0.0}), 1e-3, atlas=atlas())
    last = train(stage, random_batch, config(tmp_path, "cascade"))
    return cascade, last


def test_untrained_cascade_returns_the_pca_fill(pca):
    uv_in, known = inputs(random_batch(0))
    out = PCAPConvCascade(pca, make_pconv())(uv_in, known)
    assert out.shape == uv_in.shape and 0 <= out.min() and out.max() <= 1
    hole = (1 - known).bool().expand_as(out)
    assert torch.equal(out[hole], pca.complete(uv_in, known)[hole])
    assert torch.equal(out * known, uv_in)


def test_cascade_trains_only_the_pconv_and_round_trips(pca, tmp_path):
    components = pca.components_.clone()
    before = params(make_pconv())
    cascade, last = trained_cascade(pca, tmp_path)
    assert last["step"] == 2 and last["total"] > 0
    assert changed(before, cascade.pconv) and torch.equal(pca.components_, components)
    uv_in, known = inputs(random_batch(1))
    out = cascade(uv_in, known)
    assert not torch.equal(out, PCAPConvCascade(pca, make_pconv())(uv_in, known))
    assert cascade.pconv.training  # the completion ran in eval mode and left the flag as it was
    assert torch.equal(PCAPConvCascade.from_state(*cascade.state(), "cpu")(uv_in, known), out)
    assert torch.equal(round_trip(tmp_path, "pca_pconv", cascade)(uv_in, known), out)


def test_cascade_then_gan(pca, tmp_path):
    cascade = PCAPConvCascade(pca, make_pconv())
    torch.manual_seed(1)
    generator = Generator(GeneratorConfig(uv_size=S, base_width=4, bottleneck=16, extra_channels=3))
    model = CascadeThenGAN(cascade, generator)
    uv_in, known = inputs(random_batch(2))
    out = model(uv_in, known)
    assert out.shape == uv_in.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out * known, uv_in)
    assert torch.equal(CascadeThenGAN.from_state(*model.state(), "cpu")(uv_in, known), out)
    assert torch.equal(round_trip(tmp_path, "pca_pconv_gan", model)(uv_in, known), out)
    with pytest.raises(ValueError, match="extra_channels=3"):
        CascadeThenGAN(cascade, Generator(GeneratorConfig(uv_size=S, base_width=4)))


def test_wrong_models_raise(pca):
    with pytest.raises(ValueError, match="predict_residual_on_extra=True"):
        PCAPConvCascade(pca, make_pconv(extra=False))
    with pytest.raises(ValueError, match="no extra channels"):
        BlendedPCAPConv(pca, make_pconv(extra=True), BlendNet(4))
    with pytest.raises(ValueError, match="not fitted"):
        PCAPConvCascade(MaskedPCA(2), make_pconv())


def test_blend_weight_and_forced_pca(pca):
    uv_in, known = inputs(random_batch(3))
    model = BlendedPCAPConv(pca, make_pconv(extra=False), BlendNet(hidden=4))
    pca_fill, pconv_fill = model.fills(uv_in, known)
    torch.manual_seed(2)
    torch.nn.init.normal_(model.blend.head.weight)
    weight, residual = model.blend.mix(pca_fill, pconv_fill, uv_in, known)
    assert weight.shape == known.shape and 0 <= weight.min() and weight.max() <= 1 and weight.std() > 0
    assert residual.shape == uv_in.shape and residual.abs().max() <= 0.1
    with torch.no_grad():
        torch.nn.init.zeros_(model.blend.head.weight)
        model.blend.head.bias.copy_(torch.tensor([100.0, 0, 0, 0]))  # w = sigmoid(100) = 1, residual 0
    hole = (1 - known).bool().expand_as(uv_in)
    assert torch.equal(model(uv_in, known)[hole], pca_fill[hole])


def test_blend_stage_trains_only_the_blend_and_round_trips(pca, tmp_path):
    model = BlendedPCAPConv(pca, make_pconv(extra=False), BlendNet(hidden=4))
    pconv_before, blend_before = params(model.pconv), params(model.blend)
    batch = random_batch(0)
    stage = BlendTrainer(model, atlas(), lr=1e-2)
    last = train(stage, random_batch, config(tmp_path, "blend"), sample_fn=lambda st, step: st.sample(batch))
    assert {"total", "hole", "known", "lr"} <= set(last) and last["total"] > 0
    assert changed(blend_before, model.blend) and not changed(pconv_before, model.pconv)
    uv_in, known = inputs(random_batch(4))
    out = model(uv_in, known)
    assert out.shape == uv_in.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(BlendedPCAPConv.from_state(*model.state(), "cpu")(uv_in, known), out)
    assert torch.equal(round_trip(tmp_path, "blend", model)(uv_in, known), out)


FACE = 64   # the mirror-Poisson fill reads the mesh's atlas and mirror map, made for 64 px and up


def half_seen_faces():
    """Two random maps seen on the left half of the face atlas, and training batches with that hole."""
    face_atlas = torch.from_numpy(uv_atlas(FACE).mask).float()
    uv = torch.rand(2, 3, FACE, FACE, generator=torch.Generator().manual_seed(1))
    known = (face_atlas * (torch.arange(FACE) < FACE // 2).float()).expand(2, 1, FACE, FACE).contiguous()

    def batches(step):
        g = torch.Generator().manual_seed(step)
        return {"uv": torch.rand(2, 3, FACE, FACE, generator=g), "observed": torch.ones(2, 1, FACE, FACE),
                "hole": 1 - known}
    return face_atlas, uv * known, known, batches


def pconv_on_mirror_poisson(face_atlas):
    """(completion, its trainer, a constructor call that must refuse a network without the fill's channels)"""
    pconv = PConvUNet(PConvUNetConfig(uv_size=FACE, base_width=4, extra_channels=3, predict_residual_on_extra=True))
    cascade = MirrorPoissonPConvCascade(pconv)
    trainer = PConvTrainer(pconv, InpaintingLoss({"perceptual": 0.0, "style": 0.0}), 1e-2, atlas=face_atlas,
                           extra_fn=cascade.fill)
    return cascade, trainer, lambda: MirrorPoissonPConvCascade(PConvUNet(PConvUNetConfig(uv_size=FACE, base_width=4)))


def gan_on_mirror_poisson(face_atlas):
    generator = Generator(GeneratorConfig(uv_size=FACE, base_width=4, bottleneck=16, extra_channels=3,
                                          predict_residual_on_extra=True))
    model = MirrorPoissonGAN(generator)
    trainer = GANTrainer(generator, PatchDiscriminator(FACE, base_width=4), face_atlas, lr=1e-2, hole_weight=6.0,
                         extra_fn=model.fill)
    return model, trainer, lambda: MirrorPoissonGAN(Generator(GeneratorConfig(uv_size=FACE, base_width=4)))


@pytest.mark.parametrize("kind, build", [("mirror_poisson_pconv", pconv_on_mirror_poisson),
                                         ("mirror_poisson_gan", gan_on_mirror_poisson)])
def test_untrained_refiner_of_the_mirror_poisson_fill_is_the_baseline_and_a_trained_one_round_trips(kind, build,
                                                                                                     tmp_path):
    face_atlas, uv_in, known, batches = half_seen_faces()
    torch.manual_seed(0)
    model, trainer, without_fill_channels = build(face_atlas)
    baseline = MirrorPoissonFill()(uv_in, known)
    assert torch.allclose(model(uv_in, known), torch.where(known.bool(), uv_in, baseline))
    train(trainer, batches, config(tmp_path, kind))
    trained = model(uv_in, known)
    assert not torch.allclose(trained, model.fill(uv_in, known))     # the residual learned something
    assert torch.equal(trained * known, uv_in)
    path = tmp_path / f"model-{kind}.pt"
    registry.save_model(path, kind, FACE, *model.state())
    fn, info = registry.load_model(path)
    assert info["kind"] == kind and torch.equal(fn(uv_in, known), trained)
    with pytest.raises(ValueError, match="extra_channels=3"):
        without_fill_channels()
