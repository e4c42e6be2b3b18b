"""Training-time holes and batches: the same kinds of realistic holes the protocol scores with.

The hole bank mixes pose-simulated holes of training meshes (yaw 15-75 degrees either side) with borrowed
holes (the unseen regions of training maps); the sampler draws from it and mirrors left-right at random,
which the symmetric UV layout allows. Test holes come from the test split only, so nothing leaks.
Optionally (RealHoles) the bank also takes the unseen regions of really turned faces from another prepared
dataset's train split (e.g. CFP's profiles): a mostly frontal dataset's own holes rarely look like a profile's.

Feeding a GPU: TrainingBatches keeps the maps (as uint8 when that is exact, as maps read from PNGs are) and the
hole bank on the training device when they fit, and cuts every batch there: only a few indices cross from the
host per step, through pinned memory, so no step waits for the device. Maps that do not fit stay on the host and
train() streams them through a DataLoader (`stream`) with worker processes and pinned memory. Either way a step's
batch is the same function of (seed, step) as on the CPU, and under torchrun each rank takes its share of it.
"""
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from uvlib.data.dataset import Dataset, fingerprint
from uvlib.protocol.holes import borrowed_hole, pose_hole, random_pose
from uvlib.train import distributed

BANK_VERSION = 1
EXTERNAL_SPLIT = "train"   # the one split another dataset lends to training: its val and test people stay unseen


def lent_positions(dataset: Dataset, rows) -> list:
    """Where `rows` (some of the lent split's rows) lie in that split: the rows of its map shards to read."""
    position = {r["id"]: k for k, r in enumerate(dataset.split_rows(EXTERNAL_SPLIT))}
    return [position[r["id"]] for r in rows]


@dataclass
class RealHoles:
    """Borrowed holes of real turned faces: the unseen region of every face of another dataset's train split
    turned at least min_yaw degrees (|yaw|). Only its train split, so its val and test people stay unseen.
    `label`: the dataset as the profile names it, for records."""
    dataset: Dataset
    min_yaw: float = 45.0
    label: str = ""

    def rows(self) -> list:
        return [r for r in self.dataset.split_rows(EXTERNAL_SPLIT) if abs(r["yaw"]) >= self.min_yaw]

    def describe(self) -> dict:
        """What the holes were taken from: dataset, split, threshold, number and a digest of the faces' ids."""
        rows = self.rows()
        return {"dataset": self.label or str(self.dataset.root), "split": EXTERNAL_SPLIT, "min_yaw": self.min_yaw,
                "holes": len(rows), "ids": fingerprint(ids=[r["id"] for r in rows])}

    def holes(self) -> np.ndarray:
        """(N, S, S) bool: the atlas texels each turned face did not see."""
        visible = self.dataset.maps(EXTERNAL_SPLIT).visible(lent_positions(self.dataset, self.rows()))
        return np.stack([borrowed_hole(v) for v in visible])


def build_hole_bank(ds: Dataset, split="train", seed=0, n_pose=512, limit=None, progress=True,
                    real: RealHoles = None) -> torch.Tensor:
    """(M, S, S) bool holes: one borrowed per map of `split`, n_pose pose-simulated ones, then the real turned
    faces' holes of `real` if given; cached, and rebuilt when the cache's fingerprint (the split's face ids, seed,
    UV size, bank version, the real holes' source) no longer matches."""
    extra = {"real_holes": real.describe()} if real is not None else {}
    digest = ds.split_fingerprint(split, limit, seed=seed, n_pose=n_pose, bank=BANK_VERSION, **extra)
    tag = f"-real{fingerprint(**extra)[:8]}" if real is not None else ""
    path = ds.root / "protocol" / f"bank-{split}-seed{seed}-pose{n_pose}-n{limit or 'all'}{tag}.npz"
    size = ds.uv_size
    if path.exists():
        z = np.load(path)
        if "fingerprint" in z and str(z["fingerprint"]) == digest:
            return torch.from_numpy(np.unpackbits(z["hole"], axis=1, count=size * size).reshape(-1, size, size)
                                    .astype(bool))
        print(f"hole bank {path} was built from other data or settings; rebuilding it", file=sys.stderr)
    rows = ds.split_rows(split)[:limit]
    rng = np.random.default_rng(seed)
    holes = [borrowed_hole(visible) for visible in ds.load_visible(split, limit=limit)]
    for k in tqdm(rng.integers(len(rows), size=n_pose), desc="hole bank", disable=not progress):
        yaw, pitch = random_pose(rng, (15, 75))
        holes.append(pose_hole(ds.mesh(rows[k]["id"]), size, yaw, pitch))
    holes = np.stack(holes)
    if real is not None:
        holes = np.concatenate([holes, real.holes()])
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")    # per process: ranks of a torchrun job may build it at once
    np.savez_compressed(tmp, hole=np.packbits(holes.reshape(len(holes), -1), axis=1), fingerprint=digest)
    tmp.replace(path)
    return torch.from_numpy(holes)


