"""The one evaluation protocol every method is scored with.

A test case is a UV map of the split with a hole on top of its own missing region; the method sees the map
with both removed and is scored on the texels that were truly observed and hidden by the hole. The cases of a
split are fixed by the seed and cached in DATASET/protocol/, so every method sees exactly the same inputs. The
cache records a fingerprint of what it was built from (the split's face ids, seed, UV size, protocol version)
and is rebuilt when that changes.
"""
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from uvlib.data.dataset import Dataset, DatasetError
from uvlib.ops import known_texels
from uvlib.protocol.holes import YAW_BINS, borrowed_hole, box_hole, pose_hole, random_pose, yaw_bin_name, yaw_bin_of
from uvlib.protocol.metrics import aggregate, hole_scores, size_bin_of

PROTOCOL_VERSION = 1
DEFAULT_KINDS = ("pose", "borrowed")
MIN_HOLE_TEXELS = 32       # a case must hide at least this many observed texels to be scored


@dataclass
class TestCases:
    image: np.ndarray        # (M,) index into the split's rows
    hole: np.ndarray         # (M, S, S) bool
    kind: np.ndarray         # (M,) str: pose / borrowed / box
    hole_yaw: np.ndarray     # (M,) yaw the hole simulates (pose), the donor's yaw (borrowed), nan (box)


def build_test_cases(ds: Dataset, split: str, seed: int, kinds=DEFAULT_KINDS, limit=None, progress=True) -> TestCases:
    """Per image: one pose-simulated hole in every yaw bin, one borrowed hole, one box hole (as asked)."""
    unknown = set(kinds) - {"pose", "borrowed", "box"}
    if unknown:
        raise ValueError(f"hole kinds {sorted(unknown)} are unknown; use pose, borrowed or box")
    rows = ds.split_rows(split)[:limit]
    if not rows:
        raise DatasetError(f"split {split!r} of {ds.root} has no faces, so it has no test cases")
    observed = ds.load_visible(split, limit=limit)
    size, rng = ds.uv_size, np.random.default_rng(seed)
    image, holes, kind, hole_yaw = [], [], [], []

    def add(i, hole, k, yaw):
        if (hole & observed[i]).sum() >= MIN_HOLE_TEXELS:
            image.append(i), holes.append(hole), kind.append(k), hole_yaw.append(yaw)

    for i, row in enumerate(tqdm(rows, desc=f"test cases ({split})", disable=not progress)):
        if "pose" in kinds:
            landmarks = ds.mesh(row["id"])
            for yaw_range in YAW_BINS:
                yaw, pitch = random_pose(rng, yaw_range)
                add(i, pose_hole(landmarks, size, yaw, pitch), "pose", yaw)
        if "borrowed" in kinds and len(rows) > 1:
            donor = (i + 1 + rng.integers(len(rows) - 1)) % len(rows)
            add(i, borrowed_hole(observed[donor]), "borrowed", rows[donor]["yaw"])
        if "box" in kinds:
            add(i, box_hole(size, rng), "box", float("nan"))
    if not image:
        raise DatasetError(f"split {split!r} of {ds.root} gave no test case with a visible hole")
    return TestCases(np.array(image), np.stack(holes), np.array(kind), np.array(hole_yaw, dtype=np.float64))


def load_test_cases(ds: Dataset, split="test", seed=0, kinds=DEFAULT_KINDS, limit=None, progress=True) -> TestCases:
    """The cached cases of (split, seed, kinds, limit), built and saved on first use and whenever the cache's
    fingerprint no longer matches the dataset (photos added, re-prepared, another protocol version)."""
    name = f"cases-{split}-seed{seed}-{'+'.join(sorted(kinds))}-n{limit or 'all'}.npz"
    path = ds.root / "protocol" / name
    digest = ds.split_fingerprint(split, limit, seed=seed, kinds=sorted(kinds), protocol=PROTOCOL_VERSION)
    if path.exists():
        z = np.load(path)
        if "fingerprint" in z and str(z["fingerprint"]) == digest:
            size = ds.uv_size
            hole = np.unpackbits(z["hole"], axis=1, count=size * size).reshape(-1, size, size).astype(bool)
            return TestCases(z["image"], hole, z["kind"], z["hole_yaw"])
        print(f"test cases {path} were built from other data or settings; rebuilding them", file=sys.stderr)
    cases = build_test_cases(ds, split, seed, kinds, limit, progress)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")    # per process: ranks of a torchrun job may build it at once
    np.savez_compressed(tmp, image=cases.image, kind=cases.kind, hole_yaw=cases.hole_yaw, fingerprint=digest,
                        hole=np.packbits(cases.hole.reshape(len(cases.image), -1), axis=1))
    tmp.replace(path)
    return cases


