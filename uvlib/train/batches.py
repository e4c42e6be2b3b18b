"""Training-time holes and batches: the same kinds of realistic holes the protocol scores with.

The hole bank mixes pose-simulated holes of training meshes (yaw 15-75 degrees either side) with borrowed
holes (the unseen regions of training maps); the sampler draws from it and mirrors left-right at random,
which the symmetric UV layout allows. Test holes come from the test split only, so nothing leaks.
"""
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from uvlib.data.dataset import Dataset
from uvlib.protocol.holes import borrowed_hole, pose_hole, random_pose

BANK_VERSION = 1


def build_hole_bank(ds: Dataset, split="train", seed=0, n_pose=512, limit=None, progress=True) -> torch.Tensor:
    """(M, S, S) bool holes: n_pose pose-simulated ones plus one borrowed per map of `split`; cached, and rebuilt
    when the cache's fingerprint (the split's face ids, seed, UV size, bank version) no longer matches."""
    path = ds.root / "protocol" / f"bank-{split}-seed{seed}-pose{n_pose}-n{limit or 'all'}.npz"
    digest = ds.split_fingerprint(split, limit, seed=seed, n_pose=n_pose, bank=BANK_VERSION)
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
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, hole=np.packbits(holes.reshape(len(holes), -1), axis=1), fingerprint=digest)
    tmp.replace(path)
    return torch.from_numpy(holes)


class HoleSampler:
    """Draws holes for a batch from a bank: `sampler(observed, generator) -> (B, 1, S, S) float`."""

    def __init__(self, bank: torch.Tensor):
        if bank.ndim != 3 or len(bank) == 0:
            raise ValueError("hole bank must be a non-empty (M, S, S) tensor; build it with build_hole_bank")
        self.bank = bank

    def __call__(self, observed: torch.Tensor, generator: torch.Generator = None) -> torch.Tensor:
        b = observed.shape[0]
        pick = torch.randint(len(self.bank), (b,), generator=generator)
        flip = torch.rand(b, generator=generator) < 0.5
        holes = self.bank[pick]
        holes[flip] = holes[flip].flip(-1)
        return holes.unsqueeze(1).float().to(observed.device)


class TrainingBatches:
    """Batches {'uv', 'observed', 'hole'} as a function of the step: `batches(step)`.

    A step's batch depends only on (seed, step), so a training job killed and resumed at step k sees exactly
    the batches an uninterrupted run would have seen. Each epoch is a fresh seeded permutation of the maps.
    """

    def __init__(self, uv, observed, sampler: HoleSampler, batch_size, seed=0):
        if len(uv) == 0:
            raise ValueError("no training maps; prepare a dataset with a non-empty train split")
        self.uv, self.observed, self.sampler = uv, observed, sampler
        self.batch_size, self.seed = min(batch_size, len(uv)), seed
        self.per_epoch = len(uv) // self.batch_size

    def __call__(self, step: int) -> dict:
        epoch, k = divmod(step, self.per_epoch)
        order = torch.randperm(len(self.uv), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        idx = order[k * self.batch_size:(k + 1) * self.batch_size]
        generator = torch.Generator().manual_seed(self.seed * 100_003 + 7919 * step + 1)
        observed = self.observed[idx]
        return {"uv": self.uv[idx], "observed": observed, "hole": self.sampler(observed, generator)}
