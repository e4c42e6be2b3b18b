"""Choosing the masked PCA's completion ridge λ on the validation split.

The PPCA posterior mean uses λ = σ² (the noise variance). σ² is only an estimate, and the hole texels a
completion must guess are not noise, so λ is chosen instead among multiples of σ² by hole-PSNR on the
validation cases (never the test cases); the chosen λ is stored in the model (config.ridge).
"""
import math

from .evaluation import Benchmark, score

RIDGE_MULTIPLES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


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
    grid = []
    for multiple in multiples:
        ridge = multiple * sigma2
        summary, _ = score(lambda uv_in, known: pca.complete(uv_in, known, ridge=ridge), val, device=device,
                           progress=False)
        grid.append({"multiple": float(multiple), "ridge": ridge, "val_psnr": summary["overall"]["psnr"]})
    best = max(grid, key=lambda g: g["val_psnr"] if math.isfinite(g["val_psnr"]) else -math.inf)
    pca.config.ridge = best["ridge"]
    return {"noise_variance": sigma2, "chosen_multiple": best["multiple"], "chosen_ridge": best["ridge"],
            "grid": grid}
