"""A second, independent yaw for turned faces: the head's turn from MediaPipe's body-pose model (BlazePose).

Why: the face-mesh landmark model saturates on profiles. On cfp-dev's profiles (people turned about 60-90
degrees) the mesh's median |yaw| is 48, and fits of the mirrored crop, of the face detector's keypoints or of
the landmarks' x, y alone saturate the same way. BlazePose (`pose_landmark_full.tflite`, shipped in the
mediapipe wheel) places the ears and nose of the whole body in metric 3-D ("world landmarks"), and its head
turn does not saturate: on celeba-dev it follows the mesh within a few degrees up to 40, on the cfp-dev
profiles its median is about 60.

The turn is read twice, from the ear-to-ear axis and from the nose against the ears' midpoint, both in the
ground plane; when the two disagree by more than MAX_CUE_GAP (or either is past MAX_TURN) the model is guessing
and no yaw is given. Photos whose person the model misses are tried once more with a border (BlazePose's
detector expects shoulders; CFP's tight head crops have few).
"""
import cv2
import numpy as np

NOSE, LEFT_EAR, RIGHT_EAR = 0, 7, 8    # BlazePose landmark indices (the person's left and right)
MAX_CUE_GAP = 25.0     # degrees between the ears' and the nose's turn above which no yaw is given
MAX_TURN = 100.0       # degrees; past this either cue is a wrong body
BORDER = 0.25          # retry with this fraction of the photo's longer side added on every side


def head_turn(world: np.ndarray):
    """Head yaw in degrees (+ = nose towards the image's right, the sign of FaceFit.yaw) from BlazePose world
    landmarks (33, 3): x right, y down, z away from the camera. None when the two cues disagree."""
    ears = world[RIGHT_EAR] - world[LEFT_EAR]       # points to the image's left when the face is frontal
    by_ears = -np.degrees(np.arctan2(ears[2], -ears[0]))
    nose = world[NOSE] - (world[LEFT_EAR] + world[RIGHT_EAR]) / 2
    by_nose = np.degrees(np.arctan2(nose[0], -nose[2]))
    if abs(by_ears - by_nose) > MAX_CUE_GAP or max(abs(by_ears), abs(by_nose)) > MAX_TURN:
        return None
    return float((by_ears + by_nose) / 2)


class HeadPoseModel:
    """BlazePose on a whole RGB photo -> (yaw, nose position in pixels) or None. One per process; the graph
    opens on first use, so workers that never see a turned face never pay for it."""

    def __init__(self):
        self._pose = None

    def _graph(self):
        if self._pose is None:
            import mediapipe as mp  # heavy: only the workers that meet a turned face need it
            self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)
        return self._pose

    def yaw(self, image):
        h, w = image.shape[:2]
        for border in (0, int(BORDER * max(h, w))):
            framed = image if not border else cv2.copyMakeBorder(image, border, border, border, border,
                                                                 cv2.BORDER_CONSTANT)
            result = self._graph().process(framed)
            if result.pose_world_landmarks is None:
                continue
            world = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark])
            yaw = head_turn(world)
            if yaw is None:
                return None
            nose = result.pose_landmarks.landmark[NOSE]
            return yaw, (nose.x * framed.shape[1] - border, nose.y * framed.shape[0] - border)
        return None

    def close(self):
        if self._pose is not None:
            self._pose.close()
