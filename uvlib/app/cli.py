"""Command line: `uvlib prep|baselines|evaluate|crosspose|complete|train ...` (also `python -m uvlib ...`).

Bad arguments fail before any work with one line (`uvlib CMD: error: ...`, exit status 2).
"""
import argparse
import sys
from pathlib import Path

from uvlib.app.checks import input_folder, output_folder, positive_count


def _prep(args):
    from dataclasses import replace

    from uvlib.data.prep import PrepConfig, parse_shard, prepare
    from uvlib.data.sources import check_unique_keys, grouping, resolve_source
    cfg = PrepConfig(uv_size=args.size, method=args.method, shard=parse_shard(args.shard),
                     workers=args.workers, split_seed=args.seed, occluders=args.occluders,
                     mesh=args.mesh)
    cfg.validate()
    positive_count(args.limit, "--limit")
    if str(args.source) != "demo":
        input_folder(args.source, "a folder of photos (any layout), 'demo', or img_align_celeba with --mafl")
    groups = dict(mafl=args.mafl, group_by=args.group_by, identities=args.identities)
    photos = resolve_source(args.source, **groups)
    cfg = replace(cfg, groups=grouping(args.source, **groups))
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
        print(f"dataset {args.out}: {d['photos']} photos, {d['faces']} faces, splits {d['faces_per_split']}, "
              f"groups {d['groups_per_split']}")
    if failed:
        print(f"{failed} photos failed or are missing (reasons above and in manifest-*.jsonl); "
              f"add --retry-failed to try them again")


def _baselines(args):
    from uvlib.data.dataset import open_dataset
    from uvlib.protocol.baselines import make_baselines
    from uvlib.protocol.cases import load_benchmark
    from uvlib.protocol.report import evaluate_methods, table_rows, write_table
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
    from uvlib.data.dataset import open_dataset
    from uvlib.models.registry import load_model, model_budget, model_files
    from uvlib.protocol.cases import load_benchmark, score
    from uvlib.protocol.report import markdown_table, table_rows
    from uvlib.protocol.runs import write_metrics
    positive_count(args.limit, "--limit")
    target = Path(args.stage_dir)
    stage = target.parent if target.is_file() else input_folder(target, "a trained stage folder or a model-*.pt file")
    files = [target] if target.is_file() else model_files(stage)
    if not files:
        raise FileNotFoundError(f"{stage} holds no model-*.pt; run its stage notebook first")
    ds = open_dataset(input_folder(args.dataset, "a prepared dataset folder"))
    ds.split_rows(args.split)
    models, budgets = {}, {}
    for file in files:
        fn, info = load_model(file)
        if info["uv_size"] != ds.uv_size:
            m, d = info["uv_size"], ds.uv_size
            raise ValueError(f"model {file} is {m}x{m}, dataset is {d}x{d}: prepare at {m} or pick another model")
        models[info["name"]], budgets[info["name"]] = fn, model_budget(file)
    out = output_folder(args.out or stage / f"evaluate-{args.split}-seed{args.seed}", "--out")
    bench = load_benchmark(ds, args.split, seed=args.seed, limit=args.limit, progress=not args.quiet)
    methods = {name: {"params": {}, "scores": score(fn, bench, progress=not args.quiet, desc=f"scoring {name}")[0],
                      **({"budget": budgets[name]} if budgets[name] else {})} for name, fn in models.items()}
    write_metrics(out, stage.name, methods, args.seed, {"dataset": str(ds.root), "split": args.split, "limit": args.limit})
    print(markdown_table(table_rows({stage.name: {"methods": methods}})))
    print(f"written {out / 'metrics.json'}")


