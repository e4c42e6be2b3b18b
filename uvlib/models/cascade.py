"""Cascades: PCA fill -> PConv refinement (stage 04), then -> GAN refinement (stage 06); and the training-free
mirror-Poisson fill -> PConv refinement (the mirror_poisson_pconv rows, a stage 03 or 04 experiment) or -> GAN
refinement (stage 05's mirror_poisson_gan rows).

A plain PConv masks the hole texels of its input, so it would throw a PCA fill away. Here the
fill enters as extra channels whose mask is all ones, and the PConv (extra_channels=3,
predict_residual_on_extra=True) predicts a residual on top of it: untrained, the cascade returns
the PCA fill unchanged. Stage 06 feeds the cascade's output to a GAN generator the same way.
"""

from contextlib import contextmanager
from dataclasses import asdict

import torch

from uvlib.models.gan import Generator, GeneratorConfig
from uvlib.models.mirror_poisson import MirrorPoissonFill
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.ops import composite


@contextmanager
def eval_mode(*modules):
    """Run modules in eval mode (BN running statistics), restoring their train/eval flags."""
    flags = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.train(flag)


def load_pca(state, device):
    return MaskedPCA(state["config"]["n_components"]).load_state_dict(state).to(device)


def check_pca(pca: MaskedPCA, uv_size, what):
    if pca.atlas is None:
        raise ValueError(f"{what}: the MaskedPCA is not fitted; fit it or load stage 01's model first")
    if tuple(pca.atlas.shape) != (uv_size, uv_size):
        raise ValueError(f"{what}: the PCA's atlas is {tuple(pca.atlas.shape)} but the network's uv_size is "
                         f"{uv_size}; use models of the same UV size")


class PConvOnFill:
    """Completion function: a PConv residual on a first completion (`first_fill`), known texels from the input.
    Subclasses give first_fill and their own state."""

    def __init__(self, pconv: PConvUNet):
        cfg = pconv.cfg
        if cfg.extra_channels != 3 or not cfg.predict_residual_on_extra:
            raise ValueError("the cascade's PConvUNet needs extra_channels=3 and predict_residual_on_extra=True; "
                             "build it with PConvUNetConfig(..., extra_channels=3, predict_residual_on_extra=True)")
        self.pconv = pconv

    @torch.no_grad()
    def fill(self, uv_in, known):
        """The first completion with the known texels pasted back: the PConv's extra input."""
        return composite(self.first_fill(uv_in, known), uv_in, known)

    @torch.no_grad()
    def __call__(self, uv_in, known):
        with eval_mode(self.pconv):
            pred = self.pconv(uv_in, known, self.fill(uv_in, known))
        return composite(pred, uv_in, known)

    def to(self, device):
        self.pconv.to(device)
        return self


def load_pconv(config, state, device) -> PConvUNet:
    pconv = PConvUNet(PConvUNetConfig(**config))
    pconv.load_state_dict(state)
    return pconv.to(device).eval()


class PCAPConvCascade(PConvOnFill):
    """PConv residual on the PCA fill (stage 04)."""

    def __init__(self, pca: MaskedPCA, pconv: PConvUNet):
        super().__init__(pconv)
        check_pca(pca, pconv.cfg.uv_size, "PCAPConvCascade")
        self.pca = pca

    def first_fill(self, uv_in, known):
        return self.pca.complete(uv_in, known)

    def to(self, device):
        self.pca.to(device)
        return super().to(device)

    def state(self):
        """(config, state) for registry.save_model(path, "pca_pconv", uv_size, config, state)."""
        return {"pconv": asdict(self.pconv.cfg)}, {"pca": self.pca.state_dict(), "pconv": self.pconv.state_dict()}

    @classmethod
    def from_state(cls, config, state, device):
        return cls(load_pca(state["pca"], device), load_pconv(config["pconv"], state["pconv"], device))


class MirrorPoissonPConvCascade(PConvOnFill):
    """PConv residual on the mirror-Poisson fill. The fill has nothing fitted, so training fills need no
    cross-fitting; an untrained cascade is the mirror-Poisson baseline."""

    first_fill = MirrorPoissonFill()

    def state(self):
        """(config, state) for registry.save_model(path, "mirror_poisson_pconv", uv_size, config, state)."""
        return {"pconv": asdict(self.pconv.cfg)}, {"pconv": self.pconv.state_dict()}

    @classmethod
    def from_state(cls, config, state, device):
        return cls(load_pconv(config["pconv"], state["pconv"], device))


class GANOnFill:
    """Completion function: a GAN generator (extra_channels=3; the stages train it with predict_residual_on_extra)
    refining a first completion (`first_fill`), which it sees as 3 extra always-known channels; known texels from
    the input. Subclasses give first_fill and their own state."""

    def __init__(self, generator: Generator, uv_size: int):
        cfg = generator.cfg
        if cfg.extra_channels != 3 or cfg.uv_size != uv_size:
            raise ValueError(f"the generator needs extra_channels=3 and uv_size={uv_size} (its first fill's); got "
                             f"{cfg.extra_channels} and {cfg.uv_size}")
        self.generator = generator

    @torch.no_grad()
    def fill(self, uv_in, known):
        """The first completion with the known texels pasted back: the generator's extra input."""
        return composite(self.first_fill(uv_in, known), uv_in, known)

    @torch.no_grad()
    def __call__(self, uv_in, known):
        with eval_mode(self.generator):
            pred = self.generator(uv_in, known, self.fill(uv_in, known))
        return composite(pred, uv_in, known)

    def to(self, device):
        self.generator.to(device)
        return self


def load_generator(config, state, device) -> Generator:
    generator = Generator(GeneratorConfig(**config))
    generator.load_state_dict(state)
    return generator.to(device).eval()


class CascadeThenGAN(GANOnFill):
    """Completion function of stage 06: a GAN generator refines the stage 04 cascade's output."""

    def __init__(self, cascade: PCAPConvCascade, generator: Generator):
        super().__init__(generator, cascade.pconv.cfg.uv_size)
        self.cascade = cascade

    def first_fill(self, uv_in, known):
        return self.cascade(uv_in, known)

    def to(self, device):
        self.cascade.to(device)
        return super().to(device)

    def state(self):
        """(config, state) for registry.save_model(path, "pca_pconv_gan", uv_size, config, state)."""
        cascade_config, cascade_state = self.cascade.state()
        return ({"cascade": cascade_config, "generator": asdict(self.generator.cfg)},
                {"cascade": cascade_state, "generator": self.generator.state_dict()})

    @classmethod
    def from_state(cls, config, state, device):
        cascade = PCAPConvCascade.from_state(config["cascade"], state["cascade"], device)
        return cls(cascade, load_generator(config["generator"], state["generator"], device))


class MirrorPoissonGAN(GANOnFill):
    """A GAN generator refining the mirror-Poisson fill (stage 05's mirror_poisson_gan rows). The fill has nothing
    fitted, so it needs no held-out maps; an untrained one is the mirror-Poisson baseline."""

    first_fill = MirrorPoissonFill()

    def __init__(self, generator: Generator):
        super().__init__(generator, generator.cfg.uv_size)

    def state(self):
        """(config, state) for registry.save_model(path, "mirror_poisson_gan", uv_size, config, state)."""
        return {"generator": asdict(self.generator.cfg)}, {"generator": self.generator.state_dict()}

    @classmethod
    def from_state(cls, config, state, device):
        return cls(load_generator(config["generator"], state["generator"], device))
