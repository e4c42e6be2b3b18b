"""Partial-convolution U-Net for UV-map completion (Liu et al., ECCV 2018).

A partial convolution sees only the valid (mask = 1) inputs of each window and rescales by
sum(1)/sum(M), so the hole values never leak into the output; its output mask is 1 wherever the
window saw at least one valid input, so holes shrink layer by layer.

Choices that differ from, or are silent in, the paper (all documented here once):
- Zero padding counts as hole (NVIDIA's "partial convolution based padding"): border windows are
  renormalised like windows touching a hole. With an all-ones mask and no padding a PartialConv2d
  is exactly nn.Conv2d; with padding it equals nn.Conv2d away from the border.
- Depth follows the map size: log2(uv_size) stride-2 levels, so the bottleneck is 1x1
  (64 -> 6, 128 -> 7, 256 -> 8 levels). Widths are base, 2b, 4b, 8b, 8b, ... as in the paper,
  kernels 7, 5, 5, 3, 3, ...
- Dilated variant: a DenseASPP block of partial convolutions (rates 3/6/12/18/24, densely
  connected) after encoder level 2, i.e. at 1/4 resolution (32 px for a 128 map). Deeper levels
  are too small for such rates; taps that fall beyond the border land in padding, which partial
  convolution treats as hole and simply ignores.
- Output: the last layer is linear; a sigmoid maps it to [0, 1]. With predict_residual_on_extra
  the output is clamp(extra + residual, 0, 1) and the last layer starts at zero, so an untrained
  model returns the extra fill (e.g. PCA) unchanged.
- symmetric: the mirrored map and its mirrored visibility (uvlib.models.symmetry) enter as four more
  always-known channels, so the network can copy the seen cheek onto the hidden one.
- forward returns the raw prediction everywhere (the valid loss needs it); complete() pastes the
  known texels back (the composite).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from uvlib.models.symmetry import MIRROR_CHANNELS, MirrorInputs
from uvlib.ops import composite

DENSE_ASPP_RATES = (3, 6, 12, 18, 24)
DENSE_ASPP_LEVEL = 2


class PartialConv2d(nn.Conv2d):
    """Conv2d on the valid inputs only, renormalised by sum(1)/sum(M); returns (output, new_mask).

    mask: (N, 1, H, W) when multi_channel is False (shared by all channels), (N, C_in, H, W) when
    True. The new mask has one channel: every output channel sees the same window, so it is the
    same for all of them.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, multi_channel=False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
        self.multi_channel = multi_channel
        self.window_size = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.register_buffer("ones_kernel", torch.ones(1, 1, *self.kernel_size), persistent=False)

    def forward(self, x, mask):
        want = self.in_channels if self.multi_channel else 1
        if mask.dim() != 4 or mask.shape[1] != want or mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"PartialConv2d mask has shape {tuple(mask.shape)}; pass (N, {want}, "
                             f"{x.shape[-2]}, {x.shape[-1]}) (multi_channel={self.multi_channel})")
        count = mask.sum(1, keepdim=True) if self.multi_channel else mask * self.in_channels
        return self.forward_masked(x * mask.to(x.dtype), count)

    def forward_masked(self, x_masked, valid_count):
        """x_masked: input already multiplied by its mask; valid_count: (N, 1, H, W) number of
        valid input channels at each texel. Lets the U-Net skip building wide per-channel masks."""
        with torch.no_grad(), torch.autocast(x_masked.device.type, enabled=False):
            # fp32 on purpose: window sums reach C_in*k*k, beyond bf16's exact integers
            valid = F.conv2d(valid_count.float(), self.ones_kernel, None, self.stride,
                             self.padding, self.dilation)
            new_mask = (valid > 0).float()
            ratio = self.window_size / valid.clamp(min=1e-8) * new_mask
        out = F.conv2d(x_masked, self.weight, None, self.stride, self.padding, self.dilation)
        out = out * ratio.to(out.dtype)  # ratio is 0 where the window saw nothing valid
        if self.bias is not None:
            out = torch.addcmul(out, self.bias.view(1, -1, 1, 1).to(out.dtype), new_mask.to(out.dtype))
        return out, new_mask


