"""Fitting the 468-vertex face mesh to every face of a photo, offline, with MediaPipe.

Why several models: BlazeFace comes in a short-range model (faces that fill the frame, as in CelebA crops)
and a full-range one (small faces anywhere in a group photo); each misses what the other finds, so both run
and their boxes are merged. Each face is cropped square with a margin and handed to FaceMesh, whose
landmarks are mapped back to the photo.

Landmarks are in image pixels: x right, y down, z in the same pixel scale with smaller z closer to the camera.

MediaPipe's C++ code logs (`W0000 ... inference_feedback_manager.cc ...`) straight to file descriptor 2 before
absl logging is initialised, so no environment variable (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL) silences it:
unless asked for (`native_logs=True`, the CLI's --verbose), fd 2 points at /dev/null while MediaPipe runs.
"""
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from uvlib.geometry.pose import estimate_pose

MIN_FACE_PX = 48
CROP_MARGIN = 1.7       # crop side / detected box side
CROP_SIZE = 256         # FaceMesh input is 192 px; a bit more keeps detail for its own ROI step


@dataclass
class FaceFit:
    landmarks: np.ndarray      # (468, 3) image-space vertices
    box: tuple                 # (x, y, w, h) detection box in pixels
    score: float
    yaw: float                 # degrees, positive = face turned towards the image's right
    pitch: float               # degrees, positive = chin up
    roll: float                # degrees, positive = head tilted clockwise in the image
    scale: float               # image pixels per canonical-model centimetre
    rotation: np.ndarray       # (3, 3) canonical model (camera axes) -> image space


def _iou(a, b):
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@contextmanager
def native_stderr(shown: bool):
    """Point file descriptor 2 at /dev/null inside the block, unless `shown`; Python's sys.stderr is flushed
    first, so nothing written before is lost."""
    if shown:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceFitter:
    """Detect every face of an RGB photo and fit the face mesh to each. Not picklable: one per process.

    native_logs: let MediaPipe's C++ log lines through to stderr (silenced by default)."""

    def __init__(self, min_face_px=MIN_FACE_PX, max_faces=8, min_score=0.5, native_logs=False):
        import mediapipe as mp  # imported here: heavy, and only workers that fit faces need it
        self.min_face_px = min_face_px
        self.max_faces = max_faces
        self.native_logs = native_logs
        with native_stderr(native_logs):
            self._detectors = [mp.solutions.face_detection.FaceDetection(model_selection=m,
                                                                         min_detection_confidence=min_score)
                               for m in (0, 1)]
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                         refine_landmarks=False, min_detection_confidence=0.3)
            blank = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
            for graph in (*self._detectors, self._mesh):   # graphs log as they open: let them open in here
                graph.process(blank)

    def close(self):
        with native_stderr(self.native_logs):
            for d in self._detectors:
                d.close()
            self._mesh.close()

    def _process(self, graph, image):
        with native_stderr(self.native_logs):
            return graph.process(image)

    def detect(self, image):
        """Face boxes (x, y, w, h, score) in pixels from both detectors, duplicates merged, largest first."""
        h, w = image.shape[:2]
        boxes = []
        for detector in self._detectors:
            for det in self._process(detector, image).detections or []:
                b = det.location_data.relative_bounding_box
                boxes.append((b.xmin * w, b.ymin * h, b.width * w, b.height * h, float(det.score[0])))
        kept = []
        for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
            if all(_iou(box, k) < 0.3 for k in kept):
                kept.append(box)
        return kept[: self.max_faces]

    def _mesh_in_crop(self, image, box):
        x, y, bw, bh = box
        side = CROP_MARGIN * max(bw, bh)
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = cx - side / 2, cy - side / 2
        k = CROP_SIZE / side
        affine = np.array([[k, 0, -k * x0], [0, k, -k * y0]])
        crop = cv2.warpAffine(image, affine, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        result = self._process(self._mesh, crop)
        if not result.multi_face_landmarks:
            return None
        lm = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark]) * CROP_SIZE
        return np.column_stack([lm[:, 0] / k + x0, lm[:, 1] / k + y0, lm[:, 2] / k])

    def fit(self, image):
        """Return (faces, reason): the fitted faces, and why there are none when the list is empty."""
        boxes = self.detect(image)
        if not boxes:
            return [], "no face found"
        faces, too_small = [], 0
        for x, y, bw, bh, score in boxes:
            if max(bw, bh) < self.min_face_px:
                too_small += 1
                continue
            landmarks = self._mesh_in_crop(image, (x, y, bw, bh))
            if landmarks is None:
                continue
            scale, rotation, _, yaw, pitch, roll = estimate_pose(landmarks)
            faces.append(FaceFit(landmarks.astype(np.float32), (x, y, bw, bh), score,
                                 float(yaw), float(pitch), float(roll), float(scale), rotation))
        if faces:
            return faces, ""
        if too_small == len(boxes):
            return [], f"face too small (< {self.min_face_px} px)"
        return [], "face found but the mesh could not be fitted"
