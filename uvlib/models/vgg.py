"""Frozen VGG16 feature extractor (pool1, pool2, pool3) for perceptual and style losses.

torchvision is not a dependency, so the layer layout of torchvision's vgg16 `features` is rebuilt
here with the same indices; its usual state dict (keys features.N.weight / features.N.bias) loads
directly. The random variant follows "Generic Perceptual Loss" (Liu et al., CVPR 2021): an
untrained, Kaiming-initialised VGG is already a useful perceptual metric and needs no download.
"""

from pathlib import Path

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg16 "D" config up to pool3: numbers are conv widths, "M" is a 2x2 max-pool.
VGG16_TO_POOL3 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")
FEATURE_NETS = ("vgg16", "random_vgg16", "none")


class VGG16Features(nn.Module):
    """x in [0, 1], (N, 3, H, W) -> [pool1, pool2, pool3]; ImageNet normalisation inside."""

    def __init__(self):
        super().__init__()
        layers, in_ch = [], 3
        for v in VGG16_TO_POOL3:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.pool_indices = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        x = (x - self.mean) / self.std
        pools = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.pool_indices:
                pools.append(x)
        return pools


def load_feature_net(kind: str, weights_path=None, seed: int = 0):
    """kind: "vgg16" (ImageNet weights from a local torchvision state-dict file), "random_vgg16"
    (seeded Kaiming init) or "none" (-> None). The net is frozen and in eval mode."""
    if kind == "none":
        return None
    if kind not in FEATURE_NETS:
        raise ValueError(f"feature net kind={kind!r} is unknown; use one of {FEATURE_NETS}")
    net = VGG16Features()
    if kind == "vgg16":
        net.load_state_dict(_read_vgg16_features(weights_path))
    else:
        gen = torch.Generator().manual_seed(seed)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                nn.init.zeros_(m.bias)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _read_vgg16_features(weights_path):
    fix = "pass the path of torchvision's vgg16 ImageNet state dict (vgg16-397923af.pth) or use kind='random_vgg16'"
    if weights_path is None or not Path(weights_path).is_file():
        raise ValueError(f"VGG16 weights file {weights_path} not found; {fix}")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"VGG16 weights file {weights_path} is unreadable ({type(err).__name__}); {fix}") from None
    expected = VGG16Features().state_dict()
    if not isinstance(state, dict) or any(
            not torch.is_tensor(state.get(k)) or state[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(f"VGG16 weights file {weights_path} has no vgg16 features.N.weight/bias "
                         f"layout; {fix}")
    return {k: state[k] for k in expected}
