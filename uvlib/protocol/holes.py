"""Hole masks for self-supervised training and scoring: realistic self-occlusions, not boxes.

- pose-simulated: turn an image's own fitted mesh to a new yaw (and pitch) and hide what would then be
  self-occluded; gives large, realistic holes although most in-the-wild photos are near-frontal;
- borrowed: the unseen region of another image's visibility mask;
- boxes: the original study's random 30 x 30 boxes (scaled with the UV size) inside the face.
A hole mask is a (S, S) bool array, True = hidden by the hole.
"""
import numpy as np

from uvlib.geometry.mesh import uv_atlas
from uvlib.geometry.pose import reposed_mesh
from uvlib.geometry.unwrap import texel_visibility

YAW_BINS = ((15, 30), (30, 45), (45, 60), (60, 75))
HOLE_KINDS = ("pose", "borrowed", "box")


def yaw_bin_name(lo_hi) -> str:
    return f"{lo_hi[0]}-{lo_hi[1]}"


def yaw_bin_of(yaw_deg: float) -> str:
    """The bin of |yaw| among YAW_BINS; 'under-15' and 'over-75' outside them."""
    a = abs(yaw_deg)
    for lo, hi in YAW_BINS:
        if lo <= a < hi:
            return yaw_bin_name((lo, hi))
    return "under-15" if a < YAW_BINS[0][0] else "over-75"


def pose_hole(landmarks, size, yaw_deg, pitch_deg=0.0) -> np.ndarray:
    """Texels that the camera would not see if the head were turned to (yaw, pitch)."""
    visible, _ = texel_visibility(reposed_mesh(landmarks, yaw_deg, pitch_deg), size)
    return uv_atlas(size).mask & ~visible


def borrowed_hole(other_visible: np.ndarray) -> np.ndarray:
    return uv_atlas(other_visible.shape[0]).mask & ~other_visible.astype(bool)


def box_hole(size, rng: np.random.Generator, n_boxes=1, box=30) -> np.ndarray:
    """n random boxes (box texels at 128 px, scaled with size) centred on atlas texels."""
    atlas = uv_atlas(size).mask
    side = max(2, round(box * size / 128))
    rows, cols = np.nonzero(atlas)
    hole = np.zeros((size, size), dtype=bool)
    for k in rng.choice(len(rows), n_boxes):
        r0, c0 = rows[k] - side // 2, cols[k] - side // 2
        hole[max(r0, 0):r0 + side, max(c0, 0):c0 + side] = True
    return hole & atlas


def random_pose(rng: np.random.Generator, yaw_range, pitch_max=15.0):
    """A yaw drawn in +-yaw_range (either side) and a pitch in +-pitch_max."""
    yaw = rng.uniform(*yaw_range) * rng.choice((-1.0, 1.0))
    return float(yaw), float(rng.uniform(-pitch_max, pitch_max))
