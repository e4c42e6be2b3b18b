"""Training recipes of stages 03-07, shared by their notebooks: one spec in, one trained model file out.

Each recipe trains with uvlib.training.train in RUN/NN_stage/train/NAME/ (checkpoints, log.csv, loss plot,
sample grids; a killed run resumes there), then saves RUN/NN_stage/model-NAME.pt for `uvlib complete`.
"""
from dataclasses import asdict, dataclass, field

import torch

from .losses import DEFAULT_WEIGHTS, InpaintingLoss
from .models.blend import BlendedPCAPConv, BlendNet, BlendStage
from .models.cascade import CascadeStage, CascadeThenGAN, PCAPConvCascade, load_pca
from .models.gan import Generator, GeneratorConfig, GANStage, PatchDiscriminator
from .models.pca import MaskedPCA
from .models.pconv import PConvUNet, PConvUNetConfig
from .models.registry import load_model, read_model_file, save_model
from .models.vgg import FEATURE_NETS, load_feature_net
from .params import project_path
from .stage import StageContext
from .training import PConvStage, TrainConfig, train
from .runs import require


@dataclass
class PConvSpec:
    """One PConv training run. The original study's experiments are specs: loss-weight grid, dilated, subset."""
    name: str = "pconv"
    base_width: int = 32
    dilated: bool = False
    feature_net: str = "random_vgg16"      # vgg16 (needs vgg16_weights), random_vgg16, none
    vgg16_weights: str = ""                # a torchvision vgg16 state dict on disk
    loss_weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    steps: int = 300                       # at lr
    fine_tune_steps: int = 100             # then, encoder batch-norm frozen, at lr_fine_tune
    lr: float = 2e-4
    lr_fine_tune: float = 5e-5
    batch_size: int = 16
    train_subset: int = 0                  # 0 = all training maps; the original also tried 600
    amp: str = "auto"                      # auto (bf16 on CUDA), bf16 (also fast on CPUs with AMX), off
    channels_last: str = "auto"            # auto (on for CUDA), on, off

    def __post_init__(self):
        if self.feature_net not in FEATURE_NETS:
            raise ValueError(f"feature_net {self.feature_net!r} is unknown; use one of {FEATURE_NETS}")
        if self.steps < 1 or self.fine_tune_steps < 0 or self.batch_size < 1:
            raise ValueError(f"spec {self.name}: steps >= 1, fine_tune_steps >= 0 and batch_size >= 1 are required")
        if self.feature_net == "none":
            self.loss_weights = {**self.loss_weights, "perceptual": 0.0, "style": 0.0}


