"""`uvlib complete --export obj,glb`: the written files, read back raw (not through trimesh, which flips V both
ways) and through trimesh into uvlib's renderer, against the turntable."""
import json
import struct
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from test_complete import run_cli

from uvlib.app.export import (CAMERA_AXES, export_face, face_texture, load_exported, mesh_vertices, parse_formats,
                              render_exported)
from uvlib.geometry.mesh import face_model, uv_atlas
from uvlib.geometry.pose import estimate_pose, reposed_mesh
from uvlib.geometry.render import render, turntable
from uvlib.geometry.unwrap import unwrap
from uvlib.models.mean_face import MeanFace
from uvlib.models.registry import save_model
from uvlib.protocol.figures import complete_uv

S = 64            # the completion's size
BIG = 128         # the exported texture's size where a test asks for a larger one


@pytest.fixture(scope="module")
def mean_face():
    atlas = torch.from_numpy(uv_atlas(S).mask)
    maps = torch.rand(3, 3, S, S, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    return MeanFace().fit(maps, torch.ones(3, 1, S, S), atlas)


@pytest.fixture(scope="module")
def face(fitter, face_rgb, mean_face):
    """(photo, fitted landmarks, completed 64 x 64 texture) of the astronaut."""
    fit = fitter.fit(face_rgb)[0][0]
    seen = unwrap(face_rgb, fit.landmarks, S)
    return face_rgb, fit.landmarks, complete_uv(mean_face, seen.texture, seen.visible, "cpu")


@pytest.fixture(scope="module")
def files(face, tmp_path_factory):
    """The face exported at the completion's size and at BIG, posed."""
    out = tmp_path_factory.mktemp("export")
    return {size: {kind: Path(p) for kind, p in export_face(out / f"astro_{size}", *face, texture_size=size).items()}
            for size in (S, BIG)}


def read_obj(path):
    """Raw OBJ: v, vt, vn arrays, faces (T, 3 corners, 3 = v/vt/vn) 0-based, and the mtllib name."""
    rows = {"v": [], "vt": [], "vn": [], "f": []}
    mtllib = None
    for line in path.read_text().splitlines():
        key, *rest = line.split() or [""]
        if key in ("v", "vt", "vn"):
            rows[key].append([float(x) for x in rest])
        elif key == "f":
            rows["f"].append([[int(i) - 1 for i in corner.split("/")] for corner in rest])
        elif key == "mtllib":
            mtllib = rest[0]
    return {k: np.array(v) for k, v in rows.items()}, mtllib


def read_glb(path):
    """Raw GLB: (json, {attribute name: array}, indices (T, 3), embedded image)."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_len = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20:20 + json_len])
    binary = data[20 + json_len + 8:]

    def view(index):
        v = gltf["bufferViews"][index]
        return binary[v.get("byteOffset", 0):v.get("byteOffset", 0) + v["byteLength"]]

    def accessor(index):
        a = gltf["accessors"][index]
        dtype = {5125: np.uint32, 5126: np.float32}[a["componentType"]]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[a["type"]]
        raw = view(a["bufferView"])[a.get("byteOffset", 0):]
        return np.frombuffer(raw, dtype=dtype, count=a["count"] * width).reshape(a["count"], width)

    (primitive,) = [p for m in gltf["meshes"] for p in m["primitives"]]
    attributes = {name: accessor(i) for name, i in primitive["attributes"].items()}
    image = Image.open(BytesIO(view(gltf["images"][0]["bufferView"])))
    return gltf, attributes, accessor(primitive["indices"]).reshape(-1, 3), image


def test_obj_has_the_model_triangles_with_their_uvs_v_up_and_a_texture_of_the_asked_size(files, face):
    model = face_model()
    path = files[BIG]["obj"]
    obj, mtllib = read_obj(path)
    assert len(obj["v"]) == len(obj["vt"]) == len(obj["vn"]) == 468 and obj["f"].shape == (898, 3, 3)
    corners_v, corners_vt = obj["f"][..., 0], obj["f"][..., 1]
    assert np.array_equal(corners_v, model.tri)
    expected_vt = np.column_stack([model.uv[:, 0], 1 - model.uv[:, 1]])[model.tri]        # OBJ: V up
    np.testing.assert_allclose(obj["vt"][corners_vt], expected_vt, atol=1e-7)
    np.testing.assert_allclose(obj["v"][corners_v], mesh_vertices(face[1])[model.tri], atol=1e-6)

    mtl = (path.parent / mtllib).read_text()
    texture_name = next(line.split()[1] for line in mtl.splitlines() if line.startswith("map_Kd"))
    assert "Kd 1.00000000 1.00000000 1.00000000" in mtl            # the texture is not darkened
    with Image.open(path.parent / texture_name) as texture:
        assert texture.size == (BIG, BIG) and texture.mode == "RGB"


def test_glb_has_the_model_triangles_with_their_uvs_v_down_normals_and_an_embedded_texture(files, face):
    model = face_model()
    for size in (S, BIG):
        gltf, attributes, indices, image = read_glb(files[size]["glb"])
        assert set(attributes) == {"POSITION", "NORMAL", "TEXCOORD_0"}
        assert all(len(a) == 468 for a in attributes.values()) and indices.shape == (898, 3)
        assert np.array_equal(indices, model.tri)
        np.testing.assert_allclose(attributes["TEXCOORD_0"][indices], model.uv[model.tri], atol=1e-6)  # glTF: V down
        np.testing.assert_allclose(attributes["POSITION"], mesh_vertices(face[1]), atol=1e-5)
        assert image.size == (size, size) and image.format == "PNG"
        (material,) = gltf["materials"]
        assert material["pbrMetallicRoughness"]["metallicFactor"] == 0.0   # glTF's default 1.0 looks like metal


def test_normals_point_out_of_the_face_and_agree_with_the_winding(files):
    model = face_model()
    for kind in ("obj", "glb"):
        verts, tri, *_ = load_exported(files[S][kind])
        normals = read_obj(files[S]["obj"])[0]["vn"] if kind == "obj" else read_glb(files[S]["glb"])[1]["NORMAL"]
        # the canonical model's origin lies inside the head, behind the face
        assert (np.einsum("ij,ij->i", normals, verts) > 0).mean() > 0.95
        corners = verts[tri]
        winding = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        assert (np.einsum("tj,tj->t", winding, normals[tri].mean(1)) > 0).all()
        assert np.array_equal(tri, model.tri)


def test_posed_keeps_the_fitted_pose_and_frontal_removes_it_in_centimetres(face):
    landmarks = face[1]
    fitted = estimate_pose(landmarks)
    posed, frontal = mesh_vertices(landmarks), mesh_vertices(landmarks, frontalise=True)
    scale, *_, yaw, pitch, roll = estimate_pose(posed * CAMERA_AXES)
    assert scale == pytest.approx(1.0) and (yaw, pitch, roll) == pytest.approx(fitted[3:], abs=1e-6)
    scale, *_, yaw, pitch, roll = estimate_pose(frontal * CAMERA_AXES)
    assert scale == pytest.approx(1.0) and (yaw, pitch, roll) == pytest.approx((0, 0, 0), abs=1e-6)
    assert frontal[1, 2] > frontal[:, 2].mean() + 3                # nose tip towards +z, cm in front
    gaps = lambda v: np.linalg.norm(v[:, None] - v[None], axis=-1)
    np.testing.assert_allclose(gaps(posed), gaps(frontal), atol=1e-9)   # one shape, turned


@pytest.mark.parametrize("size, bound", [(S, 1.5), (BIG, 8.0)])
def test_reloaded_files_render_like_the_turntable_frames(files, face, size, bound):
    """Mean absolute difference (0-255, over face pixels) between uvlib's turntable frame and the reloaded file
    drawn with the file's own triangles, UVs and texture. At the completion's size only the padding outside the
    atlas differs; at BIG the photo's finer texels do. A V axis left unflipped would be far off."""
    image, landmarks, completed = face

    def mad(a, b):
        face_px = (a != 255).any(-1) | (b != 255).any(-1)
        return np.abs(a.astype(float) - b)[face_px].mean()

    for yaw in (-45, 30):
        frame = turntable(completed, landmarks, [yaw], size=96)[0]
        for kind in ("obj", "glb"):
            assert mad(render_exported(files[size][kind], yaw, 96), frame) < bound
        verts, tri, uv, texture = load_exported(files[size]["glb"])
        unflipped = render(texture, reposed_mesh(verts * CAMERA_AXES, yaw), 96, tri=tri, uv=uv * [1, -1] + [0, 1])
        assert mad(unflipped, frame) > 20


@pytest.mark.parametrize("size", [S, BIG])
def test_colours_outside_the_atlas_change_no_exported_texel_and_no_rendered_pixel(face, tmp_path, size):
    """A model may paint anything outside the atlas (PConv paints cyan): none of it may reach a file or a view."""
    image, landmarks, completed = face
    painted = completed.copy()
    painted[~uv_atlas(S).mask] = (0, 255, 0)
    assert np.array_equal(face_texture(image, landmarks, painted, size), face_texture(image, landmarks, completed, size))
    paths = {name: export_face(tmp_path / name, image, landmarks, texture, ("glb",), texture_size=size)["glb"]
             for name, texture in (("painted", painted), ("plain", completed))}
    for yaw in (-45, 0, 45):
        assert np.array_equal(render_exported(paths["painted"], yaw, 128), render_exported(paths["plain"], yaw, 128))
        assert np.array_equal(turntable(painted, landmarks, [yaw], size=128)[0],
                              turntable(completed, landmarks, [yaw], size=128)[0])


def test_larger_texture_takes_seen_texels_from_the_photo_and_pads_the_atlas(face):
    image, landmarks, completed = face
    texture = face_texture(image, landmarks, completed, BIG)
    seen = unwrap(image, landmarks, BIG)
    atlas = uv_atlas(BIG).mask
    assert texture.shape == (BIG, BIG, 3) and texture.dtype == np.uint8
    assert np.array_equal(texture[seen.visible], seen.texture[seen.visible])    # the photo at BIG, not upsampled
    upsampled_seen = np.asarray(Image.fromarray(completed).resize((BIG, BIG), Image.BILINEAR))[seen.visible]
    assert np.abs(upsampled_seen.astype(int) - seen.texture[seen.visible]).mean() > 1
    hidden = atlas & ~seen.visible
    assert hidden.sum() > 0.2 * atlas.sum() and (texture[hidden] > 40).all(-1).mean() > 0.99   # filled, not black
    # outside the atlas: its edge colours a few texels out, then the face's mean colour, never black
    ring = ndimage.binary_dilation(atlas, iterations=2) & ~atlas
    edge = atlas & ~ndimage.binary_erosion(atlas)
    assert np.abs(texture[ring].mean(0) - texture[edge].mean(0)).max() < 20        # black would be 100+ off
    assert np.array_equal(texture[0, 0], texture[atlas].mean(0).round().astype(np.uint8))
    assert (texture[~atlas].max(-1) > 40).all()
    own = uv_atlas(S).mask
    assert np.array_equal(face_texture(image, landmarks, completed)[own], completed[own])   # S: the completion


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, mean_face):
    path = tmp_path_factory.mktemp("stage") / "model-mean.pt"
    save_model(path, "mean_face", S, {}, mean_face.state_dict())
    return path


