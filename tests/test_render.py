import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from uvlib.geometry.mesh import uv_atlas
from uvlib.geometry.pose import canonical_in_camera_axes
from uvlib.geometry.render import render, save_gif, turntable, views_strip

RED, BLUE = (220, 30, 30), (30, 30, 220)


def posed_canonical(yaw=0.0, scale=10.0):
    r = Rotation.from_euler("YXZ", [-yaw, 0.0, 0.0], degrees=True).as_matrix()
    return scale * canonical_in_camera_axes() @ r.T + np.array([100.0, 100.0, 0.0])


def flat_texture(colour, size=64):
    return np.tile(np.array(colour, dtype=np.uint8), (size, size, 1))


def red_left_blue_right(size=64):
    tex = flat_texture(RED, size)
    tex[:, size // 2:] = BLUE
    return tex


def colour_counts(image):
    r, b = image[..., 0].astype(int), image[..., 2].astype(int)
    face = (image != 255).any(-1)
    return (face & (r > b + 50)).sum(), (face & (b > r + 50)).sum()


def test_flat_texture_without_shading_paints_every_covered_pixel_its_colour():
    out = render(flat_texture((200, 120, 40)), posed_canonical(), size=128, shading=False, background=255)
    covered = (out != 255).any(-1)
    assert 0.3 < covered.mean() < 0.8                       # the face fills the frame, with a margin
    assert (out[covered] == (200, 120, 40)).all()
    assert (out[~covered] == 255).all()
    assert not covered[:4].any() and not covered[-4:].any() and not covered[:, :4].any()


def test_texture_formats_agree():
    tex = red_left_blue_right()
    as_float = tex.astype(np.float32) / 255
    as_tensor = torch.from_numpy(as_float).permute(2, 0, 1)
    ref = render(tex, posed_canonical(20), size=96)
    assert np.abs(render(as_float, posed_canonical(20), size=96).astype(int) - ref).max() <= 1
    assert np.abs(render(as_tensor, posed_canonical(20), size=96).astype(int) - ref).max() <= 1


def test_shading_only_darkens_down_to_the_ambient_level():
    flat = render(flat_texture((200, 200, 200)), posed_canonical(), size=96, shading=False).astype(float)
    lit = render(flat_texture((200, 200, 200)), posed_canonical(), size=96, ambient=0.35).astype(float)
    covered = (flat != 255).any(-1)
    assert (lit[covered] <= flat[covered] + 0.5).all()
    assert (lit[covered] >= 0.35 * flat[covered] - 1).all()
    assert lit[covered].std() > 5                           # the shape shows


def test_half_red_half_blue_texture_splits_a_frontal_face_and_turning_hides_one_half():
    tex = red_left_blue_right()
    front = render(tex, posed_canonical(0), size=128, shading=False)
    red, blue = colour_counts(front)
    assert red > 0 and blue > 0 and 0.8 < red / blue < 1.25
    left, right = colour_counts(front[:, :64]), colour_counts(front[:, 64:])
    assert min(left) < 0.05 * max(left) and min(right) < 0.05 * max(right)     # one colour per side
    assert np.argmax(left) != np.argmax(right)

    frames = turntable(tex, posed_canonical(0), yaws=[-60, -30, 0, 30, 60], size=128, shading=False)
    red_share = np.array([r / (r + b) for r, b in map(colour_counts, frames)])
    assert red_share[2] == pytest.approx(0.5, abs=0.05)
    steps = np.diff(red_share)
    assert (steps > 0.05).all() or (steps < -0.05).all()      # one colour shrinks steadily as the head turns
    assert min(red_share[0], red_share[-1]) < 0.1 and max(red_share[0], red_share[-1]) > 0.9


@pytest.mark.parametrize("size", [64, 128])
def test_colours_outside_the_atlas_never_reach_the_face(size):
    """A model may paint anything outside the atlas (PConv paints cyan): none of it may show as a rim."""
    skin = (200, 150, 120)
    tex = flat_texture(skin, size)
    tex[~uv_atlas(size).mask] = (0, 255, 0)
    for yaw in (-60, -30, 0, 30, 60):
        out = render(tex, posed_canonical(yaw), size=160, shading=False)
        face = (out != 255).any(-1)
        assert face.sum() > 1000 and (np.abs(out[face].astype(int) - skin).max(-1) <= 1).all(), yaw


def test_render_is_deterministic():
    tex = red_left_blue_right()
    assert np.array_equal(render(tex, posed_canonical(35), size=96), render(tex, posed_canonical(35), size=96))


def test_turntable_gif_and_strip(tmp_path):
    yaws = [-60, -30, 0, 30, 60]
    frames = turntable(red_left_blue_right(), posed_canonical(10), yaws=yaws, size=64)
    assert len(frames) == len(yaws)
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    save_gif(frames, tmp_path / "t.gif")
    with Image.open(tmp_path / "t.gif") as gif:
        assert gif.n_frames == 2 * len(yaws) - 2                # ping-pong: there and back, ends not repeated
        assert gif.info.get("loop") == 0
    strip = views_strip(frames, gap=4)
    assert strip.shape == (64, 5 * 64 + 4 * 4, 3)
    assert np.array_equal(strip[:, 68:132], frames[1])


def test_turntable_keeps_one_framing_so_the_head_does_not_zoom():
    frames = turntable(flat_texture((90, 90, 90)), posed_canonical(0), yaws=[0, 75], size=96, shading=False)
    heights = [np.ptp(np.nonzero((f != 255).any(-1).any(1))[0]) for f in frames]
    assert abs(heights[0] - heights[1]) <= 3
