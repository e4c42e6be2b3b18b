"""The face's own left-right symmetry, exactly as the canonical mesh has it.

The canonical mesh's vertices come in mirror pairs (x -> -x), and its triangles map onto triangles under that
pairing. Its UV layout is symmetric about u = 0.5 only up to about 0.001 in u and v (a tenth of a texel at
128), so the mirror of a texel is taken through the mesh, not by flipping pixel columns: the texel's
triangle's twin (the triangle of the twin vertices) at the same barycentric weights.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from uvlib.geometry.mesh import face_model, uv_atlas


@lru_cache(maxsize=1)
def mirror_index() -> np.ndarray:
    """(468,) vertex permutation of the canonical mesh under a left-right mirror: vertex i's twin."""
    xyz = face_model().xyz
    _, twin = cKDTree(xyz).query(xyz * np.array([-1.0, 1.0, 1.0]))
    return twin


@dataclass(frozen=True)
class MirrorMap:
    """Where each texel's mirror lies in an S x S map, in texel units (row, col of texel centres: texel (i, j)
    is at (i, j)), and a bilinear sampler of it.

    source: (S, S, 2) float (row, col); NaN outside the atlas.
    valid:  (S, S) bool, inside the atlas and its mirror's nearest texel inside the atlas too.
    sampler: (S*S, S*S) sparse matrix; sampler @ image.reshape(S*S, C) is the image read at every texel's
             mirror (bilinear over the four texels around it; rows of texels outside the atlas are empty).
    """
    size: int
    source: np.ndarray
    valid: np.ndarray
    sampler: sparse.csr_matrix

    def sample(self, image: np.ndarray, weight: np.ndarray):
        """(mirrored image, mirrored weight) of a (S, S, C) image whose texels count with (S, S) weight in [0, 1]:
        each texel gets the weight-normalised bilinear average of the known texels around its mirror, and the
        share of bilinear weight that fell on them (0 where none did)."""
        s = self.size
        w = self.sampler @ weight.reshape(s * s)
        colour = self.sampler @ (image.reshape(s * s, -1) * weight.reshape(s * s, 1))
        colour = colour / np.maximum(w, 1e-12)[:, None]
        return colour.reshape(image.shape), w.reshape(s, s)


@lru_cache(maxsize=8)
def mirror_texels(size: int) -> MirrorMap:
    """The exact texel-to-mirror-texel map of the S x S UV atlas (cached per size)."""
    atlas = uv_atlas(size)
    model = face_model()
    twin = mirror_index()
    inside = atlas.mask
    corners = model.uv[twin[model.tri[atlas.tri_id[inside]]]] * size        # (n, 3, 2) the twin triangle, x y
    xy = np.einsum("nk,nkd->nd", atlas.bary[inside].astype(np.float64), corners)
    rc = xy[:, ::-1] - 0.5                                                   # pixel centres sit at +0.5
    source = np.full((size, size, 2), np.nan)
    source[inside] = rc
    nearest = np.clip(np.rint(rc).astype(np.int64), 0, size - 1)
    valid = np.zeros((size, size), bool)
    valid[inside] = inside[nearest[:, 0], nearest[:, 1]]
    return MirrorMap(size, source, valid, _bilinear_matrix(np.flatnonzero(inside), rc, size))


def _bilinear_matrix(rows_of, rc, size) -> sparse.csr_matrix:
    """Sparse (S*S, S*S) matrix reading the image bilinearly at points rc (n, 2) for output texels rows_of."""
    base = np.floor(rc).astype(np.int64)
    frac = rc - base
    rows, cols, vals = [], [], []
    for dr in (0, 1):
        for dc in (0, 1):
            r, c = base[:, 0] + dr, base[:, 1] + dc
            w = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            ok = (r >= 0) & (r < size) & (c >= 0) & (c < size) & (w > 0)
            rows.append(rows_of[ok])
            cols.append(r[ok] * size + c[ok])
            vals.append(w[ok])
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(size * size, size * size))


@lru_cache(maxsize=8)
def mirror_grid(size: int) -> np.ndarray:
    """(S, S, 2) float32 sampling grid for torch's grid_sample (align_corners=False): the (x, y) in [-1, 1] of
    every texel's mirror, so a bilinear grid_sample reads a map at the mirror texels exactly as MirrorMap.sample
    does. Texels outside the atlas point outside the map (they read zeros)."""
    rc = mirror_texels(size).source
    xy = (rc[..., ::-1] + 0.5) * (2.0 / size) - 1.0
    return np.where(np.isnan(xy), -2.0, xy).astype(np.float32)
