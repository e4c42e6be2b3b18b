"""Symmetry-aware inputs: the mirrored map and its visibility, fed to PConv, the GAN and the blend."""
from dataclasses import asdict

import numpy as np
import pytest
import torch

from uvlib.geometry.mesh import uv_atlas
from uvlib.geometry.mirror import mirror_texels
from uvlib.models import registry
from uvlib.models.blend import BlendedPCAPConv, BlendNet
from uvlib.models.gan import Generator, GeneratorConfig
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.models.symmetry import MirrorInputs
from uvlib.study.recipes import GANSpec, PConvSpec
from uvlib.study.stages import gan_specs, stage_parameters

S = 64


def half_face(seed=0, n=2):
    """Random maps seen on the left half of the atlas only."""
    atlas = torch.from_numpy(uv_atlas(S).mask).float()
    uv = torch.rand(n, 3, S, S, generator=torch.Generator().manual_seed(seed))
    known = (atlas * (torch.arange(S) < S // 2 - 2).float()).expand(n, 1, S, S).contiguous()
    return uv * known, known


def test_mirror_inputs_equal_the_sparse_mirror_sampler():
    uv_in, known = half_face()
    out = MirrorInputs(S)(uv_in, known)
    assert out.shape == (2, 4, S, S)
    mirror = mirror_texels(S)
    for i in range(2):
        colour, weight = mirror.sample(uv_in[i].permute(1, 2, 0).double().numpy(), known[i, 0].double().numpy())
        seen = weight > 1e-6
        assert np.allclose(out[i, 3].numpy(), weight, atol=1e-5)
        assert np.allclose(out[i, :3].permute(1, 2, 0).numpy()[seen], colour[seen], atol=1e-4)
        assert (out[i, :3].permute(1, 2, 0).numpy()[~seen] == 0).all()


def test_mirror_inputs_carry_the_seen_side_onto_the_hidden_side():
    uv_in, known = half_face()
    out = MirrorInputs(S)(uv_in, known)
    atlas = uv_atlas(S).mask
    right = torch.from_numpy(atlas & (np.arange(S) > S // 2 + 2)[None, :])
    assert out[:, 3][:, right].mean() > 0.9                  # the hidden right half sees its mirror on the left
    assert (out[:, 3][known[:, 0].bool()] == 0).all()        # the left half's mirrors were not seen


def symmetric_pconv(**kw):
    torch.manual_seed(0)
    return PConvUNet(PConvUNetConfig(uv_size=S, base_width=4, symmetric=True, **kw)).eval()


def test_a_symmetric_pconv_reads_the_mirror_and_still_ignores_unknown_texels():
    uv_in, known = half_face()
    model = symmetric_pconv()
    out = model(uv_in, known)
    assert out.shape == (2, 3, S, S)
    noisy = torch.where(known.bool(), uv_in, torch.rand_like(uv_in) * 100)
    assert torch.equal(model(noisy, known), out)              # hidden texels never leak in
    plain = PConvUNet(PConvUNetConfig(uv_size=S, base_width=4)).eval()
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in plain.parameters())


def test_symmetric_models_round_trip_through_model_files(tmp_path):
    uv_in, known = half_face()
    model = symmetric_pconv()
    path = tmp_path / "model-pconv_sym.pt"
    registry.save_model(path, "pconv", S, asdict(model.cfg), model.state_dict())
    fn, info = registry.load_model(path)
    assert info["config"]["symmetric"] and torch.equal(fn(uv_in, known), model.complete(uv_in, known))

    for unet in (False, True):
        torch.manual_seed(0)
        generator = Generator(GeneratorConfig(uv_size=S, base_width=4, symmetric=True, unet=unet)).eval()
        registry.save_model(tmp_path / "model-gan_sym.pt", "gan", S, asdict(generator.cfg), generator.state_dict())
        fn, info = registry.load_model(tmp_path / "model-gan_sym.pt")
        assert info["config"]["unet"] == unet
        assert torch.equal(fn(uv_in, known), generator(uv_in, known))

    maps, observed = torch.rand(8, 3, S, S), torch.ones(8, 1, S, S)
    pca = MaskedPCA(n_components=2).fit(maps, observed, torch.from_numpy(uv_atlas(S).mask).float(), progress=False)
    blended = BlendedPCAPConv(pca, PConvUNet(PConvUNetConfig(uv_size=S, base_width=4)).eval(),
                              BlendNet(hidden=4, symmetric=True, uv_size=S).eval())
    torch.nn.init.normal_(blended.blend.head.weight)          # a blend that is not the plain average
    registry.save_model(tmp_path / "model-blend_sym.pt", "blend", S, *blended.state())
    fn, _ = registry.load_model(tmp_path / "model-blend_sym.pt")
    assert torch.equal(fn(uv_in, known), blended(uv_in, known))


def mirrored_targets(seed, n=8):
    """Half-seen random maps whose hidden half is the mirror of the seen half, and the hidden texels whose mirror
    was fully seen."""
    uv_in, known = half_face(seed, n)
    mirrored = MirrorInputs(S)(uv_in, known)
    atlas = torch.from_numpy(uv_atlas(S).mask).float()
    hidden = (atlas * (1 - known) * (mirrored[:, 3:] > 0.99)).expand(n, 3, S, S)
    return uv_in, known, mirrored[:, :3], hidden


def test_only_the_unet_gan_generator_can_copy_the_seen_cheek():
    """A texel-exact copy of random texture cannot pass the 1x1 bottleneck; through the U-Net's full-resolution
    head it is learned in a few dozen steps."""
    errors = {}
    for unet in (False, True):
        torch.manual_seed(0)
        generator = Generator(GeneratorConfig(uv_size=S, base_width=4, symmetric=True, unet=unet))
        optimiser = torch.optim.Adam(generator.parameters(), lr=3e-3)
        for step in range(60):
            uv_in, known, target, hidden = mirrored_targets(step)
            loss = ((generator(uv_in, known) - target) ** 2 * hidden).sum() / hidden.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        uv_in, known, target, hidden = mirrored_targets(1000)
        with torch.no_grad():
            errors[unet] = float(((generator.eval()(uv_in, known) - target) ** 2 * hidden).sum() / hidden.sum())
    assert errors[False] > 0.06          # about the variance of uniform noise: the bottleneck predicts its mean
    assert errors[True] < errors[False] / 2


def test_a_residual_unet_generator_starts_at_its_extra_input_and_reads_every_encoder_level():
    uv_in, known = half_face()
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(uv_size=S, base_width=4, extra_channels=3, predict_residual_on_extra=True,
                                          symmetric=True, unet=True))
    extra = torch.rand(2, 3, S, S)
    assert torch.equal(generator(uv_in, known, extra), extra)
    torch.nn.init.normal_(generator.head[-1].weight)
    uv_in.requires_grad_(True)
    generator(uv_in, known, extra).sum().backward()
    levels = [layer for layer in generator.decoder if isinstance(layer, torch.nn.ConvTranspose2d)]
    assert [layer.in_channels for layer in levels[1:]] == [2 * layer.out_channels for layer in levels[:-1]]
    assert uv_in.grad.abs().sum() > 0


def test_a_symmetric_blend_needs_the_map_size():
    with pytest.raises(ValueError, match="uv_size"):
        BlendNet(hidden=4, symmetric=True)


def test_stage_variants_name_the_symmetric_rows_and_refuse_unknown_ones():
    p = {**stage_parameters("05_gan", {}), "gan_variants": ["plain", "symmetric"]}
    specs = gan_specs("gan", p)
    assert [(s.name, s.symmetric) for s in specs] == [("gan", False), ("gan_sym", True)]
    for bad in (["mirrored"], []):
        with pytest.raises(ValueError, match="gan_variants"):
            gan_specs("gan", {**p, "gan_variants": bad})
    specs = gan_specs("gan", p, ["none", "mirror_poisson"])
    assert [(s.name, s.symmetric, s.first_fill) for s in specs] == [
        ("gan", False, "none"), ("gan_sym", True, "none"),
        ("mirror_poisson_gan", False, "mirror_poisson"), ("mirror_poisson_gan_sym", True, "mirror_poisson")]
    for bad in (["pca"], []):
        with pytest.raises(ValueError, match="gan_first_fills"):
            gan_specs("gan", p, bad)
    with pytest.raises(ValueError, match="first_fill"):
        GANSpec(first_fill="pca")
    with pytest.raises(ValueError, match="first_fill"):
        PConvSpec(first_fill="pca")
