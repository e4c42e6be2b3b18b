"""Trainers: what one optimisation step of each model does. train.loop.train() drives any of them.

A trainer owns its models, losses and optimisers and implements configure(runtime), training_step(batch, step),
sample(batch), state_dict() / load_state_dict(state). Batches are {"uv", "observed", "hole"} (+ "fold" for a
cross-fitted cascade); every network sees known = observed * (1 - hole) * atlas.

A step returns its loss parts as 0-d tensors and never reads them (that would wait for the device): train()
checks them for NaN/inf every few steps. Training calls each network through runtime.parallel(net)
(DistributedDataParallel under torchrun, torch.compile when asked); samples and state dicts use the plain network.
"""
import torch

from uvlib.models.blend import BlendedPCAPConv
from uvlib.models.cascade import PCAPConvCascade
from uvlib.models.gan import Generator, PatchDiscriminator
from uvlib.models.pconv import PConvUNet, freeze_encoder_bn
from uvlib.ops import composite, known_texels, masked_mean
from uvlib.train.loop import Runtime
from uvlib.train.losses import InpaintingLoss


@torch.no_grad()
def sample_rows(model, runtime: Runtime, inputs, batch, limit=8):
    """Grid rows [input, prediction, composite, truth] for save_grid / train's sample_fn.

    inputs(batch) -> (uv_in, known, extra) is the trainer's own way of building the model's inputs."""
    batch = runtime.to_device({k: v[:limit] for k, v in batch.items()})
    uv_in, known, extra = inputs(batch)
    was_training = model.training
    model.eval()
    with runtime.autocast():
        pred = model(uv_in, known, extra)
    model.train(was_training)
    return [uv_in, pred, composite(pred, batch["uv"], known), batch["uv"]]


class PConvTrainer:
    """Trains a PConvUNet with InpaintingLoss and Adam; switches to frozen-encoder-BN fine-tuning
    at lr_fine_tune once `fine_tune_after` steps are done (the paper: 2e-4, then 5e-5).

    Batches: {"uv": (B,3,S,S), "observed": (B,1,S,S), "hole": (B,1,S,S)}; the network sees
    known = observed * (1 - hole) * atlas. extra_fn(uv_in, known) -> extra channels (e.g. a PCA
    fill) for models built with extra_channels.
    """

    def __init__(self, model: PConvUNet, loss: InpaintingLoss, lr=2e-4, fine_tune_after=None,
                 lr_fine_tune=5e-5, *, atlas, extra_fn=None):
        s = model.cfg.uv_size
        if tuple(atlas.shape) != (s, s):
            raise ValueError(f"atlas has shape {tuple(atlas.shape)}; pass ({s}, {s}) like the model's uv_size")
        self.model, self.loss, self.extra_fn = model, loss, extra_fn
        self.atlas = atlas.float()
        self.fine_tune_after, self.lr_fine_tune = fine_tune_after, lr_fine_tune
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
        self.runtime = Runtime(torch.device("cpu"), None, False)
        self.net = model

    def configure(self, runtime: Runtime):
        self.runtime = runtime
        memory_format = torch.channels_last if runtime.channels_last else torch.preserve_format
        self.model.to(runtime.device, memory_format=memory_format)
        self.loss.to(runtime.device)
        self.atlas = self.atlas.to(runtime.device)
        self.net = runtime.parallel(self.model)

    def inputs(self, batch):
        missing = {"uv", "observed", "hole"} - set(batch)
        if missing:
            raise ValueError(f"PConvTrainer batch lacks {sorted(missing)}; pass a dict with uv, observed, hole")
        known = known_texels(batch["observed"], batch["hole"], self.atlas)
        uv_in = batch["uv"] * known
        return uv_in, known, self.extra(uv_in, known, batch)

    @torch.no_grad()
    def extra(self, uv_in, known, batch):
        """The network's extra input channels for this batch: extra_fn(uv_in, known), or None."""
        return None if self.extra_fn is None else self.extra_fn(uv_in, known)

    def training_step(self, batch, step):
        if self.fine_tune_after is not None and step > self.fine_tune_after and not self.model.fine_tune:
            self.start_fine_tune()
        self.model.train()
        uv_in, known, extra = self.inputs(batch)
        with self.runtime.autocast():
            pred = self.net(uv_in, known, extra)
            total, parts = self.loss(pred, batch["uv"], known, batch["observed"], self.atlas)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {**parts, "lr": self.optimizer.param_groups[0]["lr"]}

    def start_fine_tune(self):
        self.freeze_encoder_bn()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_fine_tune

    def freeze_encoder_bn(self):
        """The paper's fine-tuning: encoder batch-norm frozen; DDP is rebuilt for the smaller set of trained weights."""
        freeze_encoder_bn(self.model)
        if self.net is not self.model:
            self.net = self.runtime.parallel(self.model)

    def sample(self, batch, limit=8):
        return sample_rows(self.model, self.runtime, self.inputs, batch, limit)

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "fine_tune": self.model.fine_tune}

    def load_state_dict(self, state):
        if state["fine_tune"] and not self.model.fine_tune:
            self.freeze_encoder_bn()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class CascadeTrainer(PConvTrainer):
    """PConvTrainer for the cascade: only the PConv trains; the fixed PCA fill is computed per batch
    (without grad) as its extra input. Arguments after `cascade` are PConvTrainer's (loss, lr,
    fine_tune_after, lr_fine_tune, atlas=...).

    cross_fit (a fitted uvlib.train.crossfit.CrossFittedPCA): training fills come from the PCA of each map's
    fold, which never saw that map (batches then carry 'fold'); without it they come from cascade.pca.
    """

    def __init__(self, cascade: PCAPConvCascade, loss, *args, cross_fit=None, **kwargs):
        super().__init__(cascade.pconv, loss, *args, extra_fn=cascade.fill, **kwargs)
        self.cascade, self.cross_fit = cascade, cross_fit

    def configure(self, runtime):
        super().configure(runtime)
        self.cascade.pca.to(runtime.device)
        if self.cross_fit is not None:
            self.cross_fit.to(runtime.device)

    def extra(self, uv_in, known, batch):
        if self.cross_fit is None:
            return super().extra(uv_in, known, batch)
        if "fold" not in batch:
            raise ValueError("a cross-fitted CascadeTrainer needs batches with 'fold'; draw them with "
                             "uvlib.train.crossfit.FoldedBatches")
        return self.cross_fit.fill(uv_in, known, batch["fold"])


