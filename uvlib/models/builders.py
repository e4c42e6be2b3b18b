"""Rebuild a completion function from a saved (config, state): one function per model kind.

Each returns `fn(uv_in, known) -> uv_out` on `device`, in eval mode, without gradients.
"""
import torch

from uvlib.models.autoencoder import FCAutoencoder, LinearAutoencoder
from uvlib.models.mean_face import MeanFace
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig


def _no_grad(module):
    module.eval()

    @torch.no_grad()
    def fn(uv_in, known):
        return module(uv_in, known)
    fn.module = module
    return fn


def mean_face(config, state, device):
    face = MeanFace.from_state_dict(state)
    face.mean = face.mean.to(device)
    return face


def masked_pca(config, state, device):
    pca = MaskedPCA(state["config"]["n_components"]).load_state_dict(state).to(device)
    return pca.complete


def linear_ae(config, state, device):
    model = LinearAutoencoder(state["atlas"], config["k"], mask_input=config.get("mask_input", False))
    model.load_state_dict(state)
    return _no_grad(model.to(device))


def fc_ae(config, state, device):
    model = FCAutoencoder(state["atlas"], tuple(config["hidden"]), mask_input=config.get("mask_input", False))
    model.load_state_dict(state)
    return _no_grad(model.to(device))


def pconv(config, state, device):
    model = PConvUNet(PConvUNetConfig(**config))
    model.load_state_dict(state)
    model.to(device).eval()
    return model.complete


def pca_pconv(config, state, device):
    from uvlib.models.cascade import PCAPConvCascade
    return PCAPConvCascade.from_state(config, state, device)


def mirror_poisson_pconv(config, state, device):
    from uvlib.models.cascade import MirrorPoissonPConvCascade
    return MirrorPoissonPConvCascade.from_state(config, state, device)


def gan(config, state, device):
    from uvlib.models.gan import Generator, GeneratorConfig
    model = Generator(GeneratorConfig(**config))
    model.load_state_dict(state)
    return _no_grad(model.to(device))


def pca_pconv_gan(config, state, device):
    from uvlib.models.cascade import CascadeThenGAN
    return CascadeThenGAN.from_state(config, state, device)


def mirror_poisson_gan(config, state, device):
    from uvlib.models.cascade import MirrorPoissonGAN
    return MirrorPoissonGAN.from_state(config, state, device)


def blend(config, state, device):
    from uvlib.models.blend import BlendedPCAPConv
    return BlendedPCAPConv.from_state(config, state, device)
