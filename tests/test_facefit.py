"""The face fitter on turned faces: crops the FaceMesh graph misses, the gates against wrong poses, and the
body-pose model's head yaw."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from uvlib.data import facefit
from uvlib.data.facefit import BODY_POSE_DISAGREES, KEYPOINTS_DISAGREE, NOT_FITTED, Detection, FaceFitter
from uvlib.data.headpose import LEFT_EAR, NOSE, RIGHT_EAR, head_turn
from uvlib.data.photo import read_photo
from uvlib.data.prep import PrepConfig

DEMO = Path(__file__).resolve().parents[1] / "demo" / "photos"


def turned_left():
    """headpose-aws IMG_1241: the man turned about 55 degrees towards the image's left."""
    return read_photo(DEMO / "headpose_aws_IMG_1241.jpg")


def test_a_tight_mirrored_profile_crop_is_fitted_with_the_mirrored_pose(fitter):
    # 0.9 x the detector's box: neither detector finds the mirrored face, so the FaceMesh graph fitter
    # reported "no face found"; the whole-photo crop fits it, and the pose is the mirror of the unmirrored one.
    crop = turned_left()[183:339, 147:303]
    faces, reason = fitter.fit(np.ascontiguousarray(crop))
    mirrored, mirrored_reason = fitter.fit(np.ascontiguousarray(crop[:, ::-1]))
    assert len(faces) == 1 and len(mirrored) == 1, (reason, mirrored_reason)
    assert faces[0].yaw < -40
    assert abs(mirrored[0].yaw + faces[0].yaw) < 15


def test_a_fit_whose_pose_contradicts_the_keypoints_is_failed_with_that_reason(fitter):
    image = turned_left()
    detection = fitter.detect(image)[0]
    assert detection.turn() < -0.18             # the detector's keypoints: nose well left of the eyes
    landmarks, reason = fitter.fit_detection(image, detection)
    assert landmarks is not None and reason == ""
    x = detection.box[0]
    flipped = detection.keypoints.copy()
    flipped[:, 0] = 2 * x + detection.box[2] - flipped[:, 0]     # the same keypoints mirrored inside the box
    lying = Detection(detection.box, detection.score, flipped)
    assert fitter.fit_detection(image, lying) == (None, KEYPOINTS_DISAGREE)


def test_the_facemesh_graph_fitter_stays_selectable_for_comparison():
    graph = FaceFitter(mesh="graph")
    try:
        faces, reason = graph.fit(turned_left())
    finally:
        graph.close()
    assert len(faces) == 1 and faces[0].yaw < -40, reason


def test_a_small_extra_face_inside_a_fitted_head_is_not_kept(fitter, monkeypatch):
    # On CFP the detectors also report ears and mouths of the main face as small faces, which the mesh then
    # "fits" (a texture of an ear). A box centred inside a head already fitted is that head again.
    image = turned_left()
    face = fitter.detect(image)[0]
    ear_x, ear_y = face.keypoints[4]
    side = face.box[2] / 2
    ear = Detection((ear_x - side / 2, ear_y - side / 2, side, side), 0.6, face.keypoints)
    monkeypatch.setattr(fitter, "detect", lambda _: [face, ear])
    faces, _ = fitter.fit(image)
    assert [f.box for f in faces] == [face.box]


def test_an_unknown_mesh_fitter_is_refused_in_one_line():
    with pytest.raises(ValueError, match="mesh fitter 'graf' is unknown; use one of"):
        PrepConfig(mesh="graf").validate()



def test_the_only_face_of_a_small_photo_is_fitted_but_a_small_extra_face_is_not(fitter, monkeypatch):
    # CFP has profiles of 44-87 px whose face box is 29-45 px: under the 48-px rule for extra detections, which
    # are mostly ears, mouths and background. The photo's largest face is fitted down to MIN_MAIN_FACE_PX.
    small = np.ascontiguousarray(cv2.resize(turned_left(), None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA))
    face = fitter.detect(small)[0]
    assert 24 < face.box[2] < 48
    faces, reason = fitter.fit(small)
    assert len(faces) == 1 and faces[0].yaw < -40, reason
    larger = Detection((100.0, 70.0, 50.0, 50.0), 0.9, face.keypoints)    # first, away from the face
    tried = []
    monkeypatch.setattr(fitter, "detect", lambda _: [larger, face])
    monkeypatch.setattr(fitter, "fit_detection", lambda image, det, **kw: (tried.append(det), (None, NOT_FITTED))[1])
    assert fitter.fit(small) == ([], NOT_FITTED)
    assert face not in tried


def turned_world_landmarks(ears_yaw, nose_yaw):
    """BlazePose-like world landmarks (33, 3): ears and nose of a head turned by the given yaws (degrees,
    + = nose towards the image's right), x right, y down, z away from the camera."""
    def turn(point, yaw):
        c, s = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
        x, y, z = point
        return np.array([x * c - z * s, y, x * s + z * c])
    world = np.zeros((33, 3))
    world[LEFT_EAR], world[RIGHT_EAR] = turn((7.5, 0, 0), ears_yaw), turn((-7.5, 0, 0), ears_yaw)
    world[NOSE] = turn((0, 0, -10), nose_yaw)
    return world


@pytest.mark.parametrize("yaw", [-80.0, -30.0, 0.0, 45.0, 85.0])
def test_the_head_turn_is_read_from_the_ears_and_the_nose(yaw):
    assert head_turn(turned_world_landmarks(yaw, yaw)) == pytest.approx(yaw, abs=1e-6)


def test_no_head_turn_is_given_when_ears_and_nose_disagree():
    assert head_turn(turned_world_landmarks(-40.0, 40.0)) is None
    assert head_turn(turned_world_landmarks(60.0, 70.0)) == pytest.approx(65.0)


def test_the_largest_turned_face_records_the_body_pose_models_head_yaw(fitter):
    faces, reason = fitter.fit(turned_left())
    assert len(faces) == 1, reason
    assert faces[0].head_yaw < -30 and faces[0].yaw < -30      # both say: turned towards the image's left


def test_a_fit_turned_the_other_way_than_a_body_pose_profile_is_failed_with_that_reason(fitter, monkeypatch):
    # A true profile fitted on its ear or the back of its head: the mesh turned the other way, and not far.
    image = turned_left()
    centre = fitter.detect(image)[0].box
    nose = (centre[0] + centre[2] / 2, centre[1] + centre[3] / 2)
    monkeypatch.setattr(fitter._head_pose, "yaw", lambda _: (70.0, nose))
    monkeypatch.setattr(facefit, "MESH_HALF_TURN", 90.0)    # the demo face is turned 55, past the default
    assert fitter.fit(image) == ([], BODY_POSE_DISAGREES)
    monkeypatch.setattr(facefit, "MESH_HALF_TURN", 45.0)    # a mesh turned past it is kept, the head yaw recorded
    faces, _ = fitter.fit(image)
    assert len(faces) == 1 and faces[0].head_yaw == 70.0
    monkeypatch.setattr(fitter._head_pose, "yaw", lambda _: (70.0, (1.0, 1.0)))    # someone else's body
    faces, _ = fitter.fit(image)
    assert len(faces) == 1 and np.isnan(faces[0].head_yaw)
