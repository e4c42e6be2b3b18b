"""Command line: `uvlib prep ...` (also `python -m uvlib prep ...`).

Bad arguments fail before any work with one line (`uvlib CMD: error: ...`, exit status 2).
"""
import argparse
import sys
from pathlib import Path

from .checks import input_folder, output_folder, positive_count


def _prep(args):
    from .prep import PrepConfig, parse_shard, prepare
    from .sources import check_unique_keys, resolve_source
    cfg = PrepConfig(uv_size=args.size, method=args.method, shard=parse_shard(args.shard),
                     workers=args.workers, split_seed=args.seed)
    cfg.validate()
    positive_count(args.limit, "--limit")
    if str(args.source) != "demo":
        input_folder(args.source, "a folder of photos (any layout), 'demo', or img_align_celeba with --mafl")
    photos = resolve_source(args.source, mafl=args.mafl)
    if not photos:
        raise ValueError(f"{args.source} holds no photos; pass a folder of photos (any layout)")
    check_unique_keys(photos)
    if args.limit:
        photos = sorted(photos, key=lambda p: p.key)[: args.limit]
    output_folder(args.out, "output folder")
    summary = prepare(photos, args.out, cfg, source_name=str(args.source), progress=not args.quiet,
                      retry_failed=args.retry_failed, verbose=args.verbose)
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary["reasons"].items())) or "none"
    again = "".join(f", {summary[k]} {what}" for k, what in (("redone", "redone (damaged files)"),
                                                            ("retried", "retried")) if summary[k])
    print(f"{summary['ok']} ok, {summary['failed']} failed, {summary['missing']} missing, "
          f"{summary['skipped_done']} already done{again}; reasons: {reasons}")
    status = summary["dataset"]["status"] if "dataset" in summary else summary
    failed = status.get("failed", 0) + status.get("missing", 0)
    if "dataset" in summary:
        d = summary["dataset"]
        print(f"dataset {args.out}: {d['photos']} photos, {d['faces']} faces, splits {d['faces_per_split']}")
    if failed:
        print(f"{failed} photos failed or are missing (reasons above and in manifest-*.jsonl); "
              f"add --retry-failed to try them again")


def _baselines(args):
    from .baselines import make_baselines
    from .dataset import open_dataset
    from .evaluation import load_benchmark
    from .report import evaluate_methods, table_rows, write_table
    positive_count(args.limit, "--limit")
    ds = open_dataset(input_folder(args.dataset, "a prepared dataset folder"))
    ds.split_rows(args.split)
    out = output_folder(args.out, "output folder")
    bench = load_benchmark(ds, args.split, seed=args.seed, limit=args.limit, progress=not args.quiet)
    uv, observed, _ = ds.load("train")
    methods = make_baselines(uv, observed, ds.atlas())
    results = evaluate_methods(methods, bench, out, "baselines", args.seed,
                               {"dataset": str(ds.root), "split": args.split}, progress=not args.quiet)
    print(write_table(table_rows({"baselines": {"methods": results}}), out))


def _evaluate(args):
    from .dataset import open_dataset
    from .evaluation import load_benchmark, score
    from .models.registry import load_model, model_files
    from .report import markdown_table, table_rows
    from .runs import write_metrics
    positive_count(args.limit, "--limit")
    target = Path(args.stage_dir)
    stage = target.parent if target.is_file() else input_folder(target, "a trained stage folder or a model-*.pt file")
    files = [target] if target.is_file() else model_files(stage)
    if not files:
        raise FileNotFoundError(f"{stage} holds no model-*.pt; run its stage notebook first")
    ds = open_dataset(input_folder(args.dataset, "a prepared dataset folder"))
    ds.split_rows(args.split)
    models = {}
    for file in files:
        fn, info = load_model(file)
        if info["uv_size"] != ds.uv_size:
            m, d = info["uv_size"], ds.uv_size
            raise ValueError(f"model {file} is {m}x{m}, dataset is {d}x{d}: prepare at {m} or pick another model")
        models[info["name"]] = fn
    out = output_folder(args.out or stage / f"evaluate-{args.split}-seed{args.seed}", "--out")
    bench = load_benchmark(ds, args.split, seed=args.seed, limit=args.limit, progress=not args.quiet)
    methods = {name: {"params": {}, "scores": score(fn, bench, progress=not args.quiet, desc=f"scoring {name}")[0]}
               for name, fn in models.items()}
    write_metrics(out, stage.name, methods, args.seed, {"dataset": str(ds.root), "split": args.split, "limit": args.limit})
    print(markdown_table(table_rows({stage.name: {"methods": methods}})))
    print(f"written {out / 'metrics.json'}")


def build_parser():
    parser = argparse.ArgumentParser(prog="uvlib", description="Complete incomplete facial UV maps.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prep", help="photos -> incomplete UV maps dataset (stage 00)")
    p.add_argument("source", help="a folder of photos (any layout), 'demo', or img_align_celeba with --mafl")
    p.add_argument("out", help="dataset folder to create or resume")
    p.add_argument("--size", type=int, default=128, help="UV map size: 64, 128 or 256 (default 128)")
    p.add_argument("--method", default="warp", help="unwrap method: warp (default) or griddata")
    p.add_argument("--shard", default="0/1", help="process shard i of n, e.g. 0/4 (default 0/1)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU core)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    p.add_argument("--mafl", help="folder with MAFL training.txt/testing.txt: SOURCE is img_align_celeba")
    p.add_argument("--limit", type=int, default=None, help="prepare only the first N photos (by id)")
    p.add_argument("--retry-failed", action="store_true", help="try the photos that failed or were missing again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="show MediaPipe's own log lines (silenced by default)")
    p.set_defaults(run=_prep)

    p = sub.add_parser("baselines", help="score mean face, symmetry, Telea and Navier-Stokes on the protocol")
    p.add_argument("dataset", help="a prepared dataset folder")
    p.add_argument("out", help="folder for metrics.json, per-case scores and results.md")
    _protocol_args(p)
    p.set_defaults(run=_baselines)

    p = sub.add_parser("evaluate", help="score every model-*.pt of a stage folder on the protocol")
    p.add_argument("stage_dir", help="a trained stage folder, e.g. runs/quick/03_pconv, or one model-*.pt")
    p.add_argument("dataset", help="a prepared dataset folder")
    p.add_argument("--out", help="folder for metrics.json (default: STAGE_DIR/evaluate-SPLIT-seedN)")
    _protocol_args(p)
    p.set_defaults(run=_evaluate)

    from .complete import add_parser
    add_parser(sub)
    return parser


def _protocol_args(p):
    p.add_argument("--split", default="test", help="split to score (default test)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test cases (default 0)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N maps of the split")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as e:       # OSError: a write that failed (disk full, permissions), named
        print(f"uvlib {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
