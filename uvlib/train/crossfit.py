"""Cross-fitted (K-fold) PCA fills, so a stacked stage never learns from in-sample fills.

A PCA fills the maps it was fitted on far better than new ones; a network trained on top of those fills
learns to trust them more than it should at test time. So stage 04 trains on out-of-fold fills: the
training maps are split into K folds (all maps of one group, a clip or person or photo, in one fold), K
PCAs are each fitted on the other folds, and every training map is filled by the PCA that never saw it.
The saved cascade keeps the PCA fitted on all training maps for test-time completion (standard cross-fitting).
"""
import warnings
from dataclasses import asdict, replace

import numpy as np
import torch
from sklearn.model_selection import GroupKFold

from uvlib.models.pca import MaskedPCA
from uvlib.ops import composite
from uvlib.train.batches import HoleSampler, TrainingBatches
from uvlib.train.provenance import ids_digest


def map_group(row: dict) -> str:
    """The unit kept within one fold: the row's group (clip, person) where known, else its photo."""
    return row.get("group") or row["photo"]


def group_folds(groups, k: int, seed: int) -> np.ndarray:
    """(N,) fold index per map, in [0, min(k, number of groups)); maps of one group share a fold; the groups
    are shuffled with the seed. Fewer groups than k (a few clips) give one fold per group, with a warning."""
    n_groups = len(set(groups))
    if k < 2 or n_groups < 2:
        raise ValueError(f"cross-fitting needs cross_fit_folds >= 2 and at least 2 training groups (clips, people "
                         f"or photos), got folds={k} and {n_groups} group(s); add training photos or raise folds")
    if n_groups < k:
        warnings.warn(f"only {n_groups} training groups for cross_fit_folds={k}: using {n_groups} folds")
        k = n_groups
    fold = np.empty(len(groups), dtype=np.int64)
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, held_out) in enumerate(splitter.split(np.zeros(len(groups)), groups=np.asarray(groups))):
        fold[held_out] = f
    return fold


class CrossFittedPCA:
    """K PCAs with `pca`'s config, pcas[f] fitted on the training maps outside fold f.

    fill(uv_in, known, fold) completes each item with the PCA of its fold, i.e. one that never saw it.
    Built cheaply (folds only); `fit()` fits the K PCAs once, when a stage actually trains.
    """

    def __init__(self, pca: MaskedPCA, uv, observed, rows, folds=5, seed=0):
        if len(rows) != len(uv):
            raise ValueError(f"CrossFittedPCA: {len(rows)} index rows for {len(uv)} maps; pass ctx.train_rows")
        self.config, self.atlas = replace(pca.config), pca.atlas
        self.uv, self.observed, self.rows = uv, observed, rows
        self.fold = torch.from_numpy(group_folds([map_group(r) for r in rows], folds, seed))
        self.folds, self.folds_requested, self.seed = int(self.fold.max()) + 1, folds, seed
        self.pcas = None

    def describe(self) -> dict:
        """How the fills were made, for metrics.json and the model file."""
        return {"pca_fills": f"{self.folds}-fold cross-fitted", "folds": self.folds,
                "folds_requested": self.folds_requested, "fold_seed": self.seed,
                "grouped_by": "group" if any(r.get("group") for r in self.rows) else "photo",
                "fold_sizes": torch.bincount(self.fold, minlength=self.folds).tolist(),
                "maps_ids": ids_digest(self.rows), "pca": asdict(self.config)}

    def fit(self, device="cpu", progress=True):
        if self.pcas is None:
            options = {k: v for k, v in asdict(self.config).items() if k != "n_components"}
            atlas = self.atlas.to(device)
            self.pcas = []
            for f in range(self.folds):
                rest = self.fold != f
                components = min(self.config.n_components, int(rest.sum()))
                if components < self.config.n_components:   # a few big clips can leave a fold's rest small
                    warnings.warn(f"cross-fitting fold {f}: only {components} maps outside it, so its PCA has "
                                  f"{components} components instead of {self.config.n_components}")
                pca = MaskedPCA(components, **options)
                self.pcas.append(pca.fit(self.uv[rest].to(device), self.observed[rest].to(device), atlas,
                                         progress=progress).to("cpu"))
        return self

    def to(self, device):
        for pca in self.pcas or []:
            pca.to(device)
        return self

    @torch.no_grad()
    def fill(self, uv_in, known, fold):
        """Each item's out-of-fold PCA completion, known texels pasted back (the cascade's extra input)."""
        if self.pcas is None:
            raise ValueError("CrossFittedPCA is not fitted; call fit() first")
        out = torch.empty_like(uv_in)
        for f, pca in enumerate(self.pcas):
            rows = fold == f
            if rows.any():
                out[rows] = composite(pca.complete(uv_in[rows], known[rows]), uv_in[rows], known[rows])
        return out


class FoldedBatches(TrainingBatches):
    """TrainingBatches whose batches also hold each map's fold: {'uv', 'observed', 'hole', 'fold'}.

    The maps, holes and order are exactly those of TrainingBatches(uv, observed, ...), so a resumed run replays them.
    """

    def __init__(self, uv, observed, fold, sampler: HoleSampler, batch_size, seed=0, device="cpu"):
        super().__init__(uv, observed, sampler, batch_size, seed, device, per_map={"fold": fold})
