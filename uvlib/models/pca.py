"""Masked PCA: principal components fitted directly on incomplete UV maps.

Fitting is EM / iterative low-rank imputation on the atlas texels: missing entries start at the
observed mean, then each iteration takes a randomised rank-k SVD of the centred, filled data
matrix (warm-started from the previous iteration's subspace) and replaces only the missing
entries by their rank-k reconstruction; the mean is re-estimated from the filled data, as EM does.
Completion is the probabilistic-PCA posterior mean given the visible texels of one image, so
components with little variance are shrunk rather than over-fitted. With a robust scale c it is the posterior
under a Cauchy likelihood instead (iteratively reweighted least squares): a seen texel whose colour the
components cannot explain (hair or background at a real profile's silhouette, a misfitted mesh) is weighted
by 1 / (1 + r²/c²) for its residual r, instead of pulling every component towards a ghost of itself.
With a misfit threshold, an image whose seen texels that completion fits badly (RMS residual above the threshold:
typically a real turned photo, whose stretched, shaded texels and other-photo reference call for far more shrinkage
than the clean texels of a simulated hole) is completed with a second, smoother setting instead.

Memory: the fit keeps one (N, 3·T) float32 matrix of the T atlas texels on the maps' device (N = 10,000 maps
at 256 x 256 is about 5 GB); it takes the maps as stored, uint8, so the input costs a quarter of float maps.
Data larger than that are fitted on a seeded random subset of the maps (uvlib.data.shards.sample_rows,
notebook 01's pca_fit_maps), read from the dataset's uint8 shards.
"""

from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from uvlib.ops import check_maps

CHUNK_FLOATS = 1 << 24  # ~64 MB of float32 per working block


@dataclass
class MaskedPCAConfig:
    n_components: int
    max_iter: int = 100
    tol: float = 1e-3  # stop when the imputed entries change by less than this (relative)
    ridge: float | None = None  # λ of the completion solve; None = PPCA noise variance
    robust_scale: float | None = None  # c of the completion's Cauchy texel weights; None = plain least squares
    robust_iters: int = 2  # reweighting rounds of a robust completion
    misfit_threshold: float | None = None  # seen-texel RMS residual above which the misfit setting completes instead
    misfit_ridge: float | None = None  # λ of that second setting
    misfit_robust_scale: float | None = None  # its c; None = plain least squares
    seed: int = 0
    oversample: int = 10  # extra columns of the randomised SVD
    power_iter: int = 2  # subspace iterations of the first, cold-started randomised SVD


def atlas_index(atlas):
    """Flat indices (into S*S) of the texels inside the atlas."""
    return torch.nonzero(atlas.reshape(-1) > 0).squeeze(1)


def gather_atlas(uv, mask, index):
    """Maps -> (N, 3*T) float32 data matrix and (N, T) bool mask over the T atlas texels.

    uint8 maps (0-255, as the dataset stores them) give exactly the floats of Dataset.load (u / 255).
    """
    n = uv.shape[0]
    x = uv.reshape(n, 3, -1)[:, :, index].reshape(n, -1)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x
    m = (mask.reshape(n, -1) > 0.5)[:, index]
    return x, m


def scatter_atlas(x, index, size):
    """(N, 3*T) atlas vectors -> (N, 3, S, S) maps, zeros outside the atlas."""
    n = x.shape[0]
    maps = x.new_zeros(n, 3, size * size)
    maps[:, :, index] = x.reshape(n, 3, -1)
    return maps.reshape(n, 3, size, size)


def _texel_view(x):
    """(B, 3*T) atlas vectors viewed as (B, 3, T), so a (B, 1, T) texel mask broadcasts."""
    return x.view(x.shape[0], 3, -1)


def _sq(t):
    """Sum of squares in one pass, without a temporary."""
    flat = t.reshape(-1)
    return torch.dot(flat, flat)


