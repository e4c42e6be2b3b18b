"""`uvlib train STAGE... --params params/PROFILE.yaml`: train stages 03-07 outside Jupyter, on one or many processes.

    uvlib train 03 --params params/celeba-dev.yaml                             # one process (CPU or one GPU)
    torchrun --nproc_per_node=4 -m uvlib train 03 05 --params params/full.yaml  # 4 GPUs (nccl) or CPU processes (gloo)

Every process trains its share of each global batch in DistributedDataParallel; rank 0 writes the checkpoints,
logs, samples and model files into the profile's run folder, where the stage notebook finds them (same run
record) and only scores and plots. Rank 0 opens each stage first, so the cached test cases and hole bank are
built once, then the other ranks open it.
"""
from uvlib.study.params import load_profile
from uvlib.study.stages import TRAINERS, open_stage_for, stage_name, stage_parameters
from uvlib.train import distributed
from uvlib.train.loop import resolve_device


def add_parser(subparsers):
    """Register `uvlib train` on the CLI's subparsers."""
    p = subparsers.add_parser("train", help="train stages 03-07 as their notebooks would (torchrun-ready)")
    p.add_argument("stages", nargs="+", metavar="STAGE",
                   help=f"stages to train in order: numbers or names of {list(TRAINERS)}")
    p.add_argument("--params", required=True, help="a profile, params/PROFILE.yaml (or its name)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (GPU, long runs)")
    p.add_argument("--workers", type=int, default=2,
                   help="DataLoader processes when the training maps do not fit on the GPU (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args):
    stages = [stage_name(s) for s in args.stages]          # bad names and profiles fail before any work
    if args.workers < 0:
        raise ValueError(f"--workers {args.workers} must be >= 0")
    profile = load_profile(args.params)
    parameters = {stage: stage_parameters(stage, profile) for stage in stages}
    device = distributed.init_from_env(resolve_device(parameters[stages[0]]["device"]))
    try:
        for stage in stages:
            p, opened = parameters[stage], {}

            def open_here():
                opened["ctx"] = open_stage_for(stage, p, device, progress=not args.quiet and distributed.is_main())
            distributed.from_main(open_here)   # rank 0 builds the cached cases and holes first; its error stops all
            if "ctx" not in opened:
                open_here()
            ctx = opened["ctx"]
            ctx.compile, ctx.loader_workers = args.compile, args.workers
            TRAINERS[stage](ctx, p)
            if distributed.is_main():
                files = sorted(f.name for f in ctx.out_dir.glob("model-*.pt"))
                print(f"{stage}: {', '.join(files)} in {ctx.out_dir} "
                      f"({distributed.world_size()} process{'es' if distributed.world_size() > 1 else ''})")
    finally:
        distributed.shutdown()
