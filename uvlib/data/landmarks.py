"""MediaPipe's FaceMesh landmark model run directly on crops we choose, through the LiteRT interpreter.

Why not the FaceMesh graph: the graph finds the face again inside the crop with the short-range BlazeFace
model before it fits the mesh, and that detector misses most faces turned past about 60 degrees, so a face the
full-range detector found is then reported as "could not be fitted". Running the landmark model
(`face_landmark.tflite`, shipped inside the mediapipe wheel) on a crop we control skips that second detection,
and lets us fit the mirrored crop too.

A crop is a square region of the photo given by its centre, side and rotation; the model sees it at 192x192
with values in [0, 1] and returns 468 (x, y, z) landmarks in crop pixels (z on the x scale) and a face score.
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from uvlib.geometry.mirror import mirror_index

INPUT_SIZE = 192
EYE_CORNERS = (33, 263)    # outer eye corners (subject's right, left): MediaPipe's rotation reference
ROI_SCALE = 1.5            # crop side / landmark box side, as in MediaPipe's own landmark-to-ROI step


def wheel_model(relative: str) -> Path:
    """A model file shipped inside the installed mediapipe wheel (mediapipe/modules/...)."""
    import mediapipe
    path = Path(mediapipe.__file__).parent / "modules" / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; install mediapipe==0.10.21 (later releases ship no models)")
    return path


@dataclass(frozen=True)
class Roi:
    """A square crop: centre (x, y) and side in photo pixels, and angle (radians): the face's tilt in the photo
    (its eye line's angle), undone in the crop so the model sees the eyes level."""
    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def contains(self, x: float, y: float) -> bool:
        """Whether photo point (x, y) lies inside the (rotated) square."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        return max(abs(c * dx + s * dy), abs(-s * dx + c * dy)) <= self.side / 2

    def affine(self) -> np.ndarray:
        """2x3 map from photo pixels to model-input pixels."""
        k = INPUT_SIZE / self.side
        c, s = np.cos(self.angle), np.sin(self.angle)
        rot = np.array([[c, s], [-s, c]]) * k
        return np.column_stack([rot, INPUT_SIZE / 2 - rot @ np.array([self.cx, self.cy])])


def roi_from_landmarks(landmarks: np.ndarray) -> Roi:
    """The crop MediaPipe would take next from a fitted mesh: rotated so the eye corners are level, around
    the landmarks' box (in that rotated frame), ROI_SCALE times its longer side."""
    right, left = landmarks[EYE_CORNERS[0], :2], landmarks[EYE_CORNERS[1], :2]
    angle = np.arctan2(left[1] - right[1], left[0] - right[0])
    c, s = np.cos(angle), np.sin(angle)
    xy = landmarks[:, :2] @ np.array([[c, -s], [s, c]])          # rotate by -angle
    lo, hi = xy.min(0), xy.max(0)
    centre = (lo + hi) / 2 @ np.array([[c, s], [-s, c]])           # and back by +angle
    return Roi(float(centre[0]), float(centre[1]), float(ROI_SCALE * (hi - lo).max()), float(angle))


class LandmarkModel:
    """face_landmark.tflite on one CPU thread. Not picklable: one per process."""

    def __init__(self):
        from ai_edge_litert.interpreter import Interpreter  # imported here: only workers that fit need it
        self._net = Interpreter(model_path=str(wheel_model("face_landmark/face_landmark.tflite")), num_threads=1)
        self._net.allocate_tensors()
        self._input = self._net.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._net.get_output_details()}
        self._mesh, self._flag = outputs["conv2d_21"], outputs["conv2d_31"]

    def run(self, image: np.ndarray, roi: Roi, mirrored: bool = False):
        """Fit the mesh inside `roi` of an RGB uint8 photo; returns ((468, 3) landmarks in photo pixels, face
        score in [0, 1]). mirrored: fit the left-right flipped crop and map the result back (vertices swapped
        with their twins), an independent second opinion on the same face."""
        affine = roi.affine()
        if mirrored:
            affine = np.array([[-1.0, 0, INPUT_SIZE - 1], [0, 1, 0]]) @ np.vstack([affine, [0, 0, 1]])
        shrink = INPUT_SIZE / roi.side < 1
        crop = cv2.warpAffine(image, affine, (INPUT_SIZE, INPUT_SIZE),
                              flags=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        self._net.set_tensor(self._input, (crop[None].astype(np.float32) / 255.0))
        self._net.invoke()
        lm = self._net.get_tensor(self._mesh).reshape(468, 3).astype(np.float64)
        score = float(1 / (1 + np.exp(-self._net.get_tensor(self._flag).item())))
        if mirrored:
            lm = lm[mirror_index()]
        inverse = cv2.invertAffineTransform(affine)
        xy = lm[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        z = lm[:, 2] * (roi.side / INPUT_SIZE)
        return np.column_stack([xy, z]), score
