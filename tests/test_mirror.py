"""The exact texel-to-mirror-texel map of the UV atlas, built from the canonical mesh's vertex pairs."""
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from uvlib.geometry.mesh import face_model, uv_atlas
from uvlib.geometry.mirror import mirror_index, mirror_texels


def test_mirror_index_swaps_each_vertex_with_its_mirror_twin():
    twin = mirror_index()
    xyz = face_model().xyz
    assert np.array_equal(twin[twin], np.arange(len(twin)))
    assert np.allclose(xyz[twin] * [-1, 1, 1], xyz)
    assert (twin != np.arange(len(twin))).sum() > 400       # only the midline maps onto itself


@pytest.mark.parametrize("size", [64, 128, 256])
def test_every_atlas_texel_maps_inside_the_atlas(size):
    atlas, mirror = uv_atlas(size).mask, mirror_texels(size)
    assert np.isnan(mirror.source[~atlas]).all() and np.isfinite(mirror.source[atlas]).all()
    nearest = np.rint(mirror.source[mirror.valid]).astype(int)
    assert atlas[nearest[:, 0], nearest[:, 1]].all()
    # only texels whose mirror texel the rasteriser left out (a centre on a triangle edge) are not valid
    assert (atlas & ~mirror.valid).sum() <= 3 and not (mirror.valid & ~atlas).any()
    # every atlas texel reads its colour from atlas texels around its mirror
    share = (mirror.sampler @ atlas.reshape(-1).astype(float)).reshape(size, size)
    assert (share[atlas] > 0).all() and np.allclose(mirror.sampler.sum(1).A[atlas.reshape(-1)], 1)


@pytest.mark.parametrize("size", [64, 128])
def test_mirror_of_mirror_is_the_identity_up_to_interpolation(size):
    atlas, mirror = uv_atlas(size).mask, mirror_texels(size)
    inner = atlas & mirror.valid
    source = mirror.source[inner]
    field = np.nan_to_num(mirror.source, nan=0.0)
    back = np.stack([map_coordinates(field[..., k], source.T, order=1) for k in range(2)], axis=-1)
    start = np.argwhere(inner)
    error = np.linalg.norm(back - start, axis=1)
    # bilinear reading is exact inside a triangle pair (the map is affine there); texels near an edge read
    # across it or from outside the atlas
    assert np.median(error) < 1e-4 and np.mean(error < 0.25) > 0.8


def test_a_vertex_maps_onto_its_twin():
    size = 256
    atlas, mirror = uv_atlas(size), mirror_texels(size)
    model, twin = face_model(), mirror_index()
    checked = 0
    for t, corners in enumerate(model.tri):
        texels = np.argwhere(atlas.tri_id == t)
        # the map is affine inside a triangle: fit it on the triangle's texels and read it at the corners
        design = np.column_stack([texels, np.ones(len(texels))])
        if len(texels) < 10 or np.linalg.matrix_rank(design) < 3:
            continue                                              # texels on one line do not fix an affine map
        affine, *_ = np.linalg.lstsq(design, mirror.source[texels[:, 0], texels[:, 1]], rcond=None)
        corner_rc = model.uv[corners][:, ::-1] * size - 0.5
        mapped = np.column_stack([corner_rc, np.ones(3)]) @ affine
        assert np.allclose(mapped, model.uv[twin[corners]][:, ::-1] * size - 0.5, atol=1e-4)  # float32 barycentrics
        checked += 1
    assert checked > 400


def test_the_mirror_is_not_a_pixel_flip_where_the_layout_is_not_symmetric():
    size = 256
    atlas, mirror = uv_atlas(size).mask, mirror_texels(size)
    rows, cols = np.mgrid[:size, :size]
    flip = np.stack([rows, size - 1 - cols], axis=-1)
    gap = np.abs(mirror.source - flip)[atlas]
    uv, twin = face_model().uv, mirror_index()
    layout_asymmetry = np.abs(uv[twin] - np.column_stack([1 - uv[:, 0], uv[:, 1]])).max() * size
    assert layout_asymmetry > 0.2                                 # the layout is symmetric only to ~0.001 in u, v
    assert gap.max() > 0.2 and gap.max() <= layout_asymmetry + 1e-6
    assert np.median(gap) < 0.01                                  # and nearly a flip on most of the face


def test_sample_averages_only_weighted_texels():
    size = 64
    atlas, mirror = uv_atlas(size).mask, mirror_texels(size)
    image = np.random.default_rng(0).random((size, size, 3))
    left = atlas & (np.arange(size) < size // 2 - 2)[None, :]
    colour, weight = mirror.sample(image, left.astype(float))
    right = atlas & (np.arange(size) > size // 2 + 1)[None, :] & mirror.valid
    assert np.allclose(weight[right & (weight > 0)], weight[right & (weight > 0)].clip(0, 1))
    full = right & (weight > 0.999)
    assert full.sum() > 0.3 * atlas.sum()
    nearest = np.rint(mirror.source[full]).astype(int)
    # all four neighbours weighted: colour is a convex mix of image values around the mirror
    assert np.abs(colour[full] - image[nearest[:, 0], nearest[:, 1]]).max() < 1
    assert (weight[atlas & (np.arange(size) < size // 2 - 2)[None, :]] == 0).all()
