"""Shared training loop: seeding, device/AMP, CSV log, atomic checkpoints with resume, samples.

A *trainer* owns its models, losses and optimisers and implements:
    configure(runtime)            move to runtime.device, wrap its networks with runtime.parallel()
    training_step(batch, step)    forward/backward/optimizer steps -> {name: 0-d tensor or float} (loss parts, lr)
    state_dict() / load_state_dict(state)   everything needed to resume, optimisers included
train() drives any trainer (PConv, the PCA->PConv cascade, a GAN with two optimisers).

The device is never waited for inside a step: loss parts stay tensors, summed on the device, and are read
(checked for NaN/inf, averaged, logged) every `log_every` steps and before every checkpoint, so a non-finite
loss stops the run at the next such check, naming the step it first appeared at, before any bad weights are saved.
Under torchrun (uvlib.train.distributed) each rank trains its shard of the global batch in DistributedDataParallel
and only rank 0 writes checkpoints, log, samples and plots.

Exact resumption (same final numbers as an uninterrupted run on CPU) holds when `batches` is a
callable step -> batch: the checkpoint restores the step and every RNG state, and the callable
rebuilds the same batch for the same step. An iterator is used as-is and is not replayed, so a
resumed run sees a fresh data order.

The training budget (images seen, summed over ranks; wall-clock seconds of the step loop, samples and
checkpoints included; the device) is kept in every checkpoint, so a run resumed in pieces reports the sum of
its pieces (the steps after the last checkpoint of a killed piece are redone and counted once). train()
returns it with the last logged row.

Only the same run resumes: a checkpoint stores the run's identity (TrainConfig.seed, amp and
`run`, the caller's description of model spec and data). When the newest checkpoint was made for another
run, its folder is moved aside (NAME.superseded-N) with one line naming the differing keys, and training
starts afresh. max_steps may grow (a run continued), but a checkpoint beyond it is another run too.
"""

import csv
import math
import os
import platform
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from uvlib.protocol.figures import training_curves
from uvlib.train import distributed


@dataclass
class TrainConfig:
    max_steps: int = 1000
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"          # "auto" -> cuda if available else cpu
    amp: str = "auto"             # "auto" -> bf16 autocast on cuda only; "bf16" | "off"
    channels_last: str = "auto"   # "auto" -> on for cuda; "on" | "off"
    compile: bool = False         # torch.compile the trainer's networks (worth it on a GPU for long runs)
    loader_workers: int = 2       # batches kept on the host while training on a GPU: DataLoader worker processes
    out_dir: str = "runs/train"
    keep_checkpoints: int = 2
    progress: bool = True
    run: dict = field(default_factory=dict)  # model spec, data fingerprint...: plain types only


IDENTITY_FIELDS = ("seed", "amp", "run")  # a checkpoint with other values is another run


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    compile: bool = False

    def parallel(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module as a training step calls it: in DistributedDataParallel under torchrun, compiled if asked.
        Its parameters stay the module's own, so state_dict() of the plain module is what checkpoints keep."""
        if distributed.active():
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return torch.compile(module) if self.compile else module

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None)

    def to_device(self, batch):
        return {k: self.tensor(v) for k, v in batch.items()}

    def tensor(self, t):
        t = t.to(self.device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t


class Trainer(Protocol):
    def configure(self, runtime: Runtime) -> None: ...
    def training_step(self, batch: dict, step: int) -> dict[str, float]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use device='auto' or 'cpu'")
    return device


def resolve_runtime(cfg: TrainConfig) -> Runtime:
    device = resolve_device(cfg.device)
    on_cuda = device.type == "cuda"
    choices = {"amp": ("auto", "bf16", "off"), "channels_last": ("auto", "on", "off")}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"TrainConfig.{name}={getattr(cfg, name)!r}; use one of {allowed}")
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and on_cuda)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and on_cuda)
    return Runtime(device, torch.bfloat16 if amp else None, channels_last, cfg.compile)


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------- budget

