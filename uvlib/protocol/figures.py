"""Figures shared by the notebooks; every figure is also saved as a PNG in its run folder."""
import csv
import textwrap
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


def labelled_grid(row_labels, column_labels, images, path, cell=1.2):
    """images[r][c] (maps as for to_image, or None: a blank cell) as one figure with a title per column and a
    label per row, saved to `path`; returns the figure."""
    fig, axes = plt.subplots(len(row_labels), len(column_labels), squeeze=False,
                             figsize=(cell * len(column_labels), cell * len(row_labels) + 0.4))
    for r, row in enumerate(images):
        for c, image in enumerate(row):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if image is None:
                ax.set_frame_on(False)
            else:
                ax.imshow(to_image(image))
        axes[r, 0].set_ylabel(_wrapped(row_labels[r], 20), fontsize=6)
    for c, column in enumerate(column_labels):
        axes[0, c].set_title(_wrapped(column.replace("/", "/ "), 18), fontsize=6)
    return save(fig, path)


def _wrapped(label: str, width: int) -> str:
    """A label broken into lines of at most `width` characters (long words split), its own line breaks kept."""
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) for line in label.splitlines())


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


def training_curves(logs: dict, path=None, keep_open=True):
    """One panel per training run {title: log.csv path}: a curve per logged loss against step (log scale when
    every value is positive). Saved to `path` when given; returns the figure (closed unless keep_open)."""
    fig, axes = plt.subplots(1, len(logs), figsize=(6 * len(logs), 3.6), squeeze=False)
    for ax, (title, log_path) in zip(axes[0], logs.items()):
        with open(log_path, newline="") as f:
            rows = list(csv.DictReader(f))
        positive = True
        for key in rows[0] if rows else ():
            if key == "step" or key.startswith("lr") or key == "images_per_s":
                continue
            points = [(int(r["step"]), float(r[key])) for r in rows if r[key] != ""]
            if points:
                positive &= min(v for _, v in points) > 0
                ax.plot(*zip(*points), label=key)
        if positive:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if path is not None:
        save(fig, path)
    if not keep_open:
        plt.close(fig)
    return fig


def epoch_curves(histories: dict, path):
    """Autoencoder training: the masked training MSE and the validation hole-PSNR per epoch, one line a model."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, history in histories.items():
        axes[0].semilogy([r["epoch"] for r in history], [r["loss"] for r in history], label=name)
        scored = [r for r in history if "val_psnr" in r]
        axes[1].plot([r["epoch"] for r in scored], [r["val_psnr"] for r in scored], marker="o", label=name)
    axes[0].set_xlabel("epoch"); axes[0].set_ylabel("masked MSE (train)"); axes[0].legend()
    axes[1].set_xlabel("epoch"); axes[1].set_ylabel("validation hole-PSNR (dB)"); axes[1].legend()
    return save(fig, path)


def pca_diagnostics(pcas: dict, ridge_selection: dict, path):
    """Stage 01: cumulative explained variance of the largest PCA, EM convergence of each, and the validation
    hole-PSNR over the ridge grid."""
    largest = pcas[max(pcas)]
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    ratio = largest.explained_variance_ratio_.numpy()
    axes[0].plot(np.arange(1, len(ratio) + 1), np.cumsum(ratio))
    axes[0].set_xlabel("components"); axes[0].set_ylabel("cumulative explained variance"); axes[0].grid(alpha=0.3)
    for k, pca in pcas.items():
        axes[1].semilogy([h["rel_change"] for h in pca.history], label=f"k={k}")
    axes[1].set_xlabel("EM iteration"); axes[1].set_ylabel("relative change of imputed texels"); axes[1].legend()
    for name, choice in ridge_selection.items():   # the chosen robust scale's line
        grid = [g for g in choice["grid"] if g.get("robust_scale") == choice.get("chosen_robust_scale")]
        scale = f", c={choice['chosen_robust_scale']:g}" if choice.get("chosen_robust_scale") else ""
        axes[2].semilogx([g["multiple"] for g in grid], [g.get("score", g["val_psnr"]) for g in grid], marker="o",
                         label=name + scale)
    both = any("crosspose_val_psnr" in g for choice in ridge_selection.values() for g in choice["grid"])
    axes[2].set_xlabel("ridge λ / noise variance σ²")
    axes[2].set_ylabel("mean of val hole-PSNR and val cross-pose PSNR (dB)" if both else "validation hole-PSNR (dB)")
    axes[2].legend()
    return save(fig, path)
