"""Scores for the self-supervised hole protocol (DESIGN.md section 3).

A test case is a UV map `target` with its own `observed` mask and a test `hole` on top.
The method sees `known = observed * (1 - hole) * atlas` and predicts `pred`; scores are
computed only on the evaluation texels `E = observed * hole * atlas`: texels that were truly
observed (so there is a ground truth) and hidden by the hole (so the method had to guess them).
"""

import math
import re
from collections import defaultdict

import torch

from uvlib.ops import composite, masked_mean

PSNR_CAP_DB = 100.0  # PSNR of a perfect prediction (MSE = 0), instead of +inf
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11-tap window, as skimage's int(3.5 * sigma + 0.5) and Wang et al. 2004
SSIM_K1, SSIM_K2 = 0.01, 0.03
SIZE_BIN_EDGES = (0.0, 0.1, 0.2, 0.4, 1.0)
SCORE_NAMES = ("l1", "psnr", "ssim", "composite_psnr", "hole_fraction")  # the keys of hole_scores


def psnr_from_mse(mse):
    """10 log10(1 / mse) for data range 1, capped at PSNR_CAP_DB so that mse = 0 stays finite."""
    floor = 10.0 ** (-PSNR_CAP_DB / 10.0)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(floor))


def _blur_matrix(size, dtype, device, sigma=SSIM_SIGMA, radius=SSIM_RADIUS):
    """(size, size) matrix M such that M @ v is v filtered by the Gaussian window, with borders
    extended by half-sample symmetric reflection (d c b a | a b c d | d c b a), like
    scipy.ndimage mode 'reflect'. The reflection is periodic, so radius may exceed size.
    A dense matmul is faster than a depthwise conv2d on CPU and as good on GPU at UV sizes."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    source = (torch.arange(size)[:, None] + torch.arange(-radius, radius + 1)[None, :]) % (2 * size)
    source = torch.where(source >= size, 2 * size - 1 - source, source)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix.scatter_add_(1, source, weights.expand(size, -1).contiguous())
    return matrix.to(dtype=dtype, device=device)


def _gaussian_blur(x):
    """Gaussian filter of each channel of (N,C,H,W), output the same size."""
    rows = _blur_matrix(x.shape[-2], x.dtype, x.device)
    cols = _blur_matrix(x.shape[-1], x.dtype, x.device)
    return rows @ x @ cols.T


def ssim_map(x, y, data_range=1.0, weight=None):
    """Per-pixel SSIM (Wang et al. 2004) of (N,C,H,W) images, averaged over channels -> (N,1,H,W).

    Gaussian window (11 taps, sigma 1.5), population covariances, borders by symmetric
    reflection: without `weight`, the same map as skimage's structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, full=True), channel-averaged.

    weight (N,1,H,W) in [0, 1]: masked local statistics by normalised convolution (Knutsson & Westin 1993):
    every local mean, variance and covariance is taken over the weighted texels only, so texels that do not
    exist (never observed) neither dilute the means nor add fake structure. The map is meaningful where the
    window holds some weight; elsewhere it is 1.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim_map needs two (N,C,H,W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    channels = x.shape[1]
    if weight is None:
        stats = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))
    else:
        weight = weight.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        blurred = _gaussian_blur(torch.cat([weight, weight * x, weight * y, weight * x * x, weight * y * y,
                                            weight * x * y], dim=1))
        mass = blurred[:, :1]
        stats = torch.where(mass > 1e-6, blurred[:, 1:] / mass.clamp_min(1e-6), 0.0)
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = stats.split(channels, dim=1)
    var_x = (mean_xx - mu_x * mu_x).clamp_min(0)
    var_y = (mean_yy - mu_y * mu_y).clamp_min(0)
    cov_xy = mean_xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(dim=1, keepdim=True)


def _check_case(pred, target, observed, hole, atlas):
    if pred.dim() != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be (N,3,S,S), got {tuple(pred.shape)} and {tuple(target.shape)}")
    n, _, s, _ = pred.shape
    for name, mask in (("observed", observed), ("hole", hole)):
        if tuple(mask.shape) != (n, 1, s, s):
            raise ValueError(f"{name} must be (N,1,S,S) = {(n, 1, s, s)}, got {tuple(mask.shape)}")
    if tuple(atlas.shape) != (s, s):
        raise ValueError(f"atlas must be (S,S) = {(s, s)}, got {tuple(atlas.shape)}")