def device_name(device) -> str:
    """'cuda: NVIDIA H100 80GB HBM3', 'cpu: x86_64 (16 threads)': the device a budget was spent on."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.machine() or 'cpu'} ({torch.get_num_threads()} threads)"
    world = distributed.world_size()
    return f"{device.type}: {name}" + (f" x {world}" if world > 1 else "")


@dataclass
class Budget:
    """What a training run has spent so far: images seen (batch items over all ranks), seconds, device(s)."""
    images_seen: int = 0
    train_seconds: float = 0.0
    device: str = ""

    def on(self, device: str) -> "Budget":
        """This budget continued on `device` (a resumed run that moved names both)."""
        devices = self.device.split(" + ") if self.device else []
        return Budget(self.images_seen, self.train_seconds, " + ".join(dict.fromkeys([*devices, device])))


def budget_of(row: dict) -> dict:
    """The budget in train()'s returned row, as a model file and metrics.json record it."""
    return {f.name: row[f.name] for f in fields(Budget)}


# ---------------------------------------------------------------------------------- checkpoints

def checkpoint_paths(out_dir):
    return sorted(Path(out_dir, "checkpoints").glob("step_*.pt"))


def save_checkpoint(out_dir, step, trainer, cfg: TrainConfig, budget: Budget = None):
    """Write out_dir/checkpoints/step_N.pt atomically (tmp + rename); keep the newest few."""
    folder = Path(out_dir, "checkpoints")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "trainer": trainer.state_dict(), "rng": rng_state(), "config": asdict(cfg),
                "budget": asdict(budget or Budget())}, tmp)
    os.replace(tmp, path)
    for old in checkpoint_paths(out_dir)[:-cfg.keep_checkpoints]:
        old.unlink()
    return path


