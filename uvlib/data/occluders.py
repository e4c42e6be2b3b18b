"""Occluders in front of the face (hands, hair, hats, glasses, microphones): texels that are not skin seen.

The mesh says which texels face the camera and are not hidden by the head itself; it cannot know that a hand
or a fringe of hair lies between the face and the camera. Two tests, both offline and without trained weights
beyond what the mediapipe wheel ships:

- "hands": MediaPipe Hands (palm detector + hand landmarks, bundled in the wheel) on the whole photo; every
  texel whose image position falls in the convex hull of a hand's 21 landmarks, dilated by a fraction of the
  hand's size (the landmarks run along the finger bones, the fingers are wider), is occluded. A hand in the
  photo that overlaps the face is taken to be in front of it (one behind the head would be hidden by it).
- "appearance": a per-face skin model, no training data. The colour (CIELAB) of the face's own central skin
  texels (cheeks, nose, forehead centre; eyes, brows and lips left out) is fitted with a robust Gaussian
  (concentration steps of the minimum covariance determinant, so a hand or a fringe covering part of the
  reference does not drag the fit),
  and every visible texel outside the facial features whose Mahalanobis distance exceeds the chi-square
  quantile is an outlier; specks are removed and only blobs of a minimum area kept. It finds hair, hats, dark
  glasses and objects whose colour is not the face's skin; it cannot find a skin-coloured hand (the hand test
  does) and it flags a dark beard as not skin.
"""
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy.special import chdtri

from uvlib.geometry.mesh import face_model, uv_atlas

TESTS = ("hands", "appearance")
CHOICES = ("hands+appearance", "hands", "appearance", "none")

HAND_DILATE = 0.12        # hand hull dilation, fraction of the hand's landmark extent
OUTLIER_QUANTILE = 0.999  # chi-square quantile (3 dof) of the skin model beyond which a texel is not skin
MIN_BLOB = 0.004          # smallest outlier blob kept, fraction of the atlas area


def parse_occluders(text: str) -> tuple:
    """'hands+appearance' -> ('hands', 'appearance'); 'none' -> ()."""
    if text not in CHOICES:
        raise ValueError(f"--occluders {text!r} is unknown; use one of {CHOICES}")
    return () if text == "none" else tuple(text.split("+"))


class HandDetector:
    """MediaPipe Hands on a whole RGB photo -> list of (21, 2) landmark arrays in pixels. One per process."""

    def __init__(self, min_score=0.3, max_hands=2, native_logs=False):
        import mediapipe as mp  # heavy: only workers that look for hands import it

        from uvlib.data.facefit import native_stderr
        self._quiet = lambda: native_stderr(native_logs)
        with self._quiet():
            self._hands = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=max_hands,
                                                   model_complexity=0, min_detection_confidence=min_score)
            self._hands.process(np.zeros((64, 64, 3), np.uint8))   # the graph logs as it opens

    def detect(self, image) -> list:
        h, w = image.shape[:2]
        with self._quiet():
            result = self._hands.process(np.ascontiguousarray(image))
        return [np.array([(p.x * w, p.y * h) for p in hand.landmark]) for hand in result.multi_hand_landmarks or []]

    def close(self):
        with self._quiet():
            self._hands.close()


