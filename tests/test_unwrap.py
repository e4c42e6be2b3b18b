import numpy as np
import pytest

from uvlib.data.facefit import FaceFit
from uvlib.data.worker import seen_at_head_yaw
from uvlib.geometry.mesh import face_model, uv_atlas
from uvlib.geometry.pose import canonical_in_camera_axes, estimate_pose, reposed_mesh
from uvlib.geometry.unwrap import texel_visibility, unwrap


def posed_canonical(yaw=0.0, pitch=0.0, scale=10.0):
    from scipy.spatial.transform import Rotation
    r = Rotation.from_euler("YXZ", [-yaw, -pitch, 0], degrees=True).as_matrix()
    return scale * canonical_in_camera_axes() @ r.T + np.array([100.0, 100.0, 0.0])


def test_atlas_is_left_right_symmetric_and_about_two_thirds_of_the_square():
    mask = uv_atlas(128).mask
    assert 0.6 < mask.mean() < 0.7
    assert (mask == mask[:, ::-1]).mean() > 0.99


def test_texel_positions_are_each_texels_barycentric_mix_of_its_triangles_corners():
    atlas, tri = uv_atlas(64), face_model().tri
    verts = np.random.default_rng(0).normal(size=(468, 3))
    pos = atlas.texel_positions(verts)
    rows, cols = np.nonzero(atlas.mask)
    for r, c in zip(rows[::97], cols[::97]):
        expected = atlas.bary[r, c] @ verts[tri[atlas.tri_id[r, c]]]
        np.testing.assert_allclose(pos[r, c], expected, rtol=1e-5, atol=1e-6)
    assert pos.shape == (64, 64, 3) and not pos[~atlas.mask].any()
    assert atlas.texel_positions(verts[:, :2]).shape == (64, 64, 2)


@pytest.mark.parametrize("yaw", [-40.0, -10.0, 0.0, 25.0, 60.0])
def test_pose_estimate_recovers_a_known_rotation(yaw):
    scale, rotation, translation, est_yaw, est_pitch, est_roll = estimate_pose(posed_canonical(yaw, 10.0))
    assert est_yaw == pytest.approx(yaw, abs=1e-6)
    assert est_pitch == pytest.approx(10.0, abs=1e-6)
    assert est_roll == pytest.approx(0.0, abs=1e-6)
    assert scale == pytest.approx(10.0)


def test_frontal_face_sees_most_texels_and_turning_hides_the_far_side():
    frontal, _ = texel_visibility(posed_canonical(0), 64)
    turned, _ = texel_visibility(posed_canonical(60), 64)
    atlas = uv_atlas(64).mask
    assert frontal.sum() > 0.7 * atlas.sum()
    assert turned.sum() < 0.8 * frontal.sum()
    left, right = turned[:, :32].sum(), turned[:, 32:].sum()
    assert min(left, right) < 0.5 * max(left, right)  # one side of the symmetric atlas is mostly hidden
    mirrored, _ = texel_visibility(posed_canonical(-60), 64)
    assert (mirrored[:, ::-1] == turned).mean() > 0.97


def test_warp_samples_the_photo_colour_at_each_texels_image_position():
    verts = posed_canonical(0)
    h = w = 200
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx, yy, np.zeros_like(xx)], -1).astype(np.uint8)   # colour encodes position
    result = unwrap(image, verts, 64)
    _, pos = texel_visibility(verts, 64)
    v = result.visible
    assert v.sum() > 1000
    assert np.abs(result.texture[v][:, 0].astype(float) - (pos[v][:, 0] - 0.5)).max() <= 1.0
    assert (result.texture[~v] == 0).all()


def test_griddata_agrees_with_warp_on_a_smooth_photo():
    verts = posed_canonical(20)
    yy, xx = np.mgrid[0:200, 0:200]
    image = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    warp, grid = unwrap(image, verts, 64), unwrap(image, verts, 64, method="griddata")
    both = warp.visible & grid.visible
    assert both.sum() > 0.9 * warp.visible.sum()
    assert np.abs(warp.texture[both].astype(int) - grid.texture[both].astype(int)).mean() < 2.0


def test_no_texel_is_visible_through_the_back_of_the_head():
    # the mesh seen from behind: every triangle faces away
    verts = posed_canonical(180)
    visible, _ = texel_visibility(verts, 64)
    assert visible.sum() == 0


def test_reposing_a_mesh_changes_only_its_pose():
    verts = posed_canonical(10, 5, scale=7)
    turned = reposed_mesh(verts, 45.0, 0.0)
    *_, yaw, pitch, roll = estimate_pose(turned)
    assert (yaw, pitch, roll) == pytest.approx((45.0, 0.0, 0.0), abs=1e-6)


def test_unknown_method_and_size_are_rejected():
    with pytest.raises(ValueError, match="griddata"):
        unwrap(np.zeros((10, 10, 3), np.uint8), posed_canonical(), 64, method="splat")
    with pytest.raises(ValueError, match="64, 128, 256"):
        uv_atlas(100)
    assert face_model().tri.shape == (898, 3)


@pytest.mark.parametrize("method", ["warp", "griddata"])
def test_texels_outside_the_photo_are_not_visible(method):
    """A face cut by the photo's left border: the texels left of it were never seen, so they are missing."""
    verts = posed_canonical(0)                                  # face centred at x = 100, about 160 px wide
    photo = np.full((200, 200, 3), 180, np.uint8)
    whole = unwrap(photo, verts, 64, method=method).visible
    cut = unwrap(photo[:, 100:].copy(), verts - np.array([100.0, 0, 0]), 64, method=method)
    _, pos = texel_visibility(verts, 64)
    left_of_border = whole & (pos[..., 0] < 100)
    assert left_of_border.sum() > 200
    assert not (cut.visible & left_of_border).any()
    assert (cut.texture[left_of_border] == 0).all()
    right = whole & (pos[..., 0] > 102)
    assert cut.visible[right].mean() > 0.99


def test_a_face_the_body_pose_model_sees_turned_further_loses_its_far_silhouette_texels():
    mesh = posed_canonical(40.0)
    seen_by_mesh, _ = texel_visibility(mesh, 64)
    face = FaceFit(mesh, (0, 0, 1, 1), 0.9, 40.0, 0.0, 0.0, 10.0, np.eye(3))
    for head_yaw in (float("nan"), 30.0, -70.0):     # no say, turned less, turned the other way: nothing taken
        face.head_yaw = head_yaw
        assert seen_at_head_yaw(face, 64).all()
    face.head_yaw = 70.0
    dropped = seen_by_mesh & ~seen_at_head_yaw(face, 64)
    hidden_by_mesh = uv_atlas(64).mask & ~seen_by_mesh
    columns = np.arange(64)[None, :].repeat(64, 0)
    assert 50 < dropped.sum() < seen_by_mesh.sum() / 3
    # the texels taken are on the far cheek, the side the mesh already hides
    assert np.sign(columns[dropped].mean() - 31.5) == np.sign(columns[hidden_by_mesh].mean() - 31.5)
