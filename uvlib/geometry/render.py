"""Rendering a UV texture on the face mesh at any pose: completed faces back in 3D.

The mesh is drawn with the numpy rasteriser (depth buffer, back faces culled); each pixel takes its UV
coordinate from its barycentrics and samples the texture bilinearly. Lambert shading from per-vertex normals
shows the shape that a flat texture would hide. Unknown (black) texels inside the atlas are drawn as they are,
so an incomplete texture shows its holes. Texels outside the atlas never reach the face: whatever a model
painted there (PConv paints cyan) or a completion left there (black) is replaced by the nearest atlas
texel's colour before sampling, as an exported texture is padded, so bilinear sampling at a seam or the
atlas edge only mixes face colours.
"""
import cv2
import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from uvlib.geometry.mesh import face_model, uv_atlas
from uvlib.geometry.pose import reposed_mesh
from uvlib.geometry.raster import rasterize

GIF_STEP = 15          # degrees between turntable frames
CROP_MARGIN = 1.25     # photo crop side / face mesh extent

MARGIN = 0.06   # free border on every side of the frame, as a fraction of its size


def texture_array(texture) -> np.ndarray:
    """(S,S,3) uint8 or float [0,1] array, or (3,S,S) tensor -> (S,S,3) float32 in [0,1]."""
    if isinstance(texture, torch.Tensor):
        texture = texture.detach().cpu().float().permute(1, 2, 0).numpy()
    texture = np.asarray(texture)
    if texture.ndim != 3 or texture.shape[2] != 3:
        raise ValueError(f"texture must be (S,S,3) or a (3,S,S) tensor, got shape {texture.shape}")
    if texture.dtype == np.uint8:
        return texture.astype(np.float32) / 255
    return np.clip(texture, 0, 1).astype(np.float32)


def pad_atlas(texture, atlas, edge_texels) -> np.ndarray:
    """Texels outside `atlas` take the nearest atlas texel's colour up to `edge_texels` away, the atlas's mean
    colour beyond. texture (S, S, 3) uint8 or float, atlas (S, S) bool."""
    distance, (rows, cols) = ndimage.distance_transform_edt(~atlas, return_indices=True)
    out = texture[rows, cols]
    mean = texture[atlas].mean(0)
    out[distance > edge_texels] = mean.round() if np.issubdtype(texture.dtype, np.integer) else mean
    return out


