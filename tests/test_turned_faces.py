"""The most turned test faces completed by every method (results notebook): which faces, and the figures."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from test_crosspose import GAIN, OFFSET, write_dataset
from uvlib.data.dataset import open_dataset
from uvlib.geometry.mesh import uv_atlas
from uvlib.geometry.pose import canonical_in_camera_axes
from uvlib.protocol.crosspose import build_pairs
from uvlib.study.faces3d import INPUT, TRUTH, most_turned, turned_faces_figures

METHODS = {"zeros": lambda uv, known: torch.zeros_like(uv), "ones": lambda uv, known: torch.ones_like(uv)}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """The cross-pose test's dataset (64 x 64, groups with frontal references), with a fitted mesh per face."""
    root = write_dataset(tmp_path_factory.mktemp("turned") / "ds")
    ds = open_dataset(root)
    (root / "mesh").mkdir()
    for row in ds.rows:
        turn = Rotation.from_euler("YXZ", [-row["yaw"], -row["pitch"], 0.0], degrees=True).as_matrix()
        np.save(root / "mesh" / f"{row['id']}.npy", 40 * canonical_in_camera_axes() @ turn.T + [100.0, 100.0, 0.0])
    return ds


def test_the_most_turned_faces_by_absolute_yaw_ties_by_id(ds):
    rows = ds.split_rows("test")
    assert [r["id"] for r in most_turned(rows)] == ["c_alone", "a_left", "a_other", "b_turned", "a_right"]
    assert [r["id"] for r in most_turned(rows[::-1], n=7)][5:] == ["b_front", "d_turned"]   # both |yaw| 20
    assert [r["id"] for r in most_turned(ds.split_rows("train"))] == ["e_turned", "e_front"]
    with pytest.raises(ValueError, match="at least 1"):
        most_turned(rows, n=0)


def test_grid_and_3d_views_of_the_most_turned_faces(ds, tmp_path):
    references = build_pairs(ds, "test")
    chosen, grid, views = turned_faces_figures(ds, ds.split_rows("test"), METHODS, tmp_path, references,
                                               yaws=(-30, 0, 30), size=48)
    columns = [INPUT, "zeros", "ones", TRUTH]
    assert [ax.get_title().replace("\n", " ") for ax in grid.axes[:len(columns)]] == columns
    assert len(grid.axes) == 5 * len(columns)
    cells = [ax.images[0].get_array() if ax.images else None for ax in grid.axes]
    assert all(c is None or c.shape == (64, 64, 3) for c in cells)
    by_face = {row["id"]: cells[k * len(columns):(k + 1) * len(columns)] for k, row in enumerate(chosen)}
    assert [face for face, row in by_face.items() if row[-1] is None] == ["c_alone", "a_other"]   # no reference

    texture, seen = ds.item("a_left")
    atlas = uv_atlas(64).mask
    hidden, kept = atlas & ~seen, atlas & seen
    assert (by_face["a_left"][2][hidden] == 255).all() and (by_face["a_left"][1][hidden] == 0).all()
    assert np.array_equal(by_face["a_left"][0], texture) and np.array_equal(by_face["a_left"][2][kept], texture[kept])
    reference, reference_seen = ds.item("a_front")
    shown = reference_seen & ~seen & references.atlas    # the reference in the turned photo's colours
    truth = np.asarray(by_face["a_left"][3], dtype=int)
    assert np.abs(truth[shown] - (GAIN * reference[shown] + OFFSET)).max() <= 1
    with Image.open(tmp_path / "turned_faces.png") as png:
        assert png.height > png.width > 0                       # five rows, four columns

    assert len(views) == 5
    for row, fig in zip(chosen, views):
        assert (tmp_path / f"turned_faces_3d-{row['id']}.png").is_file()
        strips = [ax.images[0].get_array() for ax in fig.axes]
        assert len(strips) == (4 if row["id"] in ("a_left", "b_turned", "a_right") else 3)
        assert all(s.shape == (48, 3 * 48 + 2 * 4, 3) for s in strips)
        assert not np.array_equal(strips[1], strips[2])        # the zeros and ones completions differ in 3D


def test_fewer_faces_than_asked_give_a_shorter_grid(ds, tmp_path):
    chosen, grid, views = turned_faces_figures(ds, ds.split_rows("train"), METHODS, tmp_path, size=32)
    assert [r["id"] for r in chosen] == ["e_turned", "e_front"]
    assert len(grid.axes) == 2 * 3 and len(views) == 2      # input, zeros, ones: no references given
