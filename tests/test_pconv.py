import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from uvlib.models.pconv import PartialConv2d, PConvUNet, PConvUNetConfig, freeze_encoder_bn


def make_pconv(in_ch, out_ch, k, padding=0, dilation=1, multi_channel=False, seed=0):
    torch.manual_seed(seed)
    return PartialConv2d(in_ch, out_ch, k, 1, padding, dilation, True, multi_channel=multi_channel)


def plain_conv(pconv):
    return lambda x: F.conv2d(x, pconv.weight, pconv.bias, pconv.stride, pconv.padding, pconv.dilation)


def test_all_ones_mask_equals_conv2d():
    pconv = make_pconv(3, 5, 3)
    x = torch.randn(2, 3, 9, 9)
    out, mask = pconv(x, torch.ones(2, 1, 9, 9))
    torch.testing.assert_close(out, plain_conv(pconv)(x))
    assert torch.equal(mask, torch.ones(2, 1, 7, 7))


def test_padding_counts_as_hole_only_at_the_border():
    pconv = make_pconv(2, 4, 3, padding=1)
    x = torch.randn(1, 2, 6, 6)
    out, mask = pconv(x, torch.ones(1, 1, 6, 6))
    raw = plain_conv(pconv)(x) - pconv.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], (raw + pconv.bias.view(1, -1, 1, 1))[..., 1:-1, 1:-1])
    torch.testing.assert_close(out[..., 0, 0], raw[..., 0, 0] * 9 / 4 + pconv.bias.view(1, -1))
    torch.testing.assert_close(out[..., 0, 3], raw[..., 0, 3] * 9 / 6 + pconv.bias.view(1, -1))
    assert torch.equal(mask, torch.ones(1, 1, 6, 6))


def test_renormalisation_factor_by_hand_3x3():
    pconv = make_pconv(1, 1, 3)
    with torch.no_grad():
        pconv.weight.copy_(torch.arange(1.0, 10.0).view(1, 1, 3, 3))
        pconv.bias.fill_(0.5)
    x = torch.arange(10.0, 19.0).view(1, 1, 3, 3)
    m = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]]).view(1, 1, 3, 3)  # 4 of 9 valid
    out, mask = pconv(x, m)
    by_hand = (1 * 10 + 3 * 12 + 5 * 14 + 9 * 18) * 9 / 4 + 0.5
    assert out.item() == pytest.approx(by_hand)
    assert mask.item() == 1.0


def test_multi_channel_mask_counts_per_channel():
    pconv = make_pconv(2, 3, 3, multi_channel=True)
    x = torch.randn(1, 2, 3, 3)
    m = torch.zeros(1, 2, 3, 3)
    m[0, 0, 0, :] = 1          # 3 texels valid in channel 0
    m[0, 1, 1, 1:] = 1         # 2 texels valid in channel 1
    out, _ = pconv(x, m)
    raw = F.conv2d(x * m, pconv.weight)
    torch.testing.assert_close(out, raw * 18 / 5 + pconv.bias.view(1, -1, 1, 1))


