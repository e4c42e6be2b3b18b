"""What every stage notebook starts with: its run folder, the dataset, the device and the protocol's cases.

    ctx = open_stage("01_pca", run_dir, dataset_dir, seed=seed, eval_split="test")
    ctx.train_uv, ctx.train_observed    training maps (ctx.train_rows: their index rows)
    ctx.maps("val")                     (uv, observed, rows) of a split, e.g. for stacked stages
    ctx.bench / ctx.val                 fixed test cases of the scored split / a small validation set
    ctx.hole_sampler()                  realistic training holes, for uvlib.train.batches.TrainingBatches
    ctx.evaluate({...})                 scores -> metrics.json, per-case CSVs, showcase.npz

Other prepared datasets can add to the training data (opt-in, the profile's `extra_train_dataset_dir` and
`real_holes_dataset_dir`): the near-frontal maps of one's train split join the training maps, the holes of
another's turned faces join the hole bank. Only their train splits are used, so their val and test people stay
unseen (the cross-pose test scores them); ctx.external_record() says what was used, for run records and metrics.
"""
import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from uvlib.data.dataset import Dataset, DatasetError, open_dataset
from uvlib.protocol import figures as viz
from uvlib.protocol.cases import Benchmark, complete_cases, load_benchmark, score
from uvlib.protocol.crosspose import CrossPose, build_pairs, check_unseen
from uvlib.protocol.report import evaluate_methods
from uvlib.protocol.runs import MissingStageError, stage_dir
from uvlib.study.params import dataset_path, project_path
from uvlib.train.batches import EXTERNAL_SPLIT, HoleSampler, RealHoles, build_hole_bank, lent_positions
from uvlib.train.loop import resolve_device, seed_everything
from uvlib.train.provenance import ids_digest


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
    extra_train: "ExtraMaps" = None   # another dataset's maps appended to the training maps
    real_holes: RealHoles = None   # real turned faces' holes mixed into the hole bank
    _sampler: HoleSampler = field(default=None, repr=False)

    @property
    def atlas(self) -> torch.Tensor:
        return self.bench.atlas

    @property
    def uv_size(self) -> int:
        return self.ds.uv_size

    def hole_sampler(self, n_pose=512) -> HoleSampler:
        if self._sampler is None:
            self._sampler = HoleSampler(build_hole_bank(self.ds, "train", self.seed, n_pose, progress=self.progress,
                                                        real=self.real_holes))
        return self._sampler

    def external_record(self, split="train") -> dict:
        """What a run learning on `split` took from other datasets: {"maps": ..., "holes": ...} ({} when nothing),
        for uvlib.train.provenance.data_record; the maps only count for the train split they joined."""
        record = {"maps": self.extra_train.describe()} if self.extra_train is not None and split == "train" else {}
        return record | ({"holes": self.real_holes.describe()} if self.real_holes is not None else {})

    def external_data(self) -> dict:
        """external_record() plus each dataset's folder and the photos it was prepared from, for metrics.json
        (uvlib.protocol.crosspose.check_unseen reads them)."""
        lent = {"maps": self.extra_train, "holes": self.real_holes}
        return {role: {**source, "path": str(lent[role].dataset.root.resolve()),
                       "photos": lent[role].dataset.info.get("source", "")}
                for role, source in self.external_record().items()}

    def crosspose_val(self, dataset_dir: str) -> CrossPose:
        """The real cross-pose pairs of another dataset's validation split (people grouped, e.g. cfp-dev), for
        choosing settings on real turned faces; refused, in one line, if this stage learned from any of them."""
        other = open_other(self.ds, "crosspose_dataset_dir", dataset_dir)
        check_unseen(other, "val", {self.stage: {"external_data": self.external_data()}})
        return build_pairs(other, "val")

    def training_maps(self, idx, dtype=torch.float32) -> tuple:
        """(uv, observed) of the training maps at `idx` (positions in train_rows) read from their shards as stored:
        dtype=torch.uint8 keeps a byte a texel. The run's own maps come first, then any lent ones."""
        idx = np.asarray(idx, dtype=np.int64)
        own = len(self.train_rows) - (len(self.extra_train.rows()) if self.extra_train is not None else 0)
        parts = [(np.flatnonzero(idx < own), self.ds.maps("train"), idx[idx < own])]
        if self.extra_train is not None:
            lent = np.asarray(lent_positions(self.extra_train.dataset, self.extra_train.rows()), dtype=np.int64)
            parts.append((np.flatnonzero(idx >= own), self.extra_train.dataset.maps(EXTERNAL_SPLIT),
                          lent[idx[idx >= own] - own]))
        read = [(where, *reader.tensors(rows, dtype=dtype)) for where, reader, rows in parts if len(where)]
        order = torch.from_numpy(np.argsort(np.concatenate([where for where, _, _ in read]), kind="stable"))
        return torch.cat([uv for _, uv, _ in read])[order], torch.cat([seen for _, _, seen in read])[order]

    def maps(self, split) -> tuple:
        """(uv, observed, rows) of a split: the training maps as opened, any other split in full."""
        if split == "train":
            return self.train_uv, self.train_observed, self.train_rows
        return self.ds.load(split)

    def describe(self) -> str:
        extra = (f" ({len(self.extra_train.rows())} of them from {self.extra_train.label})"
                 if self.extra_train is not None else "")
        holes = (f", plus {len(self.real_holes.rows())} real turned faces' holes from "
                 f"{self.real_holes.label}" if self.real_holes is not None else "")
        return (f"{len(self.train_uv)} training maps{extra}, {len(self.bench)} test cases, "
                f"{self.uv_size}x{self.uv_size}, device {self.device}{holes}")

    def training_curves(self, names):
        """The loss curves of this stage's training runs side by side, saved as training_curves.png."""
        logs = {name: self.out_dir / "train" / name / "log.csv" for name in names}
        return viz.training_curves(logs, self.out_dir / "training_curves.png")

    def evaluate(self, methods: dict, params: dict, method_params=None, **extra) -> dict:
        """Score `methods` into metrics.json, which also records what came from other datasets (external_data),
        so the results notebook never scores people a model saw."""
        used = self.external_data()
        extra = extra | ({"external_data": used} if used else {})
        return evaluate_methods(methods, self.bench, self.out_dir, self.stage, self.seed, params,
                                method_params=method_params, device=self.device, progress=self.progress, **extra)


