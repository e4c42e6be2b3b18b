"""Choosing the masked PCA's completion settings, ridge λ and robust scale c, on validation data.

The PPCA posterior mean uses λ = σ² (the noise variance). σ² is only an estimate, and the hole texels a
completion must guess are not noise, so λ is chosen instead among multiples of σ², together with the robust
scale c of the Cauchy texel weights (None: plain least squares), by hole-PSNR on the validation cases (never the
test cases). Simulated holes on clean maps favour a small λ and no reweighting; real profiles, whose seen texels
carry hair, background and mesh-fit errors, favour more of both. When a cross-pose set is given (the validation
people of a dataset with real turned faces), each setting is scored by the mean of the two validation PSNRs, so
one choice serves both. Real turned photos and clean simulated holes want different settings; with misfit_gate a
second setting completes the images whose seen texels the first fits badly (a threshold on their RMS residual, also
chosen on validation). The chosen settings are stored in the model (config.ridge, .robust_scale, .misfit_*).
"""
import math
from itertools import product

import numpy as np
import torch
from tqdm.auto import tqdm

from uvlib.models.pca import seen_rms
from uvlib.protocol.cases import Benchmark
from uvlib.protocol.crosspose import CrossPose
from uvlib.protocol.metrics import hole_scores, psnr_from_mse

RIDGE_MULTIPLES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)   # notebook 01's default pca_ridge_multiples


def hole_psnr_per_setting(pca, cases: Benchmark, settings, device="cpu", batch_size=64) -> tuple:
    """Per-case hole-PSNR (as uvlib.protocol.cases.score computes it) and seen-texel RMS residual (seen_rms) of
    each (λ, c): two (settings, cases) arrays."""
    atlas = cases.atlas.to(device).float()
    psnr, misfit = [[] for _ in settings], [[] for _ in settings]
    for start in tqdm(range(0, len(cases), batch_size), desc=f"{len(settings)} settings on val cases", leave=False):
        target, observed, hole, known = (t.to(device) for t in cases.case(np.arange(start, min(start + batch_size,
                                                                                                len(cases)))))
        scored = (observed * hole * atlas).flatten(1)
        for i, pred in enumerate(pca.complete_with(target * known, known, settings)):
            squared = (pred.clamp(0, 1) - target).square().sum(1, keepdim=True).flatten(1)
            psnr[i] += psnr_from_mse((squared * scored).sum(1) / (3 * scored.sum(1))).tolist()
            misfit[i] += seen_rms(pred, target * known, known, atlas).tolist()
    return np.array(psnr), np.array(misfit)


def crosspose_psnr_per_setting(pca, pairs: CrossPose, settings, device="cpu", batch_size=32) -> tuple:
    """Per-pair hole-PSNR (as uvlib.protocol.crosspose.score_pairs scores them) and seen-texel RMS residual of each
    (λ, c), two (settings, pairs) arrays, with one completion call per batch for all settings (the plain ones share
    their Gram matrices)."""
    atlas = torch.from_numpy(pairs.atlas).to(device)
    psnr, misfit = [[] for _ in settings], [[] for _ in settings]
    for start in tqdm(range(0, len(pairs), batch_size), desc=f"{len(settings)} settings on val pairs", leave=False):
        uv, known, target, observed, hole = (t.to(device) for t in pairs.batch(range(start, min(start + batch_size,
                                                                                               len(pairs)))))
        for i, pred in enumerate(pca.complete_with(uv * known, known, settings)):
            psnr[i] += hole_scores(pred.clamp(0, 1), target, observed, hole, atlas)["psnr"].tolist()
            misfit[i] += seen_rms(pred, uv * known, known, atlas).tolist()
    return np.array(psnr), np.array(misfit)