def test_complete_exports_obj_and_glb_per_face(model_file, face_photo, tmp_path):
    out = tmp_path / "out"
    run_cli(["complete", str(face_photo), "--model", str(model_file), "--out", str(out), "--yaws=0",
             "--export", "obj,glb", "--texture-size", str(BIG), "--frontalise", "--quiet"])
    stem = "skimage_astronaut.jpg_0"
    assert {p.name for p in out.iterdir()} >= {f"{stem}.obj", f"{stem}.mtl", f"{stem}_texture.png", f"{stem}.glb"}
    for kind in ("obj", "glb"):
        verts, tri, uv, texture = load_exported(out / f"{stem}.{kind}")
        assert verts.shape == (468, 3) and tri.shape == (898, 3) and texture.shape == (BIG, BIG, 3)
        assert estimate_pose(verts * CAMERA_AXES)[3:] == pytest.approx((0, 0, 0), abs=1e-4)   # frontalised


@pytest.mark.parametrize("extra, message", [
    (["--export", "obj,fbx"], "--export 'obj,fbx' names unknown formats ['fbx']"),
    (["--export", "glb", "--texture-size", "100"], "--texture-size 100 is not supported"),
    (["--texture-size", "512"], "add --export obj,glb or drop them"),
    (["--frontalise"], "add --export obj,glb or drop them"),
])
def test_bad_export_options_fail_with_one_line_before_writing(extra, message, model_file, face_photo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError) as e:
        run_cli(["complete", str(face_photo), "--model", str(model_file), "--out", str(out), "--quiet", *extra])
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_format_parsing():
    assert parse_formats("obj,glb") == ("obj", "glb")
    assert parse_formats(" GLB ") == ("glb",) and parse_formats("") == () and parse_formats("obj,obj") == ("obj",)
