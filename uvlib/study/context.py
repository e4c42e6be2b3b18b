"""What every stage notebook starts with: its run folder, the dataset, the device and the protocol's cases.

    ctx = open_stage("01_pca", run_dir, dataset_dir, seed=seed, eval_split="test")
    ctx.train_uv, ctx.train_observed    training maps (ctx.train_rows: their index rows)
    ctx.maps("val")                     (uv, observed, rows) of a split, e.g. for stacked stages
    ctx.bench / ctx.val                 fixed test cases of the scored split / a small validation set
    ctx.hole_sampler()                  realistic training holes, for uvlib.train.batches.TrainingBatches
    ctx.evaluate({...})                 scores -> metrics.json, per-case CSVs, showcase.npz
"""
import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from uvlib.data.dataset import Dataset, DatasetError, open_dataset
from uvlib.protocol import figures as viz
from uvlib.protocol.cases import Benchmark, complete_cases, load_benchmark, score
from uvlib.protocol.report import evaluate_methods
from uvlib.protocol.runs import MissingStageError, stage_dir
from uvlib.study.params import dataset_path, project_path
from uvlib.train.batches import HoleSampler, build_hole_bank
from uvlib.train.loop import resolve_device, seed_everything


@dataclass
class StageContext:
    stage: str
    out_dir: Path
    ds: Dataset
    device: torch.device
    seed: int
    bench: Benchmark
    val: Benchmark
    train_uv: torch.Tensor
    train_observed: torch.Tensor
    train_rows: list = field(default_factory=list)
    progress: bool = True
    compile: bool = False          # torch.compile the networks a recipe trains (TrainConfig.compile)
    loader_workers: int = 2        # DataLoader workers when the training maps do not fit on the GPU
    _sampler: HoleSampler = field(default=None, repr=False)

    @property
    def atlas(self) -> torch.Tensor:
        return self.bench.atlas

    @property
    def uv_size(self) -> int:
        return self.ds.uv_size

    def hole_sampler(self, n_pose=512) -> HoleSampler:
        if self._sampler is None:
            self._sampler = HoleSampler(build_hole_bank(self.ds, "train", self.seed, n_pose, progress=self.progress))
        return self._sampler

    def maps(self, split) -> tuple:
        """(uv, observed, rows) of a split: the training maps as opened, any other split in full."""
        if split == "train":
            return self.train_uv, self.train_observed, self.train_rows
        return self.ds.load(split)

    def describe(self) -> str:
        return (f"{len(self.train_uv)} training maps, {len(self.bench)} test cases, {self.uv_size}x{self.uv_size}, "
                f"device {self.device}")

    def training_curves(self, names):
        """The loss curves of this stage's training runs side by side, saved as training_curves.png."""
        logs = {name: self.out_dir / "train" / name / "log.csv" for name in names}
        return viz.training_curves(logs, self.out_dir / "training_curves.png")

    def evaluate(self, methods: dict, params: dict, method_params=None, **extra) -> dict:
        return evaluate_methods(methods, self.bench, self.out_dir, self.stage, self.seed, params,
                                method_params=method_params, device=self.device, progress=self.progress, **extra)


def open_stage(stage, run_dir, dataset_dir="", seed=0, eval_split="test", eval_limit=0, val_limit=64,
               train_limit=0, device="auto", progress=True) -> StageContext:
    """Seed everything, open the run's dataset and load the protocol's fixed cases.

    eval_limit / val_limit / train_limit: use only the first N maps of the split (0 = all), for CPU budgets.
    """
    seed_everything(seed)
    data = dataset_path(run_dir, dataset_dir)
    try:
        ds = open_dataset(data)
    except DatasetError as e:
        raise MissingStageError(f"stage 00_data_prep has not produced a dataset at {data}; run "
                                f"notebooks/00_data_prep.ipynb with the same run_dir first ({e})") from None
    bench = load_benchmark(ds, eval_split, seed=seed, limit=eval_limit or None, progress=progress)
    val = load_benchmark(ds, "val", seed=seed, limit=val_limit or None, progress=progress)
    uv, observed, rows = ds.load("train", limit=train_limit or None)
    return StageContext(stage, stage_dir(project_path(run_dir), stage), ds, resolve_device(device), seed, bench, val,
                        uv, observed, rows, progress)


class EpochMonitor:
    """Per-epoch results: validation hole-PSNR, sample completions saved as figures, and the best weights.

    Pass as fit_autoencoder(..., on_epoch=monitor); every `every` epochs (and the last) it scores the model
    on the validation cases and saves a grid of the same validation cases completed at that epoch.
    """

    def __init__(self, ctx: StageContext, name: str, every: int, last_epoch: int):
        self.ctx, self.name, self.every, self.last_epoch = ctx, name, max(1, every), last_epoch
        self.cases = ctx.val.showcase(4)
        self.best_psnr, self.best_epoch, self.best_state = -np.inf, 0, None

    def __call__(self, epoch, model, row):
        if epoch % self.every and epoch != self.last_epoch:
            return
        summary, _ = score(model, self.ctx.val, device=self.ctx.device, progress=False)
        row["val_psnr"] = summary["overall"]["psnr"]
        if row["val_psnr"] > self.best_psnr:
            self.best_psnr, self.best_epoch = row["val_psnr"], epoch
            self.best_state = copy.deepcopy(model.state_dict())
        done = complete_cases(model, self.ctx.val, self.cases, device=self.ctx.device)
        viz.show_grid(list(done), self.ctx.out_dir / "epochs" / f"{self.name}-epoch{epoch:05d}.png", ncols=4,
                      title=f"{self.name} epoch {epoch}: val hole-PSNR {row['val_psnr']:.2f} dB")
        viz.plt.close("all")
