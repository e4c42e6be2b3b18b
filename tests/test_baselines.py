import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from uvlib.geometry.mesh import uv_atlas
from uvlib.geometry.mirror import mirror_texels
from uvlib.models.mean_face import MeanFace
from uvlib.models.mirror_poisson import MirrorPoissonFill, mirror_poisson_fill
from uvlib.protocol.baselines import OpenCVInpaint, SymmetryFill, make_baselines


def hand_made_observations():
    """Two 1x2 maps: texel 0 seen in both (0.2 and 0.6), texel 1 seen only in the first (0.4)."""
    uv = torch.tensor([[0.2, 0.4], [0.6, 0.9]]).view(2, 1, 1, 2).repeat(1, 3, 1, 1)
    observed = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(2, 1, 1, 2)
    return uv, observed


def test_mean_face_averages_observed_texels_only():
    uv, observed = hand_made_observations()
    mean = MeanFace().fit(uv, observed, torch.ones(1, 2)).mean
    assert torch.allclose(mean[:, 0, 0], torch.tensor(0.4))
    assert torch.allclose(mean[:, 0, 1], torch.tensor(0.4))


def test_mean_face_falls_back_to_global_mean_and_ignores_outside_atlas():
    uv = torch.tensor([0.2, 0.8, 0.5]).view(1, 1, 1, 3).repeat(2, 3, 1, 1)
    observed = torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3).repeat(2, 1, 1, 1)
    atlas = torch.tensor([[True, False, True]])  # texel 1 observed but outside: never counts
    mean = MeanFace().fit(uv, observed, atlas).mean
    assert torch.allclose(mean[:, 0], torch.tensor(0.2))


def test_mean_face_chunking_and_state_dict_round_trip():
    generator = torch.Generator().manual_seed(0)
    uv = torch.rand(10, 3, 4, 4, generator=generator)
    observed = (torch.rand(10, 1, 4, 4, generator=generator) > 0.3).float()
    atlas = torch.ones(4, 4)
    whole = MeanFace().fit(uv, observed, atlas, chunk_size=100)
    chunked = MeanFace().fit(uv.numpy(), observed.numpy(), atlas, chunk_size=3)
    assert torch.allclose(whole.mean, chunked.mean, atol=1e-6)
    restored = MeanFace.from_state_dict(chunked.state_dict())
    out = restored(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))
    assert out.shape == (2, 3, 4, 4) and torch.equal(out[1], chunked.mean)


def test_mean_face_errors():
    with pytest.raises(ValueError, match="not fitted"):
        MeanFace()(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="no observed"):
        MeanFace().fit(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(2, 2))


def test_symmetry_fills_from_known_mirror_else_mean():
    mean_face = MeanFace(mean=torch.full((3, 2, 4), 0.5))
    uv_in = torch.zeros(1, 3, 2, 4)
    known = torch.zeros(1, 1, 2, 4)
    uv_in[0, :, 0, 3] = torch.tensor([0.1, 0.2, 0.3])  # right texel known; its mirror (0, 0) hidden
    known[0, 0, 0, 3] = 1
    out = SymmetryFill(mean_face)(uv_in, known)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(out[0, :, 0, 3], uv_in[0, :, 0, 3])
    assert torch.all(out[0, :, 1] == 0.5)  # no known mirror on row 1: mean face
    assert torch.all(out[0, :, 0, 1:3] == 0.5)


def smooth_gradient(size=32):
    ramp = torch.linspace(0.1, 0.9, size)
    return torch.stack([ramp.view(1, -1).expand(size, size), ramp.view(-1, 1).expand(size, size), torch.full((size, size), 0.5)])[None]


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_opencv_inpaint_fills_smooth_gradient(method):
    truth = smooth_gradient()
    known = torch.ones(1, 1, 32, 32)
    known[..., 12:18, 3:9] = 0
    known[..., :, :3] = 0  # an unknown black border next to the hole must not bleed into it
    out = OpenCVInpaint(method)(truth * known, known)
    assert out.shape == truth.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    hole = known.expand_as(truth) == 0
    hole[..., :, :3] = False
    error = (out - truth)[hole].abs()
    assert error.mean() < 0.03 and error.max() < 0.1  # black bleeding in gives mean > 0.07


def test_opencv_inpaint_rejects_unknown_method():
    with pytest.raises(ValueError, match="telea"):
        OpenCVInpaint("fast")


def test_make_baselines_gives_the_five_named_completions():
    uv = torch.rand(4, 3, 64, 64)
    observed = torch.ones(4, 1, 64, 64)
    baselines = make_baselines(uv, observed, torch.ones(64, 64))
    assert list(baselines) == ["mean_face", "symmetry", "telea", "navier_stokes", "mirror_poisson"]
    known = torch.ones(2, 1, 64, 64)
    known[..., 20:40, 5:25] = 0
    for fn in baselines.values():
        out = fn(uv[:2] * known, known)
        assert out.shape == (2, 3, 64, 64)
        assert np.isfinite(out.numpy()).all()


SIZE = 64


def cheek_holes():
    """The atlas, and its texels at least 3 texels inside it on the image-left, away from the midline (a hole)."""
    atlas = uv_atlas(SIZE).mask
    cols = np.arange(SIZE)[None, :]
    return atlas, binary_erosion(atlas, iterations=3) & (cols < SIZE // 2 - 4)


def test_mirror_poisson_reproduces_a_linear_gradient_where_the_mirror_is_hidden_too():
    atlas, left = cheek_holes()
    rows, cols = np.mgrid[:SIZE, :SIZE]
    truth = np.stack([0.2 + 0.01 * rows, 0.9 - 0.008 * cols, 0.3 + 0.004 * (rows + cols)], axis=-1)
    hole = left | left[:, ::-1]                       # both cheeks hidden: no mirror to copy, diffusion only
    known = atlas & ~hole
    out = mirror_poisson_fill(np.where(known[..., None], truth, 0), known, atlas, mirror_texels(SIZE))
    assert np.abs(out - truth)[hole].max() < 1e-4
    assert np.array_equal(out[known], truth[known])


def test_mirror_poisson_is_the_mirrored_colour_shifted_by_the_boundary_offset():
    atlas, left = cheek_holes()
    mirror = mirror_texels(SIZE)
    rng = np.random.default_rng(0)
    image = rng.random((SIZE, SIZE, 3))               # texture on the right cheek, seen
    source = atlas & (np.arange(SIZE)[None, :] >= SIZE // 2)
    mirrored, _ = mirror.sample(image, source.astype(float))
    offset = np.array([0.1, -0.05, 0.2])
    left_side = atlas & ~source
    image[left_side] = mirrored[left_side] + offset   # the left cheek: the right one mirrored, in other light
    known = atlas & ~left
    out = mirror_poisson_fill(np.where(known[..., None], image, 0), known, atlas, mirror)
    assert np.abs(out - image)[left].max() < 1e-4
    plain = np.where(known[..., None], image, mirrored)   # a plain mirror copy misses the offset
    assert np.abs(plain - image)[left].max() > 0.04


def test_mirror_poisson_baseline_fills_only_the_holes_and_keeps_values_in_range():
    atlas, left = cheek_holes()
    uv = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    known = torch.from_numpy(atlas & ~left).float().expand(3, 1, SIZE, SIZE).clone()
    known[1] = 0                                      # nothing seen: the fill is still finite
    out = MirrorPoissonFill()(uv * known, known)
    assert out.shape == uv.shape and out.dtype == uv.dtype and out.min() >= 0 and out.max() <= 1
    seen = known.expand_as(uv) > 0.5
    assert torch.equal(out[seen], uv[seen])