def hand_region(shape, hands, dilate=HAND_DILATE) -> np.ndarray:
    """(H, W) bool: the dilated convex hull of each hand's landmarks."""
    mask = np.zeros(shape[:2], bool)
    for points in hands:
        one = np.zeros(shape[:2], np.uint8)
        cv2.fillConvexPoly(one, cv2.convexHull(np.round(points).astype(np.int32)), 1)
        r = int(round(dilate * float(np.ptp(points, axis=0).max())))
        if r > 0:
            one = cv2.dilate(one, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        mask |= one.astype(bool)
    return mask


def texels_in_region(region: np.ndarray, verts: np.ndarray, size: int) -> np.ndarray:
    """(S, S) bool: atlas texels whose image position (for image-space vertices `verts`) lies in `region`."""
    pos = uv_atlas(size).texel_positions(np.asarray(verts, dtype=np.float64)[:, :2])
    h, w = region.shape
    col = np.clip(np.floor(pos[..., 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.floor(pos[..., 1]).astype(np.int64), 0, h - 1)
    return region[row, col] & uv_atlas(size).mask


@lru_cache(maxsize=4)
def feature_texels(size: int) -> np.ndarray:
    """(S, S) bool: eyes, eyebrows and lips in the UV layout, whose colour is not skin by nature."""
    from mediapipe.python.solutions import face_mesh_connections as c
    uv = face_model().uv * size
    mask = np.zeros((size, size), np.uint8)
    for edges in (c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE, c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW,
                  c.FACEMESH_LIPS):
        points = uv[sorted({i for edge in edges for i in edge})]
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    r = max(1, round(0.025 * size))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return mask.astype(bool)


@lru_cache(maxsize=4)
def reference_texels(size: int) -> np.ndarray:
    """(S, S) bool: the central skin the face's colour model is fitted on (cheeks, nose, forehead centre)."""
    v, u = (np.mgrid[0:size, 0:size] + 0.5) / size
    central = (np.abs(u - 0.5) < 0.28) & (v > 0.2) & (v < 0.8)
    return central & uv_atlas(size).mask & ~feature_texels(size)


def chi2_quantile(q: float, dof: int) -> float:
    """scipy.stats.chi2.ppf(q, dof), through scipy.special: scipy.stats costs every prep worker 0.4 s to import."""
    return float(chdtri(dof, 1.0 - q))


def _lab(texture: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(texture.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def robust_gaussian(x: np.ndarray, keep=0.6, steps=4):
    """(mean, covariance) of the points (N, D), fitted on the `keep` fraction that fits them best.

    Concentration steps of the minimum covariance determinant (Rousseeuw & Van Driessen 1999) started from
    the coordinate-wise median and MAD: deterministic, and a few ms where sklearn's MinCovDet (many random
    starts) takes a second per face. The covariance is rescaled so the median distance matches a Gaussian's.
    """
    mean = np.median(x, axis=0)
    cov = np.diag((1.4826 * np.median(np.abs(x - mean), axis=0)) ** 2 + 1e-6)
    kth = int(keep * (len(x) - 1))   # d2 <= np.quantile(d2, keep) keeps exactly the points up to this order statistic
    for _ in range(steps):
        d2 = _mahalanobis2(x, mean, cov)
        best = x[d2 <= np.partition(d2, kth)[kth]]
        mean, cov = best.mean(0), np.cov(best, rowvar=False) + 1e-6 * np.eye(x.shape[1])
    cov *= np.median(_mahalanobis2(x, mean, cov)) / chi2_quantile(0.5, x.shape[1])
    return mean, cov


def _mahalanobis2(x, mean, cov):
    whitened = (x - mean) @ np.linalg.cholesky(np.linalg.inv(cov))
    return (whitened * whitened).sum(1)


def appearance_outliers(texture: np.ndarray, visible: np.ndarray, quantile=OUTLIER_QUANTILE,
                        min_blob=MIN_BLOB) -> np.ndarray:
    """(S, S) bool: visible texels outside the features whose colour the face's own skin model rejects."""
    size = visible.shape[0]
    lab = _lab(texture)
    reference = lab[reference_texels(size) & visible]
    if len(reference) < 50:          # too little skin seen to model it: flag nothing rather than guess
        return np.zeros_like(visible)
    mean, cov = robust_gaussian(reference)
    candidates = visible & ~feature_texels(size)
    outlier = np.zeros_like(visible)
    outlier[candidates] = _mahalanobis2(lab[candidates], mean, cov) > chi2_quantile(quantile, 3)
    return _clean(outlier, min_blob * uv_atlas(size).mask.sum()) & visible


def _clean(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Open away specks, keep blobs of at least `min_area` texels, close small gaps inside them."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    kept = np.isin(labels, big[big > 0]).astype(np.uint8)
    return cv2.morphologyEx(kept, cv2.MORPH_CLOSE, kernel).astype(bool)


@dataclass
class Occlusion:
    """Which seen texels each test found covered, (S, S) bool each."""
    hands: np.ndarray
    appearance: np.ndarray

    @property
    def occluded(self) -> np.ndarray:
        return self.hands | self.appearance


def find_occluders(texture, visible, verts, image_shape, hands=(), tests=TESTS) -> Occlusion:
    """The occluded texels among `visible` ones of one unwrapped face.

    texture/visible: the unwrap (geometric visibility); verts: the face's image-space mesh; hands: landmark
    arrays from HandDetector.detect on the same photo; tests: which of TESTS to run.
    """
    none = np.zeros_like(visible)
    by_hand = none
    if "hands" in tests and len(hands):
        by_hand = texels_in_region(hand_region(image_shape, hands), verts, visible.shape[0]) & visible
    by_look = appearance_outliers(texture, visible & ~by_hand) if "appearance" in tests else none
    return Occlusion(hands=by_hand, appearance=by_look)
