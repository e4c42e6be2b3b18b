"""Training recipes of stages 03-07, shared by their notebooks: one spec in, one trained model file out.

Each recipe trains with uvlib.train.loop.train in RUN/NN_stage/train/NAME/ (checkpoints, log.csv, loss plot,
sample grids; a killed run resumes there), then saves RUN/NN_stage/model-NAME.pt for `uvlib complete`.

The checkpoints and the model file store the run: spec, seed, which maps (a digest of their ids), the upstream
models (a digest of their weights) and how stacked inputs were made. A model file made by this very run is
reused; one made by another run is moved aside with its training folder (train/NAME.superseded-N), with one
line naming the differing keys, and the run trains afresh.

Stacked stages never learn from in-sample outputs of earlier stages: stage 04 trains its PConv on cross-fitted
PCA fills (uvlib.train.crossfit); stages 06 and 07 train on the validation split, which stages 01-04 never fitted.
"""
import time
from dataclasses import asdict, dataclass, field

import torch

from uvlib.models.blend import BlendedPCAPConv, BlendNet
from uvlib.models.cascade import CascadeThenGAN, MirrorPoissonGAN, MirrorPoissonPConvCascade, PCAPConvCascade, load_pca
from uvlib.models.gan import Generator, GeneratorConfig, PatchDiscriminator
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.models.registry import load_model, read_model_file, save_model
from uvlib.models.vgg import FEATURE_NETS, load_feature_net
from uvlib.protocol.runs import require
from uvlib.study.context import EpochMonitor, StageContext
from uvlib.study.params import project_path
from uvlib.train import distributed
from uvlib.train.autoencoder import fit_autoencoder
from uvlib.train.batches import TrainingBatches
from uvlib.train.crossfit import CrossFittedPCA, FoldedBatches
from uvlib.train.loop import TrainConfig, budget_of, device_name, train
from uvlib.train.losses import DEFAULT_WEIGHTS, InpaintingLoss
from uvlib.train.provenance import data_record, held_out_record, reusable, state_digest, stored_run
from uvlib.train.trainers import BlendTrainer, CascadeTrainer, GANTrainer, PConvTrainer

FIRST_FILLS = ("none", "mirror_poisson")
STACK_SPLIT = "val"  # stages 06 and 07 learn on earlier stages' outputs for this split, which they never fitted


@dataclass
class PConvSpec:
    """One PConv training run. The original study's experiments are specs: loss-weight grid, dilated, subset."""
    name: str = "pconv"
    base_width: int = 32
    dilated: bool = False
    symmetric: bool = False                # also see the mirrored map and its visibility (uvlib.models.symmetry)
    first_fill: str = "none"               # none, or mirror_poisson: refine the training-free mirror-Poisson fill
    feature_net: str = "none"              # none, random_vgg16, or vgg16 (needs vgg16_weights)
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
        if self.first_fill not in FIRST_FILLS:
            raise ValueError(f"spec {self.name}: first_fill {self.first_fill!r} is unknown; use one of {FIRST_FILLS}")
        if self.steps < 1 or self.fine_tune_steps < 0 or self.batch_size < 1:
            raise ValueError(f"spec {self.name}: steps >= 1, fine_tune_steps >= 0 and batch_size >= 1 are required")
        if self.feature_net == "none":
            self.loss_weights = {**self.loss_weights, "perceptual": 0.0, "style": 0.0}


