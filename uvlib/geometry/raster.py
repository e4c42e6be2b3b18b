"""A small vectorised triangle rasteriser with a depth buffer (numpy, no OpenGL).

Used three ways: to lay the face mesh out in UV space (which triangle owns each texel), to build the
image-space depth buffer that decides texel visibility, and to render completed textures at new poses.

Coordinates are continuous pixel units: pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5).
Depth follows the camera convention: smaller depth is closer and wins.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class Raster:
    """Per-pixel result: triangle index (-1 = background), barycentric weights and interpolated depth."""
    tri_id: np.ndarray   # (H, W) int32
    bary: np.ndarray     # (H, W, 3) float32
    depth: np.ndarray    # (H, W) float32, +inf on background


def _candidate_pixels(corners, height, width):
    """Enumerate, for every triangle, the pixel centres of its clipped bounding box."""
    lo = np.floor(corners.min(axis=1) - 0.5).astype(np.int64) + 1
    hi = np.floor(corners.max(axis=1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    box_w = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    box_h = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = box_w * box_h
    tri = np.repeat(np.arange(len(corners)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = lo[tri, 0] + offset % box_w[tri]
    rows = lo[tri, 1] + offset // box_w[tri]
    return tri, rows, cols


def _nearest_per_pixel(pixel, z, n_pixels):
    """Index of the candidate with the smallest z at each covered pixel, ties to the lowest index. Two unbuffered
    minimum reductions: about 10x faster than sorting the candidates by (pixel, z) at stage-00 sizes."""
    nearest = np.full(n_pixels, np.inf)
    np.minimum.at(nearest, pixel, z)
    tied = np.flatnonzero(z == nearest[pixel])
    first = np.full(n_pixels, len(z))
    np.minimum.at(first, pixel[tied], tied)
    return first[first < len(z)]


def rasterize(verts, faces, height, width, depth=None, cull_backfaces=False):
    """Rasterise triangles `faces` (T, 3) over 2D vertices `verts` (V, 2) into an H x W grid.

    depth: optional per-vertex depth (V,); where triangles overlap the smallest interpolated depth wins.
    cull_backfaces: drop triangles whose image-space winding is clockwise on screen (y down), i.e. facing away
    under the MediaPipe convention (front faces have negative signed area in image coordinates).
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces)
    corners = verts[faces]                                        # (T, 3, 2)
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    keep = np.abs(area) > 1e-12
    if cull_backfaces:
        keep &= area < 0
    tri_index = np.flatnonzero(keep)
    tri, rows, cols = _candidate_pixels(corners[tri_index], height, width)
    tri = tri_index[tri]

    px = cols + 0.5 - corners[tri, 0, 0]
    py = rows + 0.5 - corners[tri, 0, 1]
    inv_area = 1.0 / area[tri]
    b1 = (px * e2[tri, 1] - py * e2[tri, 0]) * inv_area
    b2 = (py * e1[tri, 0] - px * e1[tri, 1]) * inv_area
    b0 = 1.0 - b1 - b2
    eps = -1e-9
    inside = (b0 >= eps) & (b1 >= eps) & (b2 >= eps)
    tri, rows, cols = tri[inside], rows[inside], cols[inside]
    bary = np.stack([b0[inside], b1[inside], b2[inside]], axis=1)

    pixel = rows * width + cols
    if depth is None:
        z = tri.astype(np.float64)  # deterministic tie-break: lowest triangle index wins
    else:
        z = np.einsum("nk,nk->n", bary, np.asarray(depth, dtype=np.float64)[faces[tri]])
    winner = _nearest_per_pixel(pixel, z, height * width)

    out = Raster(
        tri_id=np.full((height, width), -1, dtype=np.int32),
        bary=np.zeros((height, width, 3), dtype=np.float32),
        depth=np.full((height, width), np.inf, dtype=np.float32),
    )
    r, c = rows[winner], cols[winner]
    out.tri_id[r, c] = tri[winner]
    out.bary[r, c] = bary[winner]
    out.depth[r, c] = z[winner] if depth is not None else 0.0
    return out
