import torch

from uvlib.ops import composite, known_texels, masked_mean

S = 8


def test_masked_mean_ignores_texels_outside_the_mask():
    pred, target = torch.rand(2, 3, S, S), torch.rand(2, 3, S, S)
    weight = (torch.rand(2, 1, S, S) > 0.5).float()
    changed = target + (1 - weight) * 100
    assert torch.equal(masked_mean((pred - target).square(), weight), masked_mean((pred - changed).square(), weight))
    expected = ((pred - target) ** 2 * weight).sum() / (3 * weight.sum())
    assert torch.allclose(masked_mean((pred - target).square(), weight), expected)


def test_masked_mean_per_image_and_empty_mask():
    values = torch.rand(2, 3, S, S)
    mask = torch.zeros(2, 1, S, S)
    mask[0, :, :2] = 1
    means = masked_mean(values, mask, per_image=True)
    assert torch.allclose(means[0], values[0, :, :2].mean())
    assert means[1] == 0


def test_known_texels_and_composite():
    observed = torch.ones(1, 1, S, S)
    hole = torch.zeros(1, 1, S, S)
    hole[..., :4] = 1
    atlas = torch.ones(S, S)
    atlas[0] = 0
    known = known_texels(observed, hole, atlas)
    assert known[..., 0, :].sum() == 0 and known[..., 1:, :4].sum() == 0 and known[..., 1:, 4:].all()
    uv, pred = torch.rand(1, 3, S, S), torch.rand(1, 3, S, S)
    out = composite(pred, uv, known)
    assert torch.equal(out[..., 1:, 4:], uv[..., 1:, 4:]) and torch.equal(out[..., :4], pred[..., :4])
