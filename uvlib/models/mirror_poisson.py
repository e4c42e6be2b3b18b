"""Mirror-Poisson: gradient-domain (Poisson) fill of a UV map's hole, guided by the face's mirrored side.

The best completion that needs no training: a baseline of the results table, what `uvlib complete` uses without
a model, and the first stage of the mirror-Poisson -> PConv cascade (uvlib.models.cascade).

On the hole H the fill f solves the discrete Poisson equation with the observed texels as boundary values:
for every hole texel p and each 4-neighbour q inside the atlas, sum_q (f_p - f_q) = sum_q v_pq, where f_q is
the observed colour when q is known. The guidance v_pq = g_p - g_q is the mirrored map's difference when both
texels' mirrors were observed, else 0. So where the mirror is known the fill copies the mirrored texture's
detail and takes the hidden side's own boundary colour (a mirrored cheek shifted to meet its surroundings);
where it is not, the fill is plain harmonic diffusion from the boundary. Neighbours outside the atlas are left
out (no flux across the atlas edge). A vanishing pull (EPS) towards the mirrored colour, or the map's mean
observed colour, keeps a hole with no observed texel around it solvable.
"""
import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import splu

from uvlib.geometry.mesh import uv_atlas
from uvlib.geometry.mirror import MirrorMap, mirror_texels
from uvlib.ops import check_completion_inputs

EPS = 1e-6
MIN_MIRROR_WEIGHT = 0.5   # share of a mirror's bilinear weight on observed texels for it to guide


def mirror_poisson_fill(image: np.ndarray, known: np.ndarray, atlas: np.ndarray, mirror: MirrorMap) -> np.ndarray:
    """Fill the atlas texels of `image` (S, S, C) float that `known` (S, S) bool does not mark; returns a new
    (S, S, C) float64 array, `image` unchanged on the known texels and outside the atlas."""
    size = image.shape[0]
    image = image.astype(np.float64)
    known = known & atlas
    hole = atlas & ~known
    out = image.copy()
    n = int(hole.sum())
    if n == 0:
        return out
    mirrored, weight = mirror.sample(image, known.astype(np.float64))
    guided = mirror.valid & (weight >= MIN_MIRROR_WEIGHT)
    fallback = image[known].mean(0) if known.any() else np.full(image.shape[-1], 0.5)
    prior = np.where(guided[..., None], mirrored, fallback)

    unknown = np.full((size, size), -1)
    unknown[hole] = np.arange(n)
    rows, cols = np.nonzero(hole)
    diagonal = np.full(n, EPS)
    rhs = EPS * prior[rows, cols]
    off_i, off_j = [], []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        r, c = rows + dr, cols + dc
        ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        ok[ok] = atlas[r[ok], c[ok]]
        p, r, c = np.flatnonzero(ok), r[ok], c[ok]
        diagonal += np.bincount(p, minlength=n)
        both_guided = guided[rows[p], cols[p]] & guided[r, c]
        flux = np.where(both_guided[:, None], mirrored[rows[p], cols[p]] - mirrored[r, c], 0.0)
        q_known = known[r, c]
        flux[q_known] += image[r[q_known], c[q_known]]
        np.add.at(rhs, p, flux)
        off_i.append(p[~q_known])
        off_j.append(unknown[r[~q_known], c[~q_known]])
    off_i, off_j = np.concatenate(off_i), np.concatenate(off_j)
    system = sparse.csc_matrix((np.concatenate([diagonal, -np.ones(len(off_i))]),
                                (np.concatenate([np.arange(n), off_i]), np.concatenate([np.arange(n), off_j]))),
                               shape=(n, n))
    out[hole] = splu(system).solve(rhs)
    return out


class MirrorPoissonFill:
    """Completion function: each hidden texel from the face's other side, blended in the gradient domain (the
    mirrored texture's detail with the hidden side's own boundary colour); where the mirror was not seen either,
    harmonic diffusion from the boundary. Runs on the host (scipy) whatever the maps' device; the maps' size must
    be a UV size."""

    def __call__(self, uv_in, known):
        check_completion_inputs(uv_in, known)
        size = uv_in.shape[-1]
        atlas, mirror = uv_atlas(size).mask, mirror_texels(size)
        images = uv_in.detach().permute(0, 2, 3, 1).cpu().double().numpy()
        masks = (known.detach()[:, 0] > 0.5).cpu().numpy()
        filled = np.stack([mirror_poisson_fill(img, m, atlas, mirror) for img, m in zip(images, masks)])
        out = torch.from_numpy(filled).permute(0, 3, 1, 2).clamp(0, 1)
        return out.to(device=uv_in.device, dtype=uv_in.dtype)
