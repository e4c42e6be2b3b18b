"""Contact sheets for checking fits by eye: each tile is the photo with its fitted mesh's outline and yaw, beside
its unwrapped UV map (unseen texels black). Research data stays out of the repository: write sheets under runs/.

    python scripts/contact_sheets.py DATASET OUT_DIR [--match profile/] [--n 100] [--seed 0] [--per-sheet 20]
"""
import argparse
import csv
import random
from pathlib import Path

import cv2
import numpy as np

from uvlib.data.photo import read_photo
from uvlib.geometry.mesh import face_model

TILE = 192


def tile(dataset: Path, row: dict) -> np.ndarray:
    photo = read_photo(row["photo"]).copy()
    mesh = np.load(dataset / "mesh" / f"{row['id']}.npy")
    scale = TILE / max(photo.shape[:2])
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    edges = face_model().tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    for a, b in edges[::3]:
        cv2.line(photo, tuple(int(v) for v in mesh[a, :2] * scale), tuple(int(v) for v in mesh[b, :2] * scale),
                 (0, 255, 0), 1)
    canvas = np.zeros((TILE, 2 * TILE, 3), np.uint8)
    canvas[: photo.shape[0], : photo.shape[1]] = photo
    uv = cv2.imread(str(dataset / "uv" / f"{row['id']}.png"))[..., ::-1]
    vis = cv2.imread(str(dataset / "vis" / f"{row['id']}.png"), cv2.IMREAD_GRAYSCALE) > 0
    canvas[:, TILE:] = cv2.resize(uv * vis[..., None], (TILE, TILE), interpolation=cv2.INTER_NEAREST)
    label = f"{Path(row['photo']).name} yaw {float(row['yaw']):.0f}"
    if row.get("head_yaw"):
        label += f" body {float(row['head_yaw']):.0f}"
    cv2.putText(canvas, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
    return canvas


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--match", default="", help="keep faces whose photo path contains this")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-sheet", type=int, default=20)
    args = ap.parse_args()
    with (args.dataset / "index.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if args.match in r["photo"]]
    rows = random.Random(args.seed).sample(rows, min(args.n, len(rows)))
    args.out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(rows), args.per_sheet):
        tiles = [tile(args.dataset, r) for r in rows[start: start + args.per_sheet]]
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4)
        sheet = np.vstack([np.hstack(tiles[i: i + 4]) for i in range(0, len(tiles), 4)])
        cv2.imwrite(str(args.out / f"sheet-{start // args.per_sheet:02d}.png"), sheet[..., ::-1])
        print(args.out / f"sheet-{start // args.per_sheet:02d}.png")


if __name__ == "__main__":
    main()