def _crosspose(args):
    from pathlib import Path

    from uvlib.data.dataset import open_dataset
    from uvlib.models.registry import load_models
    from uvlib.protocol.baselines import make_baselines
    from uvlib.protocol.crosspose import (build_pairs, check_unseen, evaluate_crosspose, showcase_figure,
                                         stage_records, write_table)
    from uvlib.train.loop import resolve_device
    ds = open_dataset(args.dataset)
    train = open_dataset(args.train_dataset) if args.train_dataset else ds
    if args.split == "all" and train.root.resolve() == ds.root.resolve():
        raise ValueError(f"--split all scores every face of {ds.root}, its train split included, so the baselines "
                         f"cannot be fitted on it; pass --train-dataset (the dataset the models were trained on)")
    if train.uv_size != ds.uv_size:
        raise ValueError(f"--train-dataset {train.root} is {train.uv_size}x{train.uv_size} but {ds.root} is "
                         f"{ds.uv_size}x{ds.uv_size}; use datasets prepared at one --size")
    device = resolve_device(args.device)
    models = load_models(args.models, device)
    wrong = [name for name, (_, info) in models.items() if info["uv_size"] != ds.uv_size]
    if wrong:
        raise ValueError(f"models {wrong} were trained at another UV size than {ds.uv_size}; score them on a dataset "
                         f"prepared with --size {models[wrong[0]][1]['uv_size']}")
    check_unseen(ds, args.split, stage_records(args.models))    # never people a scored model trained on
    xp = build_pairs(ds, args.split, min_yaw=args.min_yaw, min_gap=args.min_gap, colour_fit=args.colour_fit)
    print(xp.summary())
    uv, observed, _ = train.load("train")
    methods = {f"baselines/{k}": fn for k, fn in make_baselines(uv, observed, train.atlas()).items()}
    methods.update({name: fn for name, (fn, _) in models.items()})
    out = Path(args.out)
    results = evaluate_crosspose(methods, xp, out, params={"baselines_fitted_on": str(train.root)},
                                 device=device, progress=not args.quiet)
    showcase_figure(methods, xp, out / "crosspose.png", device=device)
    print(write_table(results, xp, out))
    print(f"written {out / 'metrics.json'}, {out / 'crosspose.md'}, {out / 'crosspose.png'}")


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
    p.add_argument("--mesh", default="crops",
                   help="how the face mesh is fitted: crops (the landmark model on our own checked crops, default) or "
                        "graph (MediaPipe's FaceMesh graph, the fitter before; for comparisons)")
    p.add_argument("--occluders", default="hands+appearance",
                   help="what keeps texels covered by occluders out of the seen ones: hands+appearance (default), "
                        "hands, appearance or none (see uvlib.data.occluders)")
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

    from uvlib.protocol.crosspose import COLOUR_FITS, MIN_TURNED_YAW, MIN_YAW_GAP
    p = sub.add_parser("crosspose", help="score baselines and models on real cross-pose pairs (same person, "
                                         "frontal photo as the reference for what a turned photo hid)")
    p.add_argument("dataset", help="a prepared dataset grouped by person or clip (uvlib prep ... --group-by folder)")
    p.add_argument("--models", nargs="*", default=[], metavar="PATH",
                   help="run folders, stage folders or model files to score beside the baselines")
    p.add_argument("--out", required=True, help="folder for metrics.json, crosspose.md/.csv, pairs.csv, crosspose.png")
    p.add_argument("--split", default="test",
                   help="split whose pairs are scored (default test); 'all' for a dataset no model trained on")
    p.add_argument("--train-dataset", help="dataset whose train split fits the baselines (default DATASET); "
                                           "the dataset the models were trained on when DATASET is another")
    p.add_argument("--min-yaw", type=float, default=MIN_TURNED_YAW,
                   help=f"|yaw| of a turned face, degrees (default {MIN_TURNED_YAW:g})")
    p.add_argument("--min-gap", type=float, default=MIN_YAW_GAP,
                   help=f"degrees the reference is more frontal than the turned face (default {MIN_YAW_GAP:g})")
    p.add_argument("--colour-fit", default=COLOUR_FITS[0], choices=COLOUR_FITS,
                   help="how the reference is mapped into the turned photo's colours (default moments)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_crosspose)

    from uvlib.app.complete import add_parser
    add_parser(sub)
    from uvlib.app import train_command
    train_command.add_parser(sub)
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
