"""Choosing the masked PCA's completion settings, ridge λ and robust scale c, on validation data.

The PPCA posterior mean uses λ = σ² (the noise variance). σ² is only an estimate, and the hole texels a
completion must guess are not noise, so λ is chosen instead among multiples of σ², together with the robust
scale c of the Cauchy texel weights (None: plain least squares), by hole-PSNR on the validation cases (never the
test cases). Simulated holes on clean maps favour a small λ and no reweighting; real profiles, whose seen texels
carry hair, background and mesh-fit errors, favour more of both. When a cross-pose set is given (the validation
people of a dataset with real turned faces), each setting is scored by the mean of the two validation PSNRs, so
one choice serves both. The chosen settings are stored in the model (config.ridge, config.robust_scale).
"""
import math
from itertools import product

import numpy as np
import torch

from uvlib.protocol.cases import Benchmark
from uvlib.protocol.crosspose import CrossPose
from uvlib.protocol.metrics import hole_scores, psnr_from_mse

RIDGE_MULTIPLES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)   # notebook 01's default pca_ridge_multiples


def hole_psnr_per_setting(pca, cases: Benchmark, settings, device="cpu", batch_size=64) -> list:
    """Mean hole-PSNR of the cases for each (λ, c), as uvlib.protocol.cases.score computes it (PSNR only, so cheap)."""
    atlas = cases.atlas.to(device).float()
    per_case = [[] for _ in settings]
    for start in range(0, len(cases), batch_size):
        target, observed, hole, known = (t.to(device) for t in cases.case(np.arange(start, min(start + batch_size,
                                                                                                len(cases)))))
        scored = (observed * hole * atlas).flatten(1)
        for psnr, pred in zip(per_case, pca.complete_with(target * known, known, settings)):
            squared = (pred.clamp(0, 1) - target).square().sum(1, keepdim=True).flatten(1)
            psnr += psnr_from_mse((squared * scored).sum(1) / (3 * scored.sum(1))).tolist()
    return [float(np.mean(p)) for p in per_case]


def crosspose_psnr_per_setting(pca, pairs: CrossPose, settings, device="cpu", batch_size=32) -> list:
    """Mean hole-PSNR of the real cross-pose pairs for each (λ, c), as uvlib.protocol.crosspose.score_pairs scores
    them, with one completion call per batch for all settings (the plain ones share their Gram matrices)."""
    atlas = torch.from_numpy(pairs.atlas).to(device)
    per_pair = [[] for _ in settings]
    for start in range(0, len(pairs), batch_size):
        uv, known, target, observed, hole = (t.to(device) for t in pairs.batch(range(start, min(start + batch_size,
                                                                                               len(pairs)))))
        for psnr, pred in zip(per_pair, pca.complete_with(uv * known, known, settings)):
            psnr += hole_scores(pred.clamp(0, 1), target, observed, hole, atlas)["psnr"].tolist()
    return [float(np.mean(p)) for p in per_pair]


def choose_ridge(pca, val: Benchmark, multiples=RIDGE_MULTIPLES, device="cpu", robust_scales=(None,),
                 crosspose: CrossPose = None) -> dict:
    """Set pca.config.ridge and .robust_scale to the (multiple of the noise variance, scale) with the best validation
    score: the hole-PSNR of the simulated cases `val`, or its mean with the cross-pose PSNR of `crosspose`.

    Returns what to record: {"noise_variance", "chosen_multiple", "chosen_ridge", "chosen_robust_scale",
    "grid": [{"multiple", "ridge", "robust_scale", "val_psnr", ["crosspose_val_psnr"], "score"}, ...]}.
    """
    splits = {row.get("split") for row in val.rows} - {None}
    if splits != {"val"}:
        raise ValueError(f"choose_ridge needs the validation cases (ctx.val), got split(s) {sorted(splits)}; "
                         f"a ridge chosen on test cases would leak into the test scores")
    if crosspose is not None and crosspose.settings["split"] != "val":
        raise ValueError(f"choose_ridge needs the cross-pose pairs of a validation split, got split "
                         f"{crosspose.settings['split']!r}; settings chosen on test pairs would leak into their scores")
    if not multiples or min(multiples) <= 0:
        raise ValueError(f"ridge multiples must be a non-empty list of positive numbers, got {list(multiples)}")
    if not robust_scales or any(c is not None and c <= 0 for c in robust_scales):
        raise ValueError(f"robust scales must be positive numbers or None (no reweighting), got {list(robust_scales)}")
    sigma2 = pca.noise_ridge()
    grid = [{"multiple": float(m), "ridge": m * sigma2, "robust_scale": c}
            for m, c in product(multiples, robust_scales)]
    settings = [(g["ridge"], g["robust_scale"]) for g in grid]
    for g, psnr in zip(grid, hole_psnr_per_setting(pca, val, settings, device)):
        g["val_psnr"] = g["score"] = psnr
    if crosspose is not None:
        for g, psnr in zip(grid, crosspose_psnr_per_setting(pca, crosspose, settings, device)):
            g["crosspose_val_psnr"] = psnr
            g["score"] = (g["val_psnr"] + psnr) / 2
    best = max(grid, key=lambda g: g["score"] if math.isfinite(g["score"]) else -math.inf)
    pca.config.ridge, pca.config.robust_scale = best["ridge"], best["robust_scale"]
    return {"noise_variance": sigma2, "chosen_multiple": best["multiple"], "chosen_ridge": best["ridge"],
            "chosen_robust_scale": best["robust_scale"], "grid": grid}