def masked_concat(groups):
    """[(features, mask (N,1,H,W)), ...] -> (masked features concatenated, valid channel count)."""
    x = torch.cat([f * m.to(f.dtype) for f, m in groups], dim=1)
    count = sum(f.shape[1] * m for f, m in groups)
    return x, count


def upsample2(t):
    return F.interpolate(t, scale_factor=2, mode="nearest")


class PConvBlock(nn.Module):
    """PartialConv2d -> optional BatchNorm -> optional activation, on grouped (features, mask)."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, dilation=1, bn=True, act="relu"):
        super().__init__()
        padding = dilation * (kernel // 2)
        self.conv = PartialConv2d(in_ch, out_ch, kernel, stride, padding, dilation, bias=not bn,
                                  multi_channel=True)
        self.bn = nn.BatchNorm2d(out_ch) if bn else nn.Identity()
        self.act = {"relu": nn.ReLU(), "leaky": nn.LeakyReLU(0.2), None: nn.Identity()}[act]

    def forward(self, groups):
        x, count = masked_concat(groups)
        out, mask = self.conv.forward_masked(x, count)
        return self.act(self.bn(out)), mask


class DenseASPP(nn.Module):
    """Densely connected atrous partial convolutions (Yang et al., CVPR 2018), fused back to
    `channels` by a 1x1 partial convolution."""

    def __init__(self, channels, growth, rates=DENSE_ASPP_RATES):
        super().__init__()
        self.layers = nn.ModuleList(
            PConvBlock(channels + i * growth, growth, 3, dilation=r) for i, r in enumerate(rates))
        self.fuse = PConvBlock(channels + len(rates) * growth, channels, 1)

    def forward(self, x, mask):
        groups = [(x, mask)]
        for layer in self.layers:
            groups.append(layer(groups))
        return self.fuse(groups)


@dataclass
class PConvUNetConfig:
    uv_size: int = 128
    base_width: int = 64
    in_channels: int = 3
    extra_channels: int = 0            # always-known inputs (e.g. a PCA fill), mask = 1
    dilated: bool = False              # add the DenseASPP block at 1/4 resolution
    predict_residual_on_extra: bool = False  # output = extra + residual (needs extra == in)
    depth: int | None = None           # None -> log2(uv_size) levels (1x1 bottleneck)
    symmetric: bool = False            # add the mirrored map and its visibility as 4 always-known inputs

    def levels(self):
        if self.uv_size < 4 or self.uv_size & (self.uv_size - 1):
            raise ValueError(f"uv_size={self.uv_size} must be a power of two >= 4")
        full = int(math.log2(self.uv_size))
        depth = full if self.depth is None else self.depth
        min_depth = DENSE_ASPP_LEVEL if self.dilated else 1
        if not min_depth <= depth <= full:
            raise ValueError(f"depth={depth} must lie in [{min_depth}, {full}] for uv_size={self.uv_size}")
        if self.predict_residual_on_extra and self.extra_channels != self.in_channels:
            raise ValueError(f"predict_residual_on_extra needs extra_channels == in_channels "
                             f"({self.in_channels}); got {self.extra_channels}")
        return depth


class PConvUNet(nn.Module):
    """U-Net of partial convolutions; forward(uv_in, known, extra=None) -> uv_out in [0, 1].

    Encoder: stride-2 PConv + BN (not on the first layer) + ReLU. Decoder: nearest upsampling of
    features and masks, concatenation with the skip features and their masks, PConv 3x3 + BN +
    LeakyReLU(0.2). The last layer also sees the input image and its mask, has no BN and is linear.
    """

    def __init__(self, cfg: PConvUNetConfig):
        super().__init__()
        self.cfg = cfg
        depth = cfg.levels()
        w = cfg.base_width
        widths = [min(w * 2 ** i, 8 * w) for i in range(depth)]
        kernels = [7, 5, 5] + [3] * max(0, depth - 3)
        self.mirror = MirrorInputs(cfg.uv_size) if cfg.symmetric else None
        inputs = cfg.in_channels + cfg.extra_channels + (MIRROR_CHANNELS if cfg.symmetric else 0)
        skip_widths = [inputs] + widths  # level 0 = the input
        self.encoder = nn.ModuleList(
            PConvBlock(skip_widths[i], widths[i], kernels[i], stride=2, bn=i > 0, act="relu")
            for i in range(depth))
        self.aspp = DenseASPP(widths[DENSE_ASPP_LEVEL - 1], max(w // 2, 1)) if cfg.dilated else None
        self.decoder = nn.ModuleList()
        for level in range(depth, 0, -1):  # decoder block at `level` merges with skip level-1
            last = level == 1
            out_ch = cfg.in_channels if last else widths[level - 2]
            self.decoder.append(PConvBlock(widths[level - 1] + skip_widths[level - 1], out_ch, 3,
                                           bn=not last, act=None if last else "leaky"))
        if cfg.predict_residual_on_extra:
            nn.init.zeros_(self.decoder[-1].conv.weight)
            nn.init.zeros_(self.decoder[-1].conv.bias)
        self.fine_tune = False

    def forward(self, uv_in, known, extra=None):
        self._check(uv_in, known, extra)
        groups = [(uv_in, known)]
        if extra is not None:
            groups.append((extra, torch.ones_like(known)))
        if self.mirror is not None:
            groups.append((self.mirror(uv_in, known), torch.ones_like(known)))
        skips = [groups]
        x, mask = None, None
        for level, block in enumerate(self.encoder, start=1):
            x, mask = block(skips[-1])
            if self.aspp is not None and level == DENSE_ASPP_LEVEL:
                x, mask = self.aspp(x, mask)
            skips.append([(x, mask)])
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x, mask = block([(upsample2(x), upsample2(mask))] + skip)
        if self.cfg.predict_residual_on_extra:
            return (extra + x.float()).clamp(0, 1)
        return torch.sigmoid(x.float())

    @torch.no_grad()
    def complete(self, uv_in, known, extra=None):
        """Completion function: prediction in the holes, the input where known."""
        return composite(self(uv_in, known, extra), uv_in, known)

    def encoder_batchnorms(self):
        modules = list(self.encoder) + ([self.aspp] if self.aspp is not None else [])
        return [m for mod in modules for m in mod.modules() if isinstance(m, nn.BatchNorm2d)]

    def train(self, mode=True):
        super().train(mode)
        if self.fine_tune:
            for bn in self.encoder_batchnorms():
                bn.eval()
        return self

    def _check(self, uv_in, known, extra):
        check_inputs(uv_in, known, extra, self.cfg.uv_size, self.cfg.in_channels, self.cfg.extra_channels)


def check_inputs(uv_in, known, extra, uv_size, in_channels, extra_channels):
    """One-line errors for completion-network inputs of the wrong shape (shared by PConvUNet and the GAN)."""
    s = uv_size
    if uv_in.dim() != 4 or uv_in.shape[1:] != (in_channels, s, s):
        raise ValueError(f"uv_in has shape {tuple(uv_in.shape)}; pass (N, {in_channels}, {s}, {s})")
    if known.shape != (uv_in.shape[0], 1, s, s):
        raise ValueError(f"known has shape {tuple(known.shape)}; pass (N, 1, {s}, {s})")
    if (extra is None) != (extra_channels == 0):
        raise ValueError(f"extra must be given iff extra_channels > 0 (is {extra_channels})")
    if extra is not None and extra.shape != (uv_in.shape[0], extra_channels, s, s):
        raise ValueError(f"extra has shape {tuple(extra.shape)}; pass (N, {extra_channels}, {s}, {s})")


def freeze_encoder_bn(model: PConvUNet):
    """Fine-tuning phase of the paper: encoder batch-norm statistics and affine params frozen."""
    model.fine_tune = True
    for bn in model.encoder_batchnorms():
        for p in bn.parameters():
            p.requires_grad_(False)
    return model.train(model.training)
