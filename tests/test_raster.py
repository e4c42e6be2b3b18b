import numpy as np

from uvlib.geometry.raster import rasterize


def test_single_triangle_covers_the_pixels_whose_centres_are_inside():
    verts = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    r = rasterize(verts, np.array([[0, 1, 2]]), 4, 4)
    inside = (r.tri_id == 0)
    # pixel (i, j) centre (j+.5, i+.5) is inside when x + y <= 4
    expected = np.add.outer(np.arange(4) + 0.5, np.arange(4) + 0.5) <= 4
    assert (inside == expected).all()


def test_barycentrics_reproduce_the_pixel_centre():
    verts = np.array([[0.5, 0.5], [7.5, 1.5], [2.5, 6.5]])
    r = rasterize(verts, np.array([[0, 1, 2]]), 8, 8)
    rows, cols = np.nonzero(r.tri_id == 0)
    pos = r.bary[rows, cols] @ verts
    assert np.allclose(pos, np.stack([cols + 0.5, rows + 0.5], 1), atol=1e-5)
    assert np.allclose(r.bary[rows, cols].sum(1), 1, atol=1e-6)


def test_depth_buffer_keeps_the_nearest_triangle():
    verts = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    far_near = rasterize(np.vstack([verts, verts]), np.array([[0, 1, 2], [4, 5, 6]]), 4, 4,
                         depth=np.array([5.0, 5, 5, 5, 1, 1, 1, 1]))
    assert set(np.unique(far_near.tri_id[far_near.tri_id >= 0])) == {1}
    assert np.allclose(far_near.depth[far_near.tri_id >= 0], 1.0)


def test_backface_culling_drops_clockwise_on_screen_triangles():
    verts = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    ccw_on_screen = rasterize(verts, np.array([[0, 1, 2]]), 4, 4, cull_backfaces=True)  # area > 0: back
    cw_on_screen = rasterize(verts, np.array([[0, 2, 1]]), 4, 4, cull_backfaces=True)
    assert (ccw_on_screen.tri_id == -1).all()
    assert (cw_on_screen.tri_id == 0).sum() > 0


def test_triangles_outside_the_grid_are_clipped():
    verts = np.array([[-10.0, -10.0], [20.0, -10.0], [-10.0, 20.0]])
    r = rasterize(verts, np.array([[0, 1, 2]]), 5, 5)
    assert (r.tri_id == 0).all()
