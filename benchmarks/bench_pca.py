"""Masked PCA against the original study's linear autoencoder ("PCA" trained by Adam), side by side.

    python benchmarks/bench_pca.py DATASET [--k 64] [--train 2000] [--val 100] [--ae-epochs 300]

Both are fitted on the same training maps and scored on the same held-out validation cases of the
protocol, and each is timed to its best validation hole-PSNR: the masked PCA is refitted with growing EM
iteration budgets (--pca-iters), the linear autoencoder is scored every --every epochs (time spent scoring
excluded). Prints every PCA budget, both times to best, both scores and the speed-up.
"""
import argparse
import time

import torch

from uvlib.data.dataset import open_dataset
from uvlib.models.autoencoder import LinearAutoencoder
from uvlib.models.pca import MaskedPCA
from uvlib.protocol.cases import load_benchmark, score
from uvlib.train.autoencoder import fit_autoencoder


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="a prepared dataset folder (e.g. from `uvlib prep ../shared/data/celeba-dev`)")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--train", type=int, default=2000, help="training maps (0 = all)")
    ap.add_argument("--val", type=int, default=100, help="validation maps (5 hole cases each)")
    ap.add_argument("--ae-epochs", type=int, default=300)
    ap.add_argument("--every", type=int, default=10, help="epochs between validation scores of the autoencoder")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pca-iters", default="2,3,5,8,12,20,35,60,100", help="EM iteration budgets to try")
    args = ap.parse_args()

    ds = open_dataset(args.dataset)
    uv, observed, _ = ds.load("train", limit=args.train or None)
    atlas = ds.atlas()
    val = load_benchmark(ds, "val", seed=args.seed, limit=args.val, progress=False)
    print(f"{len(uv)} training maps {ds.uv_size}x{ds.uv_size}, {len(val)} validation cases, k={args.k}, "
          f"{torch.get_num_threads()} threads")

    pca_runs = []
    for budget in (int(b) for b in args.pca_iters.split(",")):
        start = time.perf_counter()
        pca = MaskedPCA(args.k, max_iter=budget, seed=args.seed).fit(uv, observed, atlas, progress=False)
        seconds = time.perf_counter() - start
        psnr = score(pca.complete, val, progress=False)[0]["overall"]["psnr"]
        pca_runs.append({"iters": len(pca.history), "seconds": seconds, "psnr": psnr})
        print(f"masked PCA {len(pca.history):4d} EM iterations: fit {seconds:7.1f} s, val hole-PSNR {psnr:.2f} dB")
    pca_best = max(pca_runs, key=lambda r: r["psnr"])

    torch.manual_seed(args.seed)
    model = LinearAutoencoder(atlas, args.k)
    best = {"psnr": -1.0, "epoch": 0, "seconds": 0.0}
    trained = {"seconds": 0.0}

    def on_epoch(epoch, model, row):
        trained["seconds"] += row["seconds"]
        if epoch % args.every == 0 or epoch == args.ae_epochs:
            psnr = score(model, val, progress=False)[0]["overall"]["psnr"]
            if psnr > best["psnr"]:
                best.update(psnr=psnr, epoch=epoch, seconds=trained["seconds"])

    fit_autoencoder(model, uv, observed, epochs=args.ae_epochs, lr=args.lr, seed=args.seed, on_epoch=on_epoch,
                    progress=False)

    print(f"masked PCA          : fit {pca_best['seconds']:8.1f} s to its best ({pca_best['iters']} EM iterations), "
          f"val hole-PSNR {pca_best['psnr']:.2f} dB")
    print(f"linear autoencoder  : fit {best['seconds']:8.1f} s to its best epoch {best['epoch']} "
          f"of {args.ae_epochs}, val hole-PSNR {best['psnr']:.2f} dB")
    print(f"speed-up            : {best['seconds'] / pca_best['seconds']:8.1f}x, hole-PSNR difference "
          f"{pca_best['psnr'] - best['psnr']:+.2f} dB (PCA minus autoencoder)")
    plateau = next(r for r in pca_runs if r["psnr"] >= pca_best["psnr"] - 0.1)
    print(f"masked PCA within 0.1 dB of its best after {plateau['iters']} EM iterations, {plateau['seconds']:.1f} s: "
          f"{best['seconds'] / plateau['seconds']:.1f}x faster than the autoencoder to its best")
    equal = next((r for r in pca_runs if r["psnr"] >= best["psnr"]), None)
    if equal:
        print(f"masked PCA reaches the autoencoder's best ({best['psnr']:.2f} dB) after {equal['iters']} EM iterations, "
              f"{equal['seconds']:.1f} s: {best['seconds'] / equal['seconds']:.1f}x faster")


if __name__ == "__main__":
    main()
