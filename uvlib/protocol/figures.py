"""Figures shared by the notebooks; every figure is also saved as a PNG in its run folder."""
from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from uvlib.geometry.mesh import face_model, uv_atlas
from uvlib.ops import composite


def to_image(uv) -> np.ndarray:
    """(3, S, S) tensor in [0, 1] or (S, S, 3) array -> (S, S, 3) uint8."""
    if isinstance(uv, torch.Tensor):
        uv = uv.detach().cpu().float().permute(1, 2, 0).numpy()
    uv = np.asarray(uv)
    if uv.dtype != np.uint8:
        uv = (np.clip(uv, 0, 1) * 255 + 0.5).astype(np.uint8)
    return uv


def grid(images, ncols=8, pad=2) -> np.ndarray:
    """Tile equally sized images (tensors (3,S,S) or arrays) into one uint8 image, white padding."""
    tiles = [to_image(im) for im in images]
    if not tiles:
        raise ValueError("grid() needs at least one image")
    h, w = tiles[0].shape[:2]
    nrows = (len(tiles) + ncols - 1) // ncols
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = t
    return out


def show_grid(images, path, ncols=8, title=None, scale=1.6):
    """Show a tiled grid and save it to `path`."""
    tiled = grid(images, ncols)
    fig, ax = plt.subplots(figsize=(scale * tiled.shape[1] / 100, scale * tiled.shape[0] / 100 + 0.4))
    ax.imshow(tiled)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return save(fig, path)


def draw_mesh(ax, image, landmarks, color="lime", lw=0.3):
    ax.imshow(image)
    ax.triplot(landmarks[:, 0], landmarks[:, 1], face_model().tri, color=color, lw=lw)
    ax.axis("off")


def save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def complete_uv(fn, texture, visible, device) -> np.ndarray:
    """The model's completion of an unwrapped face with its seen texels put back; (S,S,3) uint8, black
    outside the atlas."""
    atlas = torch.from_numpy(uv_atlas(visible.shape[0]).mask)
    known = (torch.from_numpy(visible) & atlas).float()[None, None]
    uv = torch.from_numpy(texture).permute(2, 0, 1).float().div(255)[None]
    with torch.no_grad():
        predicted = fn((uv * known).to(device), known.to(device)).float().cpu().clamp(0, 1)
    completed = composite(predicted, uv, known) * atlas
    return to_image(completed[0])