def _train_config(ctx: StageContext, name, max_steps, checkpoint_every, run, amp="auto", channels_last="auto"):
    return TrainConfig(max_steps=max_steps, checkpoint_every=checkpoint_every,
                       sample_every=max(1, max_steps // 4), log_every=max(1, min(50, max_steps // 10)),
                       seed=ctx.seed, device=str(ctx.device), out_dir=str(ctx.out_dir / "train" / name),
                       amp=amp, channels_last=channels_last, compile=ctx.compile,
                       loader_workers=ctx.loader_workers, progress=ctx.progress, run=run)


def _save_model(path, *args):
    """save_model on rank 0 (the only process under plain Python); every rank goes on once the file is there."""
    if distributed.is_main():
        save_model(path, *args)
    distributed.barrier()


def stacking_record(ctx: StageContext, *names) -> dict:
    """{model name: how its stacked inputs were made}, read from the saved model files, for metrics.json."""
    return {name: stored_run(ctx.out_dir / f"model-{name}.pt").get("stacking", {}) for name in names}


def _subset(ctx: StageContext, subset):
    """Index of the training maps a run uses: all (None), or a seeded subset of `subset` maps."""
    if subset and subset < len(ctx.train_uv):
        return torch.randperm(len(ctx.train_uv), generator=torch.Generator().manual_seed(ctx.seed))[:subset]
    return None


def inpainting_loss(spec: PConvSpec, seed) -> InpaintingLoss:
    weights_path = project_path(spec.vgg16_weights) if spec.vgg16_weights else None
    return InpaintingLoss(spec.loss_weights, load_feature_net(spec.feature_net, weights_path, seed))


def train_pconv(ctx: StageContext, spec: PConvSpec, checkpoint_every=100, pca: MaskedPCA = None,
                cross_fit: CrossFittedPCA = None):
    """Stage 03 (pca=None): a PConvUNet. Stage 04: the PCA -> PConv residual cascade; its PConv learns on the
    out-of-fold fills of `cross_fit` (built on ctx's training maps), the saved cascade completes with `pca`.
    spec.first_fill == "mirror_poisson" (no pca): the mirror-Poisson -> PConv residual cascade."""
    if (pca is None) != (cross_fit is None):
        raise ValueError("train_pconv: a cascade needs both pca (stage 01's, for test time) and cross_fit "
                         "(a CrossFittedPCA of the training maps, for training fills)")
    if pca is not None and spec.first_fill != "none":
        raise ValueError(f"spec {spec.name}: a PCA cascade takes no first_fill (it is {spec.first_fill!r})")
    first = "pca" if pca is not None else spec.first_fill
    keep = _subset(ctx, spec.train_subset)
    rows = ctx.train_rows if keep is None else [ctx.train_rows[i] for i in keep]
    run = {"spec": asdict(spec), "data": data_record(rows, "train", ctx.external_record("train"))}
    if pca is not None:
        run |= {"upstream": {"pca": state_digest(pca.state_dict())}, "stacking": cross_fit.describe()}
    path = ctx.out_dir / f"model-{spec.name}.pt"
    if reusable(ctx.out_dir / "train" / spec.name, path, run):
        return load_model(path, ctx.device)[0]

    cfg = PConvUNetConfig(uv_size=ctx.uv_size, base_width=spec.base_width, dilated=spec.dilated,
                          extra_channels=0 if first == "none" else 3, predict_residual_on_extra=first != "none",
                          symmetric=spec.symmetric)
    torch.manual_seed(ctx.seed)
    model = PConvUNet(cfg)
    loss = inpainting_loss(spec, ctx.seed)
    args = dict(lr=spec.lr, fine_tune_after=spec.steps if spec.fine_tune_steps else None,
                lr_fine_tune=spec.lr_fine_tune, atlas=ctx.atlas)
    uv, observed = (ctx.train_uv, ctx.train_observed) if keep is None else (ctx.train_uv[keep], ctx.train_observed[keep])
    if first == "none":
        completer, trainer = model, PConvTrainer(model, loss, **args)
        batches = TrainingBatches(uv, observed, ctx.hole_sampler(), spec.batch_size, ctx.seed, ctx.device)
    elif first == "mirror_poisson":
        completer = MirrorPoissonPConvCascade(model)
        trainer = PConvTrainer(model, loss, **args, extra_fn=completer.fill)
        batches = TrainingBatches(uv, observed, ctx.hole_sampler(), spec.batch_size, ctx.seed, ctx.device)
    else:
        completer = PCAPConvCascade(pca, model)
        trainer = CascadeTrainer(completer, loss, **args, cross_fit=cross_fit.fit(ctx.device, ctx.progress))
        fold = cross_fit.fold if keep is None else cross_fit.fold[keep]
        batches = FoldedBatches(uv, observed, fold, ctx.hole_sampler(), spec.batch_size, ctx.seed, ctx.device)
    train_cfg = _train_config(ctx, spec.name, spec.steps + spec.fine_tune_steps, checkpoint_every, run, spec.amp,
                              spec.channels_last)
    budget = budget_of(train(trainer, batches, train_cfg, sample_fn=lambda st, step: st.sample(batches(0))))
    model.eval()
    if first == "none":
        _save_model(path, "pconv", ctx.uv_size, asdict(cfg), model.state_dict(), run, budget)
        return model.complete
    config, state = completer.state()
    _save_model(path, "pca_pconv" if first == "pca" else "mirror_poisson_pconv", ctx.uv_size, config, state, run,
                budget)
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
    symmetric: bool = False                # also see the mirrored map and its visibility (uvlib.models.symmetry)
    symmetric_unet: bool = True            # a symmetric generator is a U-Net (gan.py): the mirror at every size
    first_fill: str = "none"               # none, or mirror_poisson: refine the training-free mirror-Poisson fill
    hole_weight: float = 6.0               # pixel loss on hole texels vs known ones (the PConv loss: 6 vs 1)
    amp: str = "auto"
    channels_last: str = "auto"

    def __post_init__(self):
        if self.first_fill not in FIRST_FILLS:
            raise ValueError(f"spec {self.name}: first_fill {self.first_fill!r} is unknown; use one of {FIRST_FILLS}")

    def steps_per_epoch(self, n_train):
        return max(1, n_train // self.batch_size)


def train_gan(ctx: StageContext, spec: GANSpec, checkpoint_every=100, cascade: PCAPConvCascade = None) -> dict:
    """Stage 05 (cascade=None) on the training maps: a plain generator, or with spec.first_fill == "mirror_poisson"
    one refining the mirror-Poisson fill. Stage 06: refining the 04 cascade's completions of the validation split
    (the cascade fitted its PCA and PConv on the training maps). Returns {snapshot: completion fn}."""
    if cascade is not None and spec.first_fill != "none":
        raise ValueError(f"spec {spec.name}: a GAN refining the cascade takes no first_fill (it is {spec.first_fill!r})")
    first = "cascade" if cascade is not None else spec.first_fill
    split = "train" if cascade is None else STACK_SPLIT
    uv, observed, rows = ctx.maps(split)
    run = {"spec": {k: v for k, v in asdict(spec).items() if k != "epochs"},
           "data": data_record(rows, split, ctx.external_record(split))}
    if cascade is not None:
        run |= {"upstream": {"cascade": state_digest(cascade.state())},
                "stacking": held_out_record(split, rows, "stage 04 cascade completions")}
    torch.manual_seed(ctx.seed)
    generator = Generator(GeneratorConfig(uv_size=ctx.uv_size, base_width=spec.base_width,
                                          extra_channels=0 if first == "none" else 3,
                                          predict_residual_on_extra=first != "none", symmetric=spec.symmetric,
                                          unet=spec.symmetric and spec.symmetric_unet))
    if first == "none":
        completer, extra_fn, kind = None, None, "gan"
    elif first == "cascade":
        completer, extra_fn, kind = CascadeThenGAN(cascade, generator), cascade, "pca_pconv_gan"
    else:
        completer = MirrorPoissonGAN(generator)
        extra_fn, kind = completer.fill, "mirror_poisson_gan"
    discriminator = PatchDiscriminator(ctx.uv_size, spec.base_width, in_channels=4)
    trainer = GANTrainer(generator, discriminator, ctx.atlas, lr=spec.lr, pixel_weight=spec.pixel_weight,
                         adv_weight=spec.adv_weight, hole_weight=spec.hole_weight, extra_fn=extra_fn)
    batches = TrainingBatches(uv, observed, ctx.hole_sampler(), spec.batch_size, ctx.seed, ctx.device)
    per_epoch = spec.steps_per_epoch(len(uv))
    snapshots = {}
    for epoch in sorted(spec.epochs):
        name = f"{spec.name}_ep{epoch}"
        path = ctx.out_dir / f"model-{name}.pt"
        if not reusable(ctx.out_dir / "train" / spec.name, path, {**run, "epoch": epoch},
                        made_together=ctx.out_dir.glob(f"model-{spec.name}_ep*.pt")):
            done = train(trainer, batches, _train_config(ctx, spec.name, epoch * per_epoch, checkpoint_every, run,
                                                       spec.amp, spec.channels_last),
                         sample_fn=lambda st, step: st.sample(batches(0)))
            generator.eval()
            config, state = (asdict(generator.cfg), generator.state_dict()) if completer is None else completer.state()
            _save_model(path, kind, ctx.uv_size, config, state, {**run, "epoch": epoch}, budget_of(done))
        snapshots[name] = load_model(path, ctx.device)[0]
    return snapshots


def train_blend(ctx: StageContext, pca: MaskedPCA, pconv: PConvUNet, name="blend", steps=200, batch_size=16,
                lr=1e-3, hidden=32, checkpoint_every=100, symmetric=False):
    """Stage 07: a small net learns a per-pixel blend (and residual) of a PCA and a PConv, on observed texels of
    the validation split (the PCA and the PConv were fitted on the training maps). symmetric: the net also sees
    the mirrored map and its visibility."""
    uv, observed, rows = ctx.maps(STACK_SPLIT)
    run = {"spec": {"steps": steps, "batch_size": batch_size, "lr": lr, "hidden": hidden, "symmetric": symmetric},
           "data": data_record(rows, STACK_SPLIT, ctx.external_record(STACK_SPLIT)),
           "upstream": {"pca": state_digest(pca.state_dict()), "pconv": state_digest(pconv.state_dict())},
           "stacking": held_out_record(STACK_SPLIT, rows, "stage 01 PCA and stage 03 PConv completions")}
    path = ctx.out_dir / f"model-{name}.pt"
    if reusable(ctx.out_dir / "train" / name, path, run):
        return load_model(path, ctx.device)[0]
    torch.manual_seed(ctx.seed)
    blended = BlendedPCAPConv(pca, pconv, BlendNet(hidden, symmetric=symmetric, uv_size=ctx.uv_size))
    trainer = BlendTrainer(blended, ctx.atlas, lr=lr)
    batches = TrainingBatches(uv, observed, ctx.hole_sampler(), batch_size, ctx.seed, ctx.device)
    done = train(trainer, batches, _train_config(ctx, name, steps, checkpoint_every, run),
                 sample_fn=lambda st, step: st.sample(batches(0)))
    config, state = blended.state()
    _save_model(path, "blend", ctx.uv_size, config, state, run, budget_of(done))
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


def train_autoencoder(ctx: StageContext, name, model, kind, config, *, epochs, lr, batch_size, eval_every,
                      hole_training):
    """Stages 01 and 02: fit an atlas autoencoder with the original study's loop, keep the epoch with the best
    validation hole-PSNR and save RUN/STAGE/model-NAME.pt with its budget (every epoch counted, validation
    included). Returns (model on the CPU in eval mode, per-epoch
    history, {"best_epoch", "best_val_psnr", "fit_seconds"})."""
    monitor = EpochMonitor(ctx, name, eval_every, epochs)
    start = time.perf_counter()
    history = fit_autoencoder(model, ctx.train_uv, ctx.train_observed, epochs=epochs, lr=lr, batch_size=batch_size,
                              seed=ctx.seed, hole_sampler=ctx.hole_sampler() if hole_training else None,
                              on_epoch=monitor, device=ctx.device)
    seconds = time.perf_counter() - start
    model.load_state_dict(monitor.best_state)
    model = model.cpu().eval()
    budget = {"images_seen": epochs * len(ctx.train_uv), "train_seconds": seconds, "device": device_name(ctx.device)}
    save_model(ctx.out_dir / f"model-{name}.pt", kind, ctx.uv_size, config, model.state_dict(), budget=budget)
    print(f"{name}: best val hole-PSNR {monitor.best_psnr:.2f} dB at epoch {monitor.best_epoch}, {seconds:.1f} s")
    return model, history, {"best_epoch": monitor.best_epoch, "best_val_psnr": monitor.best_psnr,
                            "fit_seconds": seconds}
