"""Unwrapping what the camera saw of a fitted face into an incomplete UV texture.

Visibility is decided per texel: the texel's triangle must face the camera (cosine of the normal with the
view direction at least `min_facing`, which drops the grazing triangles at the silhouette that would
otherwise smear into stripes), and the texel must not lie behind the surface recorded in an image-space depth
buffer of the whole mesh (the nose hides the far cheek).

Two ways to fill the visible texels with colour:
- "warp" (default): inverse warp, each texel samples the photo bilinearly at its image position;
- "griddata": the original study's way, photo pixels are placed at their UV coordinates and scattered-
  interpolated onto the texel grid with scipy's griddata (about 20x slower, kept for comparison).
"""
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import griddata

from uvlib.geometry.mesh import face_model, uv_atlas
from uvlib.geometry.raster import rasterize

METHODS = ("warp", "griddata")


@dataclass
class Unwrapped:
    texture: np.ndarray    # (S, S, 3) uint8 RGB, zeros where not visible
    visible: np.ndarray    # (S, S) bool

    @property
    def visible_fraction(self) -> float:
        atlas = uv_atlas(self.visible.shape[0]).mask
        return float(self.visible.sum() / atlas.sum())


def triangle_facing(verts: np.ndarray) -> np.ndarray:
    """Cosine between each triangle's normal and the direction towards the camera (-z), (T,)."""
    corners = verts[face_model().tri]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return -normal[:, 2] / (np.linalg.norm(normal, axis=1) + 1e-12)


def texel_visibility(verts: np.ndarray, size: int, min_facing=0.2, depth_tol=0.03, erode=True):
    """Which texels of an S x S atlas the camera sees for image-space vertices `verts` (468, 3).

    Returns (visible (S, S) bool, texel image positions (S, S, 3)). The depth buffer is rasterised at a
    resolution where the face spans about S pixels (one buffer pixel per texel), cheap whatever the photo size.
    depth_tol is a fraction of the face's extent.
    """
    verts = np.asarray(verts, dtype=np.float64)
    atlas = uv_atlas(size)
    model = face_model()
    pos = atlas.texel_positions(verts)

    lo = verts[:, :2].min(0)
    extent = max(float((verts[:, :2].max(0) - lo).max()), 1e-6)
    k = size / extent
    grid = (verts[:, :2] - lo) * k + 1
    height, width = int(np.ceil(grid[:, 1].max())) + 2, int(np.ceil(grid[:, 0].max())) + 2
    depth = rasterize(grid, model.tri, height, width, depth=verts[:, 2] * k).depth

    tex_xy = (pos[..., :2] - lo) * k + 1
    col = np.clip(tex_xy[..., 0].astype(np.int64), 0, width - 1)
    row = np.clip(tex_xy[..., 1].astype(np.int64), 0, height - 1)
    in_front = pos[..., 2] * k <= depth[row, col] + depth_tol * size
    facing = triangle_facing(verts)[np.maximum(atlas.tri_id, 0)] >= min_facing
    visible = atlas.mask & in_front & facing
    if erode:  # texels on the edge of the seen region sample the silhouette and its background
        r = max(1, size // 128)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        visible = cv2.erode(visible.astype(np.uint8), kernel, borderValue=0).astype(bool)
    return visible, pos


def inside_photo(pos: np.ndarray, shape) -> np.ndarray:
    """Texels whose image position (pixel-centre convention) can be sampled from the photo itself, (S, S) bool.

    A face cut by the photo's border has texels whose position lies outside it: they were not seen.
    """
    h, w = shape[:2]
    x, y = pos[..., 0] - 0.5, pos[..., 1] - 0.5
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def _prefiltered(image: np.ndarray, verts: np.ndarray, size: int):
    """Downscale the photo when the face is much larger than the atlas, so bilinear sampling doesn't alias."""
    extent = float((verts[:, :2].max(0) - verts[:, :2].min(0)).max())
    k = 1.5 * size / extent
    if k >= 1:
        return image, verts
    small = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    return small, verts * k


def unwrap_warp(image, verts, size=128, **visibility_kw) -> Unwrapped:
    image, verts = _prefiltered(image, np.asarray(verts, dtype=np.float64), size)
    visible, pos = texel_visibility(verts, size, **visibility_kw)
    visible &= inside_photo(pos, image.shape)
    map_x = (pos[..., 0] - 0.5).astype(np.float32)
    map_y = (pos[..., 1] - 0.5).astype(np.float32)
    texture = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    texture[~visible] = 0
    return Unwrapped(texture, visible)


def unwrap_griddata(image, verts, size=128, min_facing=0.2, **visibility_kw) -> Unwrapped:
    """The original study's unwrap: scatter seen photo pixels to UV space, interpolate with griddata."""
    image, verts = _prefiltered(image, np.asarray(verts, dtype=np.float64), size)
    visible, pos = texel_visibility(verts, size, min_facing=min_facing, **visibility_kw)
    visible &= inside_photo(pos, image.shape)
    model = face_model()
    h, w = image.shape[:2]
    r = rasterize(verts[:, :2], model.tri, h, w, depth=verts[:, 2])
    seen = (r.tri_id >= 0)
    seen[seen] = triangle_facing(verts)[r.tri_id[seen]] >= min_facing
    tri = model.tri[r.tri_id[seen]]
    uv = np.einsum("nk,nkd->nd", r.bary[seen], model.uv[tri]) * size
    texel = np.stack(np.nonzero(visible)[::-1], axis=1) + 0.5          # (x, y) texel centres
    colours = griddata(uv, image[seen].astype(np.float32), texel, method="linear")
    ok = np.isfinite(colours).all(axis=1)
    texture = np.zeros((size, size, 3), dtype=np.uint8)
    rows, cols = np.nonzero(visible)
    texture[rows[ok], cols[ok]] = np.clip(colours[ok] + 0.5, 0, 255).astype(np.uint8)
    visible = visible.copy()
    visible[rows[~ok], cols[~ok]] = False
    return Unwrapped(texture, visible)


def unwrap(image, verts, size=128, method="warp", **kw) -> Unwrapped:
    if method not in METHODS:
        raise ValueError(f"unwrap method {method!r} is unknown; use one of {METHODS}")
    return (unwrap_warp if method == "warp" else unwrap_griddata)(image, verts, size, **kw)