def choose_misfit_gate(sim, real) -> dict:
    """The (first setting i, misfit setting j, threshold τ) with the best mean of the two validation PSNRs when an
    item whose seen-texel RMS residual under i exceeds τ is completed with j. sim and real: (psnr, misfit) pairs of
    (settings, items) arrays. τ = inf (every item with i) is a candidate, so the result is never below the best single
    setting on validation. Returns {"first", "misfit", "threshold", "score", "val_psnr", "crosspose_val_psnr"}."""
    best = None
    for i in range(sim[0].shape[0]):
        candidates = np.append(np.quantile(np.concatenate([sim[1][i], real[1][i]]), np.linspace(0, 1, 101)), np.inf)
        sim_misfit = sim[1][i][None] > candidates[:, None]      # (thresholds, items)
        real_misfit = real[1][i][None] > candidates[:, None]
        for j in range(sim[0].shape[0]):
            sim_psnr = np.where(sim_misfit, sim[0][j], sim[0][i]).mean(1)
            real_psnr = np.where(real_misfit, real[0][j], real[0][i]).mean(1)
            t = int(np.argmax(sim_psnr + real_psnr))
            if best is None or sim_psnr[t] + real_psnr[t] > 2 * best["score"]:
                best = {"first": i, "misfit": j, "threshold": float(candidates[t]), "val_psnr": float(sim_psnr[t]),
                        "crosspose_val_psnr": float(real_psnr[t]), "score": float(sim_psnr[t] + real_psnr[t]) / 2}
    return best


def choose_ridge(pca, val: Benchmark, multiples=RIDGE_MULTIPLES, device="cpu", robust_scales=(None,),
                 crosspose: CrossPose = None, misfit_gate=False) -> dict:
    """Set pca.config.ridge and .robust_scale to the (multiple of the noise variance, scale) with the best validation
    score: the hole-PSNR of the simulated cases `val`, or its mean with the cross-pose PSNR of `crosspose`.
    With crosspose and misfit_gate, choose a second setting and the seen-texel RMS residual above which it completes
    instead (choose_misfit_gate), when that scores higher on validation than one setting for all.

    Returns what to record: {"noise_variance", "chosen_multiple", "chosen_ridge", "chosen_robust_scale",
    "grid": [{"multiple", "ridge", "robust_scale", "val_psnr", ["crosspose_val_psnr"], "score"}, ...],
    ["misfit_gate": {"multiple", "ridge", "robust_scale", "threshold", "val_psnr", "crosspose_val_psnr", "score"}]}.
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
    sim = hole_psnr_per_setting(pca, val, settings, device)
    for g, psnr in zip(grid, sim[0].mean(1)):
        g["val_psnr"] = g["score"] = float(psnr)
    if crosspose is not None:
        real = crosspose_psnr_per_setting(pca, crosspose, settings, device)
        for g, psnr in zip(grid, real[0].mean(1)):
            g["crosspose_val_psnr"] = float(psnr)
            g["score"] = (g["val_psnr"] + g["crosspose_val_psnr"]) / 2
    best = max(grid, key=lambda g: g["score"] if math.isfinite(g["score"]) else -math.inf)
    pca.config.ridge, pca.config.robust_scale = best["ridge"], best["robust_scale"]
    pca.config.misfit_threshold = pca.config.misfit_ridge = pca.config.misfit_robust_scale = None
    choice = {"noise_variance": sigma2, "chosen_multiple": best["multiple"], "chosen_ridge": best["ridge"],
              "chosen_robust_scale": best["robust_scale"], "grid": grid}
    if crosspose is not None and misfit_gate:
        gate = choose_misfit_gate(sim, real)
        if math.isfinite(gate["threshold"]) and gate["score"] > best["score"]:
            first, second = grid[gate["first"]], grid[gate["misfit"]]
            pca.config.ridge, pca.config.robust_scale = first["ridge"], first["robust_scale"]
            pca.config.misfit_threshold = gate["threshold"]
            pca.config.misfit_ridge, pca.config.misfit_robust_scale = second["ridge"], second["robust_scale"]
            choice |= {"chosen_multiple": first["multiple"], "chosen_ridge": first["ridge"],
                       "chosen_robust_scale": first["robust_scale"],
                       "misfit_gate": {"multiple": second["multiple"], "ridge": second["ridge"],
                                       "robust_scale": second["robust_scale"], "threshold": gate["threshold"],
                                       **{k: gate[k] for k in ("val_psnr", "crosspose_val_psnr", "score")}}}
    return choice
