"""The face's other side as network inputs: the mirrored map and its mirrored visibility.

A turned face hides one cheek and shows the other. MirrorInputs reads every texel's mirror texel (through the
canonical mesh's exact mirror map, uvlib.geometry.mirror) and returns four always-known channels: the colour seen
there (the weight-normalised bilinear average of the known texels around the mirror, 0 where none is known) and
how much of it was known (0..1). A network given them can copy the seen cheek and learn to correct its shading.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from uvlib.geometry.mirror import mirror_grid

MIRROR_CHANNELS = 4


class MirrorInputs(nn.Module):
    """forward(uv_in (N,3,S,S), known (N,1,S,S)) -> (N, 4, S, S): mirrored colour (3) and mirrored visibility (1)."""

    def __init__(self, uv_size: int):
        super().__init__()
        self.register_buffer("grid", torch.from_numpy(mirror_grid(uv_size)).unsqueeze(0), persistent=False)

    def forward(self, uv_in, known):
        with torch.autocast(uv_in.device.type, enabled=False):
            known = known.float()
            shown = torch.cat([uv_in.float() * known, known], dim=1)
            grid = self.grid.expand(len(shown), -1, -1, -1)
            sampled = F.grid_sample(shown, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            weight = sampled[:, 3:]
            colour = sampled[:, :3] / weight.clamp(min=1e-6) * (weight > 1e-6)
        return torch.cat([colour.clamp(0, 1), weight.clamp(0, 1)], dim=1).to(uv_in.dtype)
