"""Fitting the 468-vertex face mesh to every face of a photo, offline, with MediaPipe's models.

Why several models: BlazeFace comes in a short-range model (faces that fill the frame, as in CelebA crops)
and a full-range one (small faces anywhere in a group photo); each misses what the other finds, so both run
and their boxes are merged. Each face is then fitted with the FaceMesh landmark model on crops we choose
(uvlib.data.landmarks): a square around the detection box, refined once around the first fit, as MediaPipe does.

Why the mirrored fit: a face turned far (a profile) is where the landmark model fails or, worse, returns a
confident but wrong mesh (a profile posed as frontal, its "texture" an ear). The same crop mirrored left-right
is a second opinion: a fit is kept only when one of the two is confident (both, for any face but the largest),
they agree on the yaw, and the detector's keypoints (nose against the eyes) do not say the face is turned
the other way. The largest face, when turned, is also checked against the body-pose model's head turn
(uvlib.data.headpose), which is recorded as its `head_yaw`: the landmark model's yaw saturates near 50 on
profiles, the body-pose model's does not. A fit that disagrees is recorded as failed with that reason, never
kept as truth. Crops that fail are retried larger, smaller and rotated (CROP_TRIES); a small extra detection
centred inside a head already tried (an ear, a mouth of a face fitted or not) is dropped; a photo with no
detection or no fitted face gets one last try on the whole photo, kept only if turned (TURNED_YAW). The FaceMesh
graph (`mesh="graph"`) stays selectable for comparison (benchmarks/bench_prep.py).

Landmarks are in image pixels: x right, y down, z in the same pixel scale with smaller z closer to the camera.

MediaPipe's C++ code logs (`W0000 ... inference_feedback_manager.cc ...`) straight to file descriptor 2 before
absl logging is initialised, so no environment variable (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL) silences it:
unless asked for (`native_logs=True`, the CLI's --verbose), fd 2 points at /dev/null while MediaPipe runs.
"""
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace

import cv2
import numpy as np

from uvlib.data.headpose import HeadPoseModel
from uvlib.data.landmarks import ROI_SCALE, LandmarkModel, Roi, roi_from_landmarks
from uvlib.geometry.pose import estimate_pose

MIN_FACE_PX = 48         # smallest box side (pixels) of any face but the photo's largest: extra small detections
MIN_MAIN_FACE_PX = 24    # are mostly ears, mouths and background; the largest face of a small photo (CFP has
#                          profiles of 44-87 px) is fitted down to this, gated as ever (checked by eye to 29 px)
CROP_MARGIN = 1.7       # crop side / detected box side
CROP_SIZE = 256         # FaceMesh graph's crop: its input is 192 px, a bit more keeps detail for its own ROI step
CROP_TRIES = ((1.7, 0), (2.2, 0), (1.3, 0), (1.7, -25), (1.7, 25),   # (crop side / box side, rotation degrees),
              (2.2, -25), (2.2, 25), (1.3, -25), (1.3, 25))         # in order, until one gives a checked fit
MIN_MESH_SCORE = 0.5    # the landmark model's face score (MediaPipe's own threshold)
MAX_MIRROR_YAW_GAP = 15.0   # degrees between the fit and the mirrored fit (median gap on CFP profiles: 3)
KEYPOINT_TURN = 0.18    # |nose - eye midpoint| / box width above which the detector's keypoints say "turned"
KEYPOINT_YAW = 10.0     # ... and the mesh must then be turned at least this far the same way
TURNED_YAW = 30.0       # a whole-photo fit (the last resort) must be turned at least this far
HEAD_POSE_YAW = 30.0    # the largest face is also shown to the body-pose model from this mesh yaw on (4% of
#                         celeba-dev photos: the model costs about 40 ms a photo, so not every face gets it)
BODY_PROFILE_YAW = 60.0  # the body-pose model sees a profile turned one way at least this far, while
MESH_HALF_TURN = 45.0    # the mesh is turned the other way less than this: the mesh sits on an ear or the back of
#                          the head. Checked by eye on cfp-dev's 1,548 profile fits: of the 12 where BlazePose saw
#                          a profile of the other sign, 2 were such fits (turned 23 and 31), the other 10 right

MESH_FITTERS = ("crops", "graph")   # FaceFitter(mesh=...): our checked crops, or MediaPipe's FaceMesh graph
NOT_FITTED = "face found but the mesh could not be fitted"
MIRROR_DISAGREES = "mesh pose disagrees with the mirrored fit"
KEYPOINTS_DISAGREE = "mesh pose disagrees with the detector's keypoints"
BODY_POSE_DISAGREES = "mesh pose disagrees with the body-pose model"


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
    head_yaw: float = float("nan")   # the body-pose model's head turn (degrees, sign of yaw); NaN when not
    #                                  asked (not the largest face, or not turned) or when it has no answer


