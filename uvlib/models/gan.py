"""Context-encoder GAN (Pathak et al., CVPR 2016) adapted to arbitrary masks on UV maps.

Generator: the masked map and its mask (plus optional always-known extra channels, e.g. an
earlier stage's completion) go through a convolutional encoder down to a 1x1 bottleneck and a
transposed-convolution decoder back to a full map. Discriminator: a PatchGAN scoring every
patch, trained as a least-squares GAN (LSGAN: no sigmoid, real -> 1, fake -> 0).

Choices that differ from, or are silent in, the paper (all documented here once):
- Arbitrary masks: the paper cut a central square and fed the generator the image with the
  square set to the mean; here the hole is any shape, so the mask is an input channel and the
  whole map is predicted; the known texels are pasted back (the composite) before the
  discriminator sees it.
- Depth follows the map size: log2(uv_size) - 2 stride-2 levels down to 4x4 (128 -> 5, as the
  paper), then a 4x4 convolution to the 1x1 bottleneck (the paper: 4000 channels; default here
  8 * base_width). Output: sigmoid to [0, 1] (the paper: tanh to [-1, 1]).
- Real maps have their own missing regions, so the discriminator sees every map as
  map * observed * atlas with that region as a fourth channel, real and fake alike; otherwise
  the pattern of black unobserved texels alone would tell real from fake.
- Pixel loss: masked MSE of the raw prediction on the observed atlas texels, hole texels
  weighted by `hole_weight` relative to the known ones (GANTrainer's default 1 = plain masked MSE;
  the study's GANSpec uses the PConv loss's hole/valid split, 6 to 1; the paper reconstructed only
  the hole plus a thin overlap border weighted 10x).
- Discriminator normalisation: spectral norm on every convolution and no batch norm (Miyato et
  al. 2018), where pix2pix's PatchGAN has batch norm. With batch norm in train mode a patch's
  score depends on the rest of its batch: real and fake scored in separate batches are each
  normalised by their own statistics, so D can tell them apart by the batch statistics alone and
  G's adversarial pass (fake only) is normalised differently from D's update. Without batch norm a
  map's score depends on that map alone; the D update still scores real and fake in one forward
  (one power-iteration step per update), and G's adversarial pass runs D in eval mode (the
  spectral-norm estimate of that update, not a second power-iteration step).
- symmetric: the mirrored map and its mirrored visibility (uvlib.models.symmetry) as four more input
  channels of the generator, as for the PConv U-Net.
- unet (the study's symmetric rows): skip connections as in pix2pix's U-Net generator (Isola et al. 2017):
  every encoder level's features join the decoder at the same size, and the inputs themselves join a
  small full-resolution head of two 3x3 convs. A 1x1 bottleneck cannot carry a texel-exact copy of the
  seen cheek or of the colours around a small hole; measured on celeba-dev, feeding the mirrored map to
  the full-resolution head alone lifted the symmetric GAN by 0.1-0.3 dB, short of Navier-Stokes at 15-30
  degrees, where the holes are small and their own boundary says most (README, celeba-dev table).
- predict_residual_on_extra (stage 06): output = clamp(extra + residual, 0, 1), the last layer
  starting at zero, so an untrained generator returns the earlier stage's completion unchanged.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from uvlib.models.pconv import check_inputs
from uvlib.models.symmetry import MIRROR_CHANNELS, MirrorInputs
from uvlib.ops import composite


FULL_RES_HEAD_WIDTH = 16   # narrow: at 32 two 3x3 convs at 128x128 cost more than the rest of the generator


def _power_of_two(size, minimum, what):
    if size < minimum or size & (size - 1):
        raise ValueError(f"{what} uv_size={size} must be a power of two >= {minimum}")
    return int(math.log2(size))


@dataclass
class GeneratorConfig:
    uv_size: int = 128
    base_width: int = 64
    extra_channels: int = 0                  # always-known inputs (e.g. a cascade's output)
    bottleneck: int | None = None            # None -> 8 * base_width (the paper: 4000)
    predict_residual_on_extra: bool = False  # output = extra + residual (needs extra_channels == 3)
    symmetric: bool = False                  # add the mirrored map and its visibility as 4 inputs
    unet: bool = False                       # skip connections and a full-resolution head (module doc)

    def levels(self):
        """Stride-2 levels from uv_size down to 4x4."""
        levels = _power_of_two(self.uv_size, 8, "GeneratorConfig") - 2
        if self.base_width < 1 or (self.bottleneck is not None and self.bottleneck < 1):
            raise ValueError(f"base_width={self.base_width} and bottleneck={self.bottleneck} must be >= 1")
        if self.predict_residual_on_extra and self.extra_channels != 3:
            raise ValueError(f"predict_residual_on_extra needs extra_channels == 3; got {self.extra_channels}")
        return levels


class Generator(nn.Module):
    """Encoder-decoder; forward(uv_in, known, extra=None) -> predicted full map in [0, 1].

    Encoder: 4x4 stride-2 convs + BN (not on the first) + LeakyReLU(0.2), then a 4x4 conv to the
    1x1 bottleneck + BN + LeakyReLU. Decoder: 4x4 transposed convs + BN + ReLU back to uv_size.
    unet: each transposed conv also reads the encoder features of its input size, the last one gives
    FULL_RES_HEAD_WIDTH features instead of the 3 colours, and two 3x3 convs read them beside the inputs.
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        levels = cfg.levels()
        w = cfg.base_width
        widths = [min(w * 2 ** i, 8 * w) for i in range(levels)]
        bottleneck = cfg.bottleneck or 8 * w
        self.mirror = MirrorInputs(cfg.uv_size) if cfg.symmetric else None
        inputs = 4 + cfg.extra_channels + (MIRROR_CHANNELS if cfg.symmetric else 0)
        layers, c_in = [], inputs
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(c_in, width, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(width)] if i > 0 else []
            layers += [nn.LeakyReLU(0.2)]
            c_in = width
        layers += [nn.Conv2d(c_in, bottleneck, 4, bias=False), nn.BatchNorm2d(bottleneck), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*layers)
        skip = 2 if cfg.unet else 1              # a U-Net decoder level also reads the encoder level of its size
        layers = [nn.ConvTranspose2d(bottleneck, widths[-1], 4, bias=False), nn.BatchNorm2d(widths[-1]), nn.ReLU()]
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):
            layers += [nn.ConvTranspose2d(skip * c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.decoder = nn.Sequential(*layers)
        if cfg.unet:
            h = FULL_RES_HEAD_WIDTH
            self.out = nn.ConvTranspose2d(skip * widths[0], h, 4, 2, 1)
            self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(h + inputs, h, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(h, 3, 3, padding=1))
        else:
            self.out, self.head = nn.ConvTranspose2d(widths[0], 3, 4, 2, 1), None
        if cfg.predict_residual_on_extra:
            last = self.out if self.head is None else self.head[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, uv_in, known, extra=None):
        self._check(uv_in, known, extra)
        inputs = [uv_in * known, known] + ([extra] if extra is not None else [])
        if self.mirror is not None:
            inputs.append(self.mirror(uv_in, known))
        x = torch.cat(inputs, dim=1)
        x = (self._unet(x) if self.cfg.unet else self.out(self.decoder(self.encoder(x)))).float()
        if self.cfg.predict_residual_on_extra:
            return (extra + x).clamp(0, 1)
        return torch.sigmoid(x)

    def _unet(self, inputs):
        x, levels = inputs, []
        for layer in self.encoder:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                levels.append(x)
        levels.pop()                                             # the bottleneck itself
        for layer in self.decoder:
            if isinstance(layer, nn.ConvTranspose2d) and levels and x.shape[-1] == levels[-1].shape[-1]:
                x = torch.cat([x, levels.pop()], dim=1)
            x = layer(x)
        x = self.out(torch.cat([x, levels.pop()], dim=1))
        return self.head(torch.cat([x, inputs.to(x.dtype)], dim=1))

    @torch.no_grad()
    def complete(self, uv_in, known, extra=None):
        """Completion function: prediction in the holes, the input where known."""
        return composite(self(uv_in, known, extra), uv_in, known)

    def _check(self, uv_in, known, extra):
        check_inputs(uv_in, known, extra, self.cfg.uv_size, 3, self.cfg.extra_channels)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): 4x4 convs, stride 2 then 1, LeakyReLU(0.2) and spectral norm on
    every conv instead of batch norm (see the module doc); one raw score per patch (least squares: no
    sigmoid). Up to 3 stride-2 levels (a 70x70 receptive field), fewer for small maps so at least a
    few patches remain."""

    def __init__(self, uv_size=128, base_width=64, in_channels=4):
        super().__init__()
        n_down = min(3, max(1, _power_of_two(uv_size, 8, "PatchDiscriminator") - 3))
        self.uv_size, self.in_channels = uv_size, in_channels
        widths = [min(base_width * 2 ** i, 8 * base_width) for i in range(n_down + 1)]
        layers = [spectral_norm(nn.Conv2d(in_channels, widths[0], 4, 2, 1)), nn.LeakyReLU(0.2)]
        for i in range(1, n_down + 1):
            stride = 2 if i < n_down else 1
            layers += [spectral_norm(nn.Conv2d(widths[i - 1], widths[i], 4, stride, 1)), nn.LeakyReLU(0.2)]
        layers += [spectral_norm(nn.Conv2d(widths[-1], 1, 4, 1, 1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).float()