def _train_config(ctx: StageContext, name, max_steps, batch_size, checkpoint_every, amp="auto",
                  channels_last="auto"):
    return TrainConfig(max_steps=max_steps, batch_size=batch_size, checkpoint_every=checkpoint_every,
                       sample_every=max(1, max_steps // 4), log_every=max(1, min(50, max_steps // 10)),
                       seed=ctx.seed, device=str(ctx.device), out_dir=str(ctx.out_dir / "train" / name),
                       amp=amp, channels_last=channels_last, progress=ctx.progress)


def _batches(ctx: StageContext, batch_size, subset=0):
    batches = ctx.batches(batch_size)
    if subset and subset < len(ctx.train_uv):
        keep = torch.randperm(len(ctx.train_uv), generator=torch.Generator().manual_seed(ctx.seed))[:subset]
        batches = type(batches)(ctx.train_uv[keep], ctx.train_observed[keep], ctx.hole_sampler(), batch_size, ctx.seed)
    return batches


def inpainting_loss(spec: PConvSpec, seed) -> InpaintingLoss:
    weights_path = project_path(spec.vgg16_weights) if spec.vgg16_weights else None
    return InpaintingLoss(spec.loss_weights, load_feature_net(spec.feature_net, weights_path, seed))


def train_pconv(ctx: StageContext, spec: PConvSpec, checkpoint_every=100, pca: MaskedPCA = None):
    """Stage 03 (pca=None): a PConvUNet. Stage 04 (a fitted PCA): the PCA -> PConv residual cascade."""
    cfg = PConvUNetConfig(uv_size=ctx.uv_size, base_width=spec.base_width, dilated=spec.dilated,
                          extra_channels=3 if pca else 0, predict_residual_on_extra=pca is not None)
    torch.manual_seed(ctx.seed)
    model = PConvUNet(cfg)
    loss = inpainting_loss(spec, ctx.seed)
    args = dict(lr=spec.lr, fine_tune_after=spec.steps if spec.fine_tune_steps else None,
                lr_fine_tune=spec.lr_fine_tune, atlas=ctx.atlas)
    if pca is None:
        completer, stage = model, PConvStage(model, loss, **args)
    else:
        completer = PCAPConvCascade(pca, model)
        stage = CascadeStage(completer, loss, **args)
    batches = _batches(ctx, spec.batch_size, spec.train_subset)
    train_cfg = _train_config(ctx, spec.name, spec.steps + spec.fine_tune_steps, spec.batch_size, checkpoint_every,
                              spec.amp, spec.channels_last)
    train(stage, batches, train_cfg, sample_fn=lambda st, step: st.sample(batches(0)))
    model.eval()
    path = ctx.out_dir / f"model-{spec.name}.pt"
    if pca is None:
        save_model(path, "pconv", ctx.uv_size, asdict(cfg), model.state_dict())
        return model.complete
    config, state = completer.state()
    save_model(path, "pca_pconv", ctx.uv_size, config, state)
    return completer


@dataclass
class GANSpec:
    name: str = "gan"
    base_width: int = 32
    epochs: tuple = (43, 53, 97)           # snapshot epochs (the original kept 43, 53 and 97)
    batch_size: int = 16
    lr: float = 2e-4
    pixel_weight: float = 0.999
    adv_weight: float = 0.001
    amp: str = "auto"
    channels_last: str = "auto"

    def steps_per_epoch(self, n_train):
        return max(1, n_train // self.batch_size)


def train_gan(ctx: StageContext, spec: GANSpec, checkpoint_every=100, cascade: PCAPConvCascade = None) -> dict:
    """Stage 05 (cascade=None) or 06 (refining the 04 cascade). Returns {snapshot name: completion fn}."""
    torch.manual_seed(ctx.seed)
    generator = Generator(GeneratorConfig(uv_size=ctx.uv_size, base_width=spec.base_width,
                                          extra_channels=3 if cascade else 0,
                                          predict_residual_on_extra=cascade is not None))
    discriminator = PatchDiscriminator(ctx.uv_size, spec.base_width, in_channels=4)
    stage = GANStage(generator, discriminator, ctx.atlas, lr=spec.lr, pixel_weight=spec.pixel_weight,
                     adv_weight=spec.adv_weight, extra_fn=cascade)
    batches = _batches(ctx, spec.batch_size)
    per_epoch = spec.steps_per_epoch(len(ctx.train_uv))
    snapshots = {}
    for epoch in sorted(spec.epochs):
        name = f"{spec.name}_ep{epoch}"
        train(stage, batches, _train_config(ctx, spec.name, epoch * per_epoch, spec.batch_size, checkpoint_every,
                                            spec.amp, spec.channels_last),
              sample_fn=lambda st, step: st.sample(batches(0)))
        generator.eval()
        path = ctx.out_dir / f"model-{name}.pt"
        if cascade is None:
            save_model(path, "gan", ctx.uv_size, asdict(generator.cfg), generator.state_dict())
        else:
            config, state = CascadeThenGAN(cascade, generator).state()
            save_model(path, "pca_pconv_gan", ctx.uv_size, config, state)
        snapshots[name] = load_model(path, ctx.device)[0]
    return snapshots


def train_blend(ctx: StageContext, pca: MaskedPCA, pconv: PConvUNet, name="blend", steps=200, batch_size=16,
                lr=1e-3, hidden=32, checkpoint_every=100):
    """Stage 07: a small net learns a per-pixel blend (and residual) of a PCA and a PConv, on observed texels."""
    torch.manual_seed(ctx.seed)
    blended = BlendedPCAPConv(pca, pconv, BlendNet(hidden))
    stage = BlendStage(blended, ctx.atlas, lr=lr)
    batches = _batches(ctx, batch_size)
    train(stage, batches, _train_config(ctx, name, steps, batch_size, checkpoint_every),
          sample_fn=lambda st, step: st.sample(batches(0)))
    config, state = blended.state()
    save_model(ctx.out_dir / f"model-{name}.pt", "blend", ctx.uv_size, config, state)
    return blended


def _saved(ctx: StageContext, stage: str, name: str) -> dict:
    return read_model_file(require(ctx.out_dir.parent, stage, f"model-{name}.pt"))


def earlier_pca(ctx: StageContext, k: int) -> MaskedPCA:
    """Stage 01's masked PCA with k components, or a one-line error naming the stage to run."""
    return load_pca(_saved(ctx, "01_pca", f"masked_pca_k{k}")["state"], ctx.device)


def earlier_pconv(ctx: StageContext, name: str) -> PConvUNet:
    saved = _saved(ctx, "03_pconv", name)
    model = PConvUNet(PConvUNetConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    return model.to(ctx.device).eval()


def earlier_cascade(ctx: StageContext, name: str) -> PCAPConvCascade:
    saved = _saved(ctx, "04_pca_pconv_cascade", name)
    return PCAPConvCascade.from_state(saved["config"], saved["state"], ctx.device)
