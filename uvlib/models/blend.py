"""Blended PCA + PConv (stage 07): a small network mixes the two completions per texel.

BlendNet sees both raw predictions (not composites: where they differ from the known texels
tells the net which one fits this face locally), the masked input and its mask, and outputs a
per-texel weight w in [0, 1] and, optionally, a small residual:
    out = clamp(w * pca + (1 - w) * pconv + residual, 0, 1),  residual = 0.1 * tanh(.)
Its last layer starts at zero, so an untrained blend is the plain average of the two.
"""

from dataclasses import asdict

import torch
import torch.nn as nn

from uvlib.losses import composite
from uvlib.models.cascade import check_pca, eval_mode, load_pca
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.training import Runtime

RESIDUAL_SCALE = 0.1


class BlendNet(nn.Module):
    """3x3 convs (dilations 1, 2, 4: a 15x15 receptive field) on [pca, pconv, uv_in, known]
    (10 channels) -> weight (N,1,S,S) and, with `residual`, a correction (N,3,S,S)."""

    def __init__(self, hidden=32, residual=True):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"BlendNet hidden={hidden} must be >= 1")
        self.hidden, self.residual = hidden, residual
        self.body = nn.Sequential(
            nn.Conv2d(10, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=4, dilation=4), nn.ReLU())
        self.head = nn.Conv2d(hidden, 4 if residual else 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def mix(self, pca_fill, pconv_fill, uv_in, known):
        """(weight of the PCA in [0, 1], residual or None)."""
        out = self.head(self.body(torch.cat([pca_fill, pconv_fill, uv_in, known], dim=1))).float()
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
        blend = {"hidden": self.blend.hidden, "residual": self.blend.residual}
        config = {"pconv": asdict(self.pconv.cfg), "blend": blend}
        state = {"pca": self.pca.state_dict(), "pconv": self.pconv.state_dict(), "blend": self.blend.state_dict()}
        return config, state

    @classmethod
    def from_state(cls, config, state, device):
        pconv = PConvUNet(PConvUNetConfig(**config["pconv"]))
        pconv.load_state_dict(state["pconv"])
        blend = BlendNet(**config["blend"])
        blend.load_state_dict(state["blend"])
        return cls(load_pca(state["pca"], device), pconv.to(device).eval(), blend.to(device).eval())


def masked_l1(pred, target, mask):
    """Mean absolute error over the texels where mask (N,1,S,S) is 1, per texel and channel."""
    return ((pred - target).abs() * mask).sum() / (mask.sum() * pred.shape[1]).clamp_min(1)


class BlendStage:
    """Trains only the BlendNet (Stage protocol of uvlib.training); the PCA and PConv are frozen.

    Loss: L1 on the observed hole texels (the only ones with truth that the models had to guess)
    plus known_weight * L1 on the observed known texels, all inside the atlas.
    """

    def __init__(self, blended: BlendedPCAPConv, atlas, lr=1e-3, known_weight=0.1):
        s = blended.pconv.cfg.uv_size
        if tuple(atlas.shape) != (s, s):
            raise ValueError(f"atlas has shape {tuple(atlas.shape)}; pass ({s}, {s}) like the models' uv_size")
        if known_weight < 0:
            raise ValueError(f"known_weight={known_weight} must be >= 0")
        self.blended, self.known_weight = blended, known_weight
        self.atlas = atlas.float()
        blended.pconv.requires_grad_(False)
        self.optimizer = torch.optim.Adam(blended.blend.parameters(), lr=lr)
        self.runtime = Runtime(torch.device("cpu"), None, False)

    def configure(self, runtime: Runtime):
        self.runtime = runtime
        self.blended.to(runtime.device)
        self.atlas = self.atlas.to(runtime.device)

    def inputs(self, batch):
        known = batch["observed"] * (1 - batch["hole"]) * self.atlas
        uv_in = batch["uv"] * known
        return uv_in, known, self.blended.fills(uv_in, known)

    def training_step(self, batch, step):
        blend = self.blended.blend.train()
        uv_in, known, (pca_fill, pconv_fill) = self.inputs(batch)
        counted = batch["observed"] * self.atlas
        with self.runtime.autocast():
            pred = blend(pca_fill, pconv_fill, uv_in, known)
        hole = masked_l1(pred, batch["uv"], counted * (1 - known))
        on_known = masked_l1(pred, batch["uv"], counted * known)
        total = hole + self.known_weight * on_known
        if torch.isfinite(total):  # else train() stops; keep the weights clean
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
        values = torch.stack([total, hole, on_known]).detach().tolist()
        return {**dict(zip(["total", "hole", "known"], values)), "lr": self.optimizer.param_groups[0]["lr"]}

    @torch.no_grad()
    def sample(self, batch, limit=8):
        """Grid rows [input, PCA, PConv, blend, truth] for save_grid / train's sample_fn."""
        batch = self.runtime.to_device({k: v[:limit] for k, v in batch.items()})
        uv_in, known, fills = self.inputs(batch)
        return [uv_in, *fills, self.blended(uv_in, known), batch["uv"]]

    def state_dict(self):
        return {"blend": self.blended.blend.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.blended.blend.load_state_dict(state["blend"])
        self.optimizer.load_state_dict(state["optimizer"])
