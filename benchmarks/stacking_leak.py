"""How much better earlier stages complete the maps they were fitted on: the leak stacked stages must avoid.

    python benchmarks/stacking_leak.py RUN_DIR [--k 32] [--folds 5] [--train 0] [--pconv pconv] [--cascade pca_pconv]

Scores hole cases built like the test cases (one pose hole per yaw bin and one borrowed hole per map) on the
training maps, the validation split and the test split, for: stage 01's masked PCA-k (fitted on all training
maps, so in-sample on train: what stage 04 used to train on), the K-fold cross-fitted PCAs (each training map
completed by the PCA fitted without its fold: what stage 04 trains on now), and, when present, stage 03's PConv
and stage 04's cascade (in-sample on train: what 07 and 06 used to train on; they now train on val).
Prints the mean hole-PSNR of every (model, split).
"""
import argparse

import numpy as np
import torch

from uvlib.data.dataset import open_dataset
from uvlib.models.cascade import load_pca
from uvlib.models.registry import load_model
from uvlib.protocol.cases import Benchmark, TestCases, load_benchmark, score
from uvlib.study.params import dataset_path, project_path
from uvlib.train.crossfit import CrossFittedPCA


def fold_psnr(cross_fit: CrossFittedPCA, bench: Benchmark) -> float:
    """Mean hole-PSNR of the training cases, each completed by the PCA that never saw its map."""
    psnr = []
    for f, pca in enumerate(cross_fit.pcas):
        keep = cross_fit.fold.numpy()[bench.cases.image] == f
        c = bench.cases
        cases = TestCases(c.image[keep], c.hole[keep], c.kind[keep], c.hole_yaw[keep])
        records = score(pca.complete, Benchmark(bench.uv, bench.observed, bench.atlas, cases, bench.rows),
                        progress=False)[1]
        psnr += [r["psnr"] for r in records]
    return float(np.mean(psnr))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a run folder with stages 00 and 01 done (03 and 04 optional)")
    ap.add_argument("--k", type=int, default=32, help="stage 01's masked PCA to use")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--train", type=int, default=0, help="first N training maps, as the run's train_limit (0 = all)")
    ap.add_argument("--pconv", default="pconv", help="stage 03 model name")
    ap.add_argument("--cascade", default="pca_pconv", help="stage 04 model name")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    run = project_path(args.run_dir)
    ds = open_dataset(dataset_path(args.run_dir))
    benches = {"train": load_benchmark(ds, "train", args.seed, limit=args.train or None, progress=False),
               "val": load_benchmark(ds, "val", args.seed, progress=False),
               "test": load_benchmark(ds, "test", args.seed, progress=False)}
    pca = load_pca(torch.load(run / "01_pca" / f"model-masked_pca_k{args.k}.pt", weights_only=True)["state"], "cpu")
    train = benches["train"]
    cross_fit = CrossFittedPCA(pca, train.uv, train.observed, train.rows, args.folds, args.seed).fit(progress=False)
    models = {f"masked_pca_k{args.k} (all training maps)": pca.complete}
    for stage, name in (("03_pconv", args.pconv), ("04_pca_pconv_cascade", args.cascade)):
        if (run / stage / f"model-{name}.pt").is_file():
            models[f"{stage} {name}"] = load_model(run / stage / f"model-{name}.pt")[0]
    print(f"{run}: {len(train.uv)} training maps, {' / '.join(f'{s} {len(b)}' for s, b in benches.items())} "
          f"hole cases, ridge {pca.ridge():.4g}")
    print(f"| model | {' | '.join(benches)} |\n|---|{'---|' * len(benches)}")
    for label, fn in models.items():
        psnr = [score(fn, b, progress=False)[0]["overall"]["psnr"] for b in benches.values()]
        print(f"| {label} | {' | '.join(f'{p:.2f}' for p in psnr)} |")
    print(f"| masked_pca_k{args.k}, {cross_fit.folds}-fold cross-fitted | {fold_psnr(cross_fit, train):.2f} | | |")


if __name__ == "__main__":
    main()