@torch.no_grad()
def hole_scores(pred, target, observed, hole, atlas):
    """Per-image scores on the evaluation texels E = observed * hole * atlas.

    Returns {name: Tensor(N)}: l1 and psnr over E; ssim: mean over E of the SSIM map of the
    composite (pred on E, target elsewhere) vs target, with local statistics over the observed atlas texels
    only (masked SSIM: unobserved texels beside a hole cannot inflate it);
    composite_psnr: PSNR of that composite over all observed atlas texels (the whole-atlas
    view); hole_fraction: |E| / |observed * atlas|.
    PSNR of a perfect prediction is PSNR_CAP_DB (100 dB) instead of +inf.
    """
    _check_case(pred, target, observed, hole, atlas)
    pred, target = pred.float(), target.float()
    atlas = (atlas.to(pred.device) > 0.5).float()
    visible = (observed.to(pred.device) > 0.5).float() * atlas
    evaluated = visible * (hole.to(pred.device) > 0.5).float()
    n_evaluated = evaluated.flatten(1).sum(1)
    empty = (n_evaluated == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"images {empty} have no evaluation texels (observed * hole * atlas is empty); filter them out first")

    error = pred - target
    composited = composite(pred, target, 1.0 - evaluated)
    ssim = ssim_map(composited, target, weight=visible)
    return {
        "l1": masked_mean(error.abs(), evaluated, per_image=True),
        "psnr": psnr_from_mse(masked_mean(error**2, evaluated, per_image=True)),
        "ssim": masked_mean(ssim, evaluated, per_image=True),
        "composite_psnr": psnr_from_mse(masked_mean((composited - target) ** 2, visible, per_image=True)),
        "hole_fraction": n_evaluated / visible.flatten(1).sum(1),
    }


def size_bin_of(hole_fraction, edges=SIZE_BIN_EDGES):
    """Label like "0.10-0.20" of the bin [lo, hi) holding hole_fraction; the last bin includes its top edge."""
    fraction = float(hole_fraction)
    if not edges[0] <= fraction <= edges[-1]:
        raise ValueError(f"hole_fraction {fraction} is outside the size-bin edges {tuple(edges)}; widen the edges")
    for lo, hi in zip(edges[:-1], edges[1:]):
        if fraction < hi or hi == edges[-1]:
            return f"{lo:.2f}-{hi:.2f}"


def _number(value):
    """float of a Python/NumPy number or a one-element tensor, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bin_order(label):
    """Sort bins by their first number ("5-15" before "30-45"), then by text."""
    match = re.search(r"-?\d+(\.\d+)?", str(label))
    return (float(match.group()) if match else math.inf, str(label))


def _means(rows, metrics):
    summary = {m: sum(row[m] for row in rows) / len(rows) for m in metrics}
    summary["n"] = len(rows)
    return summary


def aggregate(records, by=("yaw_bin", "size_bin"), metrics=None):
    """Mean of every score over all records and per group of each key in `by`.

    records: per-image dicts of scores (numbers or one-element tensors), grouping keys and any
    other fields (ids, case numbers: ignored). metrics: the keys to average, by default those of
    SCORE_NAMES present in the first record.
    Returns {"overall": {metric: mean, ..., "n": count}, "by_<key>": {bin: {...}} for key in by},
    plain Python numbers, ready for json.dump.
    """
    if not records:
        raise ValueError("aggregate got no records; score at least one image first")
    if metrics is None:
        metrics = [name for name in SCORE_NAMES if name in records[0]]
    if not metrics:
        raise ValueError(f"aggregate found none of {SCORE_NAMES} in the records; pass metrics=[...] naming the keys to average")
    rows = []
    for i, record in enumerate(records):
        missing = [k for k in (*by, *metrics) if k not in record]
        if missing:
            raise ValueError(f"record {i} lacks keys {missing}; every record needs the same scores and grouping keys")
        scores = {k: _number(record[k]) for k in metrics}
        not_numbers = [k for k, v in scores.items() if v is None]
        if not_numbers:
            raise ValueError(f"record {i} has non-numeric scores {not_numbers}; pass numbers or one-element tensors")
        rows.append({**scores, **{k: record[k] for k in by}})

    result = {"overall": _means(rows, metrics)}
    for key in by:
        groups = defaultdict(list)
        for row in rows:
            groups[row[key]].append(row)
        result[f"by_{key}"] = {label: _means(groups[label], metrics) for label in sorted(groups, key=_bin_order)}
    return result