def flatten(config: dict, prefix="") -> dict:
    """{"run": {"spec": {"lr": 1}}} -> {"run.spec.lr": 1}: nested keys as dotted names."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def config_differences(stored: dict, requested: dict) -> list:
    """'key: stored -> requested' for every dotted key whose value differs (absent = <none>)."""
    old, new = flatten(stored), flatten(requested)
    return [f"{k}: {old.get(k, '<none>')!r} -> {new.get(k, '<none>')!r}"
            for k in sorted(old.keys() | new.keys()) if old.get(k, "<none>") != new.get(k, "<none>")]


def summarise_differences(differences, shown=6) -> str:
    """The first few differences on one line, then how many more."""
    more = len(differences) - shown
    return "; ".join(differences[:shown]) + (f"; and {more} more" if more > 0 else "")


def run_identity(cfg: TrainConfig) -> dict:
    return {name: getattr(cfg, name) for name in IDENTITY_FIELDS}


def checkpoint_differences(state: dict, cfg: TrainConfig) -> list:
    """Why a checkpoint cannot be resumed by this run ([] when it can)."""
    stored = state.get("config", {})
    differences = config_differences({name: stored.get(name) for name in IDENTITY_FIELDS}, run_identity(cfg))
    if state["step"] > cfg.max_steps:
        differences.append(f"max_steps: checkpoint at step {state['step']} > {cfg.max_steps}")
    return differences


def set_aside(folder) -> Path:
    """Move a run folder to FOLDER.superseded-N (the first free N) so nothing made is lost; returns the new path."""
    folder = Path(folder)
    n = 1
    while folder.with_name(f"{folder.name}.superseded-{n}").exists():
        n += 1
    target = folder.with_name(f"{folder.name}.superseded-{n}")
    folder.rename(target)
    return target


def load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path} is unreadable ({type(err).__name__}); delete it to "
                         f"resume from an older one or start afresh") from None


# ---------------------------------------------------------------------------------- logging

class CsvLog:
    """Appends rows to out_dir/log.csv (columns fixed by the first row); on resume drops rows
    logged after the checkpoint, so the log reads as if the run had never stopped."""

    def __init__(self, path, resume_step):
        self.path, self.header = Path(path), None
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f))
            if rows:
                self.header = rows[0]
                kept = [r for r in rows[1:] if r and int(r[0]) <= resume_step]
                self._write([self.header] + kept, "w")

    def append(self, row: dict):
        if self.header is None:
            self.header = list(row)
            self._write([self.header], "w")
        self._write([[row.get(k, "") for k in self.header]], "a")

    def _write(self, rows, mode):
        with open(self.path, mode, newline="") as f:
            csv.writer(f).writerows(rows)


def save_grid(rows, path, pad=2):
    """rows: a (N, 3, H, W) tensor or a list of them (one grid row each), values in [0, 1]."""
    from PIL import Image

    rows = [rows] if torch.is_tensor(rows) else list(rows)
    lines = []
    for r in rows:
        r = r.detach().float().cpu().clamp(0, 1)
        r = torch.nn.functional.pad(r, (pad, pad, pad, pad), value=1.0)
        lines.append(torch.cat(list(r), dim=2))
    grid = torch.cat(lines, dim=1)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


# ---------------------------------------------------------------------------------- the loop

def batch_source(batches, steps: range, runtime: Runtime, workers: int):
    """step -> batch. A callable is called with the step, except one whose maps stay on the host
    (`batches.device` is the CPU) while training runs on a GPU: a DataLoader then calls it for `steps`, in
    order, in `workers` processes, into pinned memory. An iterator -> next(); other iterables (a DataLoader)
    are cycled."""
    if callable(batches) and not hasattr(batches, "__next__"):
        if getattr(batches, "device", None) == torch.device("cpu") and runtime.device.type == "cuda":
            from uvlib.train.batches import stream
            it = iter(stream(batches, steps, workers))
            return lambda step: next(it)
        return batches
    if hasattr(batches, "__next__"):
        def from_iterator(step):
            try:
                return next(batches)
            except StopIteration:
                raise ValueError(f"batches ran out at step {step}; pass an infinite iterator, "
                                 f"an iterable or a callable step -> batch") from None
        return from_iterator
    if hasattr(batches, "__iter__"):
        def cycle():
            while True:
                empty = True
                for b in batches:
                    empty = False
                    yield b
                if empty:
                    raise ValueError("batches is an empty iterable; pass a non-empty loader or a callable")
        it = cycle()
        return lambda step: next(it)
    raise ValueError(f"batches is a {type(batches).__name__}; pass an iterator, an iterable "
                     f"or a callable step -> batch")


class LossWindow:
    """Loss parts of the steps since the last check, kept on the device so no step waits for it.

    add() sums tensor parts on the device and notes, also on the device, the first step each part went
    non-finite; floats (a learning rate) are summed on the host. read() waits for the device once, averages
    over the steps (and over the ranks under torchrun) and raises FloatingPointError for a non-finite part."""

    def __init__(self):
        self.keys, self.sums, self.first_bad, self.floats = [], None, None, {}
        self.steps = self.images = 0
        self.busy = 0.0

    def add(self, values: dict, step: int, images: int):
        tensors = {k: v for k, v in values.items() if torch.is_tensor(v)}
        for key, value in values.items():
            if key not in tensors:
                value = float(value)
                if not math.isfinite(value):
                    raise_non_finite(key, value, step)
                self.floats[key] = self.floats.get(key, 0.0) + value
        if tensors:
            parts = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
            if self.sums is None:
                self.keys, self.sums = list(tensors), torch.zeros_like(parts)
                self.first_bad = torch.zeros(len(parts), dtype=torch.long, device=parts.device)
            self.sums += parts
            newly_bad = ~torch.isfinite(parts) & (self.first_bad == 0)
            self.first_bad = torch.where(newly_bad, step, self.first_bad)
        self.steps += 1
        self.images += images

    def read(self) -> dict:
        """{part: mean over the window}; a FloatingPointError naming the first non-finite part and step."""
        row = {k: v / max(self.steps, 1) for k, v in self.floats.items()}
        if self.sums is not None:
            tic = time.perf_counter()
            sums = distributed.all_mean(self.sums)
            first_bad = self.first_bad.tolist()           # the one wait for the device in this window
            for key, total, bad in zip(self.keys, sums.tolist(), first_bad):
                if bad or not math.isfinite(total):
                    raise_non_finite(key, total, bad or None)
                row[key] = total / self.steps
            self.busy += time.perf_counter() - tic
        return {k: row[k] for k in [*self.keys, *self.floats]}


def raise_non_finite(key, value, step):
    where = f"at step {step}" if step else "in another process"
    raise FloatingPointError(f"loss part {key!r} is {value} {where}")


def resumable_state(out: Path, cfg: TrainConfig):
    """The newest checkpoint in `out` if this run can resume it, else None (another run's folder is set aside)."""
    state = load_checkpoint(checkpoint_paths(out)[-1]) if checkpoint_paths(out) else None
    differences = checkpoint_differences(state, cfg) if state is not None else []
    if differences:
        moved = set_aside(out)
        warnings.warn(f"{out} holds another run ({summarise_differences(differences)}); moved it to {moved.name} "
                      f"and training afresh", stacklevel=5)
        state = None
    out.mkdir(parents=True, exist_ok=True)
    return state


def train(trainer: Trainer, batches, cfg: TrainConfig, sample_fn=None) -> dict[str, float]:
    """Run steps until cfg.max_steps, resuming from the newest checkpoint in cfg.out_dir.

    sample_fn(trainer, step) -> image rows for save_grid, written to out_dir/samples/ every
    sample_every steps. Returns the last logged row (empty when nothing was left to do) with the run's whole
    budget: images_seen, train_seconds and device (see Budget). A NaN/inf loss part stops the run with a
    FloatingPointError at the next log or checkpoint step; the last good checkpoint stays in place.
    Under torchrun every rank calls train() alike; rank 0 alone writes into out_dir.
    """
    for name in ("max_steps", "checkpoint_every", "sample_every", "log_every", "keep_checkpoints"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"TrainConfig.{name}={getattr(cfg, name)} must be >= 1")
    out, main = Path(cfg.out_dir), distributed.is_main()
    runtime = resolve_runtime(cfg)
    state = distributed.from_main(lambda: resumable_state(out, cfg))
    seed_everything(cfg.seed)
    trainer.configure(runtime)
    start, latest, resumed = 0, None, Budget()
    if state is not None:
        latest = out / "checkpoints" / f"step_{state['step']:08d}.pt"
        try:
            trainer.load_state_dict(state["trainer"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise ValueError(f"checkpoint {latest} does not fit this trainer ({type(err).__name__}); "
                             f"use a fresh out_dir or delete its checkpoints") from None
        set_rng_state(state["rng"])
        start = state["step"]
        resumed = Budget(**state.get("budget", {}))     # checkpoints made before budgets were kept: from 0
    spent, final = resumed.on(device_name(runtime.device)), resumed
    next_batch = batch_source(batches, range(start + 1, cfg.max_steps + 1), runtime, cfg.loader_workers)
    log = CsvLog(out / "log.csv", start) if main else None
    window, last = LossWindow(), {}
    world = distributed.world_size()
    images, loop_start = spent.images_seen, time.perf_counter()

    def budget():
        return Budget(images, spent.train_seconds + time.perf_counter() - loop_start, spent.device)

    with tqdm(total=cfg.max_steps, initial=start, disable=not (cfg.progress and main), desc=out.name) as bar:
        for step in range(start + 1, cfg.max_steps + 1):
            tic = time.perf_counter()
            batch = runtime.to_device(next_batch(step))
            values = trainer.training_step(batch, step)
            window.busy += time.perf_counter() - tic
            done = step == cfg.max_steps
            logged = step % cfg.log_every == 0 or done
            batch_images = len(next(iter(batch.values()))) * world
            images += batch_images
            try:
                window.add(values, step, batch_images)
                if logged or step % cfg.checkpoint_every == 0:
                    parts = window.read()
            except FloatingPointError as err:
                raise FloatingPointError(f"{err}; stopped, last good checkpoint: {latest or 'none'}") from None
            if logged:
                last = {"step": step, **parts, "images_per_s": window.images / max(window.busy, 1e-9)}
                if main:
                    log.append(last)
                bar.set_postfix({k: f"{v:.4g}" for k, v in last.items() if k != "step"}, refresh=False)
                window = LossWindow()
            if main and sample_fn is not None and (step % cfg.sample_every == 0 or done):
                (out / "samples").mkdir(exist_ok=True)
                save_grid(sample_fn(trainer, step), out / "samples" / f"step_{step:08d}.png")
            if step % cfg.checkpoint_every == 0 or done:
                final = budget()
                latest = save_checkpoint(out, step, trainer, cfg, final) if main else out / "checkpoints"
            bar.update(1)
    if main and (out / "log.csv").exists():
        training_curves({out.name: out / "log.csv"}, out / "loss.png", keep_open=False)
    distributed.barrier()                         # the other ranks return once rank 0's files are in place
    return {**last, **asdict(final)}