@dataclass(frozen=True)
class Detection:
    box: tuple                 # (x, y, w, h) in pixels
    score: float
    keypoints: np.ndarray      # (6, 2) BlazeFace's right eye, left eye, nose tip, mouth, right ear, left ear;
                               # None for the whole-photo stand-in used when no detector finds a face

    def turn(self) -> float:
        """The keypoints' own say on yaw: nose tip minus eye midpoint along x over the box width (+ = towards
        the image's right, the sign of FaceFit.yaw)."""
        return float((self.keypoints[2, 0] - self.keypoints[:2, 0].mean()) / self.box[2])


def keypoints_disagree(detection: Detection, yaw: float) -> bool:
    """Whether the detector's keypoints say the face is clearly turned one way while the mesh's yaw is
    frontal or turned the other way."""
    turn = detection.turn()
    return abs(turn) > KEYPOINT_TURN and yaw * np.sign(turn) < KEYPOINT_YAW


def body_pose_disagrees(head_yaw: float, yaw: float) -> bool:
    """Whether the body-pose model sees a profile turned one way while the mesh is turned the other way, and
    not far (a true profile mis-fitted on its ear or the back of its head)."""
    return abs(head_yaw) >= BODY_PROFILE_YAW and head_yaw * yaw < 0 and abs(yaw) < MESH_HALF_TURN


