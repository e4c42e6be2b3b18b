"""Blended PCA + PConv (stage 07): a small network mixes the two completions per texel.

BlendNet sees both raw predictions (not composites: where they differ from the known texels
tells the net which one fits this face locally), the masked input and its mask, and outputs a
per-texel weight w in [0, 1] and, optionally, a small residual:
    out = clamp(w * pca + (1 - w) * pconv + residual, 0, 1),  residual = 0.1 * tanh(.)
Its last layer starts at zero, so an untrained blend is the plain average of the two. With `symmetric` it
also sees the mirrored map and its mirrored visibility (uvlib.models.symmetry).
"""

from dataclasses import asdict

import torch
import torch.nn as nn

from uvlib.models.cascade import check_pca, eval_mode, load_pca, load_pconv
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet
from uvlib.models.symmetry import MIRROR_CHANNELS, MirrorInputs
from uvlib.ops import composite

RESIDUAL_SCALE = 0.1


class BlendNet(nn.Module):
    """3x3 convs (dilations 1, 2, 4: a 15x15 receptive field) on [pca, pconv, uv_in, known] (10 channels; 14
    with `symmetric`, for a uv_size x uv_size map) -> weight (N,1,S,S) and, with `residual`, a correction (N,3,S,S)."""

    def __init__(self, hidden=32, residual=True, symmetric=False, uv_size=None):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"BlendNet hidden={hidden} must be >= 1")
        if symmetric and not uv_size:
            raise ValueError("a symmetric BlendNet needs uv_size (the maps' size) for its mirror map")
        self.hidden, self.residual, self.symmetric, self.uv_size = hidden, residual, symmetric, uv_size
        self.mirror = MirrorInputs(uv_size) if symmetric else None
        self.body = nn.Sequential(
            nn.Conv2d(10 + (MIRROR_CHANNELS if symmetric else 0), hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=4, dilation=4), nn.ReLU())
        self.head = nn.Conv2d(hidden, 4 if residual else 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def mix(self, pca_fill, pconv_fill, uv_in, known):
        """(weight of the PCA in [0, 1], residual or None)."""
        inputs = [pca_fill, pconv_fill, uv_in, known] + ([self.mirror(uv_in, known)] if self.symmetric else [])
        out = self.head(self.body(torch.cat(inputs, dim=1))).float()
        residual = RESIDUAL_SCALE * torch.tanh(out[:, 1:]) if self.residual else None
        return torch.sigmoid(out[:, :1]), residual

    def forward(self, pca_fill, pconv_fill, uv_in, known):
        weight, residual = self.mix(pca_fill, pconv_fill, uv_in, known)
        out = weight * pca_fill + (1 - weight) * pconv_fill
        return (out if residual is None else out + residual).clamp(0, 1)


class BlendedPCAPConv:
    """Completion function: BlendNet over a MaskedPCA and a plain PConvUNet (known texels kept)."""

    def __init__(self, pca: MaskedPCA, pconv: PConvUNet, blend: BlendNet):
        if pconv.cfg.extra_channels != 0:
            raise ValueError("the blend's PConvUNet must take no extra channels; use stage 03's plain PConv")
        check_pca(pca, pconv.cfg.uv_size, "BlendedPCAPConv")
        self.pca, self.pconv, self.blend = pca, pconv, blend

    @torch.no_grad()
    def fills(self, uv_in, known):
        """The raw PCA and PConv predictions (frozen models, eval mode)."""
        with eval_mode(self.pconv):
            return self.pca.complete(uv_in, known), self.pconv(uv_in, known)

    @torch.no_grad()
    def __call__(self, uv_in, known):
        with eval_mode(self.blend):
            out = self.blend(*self.fills(uv_in, known), uv_in, known)
        return composite(out, uv_in, known)

    def to(self, device):
        self.pca.to(device)
        self.pconv.to(device)
        self.blend.to(device)
        return self

    def state(self):
        """(config, state) for registry.save_model(path, "blend", uv_size, config, state)."""
        blend = {"hidden": self.blend.hidden, "residual": self.blend.residual, "symmetric": self.blend.symmetric,
                 "uv_size": self.blend.uv_size}
        config = {"pconv": asdict(self.pconv.cfg), "blend": blend}
        state = {"pca": self.pca.state_dict(), "pconv": self.pconv.state_dict(), "blend": self.blend.state_dict()}
        return config, state

    @classmethod
    def from_state(cls, config, state, device):
        blend = BlendNet(**config["blend"])
        blend.load_state_dict(state["blend"])
        pconv = load_pconv(config["pconv"], state["pconv"], device)
        return cls(load_pca(state["pca"], device), pconv, blend.to(device).eval())