def discriminator_input(uv, observed, atlas):
    """What D sees of a map: its observed atlas texels and that region as a 4th channel."""
    shown = observed * atlas
    return torch.cat([uv * shown, shown], dim=1)


def lsgan_loss(scores, target):
    return (scores - target).square().mean()


class GANTrainer:
    """Trains a Generator against a PatchDiscriminator (Trainer protocol of uvlib.train.loop).

    Batches: {"uv", "observed", "hole"}; the generator sees known = observed * (1 - hole) * atlas.
    Per step: one discriminator update (LSGAN, real -> 1, composite fake -> 0; real and fake in one
    forward), then one generator update on pixel_weight * pixel + adv_weight * adversarial (fake -> 1),
    the pixel loss weighting hole texels hole_weight to 1 (uvlib.models.gan).
    extra_fn(uv_in, known) -> extra channels (stage 06: a PCAPConvCascade), run without grad and
    moved with the trainer when it has .to(device).
    """

    def __init__(self, generator: Generator, discriminator: PatchDiscriminator, atlas, lr=2e-4,
                 betas=(0.5, 0.999), pixel_weight=0.999, adv_weight=0.001, hole_weight=1.0, extra_fn=None):
        s = generator.cfg.uv_size
        if tuple(atlas.shape) != (s, s):
            raise ValueError(f"atlas has shape {tuple(atlas.shape)}; pass ({s}, {s}) like the generator's uv_size")
        if discriminator.in_channels != 4 or discriminator.uv_size != s:
            raise ValueError(f"discriminator is for in_channels={discriminator.in_channels}, uv_size="
                             f"{discriminator.uv_size}; build PatchDiscriminator({s}, base_width, in_channels=4)")
        if min(pixel_weight, adv_weight, hole_weight) < 0:
            raise ValueError("pixel_weight, adv_weight and hole_weight must be >= 0")
        if (extra_fn is None) != (generator.cfg.extra_channels == 0):
            raise ValueError("extra_fn must be given iff the generator has extra_channels > 0")
        self.generator, self.discriminator, self.extra_fn = generator, discriminator, extra_fn
        self.atlas = atlas.float()
        self.pixel_weight, self.adv_weight, self.hole_weight = pixel_weight, adv_weight, hole_weight
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
        self.runtime = Runtime(torch.device("cpu"), None, False)
        self.g_net, self.d_net = generator, discriminator

    def configure(self, runtime: Runtime):
        self.runtime = runtime
        memory_format = torch.channels_last if runtime.channels_last else torch.preserve_format
        self.generator.to(runtime.device, memory_format=memory_format)
        self.discriminator.to(runtime.device, memory_format=memory_format)
        self.atlas = self.atlas.to(runtime.device)
        if hasattr(self.extra_fn, "to"):
            self.extra_fn.to(runtime.device)
        self.g_net, self.d_net = runtime.parallel(self.generator), runtime.parallel(self.discriminator)

    def inputs(self, batch):
        known = known_texels(batch["observed"], batch["hole"], self.atlas)
        uv_in = batch["uv"] * known
        extra = None
        if self.extra_fn is not None:
            with torch.no_grad():
                extra = self.extra_fn(uv_in, known)
        return uv_in, known, extra

    def pixel_loss(self, pred, uv, known, observed):
        weight = observed * self.atlas * (known + self.hole_weight * (1 - known))
        return masked_mean((pred.float() - uv.float()).square(), weight)

    def training_step(self, batch, step):
        self.generator.train()
        self.discriminator.train()
        uv, observed = batch["uv"], batch["observed"]
        uv_in, known, extra = self.inputs(batch)
        real_in = discriminator_input(uv, observed, self.atlas)
        with self.runtime.autocast():
            pred = self.g_net(uv_in, known, extra)
            fake_in = discriminator_input(composite(pred, uv, known), observed, self.atlas)
            real_scores, fake_scores = self.d_net(torch.cat([real_in, fake_in.detach()])).chunk(2)
            d_loss = 0.5 * (lsgan_loss(real_scores, 1.0) + lsgan_loss(fake_scores, 0.0))
        self._update(self.opt_d, d_loss)

        # G's step needs grads through D, not of D: the plain D, frozen (so DDP expects no gradients of it),
        # in eval mode (its spectral norms as the D update left them, no second power iteration)
        self.discriminator.requires_grad_(False).eval()
        with self.runtime.autocast():
            adv = lsgan_loss(self.discriminator(fake_in), 1.0)
            pixel = self.pixel_loss(pred, uv, known, observed)
            g_loss = self.pixel_weight * pixel + self.adv_weight * adv
        self._update(self.opt_g, g_loss)
        self.discriminator.requires_grad_(True).train()
        values = torch.stack([g_loss, pixel, adv, d_loss]).detach().float().unbind()
        return {**dict(zip(["g_total", "pixel", "adv", "d"], values)), "lr": self.opt_g.param_groups[0]["lr"]}

    @staticmethod
    def _update(optimizer, loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sample(self, batch, limit=8):
        return sample_rows(self.generator, self.runtime, self.inputs, batch, limit)

    def state_dict(self):
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state):
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])


class BlendTrainer:
    """Trains only the BlendNet (Trainer protocol of uvlib.train.loop); the PCA and PConv are frozen.

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
        self.net = blended.blend

    def configure(self, runtime: Runtime):
        self.runtime = runtime
        self.blended.to(runtime.device)
        self.atlas = self.atlas.to(runtime.device)
        self.net = runtime.parallel(self.blended.blend)

    def inputs(self, batch):
        known = known_texels(batch["observed"], batch["hole"], self.atlas)
        uv_in = batch["uv"] * known
        return uv_in, known, self.blended.fills(uv_in, known)

    def training_step(self, batch, step):
        self.blended.blend.train()
        uv_in, known, (pca_fill, pconv_fill) = self.inputs(batch)
        counted = batch["observed"] * self.atlas
        with self.runtime.autocast():
            pred = self.net(pca_fill, pconv_fill, uv_in, known)
        hole = masked_mean((pred - batch["uv"]).abs(), counted * (1 - known))
        on_known = masked_mean((pred - batch["uv"]).abs(), counted * known)
        total = hole + self.known_weight * on_known
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        values = torch.stack([total, hole, on_known]).detach().float().unbind()
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
