"""Head pose of a fitted mesh: the similarity from the canonical face model to image landmarks, and the
same mesh turned to another pose (for pose-simulated holes, renders and exports)."""
import numpy as np
from scipy.spatial.transform import Rotation

from uvlib.geometry.mesh import face_model


def canonical_in_camera_axes() -> np.ndarray:
    """The canonical mesh with the image's axes: x right, y down, z away from the camera."""
    return face_model().xyz * np.array([1.0, -1.0, -1.0])


def estimate_pose(landmarks: np.ndarray):
    """Similarity (scale, rotation, translation) from the canonical mesh to image landmarks (Umeyama).

    Returns (scale, rotation, translation, yaw, pitch, roll) with angles in degrees.
    """
    src = canonical_in_camera_axes()
    dst = np.asarray(landmarks, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d_c.T @ s_c)
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ fix @ vt
    scale = (sig * np.diag(fix)).sum() / (s_c ** 2).sum()
    translation = mu_d - scale * rotation @ mu_s
    yaw, pitch, roll = Rotation.from_matrix(rotation).as_euler("YXZ", degrees=True)
    # Rotation about +y (down) by a positive angle turns the nose towards -x; report "towards image right" as +.
    return scale, rotation, translation, -yaw, -pitch, roll


def reposed_mesh(landmarks: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """The fitted mesh with the head turned to an absolute (yaw, pitch), roll removed, in image units."""
    scale, rotation, translation, *_ = estimate_pose(landmarks)
    centred = (np.asarray(landmarks, dtype=np.float64) - translation) @ rotation / scale   # undo the fitted pose
    new = Rotation.from_euler("YXZ", [-yaw_deg, -pitch_deg, 0.0], degrees=True).as_matrix()
    return scale * centred @ new.T