def test_single_channel_mask_equals_expanded_multi_channel_mask():
    single, multi = make_pconv(3, 4, 3, padding=1), make_pconv(3, 4, 3, padding=1, multi_channel=True)
    x, m = torch.randn(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    out_s, mask_s = single(x, m)
    out_m, mask_m = multi(x, m.expand(-1, 3, -1, -1))
    torch.testing.assert_close(out_s, out_m)
    assert torch.equal(mask_s, mask_m)


def test_no_valid_input_gives_zero_output_and_zero_mask():
    pconv = make_pconv(1, 2, 3, padding=1)
    with torch.no_grad():
        pconv.bias.fill_(3.0)
    m = torch.ones(1, 1, 9, 9)
    m[..., 2:7, 2:7] = 0
    out, mask = pconv(torch.randn(1, 1, 9, 9), m)
    assert torch.all(out[..., 3:6, 3:6] == 0) and torch.all(mask[..., 3:6, 3:6] == 0)
    assert torch.all(mask[..., 2, 2:7] == 1)
    assert not mask.requires_grad


def test_holes_shrink_layer_by_layer():
    pconv = make_pconv(1, 1, 3, padding=1)
    x, m = torch.randn(1, 1, 16, 16), torch.ones(1, 1, 16, 16)
    m[..., 3:12, 3:12] = 0
    holes = [int((m == 0).sum())]
    while holes[-1] > 0:
        x, m = pconv(x, m)
        holes.append(int((m == 0).sum()))
    assert holes == [81, 49, 25, 9, 1, 0]


def test_dilation_ignores_texels_between_taps():
    pconv = make_pconv(1, 2, 3, dilation=2)
    x = torch.randn(1, 1, 5, 5)
    m = torch.ones(1, 1, 5, 5)
    m[..., 1::2, :] = 0  # rows the dilated taps never read
    out, mask = pconv(x, m)
    torch.testing.assert_close(out, plain_conv(pconv)(x))
    m[..., 2, 2] = 0  # the centre tap: 8 of 9 valid
    out, _ = pconv(x, m)
    raw = F.conv2d(x * m, pconv.weight, dilation=2)
    torch.testing.assert_close(out, raw * 9 / 8 + pconv.bias.view(1, -1, 1, 1))


def test_bad_mask_shape_raises():
    with pytest.raises(ValueError, match="mask"):
        make_pconv(3, 4, 3)(torch.randn(1, 3, 8, 8), torch.ones(1, 3, 8, 8))


def tiny(uv_size, **kw):
    torch.manual_seed(0)
    return PConvUNet(PConvUNetConfig(uv_size=uv_size, base_width=4, **kw))


@pytest.mark.parametrize("uv_size,levels", [(64, 6), (128, 7)])
@pytest.mark.parametrize("dilated", [False, True])
def test_unet_shapes_depth_and_range(uv_size, levels, dilated):
    model = tiny(uv_size, dilated=dilated)
    assert len(model.encoder) == levels
    uv, known = torch.rand(2, 3, uv_size, uv_size), (torch.rand(2, 1, uv_size, uv_size) > 0.3).float()
    out = model(uv * known, known)
    assert out.shape == uv.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("train_mode", [True, False])
def test_unknown_texels_do_not_change_the_output(train_mode):
    model = tiny(64, dilated=True).train(train_mode)
    uv, known = torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    other = torch.where(known.bool(), uv, torch.rand_like(uv) * 100)
    assert torch.equal(model(uv, known), model(other, known))


def test_extra_channels_and_residual_start_from_the_fill():
    model = tiny(64, extra_channels=3, predict_residual_on_extra=True)
    uv, known, fill = torch.rand(2, 3, 64, 64), torch.ones(2, 1, 64, 64), torch.rand(2, 3, 64, 64)
    assert torch.equal(model(uv, known, fill), fill)
    with pytest.raises(ValueError, match="extra"):
        model(uv, known)


def test_bad_config_and_inputs_raise():
    with pytest.raises(ValueError, match="uv_size"):
        tiny(100)
    with pytest.raises(ValueError, match="predict_residual_on_extra"):
        tiny(64, predict_residual_on_extra=True)
    with pytest.raises(ValueError, match="known"):
        tiny(64)(torch.rand(1, 3, 64, 64), torch.ones(1, 3, 64, 64))


def test_freeze_encoder_bn_keeps_encoder_stats_fixed():
    model = freeze_encoder_bn(tiny(64, dilated=True).train())
    enc_bns = model.encoder_batchnorms()
    dec_bns = [m for m in model.decoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert enc_bns and all(not bn.training for bn in enc_bns) and all(bn.training for bn in dec_bns)
    assert all(not p.requires_grad for bn in enc_bns for p in bn.parameters())
    before = [bn.running_mean.clone() for bn in enc_bns]
    model.train()(torch.rand(2, 3, 64, 64), torch.ones(2, 1, 64, 64))
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, enc_bns))