def atlas_edge_texels(size: int) -> int:
    """How far outside the atlas the edge colours are extended (the rest takes the mean colour)."""
    return max(2, size // 32)


def vertex_normals(verts: np.ndarray, tri=None) -> np.ndarray:
    """Unit per-vertex normals (sum of the adjacent triangles' area-weighted normals), (V, 3).

    In image space (y down, z away) a front face has negative signed area, so its normal points to -z,
    towards the camera. tri: the triangles (T, 3), the face model's by default.
    """
    tri = face_model().tri if tri is None else np.asarray(tri)
    corners = verts[tri]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    summed = np.zeros_like(verts)
    for k in range(3):
        np.add.at(summed, tri[:, k], normal)
    return summed / (np.linalg.norm(summed, axis=1, keepdims=True) + 1e-12)


def mesh_box(verts: np.ndarray):
    """(lo, hi) corners of the mesh's image-space bounding box."""
    xy = np.asarray(verts, dtype=np.float64)[:, :2]
    return xy.min(0), xy.max(0)


def render(texture, verts, size=256, light=(0.3, -0.3, -1.0), ambient=0.35, background=255, shading=True,
           box=None, tri=None, uv=None) -> np.ndarray:
    """Draw `texture` on the mesh with image-space vertices `verts` (468, 3) -> (size, size, 3) uint8.

    The box (lo, hi) in vertex units, the mesh's own bounding box by default, is fitted into the frame,
    centred, aspect kept. light: direction towards the light (x right, y down, z away from the camera: the default
    lights from the front, above and right). tri (T, 3) and uv (V, 2), v down: another mesh's triangles and
    texture coordinates (a reloaded export), the face model's by default.
    """
    tex = texture_array(texture)
    if tex.shape[0] != tex.shape[1]:
        raise ValueError(f"texture must be square (a UV map), got shape {tex.shape}")
    tex = pad_atlas(tex, uv_atlas(tex.shape[0]).mask, atlas_edge_texels(tex.shape[0]))
    verts = np.asarray(verts, dtype=np.float64)
    lo, hi = mesh_box(verts) if box is None else (np.asarray(box[0], float), np.asarray(box[1], float))
    scale = size * (1 - 2 * MARGIN) / max(float((hi - lo).max()), 1e-9)
    frame = (verts - np.append((lo + hi) / 2, 0.0)) * scale + np.array([size / 2, size / 2, 0.0])

    tri = face_model().tri if tri is None else np.asarray(tri)
    uv = face_model().uv if uv is None else np.asarray(uv, dtype=np.float64)
    r = rasterize(frame[:, :2], tri, size, size, depth=frame[:, 2], cull_backfaces=True)
    covered = r.tri_id >= 0
    corners = tri[r.tri_id[covered]]                                       # (N, 3) vertex ids
    bary = r.bary[covered].astype(np.float64)
    uv = np.einsum("nk,nkd->nd", bary, uv[corners])
    map_x = np.zeros((size, size), dtype=np.float32)
    map_y = np.zeros((size, size), dtype=np.float32)
    map_x[covered] = uv[:, 0] * tex.shape[1] - 0.5
    map_y[covered] = uv[:, 1] * tex.shape[0] - 0.5
    colour = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[covered]

    if shading:
        normal = np.einsum("nk,nkd->nd", bary, vertex_normals(frame, tri)[corners])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
        towards_light = np.asarray(light, dtype=np.float64) / np.linalg.norm(light)
        lambert = np.clip(normal @ towards_light, 0, 1)
        colour = colour * (ambient + (1 - ambient) * lambert)[:, None].astype(np.float32)

    out = np.full((size, size, 3), background, dtype=np.uint8)
    out[covered] = (np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


def turntable(texture, landmarks, yaws=range(-75, 76, 15), pitch=0.0, size=256, **kw) -> list:
    """The fitted face re-posed at each absolute yaw (degrees, + = towards the image's right) and rendered.

    Every frame shares one framing (the union of the posed meshes' boxes), so the head keeps its size.
    """
    meshes = [reposed_mesh(landmarks, yaw, pitch) for yaw in yaws]
    boxes = [mesh_box(m) for m in meshes]
    box = (np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0))
    return [render(texture, m, size, box=box, **kw) for m in meshes]


def save_gif(frames, path, duration_ms=120):
    """Looping GIF that goes through the frames and back (ping-pong), 2n - 2 frames for n >= 2."""
    if not frames:
        raise ValueError("save_gif() needs at least one frame")
    sequence = list(frames) + list(frames[-2:0:-1])
    images = [Image.fromarray(f) for f in sequence]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0, optimize=False)


def views_strip(frames, gap=4, background=255) -> np.ndarray:
    """Equally tall frames side by side, separated by `gap` background pixels."""
    if not frames:
        raise ValueError("views_strip() needs at least one frame")
    height = frames[0].shape[0]
    if any(f.shape[0] != height for f in frames):
        raise ValueError(f"views_strip() needs frames of one height, got {[f.shape[0] for f in frames]}")
    spacer = np.full((height, gap, 3), background, dtype=np.uint8)
    tiles = [t for f in frames for t in (spacer, f)][1:]
    return np.concatenate(tiles, axis=1)


def gif_yaws(yaws) -> list:
    """From the smallest to the largest of `yaws` in GIF_STEP degree steps, both ends included."""
    lo, hi = min(yaws), max(yaws)
    return [*np.arange(lo, hi, GIF_STEP).tolist(), hi]


def face_crop(image, landmarks, size) -> np.ndarray:
    """A square crop of the photo around the fitted mesh, white beyond the photo's edges."""
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    k = size / (CROP_MARGIN * float((hi - lo).max()))
    cx, cy = (lo + hi) / 2
    affine = np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]])
    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))