def whole_photo(image) -> Detection:
    """A detection-like square centred on the photo whose first crop (CROP_TRIES[0]) spans the photo's longer
    side; score 0 and no keypoints."""
    h, w = image.shape[:2]
    side = max(h, w) / CROP_TRIES[0][0]
    return Detection(((w - side) / 2, (h - side) / 2, side, side), 0.0, None)


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

    mesh: "crops" (the landmark model on our own crops, mirrored and checked; the default) or "graph" (MediaPipe's
    FaceMesh graph, which detects the face again inside the crop; kept for comparison).
    min_face_px / min_main_face_px: smallest box side of a face / of the photo's largest face.
    native_logs: let MediaPipe's C++ log lines through to stderr (silenced by default)."""

    def __init__(self, min_face_px=MIN_FACE_PX, min_main_face_px=MIN_MAIN_FACE_PX, max_faces=8, min_score=0.5,
                 native_logs=False, mesh="crops"):
        import mediapipe as mp  # imported here: heavy, and only workers that fit faces need it
        if mesh not in MESH_FITTERS:
            raise ValueError(f"mesh fitter {mesh!r} is unknown; use one of {MESH_FITTERS}")
        self.min_face_px = min_face_px
        self.min_main_face_px = min_main_face_px
        self.max_faces = max_faces
        self.native_logs = native_logs
        with native_stderr(native_logs):
            self._detectors = [mp.solutions.face_detection.FaceDetection(model_selection=m,
                                                                         min_detection_confidence=min_score)
                               for m in (0, 1)]
            graphs = list(self._detectors)
            if mesh == "graph":
                self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                             refine_landmarks=False, min_detection_confidence=0.3)
                graphs.append(self._mesh)
            else:
                self._mesh = None
                self._landmarks = LandmarkModel()
            self._head_pose = HeadPoseModel()
            blank = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
            for graph in graphs:   # graphs log as they open: let them open in here
                graph.process(blank)

    def close(self):
        with native_stderr(self.native_logs):
            for d in self._detectors:
                d.close()
            if self._mesh is not None:
                self._mesh.close()
            self._head_pose.close()

    def _process(self, graph, image):
        with native_stderr(self.native_logs):
            return graph.process(image)

    def detect(self, image):
        """Faces from both detectors, duplicates merged, largest first: a list of Detection."""
        h, w = image.shape[:2]
        found = []
        for detector in self._detectors:
            for det in self._process(detector, image).detections or []:
                b = det.location_data.relative_bounding_box
                keypoints = np.array([(k.x * w, k.y * h) for k in det.location_data.relative_keypoints])
                found.append(Detection((b.xmin * w, b.ymin * h, b.width * w, b.height * h), float(det.score[0]),
                                       keypoints))
        kept = []
        for det in sorted(found, key=lambda d: -d.box[2] * d.box[3]):
            if all(_iou(det.box, k.box) < 0.3 for k in kept):
                kept.append(det)
        return kept[: self.max_faces]

    def _mesh_in_crop(self, image, box):
        """The FaceMesh graph on a square crop around `box` (mesh="graph")."""
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
            return None, NOT_FITTED
        lm = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark]) * CROP_SIZE
        return np.column_stack([lm[:, 0] / k + x0, lm[:, 1] / k + y0, lm[:, 2] / k]), ""

    def fit_detection(self, image, detection, both_confident=False, box=None):
        """The landmark model on crops around the detection, tried in CROP_TRIES order until the fit or its
        mirrored fit is confident, the two agree on the yaw and the fit agrees with the keypoints (the landmark
        model's face score is erratic on profiles, the two fits' agreement is not); both confident: their mean.
        both_confident: demand that both fits are confident (for every face but the largest: the detectors'
        small extra "faces" are mostly ears and mouths of the main one). Returns (landmarks, "") or
        (None, reason): the disagreement seen last, else NOT_FITTED. box: crop around this box instead of the
        detection's."""
        x, y, bw, bh = detection.box if box is None else box
        reason = NOT_FITTED
        for scale, degrees in CROP_TRIES:
            roi = Roi(x + bw / 2, y + bh / 2, scale * max(bw, bh), float(np.radians(degrees)))
            first, score = self._landmarks.run(image, roi)
            if score < MIN_MESH_SCORE:
                flipped, flipped_score = self._landmarks.run(image, roi, mirrored=True)
                if flipped_score > score:
                    first = flipped
            refined = roi_from_landmarks(first)     # only the refined fits are judged
            direct, score = self._landmarks.run(image, refined)
            mirrored, mirrored_score = self._landmarks.run(image, refined, mirrored=True)
            if (min if both_confident else max)(score, mirrored_score) < MIN_MESH_SCORE:
                continue
            if abs(estimate_pose(direct)[3] - estimate_pose(mirrored)[3]) > MAX_MIRROR_YAW_GAP:
                reason = MIRROR_DISAGREES
                continue
            if min(score, mirrored_score) >= MIN_MESH_SCORE:
                landmarks = (direct + mirrored) / 2
            else:
                landmarks = direct if score >= mirrored_score else mirrored
            if detection.keypoints is not None and keypoints_disagree(detection, estimate_pose(landmarks)[3]):
                reason = KEYPOINTS_DISAGREE
                continue
            return landmarks, ""
        return None, reason

    def fit(self, image):
        """Return (faces, reason): the fitted faces, and why there are none when the list is empty (the reason of
        the largest face that failed). The largest face, when turned, is checked against the body-pose model."""
        faces, reason = self._fit_faces(image)
        if not faces or self._mesh is not None or abs(faces[0].yaw) < HEAD_POSE_YAW:
            return faces, reason
        with native_stderr(self.native_logs):
            answer = self._head_pose.yaw(image)
        if answer is None or not roi_from_landmarks(faces[0].landmarks).contains(*answer[1]):
            return faces, reason       # no body found, the model unsure, or the body is someone else's
        main = replace(faces[0], head_yaw=answer[0])
        if body_pose_disagrees(main.head_yaw, main.yaw):
            return faces[1:], "" if faces[1:] else BODY_POSE_DISAGREES
        return [main, *faces[1:]], reason

    def _fit_faces(self, image):
        detections = self.detect(image)
        if not detections and self._mesh is None:
            # the detectors miss some profiles that fill the photo: try the whole photo, gated as ever
            faces, _ = self._fit_whole_photo(image, whole_photo(image))
            return faces, "" if faces else "no face found"
        if not detections:
            return [], "no face found"
        faces, reasons, heads = [], [], []
        for det in detections:
            x, y, bw, bh = det.box
            if any(head.contains(x + bw / 2, y + bh / 2) for head in heads):
                continue    # an ear, eye or mouth of a face already tried, found again as a small "face"
            smallest = self.min_main_face_px if det is detections[0] else self.min_face_px
            if max(bw, bh) < smallest:
                reasons.append(f"face too small (< {smallest} px)")
                continue
            if self._mesh is not None:
                landmarks, reason = self._mesh_in_crop(image, det.box)
            else:
                landmarks, reason = self.fit_detection(image, det, both_confident=bool(heads or reasons))
            if landmarks is None:
                reasons.append(reason)
                heads.append(Roi(x + bw / 2, y + bh / 2, ROI_SCALE * max(bw, bh)))
                continue
            heads.append(roi_from_landmarks(landmarks))
            scale, rotation, _, yaw, pitch, roll = estimate_pose(landmarks)
            faces.append(FaceFit(landmarks.astype(np.float32), det.box, det.score,
                                 float(yaw), float(pitch), float(roll), float(scale), rotation))
        if faces:
            return faces, ""
        fitting = [r for r in reasons if not r.startswith("face too small")]
        if fitting and self._mesh is None:
            # a box off the face (a profile's box often is) misleads every crop: try the whole photo, checked
            # against the largest face's keypoints
            faces, _ = self._fit_whole_photo(image, detections[0])
            if faces:
                return faces, ""
        return [], (fitting or reasons)[0]

    def _fit_whole_photo(self, image, detection):
        """One face fitted on crops spanning the photo (whole_photo) and checked against `detection`, or
        ([], reason). The fit must be turned at least TURNED_YAW: the photos that get here are those whose face
        the detectors missed or whose box-centred crops all failed, which near-frontal faces do not do, and
        on CFP profiles the near-frontal whole-photo fits were ears and headphones. After a detection failed,
        the fit must also cover the detected face."""
        box = whole_photo(image).box
        landmarks, reason = self.fit_detection(image, detection, box=box)
        if landmarks is None:
            return [], reason
        scale, rotation, _, yaw, pitch, roll = estimate_pose(landmarks)
        x, y, w, h = detection.box
        if abs(yaw) < TURNED_YAW or (detection.keypoints is not None and
                                     not roi_from_landmarks(landmarks).contains(x + w / 2, y + h / 2)):
            return [], NOT_FITTED
        return [FaceFit(landmarks.astype(np.float32), box, detection.score, float(yaw), float(pitch), float(roll),
                        float(scale), rotation)], ""