def _rows_per_chunk(width):
    return max(1, CHUNK_FLOATS // max(1, width))


def _texel_outer(w):
    """outer(t0, t1): the (t1 - t0, k*k) per-texel sums over channels of w_ct w_ct^T, texels t0..t1 of the
    (3*T, k) loadings w; blocks are computed when asked, so no (T, k*k) array is held."""
    wc = w.reshape(3, -1, w.shape[1])  # (3, T, k)

    def outer(t0, t1):
        block = wc[:, t0:t1]
        return torch.einsum("ctk,ctj->tkj", block, block).reshape(block.shape[1], -1)
    return outer


def gram_by_texel_outer(weight, outer, k):
    """(B, k, k) Gram matrices Σ_t d_nt Σ_c w_ct w_ct^T from `outer` (_texel_outer) blocks: each block is built once
    per call and shared by the batch, so this pays off for large batches."""
    gram = torch.zeros(weight.shape[0], k * k, device=weight.device)
    step = _rows_per_chunk(k * k)
    for t in range(0, weight.shape[1], step):
        gram += weight[:, t : t + step] @ outer(t, t + step)
    return gram.reshape(-1, k, k)


def uses_per_image_products(batch, k):
    """Whether _normal_equations builds a batch's Gram matrices by per-image products (see gram_by_products)."""
    return batch * 3 < k


def gram_by_products(weight, w):
    """The same Gram matrices as one (3T, k) matrix product per image: cheaper than building the outer products for
    batches under about k/3 images (2-core CPU, 128 px: 10 images at k 32, 85 at k 256), such as the few maps per
    fold of a cross-fitted cascade's training fills. benchmarks/bench_pca_completion.py times both."""
    rows = weight.repeat(1, 3)   # W's rows are channel-major: row c*T + t has texel t's weight
    return torch.stack([(w * d[:, None]).T @ w for d in rows])


def seen_rms(fit, uv_in, known, atlas):
    """(N,) RMS residual of completions `fit` on each image's seen atlas texels (0 where none is seen)."""
    seen = (known > 0.5) & (atlas > 0)
    squared = (fit - uv_in).square().mean(1, keepdim=True) * seen
    return (squared.flatten(1).sum(1) / seen.flatten(1).sum(1).clamp_min(1)).sqrt()


def _solve(gram, rhs, lam):
    """(gram + λ I)^-1 rhs per image, by Cholesky: the system is symmetric positive definite for λ > 0.

    (torch.linalg.solve's batched LU failed here on such float32 systems, in torch 2.13 on CPU, with
    "Pivots given to lu_solve must all be greater or equal to 1" for some batches.)"""
    regularised = gram.clone()
    regularised.diagonal(dim1=1, dim2=2).add_(float(lam))
    return torch.cholesky_solve(rhs.unsqueeze(-1), torch.linalg.cholesky(regularised)).squeeze(-1)


class MaskedPCA:
    """PCA of incomplete UV maps; `complete` (and calling the model) is a completion function."""

    def __init__(self, n_components, **options):
        """options: the fields of MaskedPCAConfig (max_iter, tol, ridge, seed, oversample, power_iter)."""
        self.config = MaskedPCAConfig(n_components, **options)
        if self.config.n_components < 1 or self.config.max_iter < 1:
            raise ValueError(f"n_components and max_iter must be >= 1, got {n_components} and {self.config.max_iter}")
        self.history = []
        self.atlas = None  # (S, S) bool
        self.mean_ = None  # (D,)
        self.components_ = None  # (D, k) orthonormal columns, sorted by explained variance
        self.explained_variance_ = None  # (k,)
        self.explained_variance_ratio_ = None  # (k,)
        self.total_variance_ = None  # scalar tensor: total variance of the final filled data
        self.noise_variance_ = None  # scalar tensor: PPCA σ², mean of the discarded non-zero eigenvalues

    # ----------------------------------------------------------------------------- fitting

    def fit(self, uv, observed, atlas, progress=True):
        """Fit on maps uv (N,3,S,S), float in [0, 1] or uint8, whose texels are known where observed (N,1,S,S) is 1."""
        check_maps(uv, observed, atlas, "MaskedPCA.fit")
        cfg = self.config
        index = atlas_index(atlas.to(uv.device))
        n, d = uv.shape[0], 3 * index.numel()
        if cfg.n_components > min(n, d):
            raise ValueError(f"n_components={cfg.n_components} exceeds min(N, D)={min(n, d)}; use fewer components")
        x, m = gather_atlas(uv, observed, index)
        x = x.float()  # the one (N, D) copy we keep
        if not m.any():
            raise ValueError("MaskedPCA.fit: no observed atlas texel; check the observed masks")
        mean, texel_count = self._centre(x, m)
        n_observed = 3 * texel_count.sum()
        if not torch.isfinite(x.sum()):  # a NaN/inf anywhere survives the sum; no (N, D) temporary
            raise ValueError("MaskedPCA.fit: uv has NaN/inf on observed texels; clean the maps or mask those texels")

        k = cfg.n_components
        q = min(k + cfg.oversample, n, d)
        self.history = []
        generator = torch.Generator(device=x.device).manual_seed(cfg.seed)
        basis = torch.randn(d, q, generator=generator, device=x.device)
        scratch = torch.empty(2, min(n, _rows_per_chunk(d)), d, device=x.device)
        bar = tqdm(range(1, cfg.max_iter + 1), desc=f"masked PCA k={k}", disable=not progress)
        for it in bar:
            u, s, basis = self._svd(x, basis, cfg.power_iter if it == 1 else 0)
            stats = self._impute(x, m, n_observed, u[:, :k] * s[:k], basis[:, :k], scratch)
            shift = stats.pop("column_sum") / n  # re-centre: the mean of the filled data (the EM mean)
            for rows in self._row_chunks(n, d):
                x[rows].sub_(shift)
            mean += shift
            self.history.append({"iter": it, **stats})
            bar.set_postfix(rel_change=f"{stats['rel_change']:.1e}", observed_rmse=f"{stats['observed_rmse']:.4f}")
            if stats["rel_change"] < cfg.tol:
                break

        self._set_components(x, basis[:, :k], mean)
        self.atlas = atlas.to(uv.device) > 0
        return self

    @staticmethod
    def _centre(x, m):
        """Subtract the per-dimension observed mean in place, set missing entries to 0 (= the mean).

        A dimension never observed falls back to its channel's mean over all observed texels.
        Returns the mean (D,) and how often each texel was observed (T,).
        """
        n, texels = m.shape
        total = torch.zeros(3, texels, device=x.device)
        count = torch.zeros(texels, device=x.device)
        for rows in MaskedPCA._row_chunks(n, x.shape[1]):  # chunked: a bool sum makes an int64 copy
            total += _texel_view(x[rows]).masked_fill_(~m[rows].unsqueeze(1), 0).sum(0)
            count += m[rows].sum(0)
        fallback = total.sum(1, keepdim=True) / count.sum()
        mean = torch.where(count > 0, total / count.clamp_min(1), fallback)
        for rows in MaskedPCA._row_chunks(n, x.shape[1]):
            _texel_view(x[rows]).sub_(mean).masked_fill_(~m[rows].unsqueeze(1), 0)
        return mean.reshape(-1), count

    @staticmethod
    def _row_chunks(n, d):
        step = _rows_per_chunk(d)
        return [slice(i, min(i + step, n)) for i in range(0, n, step)]

    @staticmethod
    def _svd(x, start, power_iter):
        """Rank-q SVD of x from a (D, q) start: randomised SVD (Halko et al. 2009, alg. 4.4 + 5.1).

        The first call starts from a seeded Gaussian matrix; later ones from the previous right
        singular vectors, which the slowly changing filled matrix keeps nearly invariant.
        """
        left = torch.linalg.qr(x @ start).Q  # (N, q)
        for _ in range(power_iter):
            left = torch.linalg.qr(x @ torch.linalg.qr(x.T @ left).Q).Q
        right, r = torch.linalg.qr(x.T @ left)  # x ≈ left r^T right^T
        u, s, vh = torch.linalg.svd(r.T)
        return left @ u, s, right @ vh.T

    def _impute(self, x, m, n_observed, us, v, scratch):
        """Replace the missing entries of x by the rank-k reconstruction us @ v.T, chunk by chunk.

        Works in two preallocated (rows, D) buffers with in-place float-mask products: on a CPU,
        fresh allocations and boolean masking cost several times more than the arithmetic.
        """
        change = imputed = observed_sq = 0.0
        column_sum = torch.zeros(x.shape[1], device=x.device)
        for rows in self._row_chunks(*x.shape):
            xr, n_rows = x[rows], rows.stop - rows.start
            seen = m[rows].unsqueeze(1).float()  # (B, 1, T), broadcast over the 3 channels
            residual, masked = scratch[0][:n_rows], scratch[1][:n_rows]
            torch.addmm(xr, us[rows], v.T, beta=-1, out=residual)  # reconstruction - x
            torch.mul(_texel_view(residual), seen, out=_texel_view(masked))
            observed_sq += _sq(masked)
            residual.sub_(masked)  # now nonzero on missing entries only
            change += _sq(residual)
            xr.add_(residual)  # missing entries := reconstruction
            torch.mul(_texel_view(xr), 1 - seen, out=_texel_view(masked))
            imputed += _sq(masked)
            column_sum += xr.sum(0)
        return {
            "rel_change": (change / imputed).sqrt().item() if float(imputed) > 0 else 0.0,
            "observed_rmse": (observed_sq / n_observed).sqrt().item(),
            "column_sum": column_sum,
        }

    def _set_components(self, x, v, mean):
        """Variance of the final filled data along each component (sorted) and in total."""
        n, d = x.shape
        k = v.shape[1]
        proj_sq = torch.zeros(k, device=x.device)
        total = torch.zeros((), device=x.device)
        for rows in self._row_chunks(n, d):
            proj_sq += (x[rows] @ v).square().sum(0)
            total += x[rows].square().sum()
        denom = max(n - 1, 1)
        variance, order = (proj_sq / denom).sort(descending=True)
        self.mean_ = mean
        self.components_ = v[:, order].contiguous()
        self.explained_variance_ = variance
        self.total_variance_ = total / denom
        self.explained_variance_ratio_ = variance / self.total_variance_.clamp_min(1e-12)
        discarded = (self.total_variance_ - variance.sum()).clamp_min(0)
        self.noise_variance_ = discarded / max(min(n - 1, d) - k, 1)  # over the discarded non-zero eigenvalues

    # --------------------------------------------------------------------------- completion

    def complete(self, uv_in, known, batch_size=256):
        """Posterior-mean completion from each image's visible atlas texels; maps in [0, 1]. With a misfit threshold,
        images whose seen texels the first completion fits worse than it are completed with the misfit setting."""
        cfg = self.config
        first = (self.ridge(), cfg.robust_scale)
        fit = self.complete_with(uv_in, known, [first], batch_size)[0]
        if cfg.misfit_threshold is None:
            return fit
        misfit = seen_rms(fit, uv_in, known, self.atlas.to(uv_in.device)) > cfg.misfit_threshold
        if misfit.any():   # the second setting only for the images it serves
            second = [(cfg.misfit_ridge, cfg.misfit_robust_scale)]
            fit[misfit] = self.complete_with(uv_in[misfit], known[misfit], second, batch_size)[0]
        return fit

    def complete_with(self, uv_in, known, settings, batch_size=256):
        """[complete() with λ = ridge and robust scale c for (ridge, c) in settings]; c None = plain least squares.

        The plain settings share each image's Gram matrix; a robust one rebuilds it per reweighting round."""
        self._check_fitted()
        check_maps(uv_in, known, self.atlas, "MaskedPCA.complete")
        device = uv_in.device
        index = atlas_index(self.atlas.to(device))
        mean, loadings = self.mean_.to(device), self.loadings().to(device)
        outer = _texel_outer(loadings)
        outs = [torch.zeros_like(uv_in, dtype=torch.float32) for _ in settings]
        for start in range(0, uv_in.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            x, m = gather_atlas(uv_in[rows].float(), known[rows], index)
            xc, seen = x - mean, m.float()
            plain = self._normal_equations(xc, seen, loadings, outer)
            for out, (lam, scale) in zip(outs, settings):
                z = _solve(*plain, lam)
                for _ in range(self.config.robust_iters if scale else 0):
                    residual = _texel_view(xc - z @ loadings.T).square().mean(1)  # (B, T), over the 3 channels
                    z = _solve(*self._normal_equations(xc, seen / (1 + residual / scale ** 2), loadings, outer), lam)
                out[rows] = scatter_atlas((mean + z @ loadings.T).clamp(0, 1), index, self.atlas.shape[0])
        return outs

    __call__ = complete

    def loadings(self):
        """PPCA loadings W = V (Λ - σ²)^½: the prior on each image's code z is N(0, I)."""
        self._check_fitted()
        scale = (self.explained_variance_ - self.noise_variance_).clamp_min(0).sqrt()
        return self.components_ * scale

    def ridge(self):
        """λ of the completion solve: config.ridge once chosen (uvlib.train.pca_ridge), else noise_ridge()."""
        return self.noise_ridge() if self.config.ridge is None else float(self.config.ridge)

    def noise_ridge(self):
        """The PPCA choice λ = σ², floored so that noiseless data stay solvable."""
        self._check_fitted()
        floor = 1e-6 * float(self.explained_variance_[0].clamp_min(1e-12))
        return max(float(self.noise_variance_), floor)

    @staticmethod
    def _normal_equations(xc, weight, w, outer):
        """(W_v^T D W_v, W_v^T D x_v) per image, D the (B, T) texel weights (0/1: seen) shared by the 3 channels."""
        b, k = xc.shape[0], w.shape[1]
        gram = gram_by_products(weight, w) if uses_per_image_products(b, k) else gram_by_texel_outer(weight, outer, k)
        rhs = (_texel_view(xc) * weight.unsqueeze(1)).view_as(xc) @ w
        return gram, rhs

    # ----------------------------------------------------------------------------- figures

    def mean_map(self):
        """The mean face as a (3, S, S) map in [0, 1]."""
        self._check_fitted()
        index = atlas_index(self.atlas)
        return scatter_atlas(self.mean_.clamp(0, 1)[None], index, self.atlas.shape[0])[0]

    def components_as_maps(self, n):
        """The first n components as (n, 3, S, S) maps: 0.5 = zero, each scaled by its max |value|."""
        self._check_fitted()
        v = self.components_[:, :n].T
        v = 0.5 + 0.5 * v / v.abs().amax(1, keepdim=True).clamp_min(1e-12)
        return scatter_atlas(v, atlas_index(self.atlas), self.atlas.shape[0])

    # ------------------------------------------------------------------------- persistence

    def state_dict(self):
        self._check_fitted()
        return {
            "config": asdict(self.config),
            "history": list(self.history),
            "atlas": self.atlas.cpu(),
            "mean": self.mean_.cpu(),
            "components": self.components_.cpu(),
            "explained_variance": self.explained_variance_.cpu(),
            "total_variance": self.total_variance_.cpu(),
            "noise_variance": self.noise_variance_.cpu(),
        }

    def load_state_dict(self, state):
        self.config = MaskedPCAConfig(**state["config"])
        self.history = list(state["history"])
        self.atlas = state["atlas"].bool()
        self.mean_ = state["mean"]
        self.components_ = state["components"]
        self.explained_variance_ = state["explained_variance"]
        self.total_variance_ = state["total_variance"]
        self.noise_variance_ = state["noise_variance"]
        self.explained_variance_ratio_ = self.explained_variance_ / self.total_variance_.clamp_min(1e-12)
        return self

    def save(self, path):
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path, map_location="cpu"):
        state = torch.load(path, map_location=map_location, weights_only=True)
        return cls(state["config"]["n_components"]).load_state_dict(state)

    def to(self, device):
        self._check_fitted()
        for name in ("atlas", "mean_", "components_", "explained_variance_", "explained_variance_ratio_",
                     "total_variance_", "noise_variance_"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _check_fitted(self):
        if self.components_ is None:
            raise ValueError("MaskedPCA is not fitted; call fit(uv, observed, atlas) or load(path) first")
