"""The original study's autoencoders on flattened atlas texels: its linear "PCA" and the FC nets A-D.

Each model holds the atlas and maps (uv_in, known) -> uv_out, so a model IS a completion function.
Input: the known texels scaled to [-1, 1] and the unknown ones set to 0, so an unknown texel adds
nothing to the first layer (for the linear model this is exactly "project the visible part").
With mask_input=True the (T,) texel mask is appended to the input, letting the net tell a hidden
texel from a known mid-grey one. Output: Tanh, mapped to [0, 1] by (y + 1) / 2; zeros outside the atlas.
"""

import torch
from torch import nn

from uvlib.models.pca import atlas_index, gather_atlas, scatter_atlas

ARCHITECTURES = {"A": (64, 32, 16), "B": (128, 64, 32), "C": (256, 128, 32), "D": (256, 128, 64)}


class AtlasAutoencoder(nn.Module):
    """Shared plumbing: maps <-> atlas vectors; subclasses set self.net (D_in -> D, no output activation)."""

    def __init__(self, atlas, mask_input=False):
        super().__init__()
        if atlas.ndim != 2 or atlas.shape[0] != atlas.shape[1]:
            raise ValueError(f"atlas must be a square (S, S) mask, got {tuple(atlas.shape)}")
        self.register_buffer("atlas", atlas > 0)
        self.register_buffer("texel_index", atlas_index(atlas), persistent=False)
        self.mask_input = mask_input
        self.n_texels = self.texel_index.numel()
        self.dim = 3 * self.n_texels
        self.in_dim = self.dim + (self.n_texels if mask_input else 0)

    def encode_input(self, uv_in, known):
        x, m = gather_atlas(uv_in, known, self.texel_index)
        m = m.float()
        x = (2 * x - 1) * m.repeat(1, 3)
        return torch.cat([x, m], 1) if self.mask_input else x

    def forward(self, uv_in, known):
        if uv_in.ndim != 4 or uv_in.shape[1:] != (3, *self.atlas.shape):
            size = self.atlas.shape[0]
            raise ValueError(f"uv_in must be (N, 3, {size}, {size}) like the atlas, got {tuple(uv_in.shape)}")
        y = torch.tanh(self.net(self.encode_input(uv_in, known)))
        return scatter_atlas((y + 1) / 2, self.texel_index, self.atlas.shape[0])


class LinearAutoencoder(AtlasAutoencoder):
    """D -> k -> D with Tanh out: the original study's "PCA"."""

    def __init__(self, atlas, k, mask_input=False):
        super().__init__(atlas, mask_input)
        self.k = k
        self.net = nn.Sequential(nn.Linear(self.in_dim, k), nn.Linear(k, self.dim))


class FCAutoencoder(AtlasAutoencoder):
    """Encoder Linear+ReLU through `hidden`, decoder mirrors it back to D, Tanh out."""

    def __init__(self, atlas, hidden=ARCHITECTURES["A"], mask_input=False):
        super().__init__(atlas, mask_input)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be positive layer widths such as {ARCHITECTURES['A']}, got {hidden}")
        self.hidden = tuple(hidden)
        widths = [self.in_dim, *hidden, *reversed(hidden[:-1])]
        layers = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], self.dim))
        self.net = nn.Sequential(*layers)
