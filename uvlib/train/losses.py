"""Inpainting loss of Liu et al. (ECCV 2018), restricted to texels that have truth.

A UV map has truth only where the face was observed and inside the UV atlas; call that the
counted region, R = observed & atlas. Every term ignores texels outside R:
- valid / hole: L1 on R & known and on R & ~known, each divided by C * |R| (the paper divides by
  C*H*W, the number of texels with truth; here that is |R|), so the paper's weights keep their
  balance whatever the share of unobserved texels.
- perceptual / style: pred, composite and target are shown to the feature net with every texel
  outside R set to the ImageNet mean colour (0 after normalisation, like the net's own zero
  padding). Neither the prediction nor the (unknown) target there can change a feature, so they
  cannot change the loss. Style uses Gram matrices normalised by 1/(C*H*W) and an L1 distance
  averaged over the C*C entries, for pred and composite alike (both weighted by `style`).
- tv: total variation of the composite over neighbour pairs inside the hole dilated by a 3x3
  kernel (the paper's region P), both texels of a pair in R, divided by C * |R|.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from uvlib.models.vgg import IMAGENET_MEAN
from uvlib.ops import composite

DEFAULT_WEIGHTS = {"valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0, "tv": 0.1}


def gram_matrix(features):
    """(N, C, H, W) -> (N, C, C) = F F^T / (C*H*W), in fp32 whatever the autocast state."""
    n, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        f = features.float().reshape(n, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def dilate(mask, kernel=3):
    """Binary dilation of a (N, 1, H, W) mask by a kernel x kernel square."""
    return F.max_pool2d(mask, kernel, stride=1, padding=kernel // 2)


class InpaintingLoss(nn.Module):
    """forward(pred, target, known, observed, atlas) -> (total, parts: dict of unweighted floats).

    weights: any of valid, hole, perceptual, style, tv (defaults: the paper's 1, 6, 0.05, 120, 0.1).
    feature_net: a module mapping [0, 1] images to a list of feature maps (see load_feature_net);
    needed when perceptual or style weights are non-zero.
    """

    def __init__(self, weights=None, feature_net=None):
        super().__init__()
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"loss weights {sorted(unknown)} are unknown; use {list(DEFAULT_WEIGHTS)}")
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.use_features = self.weights["perceptual"] != 0 or self.weights["style"] != 0
        if self.use_features and feature_net is None:
            raise ValueError("perceptual/style loss weights are non-zero but feature_net is None; "
                             "pass load_feature_net(...) or set both weights to 0")
        self.feature_net = feature_net
        self.register_buffer("fill", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, pred, target, known, observed, atlas):
        self._check(pred, target, known, observed, atlas)
        counted = observed * atlas.to(observed.dtype).view(1, 1, *atlas.shape[-2:])
        n = pred.shape[1] * counted.sum().clamp(min=1)
        err = (pred.float() - target.float()).abs()
        comp = composite(pred, target, known)
        hole = (1 - known) * counted
        parts = {
            "valid": (err * known * counted).sum() / n,
            "hole": (err * hole).sum() / n,
            "tv": self._tv(comp.float(), dilate(hole) * counted) / n,
        }
        zero = err.new_zeros(())
        parts["perceptual"], parts["style"] = (
            self._feature_terms(pred, comp, target, counted) if self.use_features else (zero, zero))
        total = sum(self.weights[k] * v for k, v in parts.items())
        values = torch.stack([total.detach()] + [v.detach() for v in parts.values()]).float()
        return total, dict(zip(["total", *parts], values.unbind()))  # 0-d tensors: reading them waits for the device

    def _feature_terms(self, pred, comp, target, counted):
        def hide(x):
            return counted * x + (1 - counted) * self.fill.to(x.dtype)

        with torch.no_grad():
            feats_t = self.feature_net(hide(target))
        feats = self.feature_net(torch.cat([hide(pred), hide(comp)]))
        perceptual, style = 0, 0
        for f, ft in zip(feats, feats_t):
            fp, fc = f.float().chunk(2)
            ft = ft.float()
            perceptual = perceptual + (fp - ft).abs().mean() + (fc - ft).abs().mean()
            gt = gram_matrix(ft)
            style = style + (gram_matrix(fp) - gt).abs().mean() + (gram_matrix(fc) - gt).abs().mean()
        return perceptual, style

    @staticmethod
    def _tv(comp, region):
        pairs_h = region[..., :, 1:] * region[..., :, :-1]
        pairs_v = region[..., 1:, :] * region[..., :-1, :]
        return ((comp[..., :, 1:] - comp[..., :, :-1]).abs() * pairs_h).sum() + \
               ((comp[..., 1:, :] - comp[..., :-1, :]).abs() * pairs_v).sum()

    @staticmethod
    def _check(pred, target, known, observed, atlas):
        if pred.dim() != 4 or pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (N, C, S, S)")
        mask_shape = (pred.shape[0], 1, *pred.shape[-2:])
        for name, m in (("known", known), ("observed", observed)):
            if m.shape != mask_shape:
                raise ValueError(f"{name} has shape {tuple(m.shape)}; pass {mask_shape}")
        if atlas.shape[-2:] != pred.shape[-2:] or atlas.numel() != pred.shape[-2] * pred.shape[-1]:
            raise ValueError(f"atlas has shape {tuple(atlas.shape)}; pass {tuple(pred.shape[-2:])}")
