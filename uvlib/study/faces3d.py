"""Completed faces back in 3D for the results notebook: each stage's best model on chosen test faces,
rendered on the face's own fitted mesh at new yaws, plus one animated turntable per face; and the most turned
test faces completed by every method, side by side and in 3D."""
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import torch

from uvlib.data.dataset import Dataset
from uvlib.data.photo import read_photo
from uvlib.geometry.render import face_crop, gif_yaws, save_gif, turntable, views_strip
from uvlib.models.registry import load_model
from uvlib.protocol.crosspose import CrossPose
from uvlib.protocol.figures import complete_uv, labelled_grid, save, to_image

YAWS = (-75, -45, -15, 15, 45, 75)
TURNED_FACES = 5                        # most turned test faces shown completed by every method
TURNED_VIEW_YAWS = (-60, -30, 0, 30, 60)
INPUT, TRUTH = "input", "truth: frontal ref."


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
    fig = _strips_figure(strips, out_dir / f"turntables-{row['id']}.png")
    save_gif(turntable(first, landmarks, gif_yaws(yaws), size=256), out_dir / f"turntable-{row['id']}.gif")
    return fig


def most_turned(rows, n=TURNED_FACES) -> list:
    """The n rows with the largest |yaw| (each face's own fitted head yaw), most turned first, ties by id; all
    rows, so ordered, when there are fewer."""
    if n < 1:
        raise ValueError(f"the number of turned faces to show must be at least 1, got {n}")
    return sorted(rows, key=lambda r: (-abs(float(r["yaw"])), r["id"]))[:n]


def completed_faces(ds: Dataset, rows, methods: dict, device="cpu", references: CrossPose = None) -> dict:
    """{column: one (S,S,3) uint8 map per row}: the input (the face's own seen texels: its hole is its real
    self-occlusion), each method's completion (seen texels kept), and, when `references` pairs any row, the
    truth column (reference_truth; None for rows without a pair)."""
    items = [ds.item(row["id"]) for row in rows]
    columns = {INPUT: [texture for texture, _ in items]}
    for name, fn in methods.items():
        columns[name] = [complete_uv(fn, texture, visible, device) for texture, visible in items]
    truth = reference_truth(references, [row["id"] for row in rows]) if references is not None else {}
    if truth:
        columns[TRUTH] = [truth.get(row["id"]) for row in rows]
    return columns


@torch.no_grad()
def reference_truth(xp: CrossPose, ids) -> dict:
    """{turned face id: its map with its cross-pose reference (the group's most frontal face, in the turned
    photo's colours) on the texels the reference saw and it hid} for the ids that are turned faces of a pair:
    the nearest thing to the truth of a real hole."""
    index = {p["turned"]: i for i, p in enumerate(xp.pairs)}
    found = [index[i] for i in ids if i in index]
    if not found:
        return {}
    uv, known, target, observed, hole = xp.batch(found)
    shown = uv * known + target * observed * hole * torch.from_numpy(xp.atlas).float()
    return {xp.pairs[i]["turned"]: to_image(image) for i, image in zip(found, shown)}


def turned_faces_figures(ds: Dataset, rows, methods: dict, out_dir, references: CrossPose = None,
                         n=TURNED_FACES, yaws=TURNED_VIEW_YAWS, size=96, device="cpu"):
    """The n most turned of `rows` completed by every method: turned_faces.png (a row per face: input, each
    method, the truth where a reference exists) and per face turned_faces_3d-ID.png (a row per column of the
    grid: that map on the face's own fitted mesh turned to `yaws`, rendered at size x size) in out_dir.

    Returns (the chosen rows, the grid figure, the 3D figures)."""
    out_dir = Path(out_dir)
    chosen = most_turned(rows, n)
    columns = completed_faces(ds, chosen, methods, device, references)
    labels = [f"{row['id']}\nyaw {float(row['yaw']):+.0f}" for row in chosen]
    grid = labelled_grid(labels, list(columns), [[columns[c][k] for c in columns] for k in range(len(chosen))],
                         out_dir / "turned_faces.png")
    views = []
    for k, row in enumerate(chosen):
        landmarks = ds.mesh(row["id"])
        strips = [(name, views_strip(turntable(maps[k], landmarks, yaws, size=size)))
                  for name, maps in columns.items() if maps[k] is not None]
        title = f"{row['id']} (yaw {float(row['yaw']):+.0f}) at yaw {', '.join(f'{y:+g}' for y in yaws)}"
        views.append(_strips_figure(strips, out_dir / f"turned_faces_3d-{row['id']}.png", title,
                                    width=1.5 * len(yaws), row_height=1.8))
    return chosen, grid, views


def _strips_figure(strips, path, title=None, width=14, row_height=2.0):
    """One titled row per (label, image strip), saved to `path`."""
    fig, axes = plt.subplots(len(strips), 1, figsize=(width, row_height * len(strips)), squeeze=False,
                             layout="constrained")
    if title:
        fig.suptitle(title, fontsize=9)
    for ax, (label, strip) in zip(axes[:, 0], strips):
        ax.imshow(strip)
        ax.set_title(label, fontsize=9, loc="left")
        ax.axis("off")
    return save(fig, path)


def _resized(texture, size):
    return cv2.resize(texture, (size, size), interpolation=cv2.INTER_NEAREST)
