"""Choosing the masked PCA's completion ridge λ on the validation split.

The PPCA posterior mean uses λ = σ² (the noise variance). σ² is only an estimate, and the hole texels a
completion must guess are not noise, so λ is chosen instead among multiples of σ² by hole-PSNR on the
validation cases (never the test cases); the chosen λ is stored in the model (config.ridge).
"""
import math

import numpy as np

from uvlib.protocol.cases import Benchmark
from uvlib.protocol.metrics import psnr_from_mse

RIDGE_MULTIPLES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def hole_psnr_per_ridge(pca, cases: Benchmark, ridges, device="cpu", batch_size=64) -> list:
    """Mean hole-PSNR of the cases for each λ, as uvlib.protocol.cases.score computes it (PSNR only, so cheap)."""
    atlas = cases.atlas.to(device).float()
    per_case = [[] for _ in ridges]
    for start in range(0, len(cases), batch_size):
        target, observed, hole, known = (t.to(device) for t in cases.case(np.arange(start, min(start + batch_size,
                                                                                                len(cases)))))
        scored = (observed * hole * atlas).flatten(1)
        for psnr, pred in zip(per_case, pca.complete_with_ridges(target * known, known, ridges)):
            squared = (pred.clamp(0, 1) - target).square().sum(1, keepdim=True).flatten(1)
            psnr += psnr_from_mse((squared * scored).sum(1) / (3 * scored.sum(1))).tolist()
    return [float(np.mean(p)) for p in per_case]


def choose_ridge(pca, val: Benchmark, multiples=RIDGE_MULTIPLES, device="cpu") -> dict:
    """Set pca.config.ridge to the multiple of its noise variance with the best validation hole-PSNR.

    Returns what to record: {"noise_variance", "chosen_multiple", "chosen_ridge",
    "grid": [{"multiple", "ridge", "val_psnr"}, ...]}.
    """
    splits = {row.get("split") for row in val.rows} - {None}
    if splits != {"val"}:
        raise ValueError(f"choose_ridge needs the validation cases (ctx.val), got split(s) {sorted(splits)}; "
                         f"a ridge chosen on test cases would leak into the test scores")
    if not multiples or min(multiples) <= 0:
        raise ValueError(f"ridge multiples must be a non-empty list of positive numbers, got {list(multiples)}")
    sigma2 = pca.noise_ridge()
    ridges = [m * sigma2 for m in multiples]
    grid = [{"multiple": float(m), "ridge": r, "val_psnr": p}
            for m, r, p in zip(multiples, ridges, hole_psnr_per_ridge(pca, val, ridges, device))]
    best = max(grid, key=lambda g: g["val_psnr"] if math.isfinite(g["val_psnr"]) else -math.inf)
    pca.config.ridge = best["ridge"]
    return {"noise_variance": sigma2, "chosen_multiple": best["multiple"], "chosen_ridge": best["ridge"],
            "grid": grid}