def open_stage(stage, run_dir, dataset_dir="", seed=0, eval_split="test", eval_limit=0, val_limit=64,
               train_limit=0, device="auto", progress=True, extra_train_dataset_dir="", extra_train_max_yaw=30.0,
               real_holes_dataset_dir="", real_holes_min_yaw=45.0) -> StageContext:
    """Seed everything, open the run's dataset and load the protocol's fixed cases.

    eval_limit / val_limit / train_limit: use only the first N maps of the split (0 = all), for CPU budgets;
    train_limit counts the run's own maps only.
    extra_train_dataset_dir: another prepared dataset whose train-split faces with |yaw| < extra_train_max_yaw
    join the training maps (e.g. CFP's frontal photos, prepared `--group-by prefix` so its split is by person).
    real_holes_dataset_dir: another prepared dataset whose train-split faces with |yaw| >= real_holes_min_yaw
    give their unseen regions to the training hole bank (e.g. CFP's profiles).
    """
    seed_everything(seed)
    data = dataset_path(run_dir, dataset_dir)
    try:
        ds = open_dataset(data)
    except DatasetError as e:
        raise MissingStageError(f"stage 00_data_prep has not produced a dataset at {data}; run "
                                f"notebooks/00_data_prep.ipynb with the same run_dir first ({e})") from None
    extra = extra_maps = real = None
    if extra_train_dataset_dir:
        extra = ExtraMaps(open_other(ds, "extra_train_dataset_dir", extra_train_dataset_dir),
                          float(extra_train_max_yaw), extra_train_dataset_dir)
        extra_maps = extra.load()
    if real_holes_dataset_dir:
        real = RealHoles(open_other(ds, "real_holes_dataset_dir", real_holes_dataset_dir), float(real_holes_min_yaw),
                         real_holes_dataset_dir)
        if not real.rows():
            raise ValueError(f"real_holes_dataset_dir {real_holes_dataset_dir}: no face of its train split is turned "
                             f"|yaw| >= {real_holes_min_yaw:g}; lower real_holes_min_yaw or prepare profile photos")
    bench = load_benchmark(ds, eval_split, seed=seed, limit=eval_limit or None, progress=progress)
    val = load_benchmark(ds, "val", seed=seed, limit=val_limit or None, progress=progress)
    uv, observed, rows = ds.load("train", limit=train_limit or None)
    if extra_maps is not None:
        uv, observed, rows = torch.cat([uv, extra_maps[0]]), torch.cat([observed, extra_maps[1]]), rows + extra_maps[2]
    return StageContext(stage, stage_dir(project_path(run_dir), stage), ds, resolve_device(device), seed, bench, val,
                        uv, observed, rows, progress, extra_train=extra, real_holes=real)


def open_other(ds: Dataset, name: str, folder: str) -> Dataset:
    """Another prepared dataset named by parameter `name`, checked against the run's dataset, or one line."""
    try:
        other = open_dataset(project_path(folder))
    except DatasetError as e:
        raise ValueError(f"{name} {folder}: {e}") from None
    if other.uv_size != ds.uv_size:
        raise ValueError(f"{name} {folder} is {other.uv_size}x{other.uv_size}, this run's dataset {ds.uv_size}x"
                         f"{ds.uv_size}; prepare it with --size {ds.uv_size}")
    if other.root.resolve() == ds.root.resolve():
        raise ValueError(f"{name} {folder} is this run's own dataset; name another prepared dataset or leave it empty")
    return other


@dataclass
class ExtraMaps:
    """The near-frontal faces (|yaw| < max_yaw, the largest face of each photo) of another dataset's train split,
    as extra training maps. Their rows get ids and groups prefixed with `label` (the folder as the profile names
    it), so each of its people is a group of its own for cross-fitting and run records tell the maps apart."""
    dataset: Dataset
    max_yaw: float
    label: str

    def rows(self) -> list:
        return [r for r in self.dataset.split_rows(EXTERNAL_SPLIT) if r["face"] == 0 and abs(r["yaw"]) < self.max_yaw]

    def describe(self) -> dict:
        rows = self.rows()
        return {"dataset": self.label, "split": EXTERNAL_SPLIT, "max_yaw": self.max_yaw, "maps": len(rows),
                "groups": len({r["group"] for r in rows}), "ids": ids_digest(rows)}

    def load(self) -> tuple:
        """(uv, observed, rows) as Dataset.load gives them, rows relabelled."""
        rows = self.rows()
        if not rows:
            raise ValueError(f"extra_train_dataset_dir {self.label}: no face of its train split has |yaw| < "
                             f"{self.max_yaw:g}; raise extra_train_max_yaw or prepare frontal photos")
        uv, observed = self.dataset.maps(EXTERNAL_SPLIT).tensors(lent_positions(self.dataset, rows))
        return uv, observed, [{**r, "id": f"{self.label}:{r['id']}", "group": f"{self.label}:{r['group']}",
                               "dataset": self.label} for r in rows]


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
