"""Command line: `uvlib prep ...` (also `python -m uvlib prep ...`)."""
import argparse
import sys


def _prep(args):
    from .prep import PrepConfig, parse_shard, prepare
    from .sources import grouping, resolve_source
    groups = dict(mafl=args.mafl, group_by=args.group_by, identities=args.identities)
    photos = resolve_source(args.source, **groups)
    cfg = PrepConfig(uv_size=args.size, method=args.method, shard=parse_shard(args.shard),
                     workers=args.workers, split_seed=args.seed, groups=grouping(args.source, **groups))
    cfg.validate()
    summary = prepare(photos, args.out, cfg, source_name=str(args.source), progress=not args.quiet)
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary["reasons"].items())) or "none"
    print(f"{summary['ok']} ok, {summary['failed']} failed, {summary['missing']} missing, "
          f"{summary['skipped_done']} already done; reasons: {reasons}")
    if "dataset" in summary:
        d = summary["dataset"]
        print(f"dataset {args.out}: {d['photos']} photos, {d['faces']} faces, splits {d['faces_per_split']}, "
              f"groups {d['groups_per_split']}")


def _baselines(args):
    from .baselines import make_baselines
    from .dataset import open_dataset
    from .evaluation import load_benchmark
    from .report import evaluate_methods, table_rows, write_table
    from .runs import stage_dir
    ds = open_dataset(args.dataset)
    bench = load_benchmark(ds, args.split, seed=args.seed, limit=args.limit, progress=not args.quiet)
    uv, observed, _ = ds.load("train")
    out = stage_dir(args.out, "")
    methods = make_baselines(uv, observed, ds.atlas())
    results = evaluate_methods(methods, bench, out, "baselines", args.seed,
                               {"dataset": str(ds.root), "split": args.split}, progress=not args.quiet)
    print(write_table(table_rows({"baselines": {"methods": results}}), out))


def _evaluate(args):
    from pathlib import Path

    from .dataset import open_dataset
    from .evaluation import load_benchmark, score
    from .models.registry import load_stage_models
    from .report import markdown_table, table_rows
    from .runs import write_metrics
    stage = Path(args.stage_dir)
    models = load_stage_models(stage)
    ds = open_dataset(args.dataset)
    bench = load_benchmark(ds, args.split, seed=args.seed, limit=args.limit, progress=not args.quiet)
    methods = {name: {"params": {}, "scores": score(fn, bench, progress=not args.quiet, desc=f"scoring {name}")[0]}
               for name, fn in models.items()}
    out = stage / f"evaluate-{args.split}-seed{args.seed}"
    out.mkdir(exist_ok=True)
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
    p.add_argument("--group-by", default="photo", choices=("photo", "folder", "prefix"),
                   help="what keeps photos together in one split: photo (default), folder (a folder per person), "
                        "prefix (the file name up to its first '_', e.g. CFP's III_KK.jpg)")
    p.add_argument("--identities", help="CelebA identity_CelebA.txt (FILE ID per line): split by person")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_prep)

    p = sub.add_parser("baselines", help="score mean face, symmetry, Telea and Navier-Stokes on the protocol")
    p.add_argument("dataset", help="a prepared dataset folder")
    p.add_argument("out", help="folder for metrics.json, per-case scores and results.md")
    _protocol_args(p)
    p.set_defaults(run=_baselines)

    p = sub.add_parser("evaluate", help="score every model-*.pt of a stage folder on the protocol")
    p.add_argument("stage_dir", help="a trained stage folder, e.g. runs/quick/03_pconv")
    p.add_argument("dataset", help="a prepared dataset folder")
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
    except (ValueError, FileNotFoundError) as e:
        print(f"uvlib {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
