"""Completed faces back in 3D for the results notebook: each stage's best model on chosen test faces,
rendered on the face's own fitted mesh at new yaws, plus one animated turntable per face."""
from pathlib import Path

import cv2
import matplotlib.pyplot as plt

from uvlib.data.dataset import Dataset
from uvlib.data.photo import read_photo
from uvlib.geometry.render import face_crop, gif_yaws, save_gif, turntable, views_strip
from uvlib.models.registry import load_model
from uvlib.protocol.figures import complete_uv

YAWS = (-75, -45, -15, 15, 45, 75)


def best_stage_models(run_dir, metrics_by_stage: dict) -> dict:
    """{"stage/method": model file} for each stage's best-scoring method (overall hole PSNR) that has one."""
    chosen = {}
    for stage, metrics in metrics_by_stage.items():
        ranked = sorted(metrics["methods"].items(), key=lambda kv: -kv[1]["scores"]["overall"]["psnr"])
        for method, _ in ranked:
            path = Path(run_dir) / stage / f"model-{method}.pt"
            if path.is_file():
                chosen[f"{stage}/{method}"] = path
                break
    return chosen


def turntable_figure(ds: Dataset, row: dict, models: dict, out_dir, yaws=YAWS, size=160):
    """Rows: one per model: photo crop | incomplete UV | completed UV | the face turned to `yaws`.

    Saves turntables-ID.png and, with the first model, turntable-ID.gif in out_dir."""
    out_dir = Path(out_dir)
    image, landmarks = read_photo(row["photo"]), ds.mesh(row["id"])
    texture, visible = ds.item(row["id"])
    crop = face_crop(image, landmarks, size)
    strips, first = [], None
    for label, path in models.items():
        fn, _ = load_model(path)
        completed = complete_uv(fn, texture, visible, "cpu")
        first = completed if first is None else first
        tiles = [_resized(t, size) for t in (texture, completed)]
        strips.append((label, views_strip([crop, *tiles, *turntable(completed, landmarks, yaws, size=size)])))
    fig, axes = plt.subplots(len(strips), 1, figsize=(14, 2.0 * len(strips)), squeeze=False)
    for ax, (label, strip) in zip(axes[:, 0], strips):
        ax.imshow(strip)
        ax.set_title(label, fontsize=9, loc="left")
        ax.axis("off")
    fig.savefig(out_dir / f"turntables-{row['id']}.png", dpi=100, bbox_inches="tight")
    save_gif(turntable(first, landmarks, gif_yaws(yaws), size=256), out_dir / f"turntable-{row['id']}.gif")
    return fig


def _resized(texture, size):
    return cv2.resize(texture, (size, size), interpolation=cv2.INTER_NEAREST)
