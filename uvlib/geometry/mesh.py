"""The MediaPipe canonical face mesh (468 vertices, 898 triangles) and its UV atlas at a given size.

The UV layout is left-right symmetric about u = 0.5, and v grows downwards (v = 0 is the top of the
forehead), so a texel row is v * S and a texel column is u * S.
"""
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from uvlib.geometry.raster import rasterize

UV_SIZES = (64, 128, 256)                    # the study's UV map sizes (datasets, models)
ATLAS_SIZES = (*UV_SIZES, 512, 1024)         # also exported textures (uvlib complete --texture-size)


@dataclass(frozen=True)
class FaceModel:
    xyz: np.ndarray   # (468, 3) canonical vertex positions in cm, x right, y up, z towards the viewer
    uv: np.ndarray    # (468, 2) texture coordinates in [0, 1]
    tri: np.ndarray   # (898, 3) vertex indices


@lru_cache(maxsize=1)
def face_model() -> FaceModel:
    with resources.files("uvlib.geometry.assets").joinpath("canonical_face_model.npz").open("rb") as f:
        data = np.load(f)
        return FaceModel(xyz=data["xyz"].astype(np.float64), uv=data["uv"].astype(np.float64),
                         tri=data["tri"].astype(np.int64))


@dataclass(frozen=True)
class UVAtlas:
    """Which triangle owns each texel of an S x S UV map, and where inside it the texel sits."""
    size: int
    tri_id: np.ndarray   # (S, S) int32, -1 outside the atlas
    bary: np.ndarray     # (S, S, 3) float32

    @property
    def mask(self) -> np.ndarray:
        return self.tri_id >= 0

    def texel_positions(self, verts: np.ndarray) -> np.ndarray:
        """Interpolate per-vertex attributes (468, D) at every atlas texel -> (S, S, D); zeros outside."""
        model = face_model()
        corners = verts[model.tri[np.maximum(self.tri_id, 0)]]          # (S, S, 3, D)
        out = np.einsum("hwk,hwkd->hwd", self.bary, corners)
        out[~self.mask] = 0
        return out


def check_uv_size(size: int) -> int:
    if size not in UV_SIZES:
        raise ValueError(f"UV size {size!r} is not supported; use one of {UV_SIZES}")
    return size


@lru_cache(maxsize=8)
def uv_atlas(size: int) -> UVAtlas:
    if size not in ATLAS_SIZES:
        raise ValueError(f"UV atlas size {size!r} is not supported; use one of {ATLAS_SIZES}")
    model = face_model()
    r = rasterize(model.uv * size, model.tri, size, size)
    return UVAtlas(size=size, tri_id=r.tri_id, bary=r.bary)