@dataclass
class Benchmark:
    """A split's maps and its fixed test cases, ready to score any completion function."""
    uv: torch.Tensor          # (N, 3, S, S) maps of the split
    observed: torch.Tensor    # (N, 1, S, S)
    atlas: torch.Tensor       # (S, S) bool
    cases: TestCases
    rows: list                # the split's index rows

    def __len__(self):
        return len(self.cases.image)

    def case(self, idx):
        """(target, observed, hole, known) tensors for case indices `idx`."""
        idx = np.asarray(idx)
        image = torch.from_numpy(self.cases.image[idx])
        target, observed = self.uv[image], self.observed[image]
        hole = torch.from_numpy(self.cases.hole[idx]).unsqueeze(1).float()
        known = known_texels(observed, hole, self.atlas.float())
        return target, observed, hole, known

    def showcase(self, n=6) -> np.ndarray:
        """n fixed case indices spread over the yaw bins, for figures comparing methods on the same inputs."""
        order = np.argsort(np.abs(self.cases.hole_yaw) + 1000 * (self.cases.kind != "pose"), kind="stable")
        return order[np.linspace(0, max((self.cases.kind == "pose").sum() - 1, 0), n).astype(int)]


def load_benchmark(ds: Dataset, split="test", seed=0, kinds=DEFAULT_KINDS, limit=None, progress=True) -> Benchmark:
    uv, observed, rows = ds.load(split, limit=limit)
    cases = load_test_cases(ds, split, seed, kinds, limit, progress)
    return Benchmark(uv, observed, ds.atlas(), cases, rows)


@torch.no_grad()
def complete_cases(complete_fn, bench: Benchmark, idx, device="cpu"):
    """Run a completion function on cases `idx`; returns the composited prediction (known texels kept, zero
    outside the atlas)."""
    target, _, _, known = bench.case(idx)
    target, known = target.to(device), known.to(device)
    pred = complete_fn(target * known, known).clamp(0, 1)
    return ((pred * (1 - known) + target * known) * bench.atlas.to(device)).cpu()


@torch.no_grad()
def score(complete_fn, bench: Benchmark, batch_size=64, device="cpu", progress=True, desc="scoring"):
    """Score a completion function on every case. Returns (summary, per-case records).

    The summary has 'overall', 'by_yaw_bin', 'by_size_bin' and 'by_kind' means of l1, psnr, ssim,
    composite_psnr and hole_fraction.
    """
    atlas = bench.atlas.to(device)
    records = []
    for start in tqdm(range(0, len(bench), batch_size), desc=desc, disable=not progress):
        idx = np.arange(start, min(start + batch_size, len(bench)))
        target, observed, hole, known = (t.to(device) for t in bench.case(idx))
        pred = complete_fn(target * known, known).clamp(0, 1)
        scores = {k: v.cpu().numpy() for k, v in hole_scores(pred, target, observed, hole, atlas).items()}
        for j, c in enumerate(idx):
            yaw = bench.cases.hole_yaw[c]
            records.append({"case": int(c), "id": bench.rows[bench.cases.image[c]]["id"],
                            "kind": str(bench.cases.kind[c]),
                            "yaw_bin": yaw_bin_of(yaw) if np.isfinite(yaw) else "box",
                            "size_bin": size_bin_of(float(scores["hole_fraction"][j])),
                            **{k: float(v[j]) for k, v in scores.items()}})
    summary = aggregate(records, by=("yaw_bin", "size_bin"))
    summary["by_kind"] = aggregate(records, by=("kind",))["by_kind"]
    return summary, records


YAW_BIN_NAMES = [yaw_bin_name(b) for b in YAW_BINS]
