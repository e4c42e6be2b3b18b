"""Completed faces out to 3D tools: the fitted mesh with its completed texture as OBJ (+ MTL + PNG) and as GLB.

Geometry comes from the project's own canonical model arrays (468 vertices, 898 triangles, one UV per vertex),
not from MediaPipe's OBJ, whose face corners index positions and UVs separately.

- Frame: the canonical model's centimetres and axes, x right (the photo's right), y up, z towards the camera,
  origin at the canonical model's origin (inside the head, behind the nose). "posed": the head turned as the
  photo shows it; "frontal" (--frontalise): that rotation removed, the face looks down +z. Either way the
  shape is the fitted one, divided by the fitted scale (image pixels per canonical centimetre).
- UVs: the atlas's v grows downwards. OBJ's V grows upwards, so its vt is (u, 1 - v); glTF's TEXCOORD_0 has
  its origin top-left like the atlas, so it is (u, v). trimesh holds UVs OBJ-style and flips them for glTF.
- Faces are wound counter-clockwise seen from outside, so normals point out of the face; per-vertex normals
  are written in both files.
- Texture: the completion as it is, or at --texture-size S the photo re-unwrapped at S for every texel the
  camera saw and the completion upsampled only for the rest. Outside the atlas the edge colours are extended
  a few texels (bilinear sampling and mipmaps in a viewer then never reach the background at a seam) and the
  rest is the face's mean colour.

trimesh (MIT) writes and reads both formats: hand-written glTF would have to get buffers, accessors, the
embedded PNG and the V flip right, which trimesh's exporter already does and Blender reads.
"""
from pathlib import Path

import cv2
import numpy as np
import trimesh
from PIL import Image

from uvlib.geometry.mesh import ATLAS_SIZES, face_model, uv_atlas
from uvlib.geometry.pose import estimate_pose, reposed_mesh
from uvlib.geometry.render import atlas_edge_texels, pad_atlas, render
from uvlib.geometry.unwrap import unwrap

FORMATS = ("obj", "glb")
CAMERA_AXES = np.array([1.0, -1.0, -1.0])   # image axes (x right, y down, z away) <-> model axes (y up, z near)


def parse_formats(text: str) -> tuple:
    """'obj,glb' -> ('obj', 'glb'); '' -> ()."""
    formats = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--export {text!r} names unknown formats {unknown}; use obj, glb or obj,glb")
    return formats


def check_texture_size(size) -> int:
    if size not in ATLAS_SIZES:
        raise ValueError(f"--texture-size {size!r} is not supported; use one of {ATLAS_SIZES}")
    return size


def mesh_vertices(landmarks, frontalise=False) -> np.ndarray:
    """The fitted mesh in canonical centimetres and model axes (see the module doc), (468, 3)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    scale, rotation, translation, *_ = estimate_pose(landmarks)
    centred = (landmarks - translation) / scale
    if frontalise:
        centred = centred @ rotation
    return centred * CAMERA_AXES


def face_texture(image, landmarks, completed, size=None) -> np.ndarray:
    """The texture to export, (S, S, 3) uint8: `completed` at its own size, or at `size` the photo's seen texels
    unwrapped at that size and the completion upsampled for the unseen ones; padded outside the atlas."""
    own = completed.shape[0]
    size = own if size is None else check_texture_size(size)
    if size == own:
        texture = completed
    else:
        seen = unwrap(image, landmarks, size)
        everywhere = pad_atlas(completed, uv_atlas(own).mask, own)        # no black rim to upsample
        filled = cv2.resize(everywhere, (size, size), interpolation=cv2.INTER_CUBIC if size > own else cv2.INTER_AREA)
        texture = np.where(seen.visible[..., None], seen.texture, filled)
    return pad_atlas(texture, uv_atlas(size).mask, atlas_edge_texels(size))


def textured_mesh(verts, texture, name, material="pbr") -> trimesh.Trimesh:
    """A trimesh mesh of the face model's triangles and UVs over `verts`. material: "pbr" for glTF (matte,
    not metallic), "obj" for an MTL whose map_Kd is not darkened by its Kd."""
    model = face_model()
    image = Image.fromarray(texture)
    if material == "pbr":
        mat = trimesh.visual.material.PBRMaterial(name=name, baseColorTexture=image, metallicFactor=0.0,
                                                  roughnessFactor=1.0)
    else:   # Ka stays black: Blender's OBJ importer reads Ka as metallic
        mat = trimesh.visual.material.SimpleMaterial(name=name, image=image, diffuse=(255, 255, 255),
                                                     ambient=(0, 0, 0), specular=(0, 0, 0), glossiness=1.0)
    uv_obj_style = np.column_stack([model.uv[:, 0], 1.0 - model.uv[:, 1]])
    return trimesh.Trimesh(verts, model.tri, visual=trimesh.visual.TextureVisuals(uv=uv_obj_style, material=mat),
                           process=False)


def export_face(stem, image, landmarks, completed, formats=FORMATS, texture_size=None, frontalise=False) -> dict:
    """Write the fitted face with its completed texture next to `stem`: <stem>.obj + .mtl + _texture.png and
    <stem>.glb. Returns {"obj": path, "glb": path} for the formats written."""
    stem = Path(stem)
    verts = mesh_vertices(landmarks, frontalise)
    texture = face_texture(image, landmarks, completed, texture_size)
    written = {}
    if "obj" in formats:
        mesh = textured_mesh(verts, texture, f"{stem.name}_texture", material="obj")
        text, files = trimesh.exchange.obj.export_obj(mesh, include_normals=True, return_texture=True,
                                                      mtl_name=f"{stem.name}.mtl", header="uvlib complete")
        for name, data in files.items():
            (stem.parent / name).write_bytes(data)
        written["obj"] = stem.parent / f"{stem.name}.obj"   # not with_suffix: ids such as x.jpg_0 hold dots
        written["obj"].write_text(text)
    if "glb" in formats:
        mesh = textured_mesh(verts, texture, f"{stem.name}_texture")
        written["glb"] = stem.parent / f"{stem.name}.glb"
        written["glb"].write_bytes(trimesh.exchange.gltf.export_glb(mesh, include_normals=True))
    return {k: str(p) for k, p in written.items()}


def load_exported(path):
    """Read an exported OBJ or GLB back with trimesh -> (verts (V, 3) model axes, tri (T, 3), uv (V, 2) with v
    down as in the atlas, texture (S, S, 3) uint8)."""
    mesh = trimesh.load(path, force="mesh", process=False, maintain_order=True)
    material = mesh.visual.material
    image = material.baseColorTexture if hasattr(material, "baseColorTexture") else material.image
    uv = np.column_stack([mesh.visual.uv[:, 0], 1.0 - mesh.visual.uv[:, 1]])
    return (np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), uv,
            np.asarray(image.convert("RGB")))


def render_exported(path, yaw, size=256, **kw) -> np.ndarray:
    """The exported face reloaded from `path` and drawn with uvlib's renderer at the absolute yaw (degrees),
    with the file's own triangles, UVs and texture: comparable with a turntable frame at that yaw."""
    verts, tri, uv, texture = load_exported(path)
    return render(texture, reposed_mesh(verts * CAMERA_AXES, yaw), size, tri=tri, uv=uv, **kw)
