"""Loading an epoch of maps: PNG decoding (the former Dataset.load) against the uint8 shards, side by side.

    python benchmarks/bench_shards.py [--root /work/bench-data] [--maps 50000] [--size 256] [--old-maps 5000]
                                      [--batch 256] [--seed 0]

Builds once, under --root (outside the repository: 50,000 maps at 256 x 256 take about 3 GB of PNGs and 13 GB
of shards), a synthetic dataset folder in the prepared format: --maps random smooth textures, each with a
visibility mask (a turned face's hidden side cut off), all in the train split, written as stage 00 writes them
(PNG, compression level 1); then finalize() writes index.csv and the shards (timed). Each reader then runs in a
fresh process that reports its own peak resident memory (ru_maxrss):

    old     the former Dataset.load: every PNG of the split decoded and stacked, then float tensors for all of
            them at once; on the first --old-maps maps only, since the whole split needs more memory than a
            small machine has (the line after the table says how much)
    load    today's Dataset.load of the same maps: the shards' rows read and made float tensors
    epoch   an epoch over every map of the split from the shards, in seeded random batches of --batch, each
            made float tensors (N,3,S,S) and (N,1,S,S) as a training loop would
    epoch8  the same epoch, each batch left uint8 (N,3,S,S) tensors, for a loop that moves bytes to its device and
            converts there
    masks   the visibility masks of the whole split alone (what the hole bank and the test cases read)
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from uvlib.data.dataset import FORMAT, VERSION, finalize, open_dataset
from uvlib.geometry.mesh import uv_atlas

READERS = ("old", "load", "epoch", "epoch8", "masks")


def synthetic_map(rng, atlas):
    """A smooth random texture over the atlas and the visibility of a face turned by a random amount."""
    size = atlas.shape[0]
    coarse = rng.random((6, 6, 3), dtype=np.float32)
    texture = (cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR) * 255).astype(np.uint8)
    turn = rng.uniform(-0.8, 0.8)
    across = np.linspace(-1, 1, size)[None, :] * np.sign(turn)
    visible = atlas & (across < 1 - abs(turn))
    return texture * visible[..., None], visible


def build_dataset(root: Path, n: int, size: int, seed: int) -> Path:
    """The synthetic dataset folder (reused when a finished one is there)."""
    if (root / "index.csv").is_file() and len(open_dataset(root).rows) == n:
        print(f"reusing {root}")
        return root
    from tqdm.auto import tqdm
    for sub in ("uv", "vis"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    atlas = uv_atlas(size).mask
    Image.fromarray(atlas.astype(np.uint8) * 255).save(root / "atlas.png")
    (root / "dataset.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, "uv_size": size,
                                                   "method": "warp", "split_seed": seed, "groups": "photo",
                                                   "source": "synthetic"}))
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with (root / "manifest-0-of-1.jsonl").open("w") as manifest:
        for k in tqdm(range(n), desc="synthetic PNGs", unit="map", mininterval=10):
            key = f"m{k:06d}.jpg"
            texture, visible = synthetic_map(rng, atlas)
            Image.fromarray(texture).save(root / "uv" / f"{key}_0.png", compress_level=1)
            Image.fromarray(visible.astype(np.uint8) * 255).save(root / "vis" / f"{key}_0.png", compress_level=1)
            face = {"id": f"{key}_0", "face": 0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0,
                    "visible_fraction": round(float(visible.mean()), 4), "occluded_fraction": 0.0,
                    "hand_fraction": 0.0, "under_turn_fraction": 0.0, "score": 1.0,
                    "head_yaw": None}
            manifest.write(json.dumps({"key": key, "path": key, "split": "train", "group": "", "faces": [face],
                                       "status": "ok", "reason": ""}) + "\n")
    print(f"wrote {n} synthetic maps as PNGs in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    finalize(root, progress=True)
    print(f"finalize (index.csv and the uint8 shards, once per dataset change): {time.perf_counter() - start:.0f} s")
    return root


def old_load(ds, split, limit):
    """Dataset.load as it was before the shards: decode every PNG, stack, convert the whole split at once."""
    rows = ds.split_rows(split)[:limit]
    uv = np.stack([np.asarray(Image.open(ds.root / "uv" / f"{r['id']}.png")) for r in rows])
    vis = np.stack([np.asarray(Image.open(ds.root / "vis" / f"{r['id']}.png")) for r in rows])
    observed = torch.from_numpy(vis > 127).float().unsqueeze(1)
    uv = torch.from_numpy(uv).permute(0, 3, 1, 2).float().div_(255).mul_(observed)
    return uv, observed


def run_reader(reader, root, old_maps, batch, seed):
    """In a fresh process: read as `reader` says; returns maps read and seconds."""
    ds = open_dataset(root)
    start = time.perf_counter()                   # the shards' freshness check (ids, file stamps) is timed too
    if reader == "old":
        n = len(old_load(ds, "train", old_maps)[0])
    elif reader == "load":
        n = len(ds.load("train", limit=old_maps)[0])
    elif reader == "masks":
        n = len(ds.load_visible("train"))
    else:
        maps = ds.maps("train")
        order = np.random.default_rng(seed).permutation(len(maps))
        n = 0
        for first in range(0, len(order), batch):
            uv, observed = maps.tensors(order[first:first + batch], torch.uint8 if reader == "epoch8" else torch.float32)
            n += len(uv)
    return n, time.perf_counter() - start


def child(args):
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n, seconds = run_reader(args.child, Path(args.root_dataset), args.old_maps, args.batch, args.seed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"maps": n, "seconds": seconds, "peak_rss": peak, "start_rss": rss_start}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="/work/bench-data", help="where the synthetic dataset is written")
    ap.add_argument("--maps", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=256, help="UV size: 64, 128, 256, 512 or 1024")
    ap.add_argument("--old-maps", type=int, default=5_000, help="maps the old and new Dataset.load read")
    ap.add_argument("--batch", type=int, default=256, help="maps per batch of the epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", choices=READERS, help=argparse.SUPPRESS)
    ap.add_argument("--root-dataset", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    root = build_dataset(Path(args.root) / f"synthetic-{args.maps}x{args.size}", args.maps, args.size, args.seed)
    print(f"{args.maps} maps {args.size}x{args.size}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, dataset {root}")
    results = {}
    for reader in READERS:
        out = subprocess.run([sys.executable, __file__, "--child", reader, "--root-dataset", str(root),
                              "--old-maps", str(args.old_maps), "--batch", str(args.batch), "--seed", str(args.seed)],
                             check=True, capture_output=True, text=True)
        results[reader] = json.loads(out.stdout.strip().splitlines()[-1])
    gib = 2.0**30
    print(f"{'reader':8s} {'maps':>7s} {'seconds':>8s} {'maps/s':>8s} {'peak RSS':>10s} {'above start':>12s}")
    for reader, r in results.items():
        print(f"{reader:8s} {r['maps']:7d} {r['seconds']:8.1f} {r['maps'] / r['seconds']:8.0f} "
              f"{r['peak_rss'] / gib:8.2f} GiB {(r['peak_rss'] - r['start_rss']) / gib:8.2f} GiB")
    old = results["old"]
    per_map = (old["peak_rss"] - old["start_rss"]) / old["maps"]
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"old path on all {args.maps} maps: ~{per_map * args.maps / gib:.1f} GiB ({per_map / 2**20:.2f} MiB a map "
          f"measured; its float tensors alone are {args.maps * 16 * args.size**2 / gib:.1f} GiB), this machine has "
          f"{total / gib:.1f} GiB; at its measured speed an epoch would take {args.maps / old['maps'] * old['seconds']:.0f} s")


if __name__ == "__main__":
    main()