class HoleSampler:
    """Draws holes for a batch from a bank: `sampler(observed, generator) -> (B, 1, S, S) float`."""

    def __init__(self, bank: torch.Tensor):
        if bank.ndim != 3 or len(bank) == 0:
            raise ValueError("hole bank must be a non-empty (M, S, S) tensor; build it with build_hole_bank")
        self.bank = bank
        self._placed = {}

    def __call__(self, observed: torch.Tensor, generator: torch.Generator = None) -> torch.Tensor:
        return self.draw(observed.shape[0], generator).to(observed.device)

    def draw(self, n: int, generator: torch.Generator = None, part=slice(None)) -> torch.Tensor:
        """n holes (a random bank entry, mirrored left-right half the time), of which `part` is returned, on the
        bank's device. The random numbers come from `generator` on the host, so every device draws the same."""
        pick = torch.randint(len(self.bank), (n,), generator=generator)[part]
        flip = (torch.rand(n, generator=generator) < 0.5)[part]
        pick, flip = to_device(pick, self.bank.device), to_device(flip, self.bank.device)
        holes = self.bank[pick]
        holes = torch.where(flip.view(-1, 1, 1), holes.flip(-1), holes)
        return holes.unsqueeze(1).float()

    def on(self, device: torch.device) -> "HoleSampler":
        """This sampler with its bank on `device` (made once per device)."""
        if self.bank.device == device:
            return self
        if device not in self._placed:
            self._placed[device] = HoleSampler(self.bank.to(device))
        return self._placed[device]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on `device` without waiting for the device (pinned memory, asynchronous copy)."""
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def compact(maps: torch.Tensor) -> torch.Tensor:
    """Float maps in [0, 1] as uint8 when `expand` gives them back bit for bit (maps read from 8-bit PNGs),
    binary masks as bool; anything else unchanged. A quarter (an eighth) of the memory, the same batches."""
    if not maps.is_floating_point():
        return maps
    if maps.dtype == torch.float32 and all(((m == 0) | (m == 1)).all() for m in maps.split(1024)):
        return maps.bool()
    quantised = torch.empty(maps.shape, dtype=torch.uint8)
    for q, m in zip(quantised.split(1024), maps.split(1024)):
        q.copy_(m.mul(255).round_().clamp_(0, 255))
        if not torch.equal(q.float().div_(255), m):
            return maps
    return quantised


def expand(stored: torch.Tensor) -> torch.Tensor:
    """What `compact` stored, as float32 maps again."""
    if stored.dtype == torch.uint8:
        return stored.float().div_(255)
    return stored.float() if stored.dtype == torch.bool else stored


def fits_on(device: torch.device, nbytes: int, share=0.5) -> bool:
    """Whether nbytes fit in `share` of the device's free memory (the host always holds them)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


class TrainingBatches:
    """Batches {'uv', 'observed', 'hole'} (+ one entry per `per_map` tensor) as a function of the step: `batches(step)`.

    A step's batch depends only on (seed, step), so a training job killed and resumed at step k sees exactly
    the batches an uninterrupted run would have seen. Each epoch is a fresh seeded permutation of the maps.
    `device`: where the maps, the hole bank and the batches live (`.device`: the CPU when they do not fit).
    Under torchrun each rank gets its contiguous share of every global batch of `batch_size` maps.
    """

    def __init__(self, uv, observed, sampler: HoleSampler, batch_size, seed=0, device="cpu", per_map=None):
        if len(uv) == 0:
            raise ValueError("no training maps; prepare a dataset with a non-empty train split")
        self.batch_size, self.seed = min(batch_size, len(uv)), seed
        self.part = distributed.shard_slice(self.batch_size)
        self.per_epoch = len(uv) // self.batch_size
        stored = {"uv": compact(uv), "observed": compact(observed), **(per_map or {})}
        device = torch.device(device)
        nbytes = sum(t.nbytes for t in stored.values()) + sampler.bank.nbytes
        self.device = device if fits_on(device, nbytes) else torch.device("cpu")
        self.stored = {k: t.to(self.device) for k, t in stored.items()}
        self.sampler = sampler.on(self.device)

    def __call__(self, step: int) -> dict:
        epoch, k = divmod(step, self.per_epoch)
        order = torch.randperm(len(self.stored["uv"]),
                               generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        idx = to_device(order[k * self.batch_size:(k + 1) * self.batch_size][self.part], self.device)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + 7919 * step + 1)
        batch = {name: expand(t[idx]) if name in ("uv", "observed") else t[idx] for name, t in self.stored.items()}
        return {"uv": batch.pop("uv"), "observed": batch.pop("observed"),
                "hole": self.sampler.draw(self.batch_size, generator, self.part), **batch}


class StepBatches(torch.utils.data.Dataset):
    """A callable step -> batch as a map-style dataset indexed by step, for a DataLoader."""

    def __init__(self, batches):
        self.batches = batches

    def __getitem__(self, step):
        return self.batches(step)


def stream(batches, steps: range, workers: int = 2) -> DataLoader:
    """The batches of `steps`, in order, made by `workers` processes into pinned memory (maps kept on the host)."""
    return DataLoader(StepBatches(batches), sampler=steps, batch_size=None, num_workers=workers,
                      pin_memory=torch.cuda.is_available(),
                      prefetch_factor=4 if workers else None, persistent_workers=False)
