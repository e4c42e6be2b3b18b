"""Training and completion throughput of PConvUNet: the training loop before and after, and numeric variants.

    git worktree add --detach /tmp/uvlib-old 2fce1aa     # the code before "training that feeds a GPU"
    python benchmarks/bench_pconv.py --old-tree /tmp/uvlib-old                  # CPU: old loop vs new loop
    python benchmarks/bench_pconv.py --old-tree /tmp/uvlib-old --compile        # GPU: + the new loop compiled
    python benchmarks/bench_pconv.py --variants                                 # fp32 / bf16 / channels_last steps

Loop comparison: uvlib.train.loop.train() of each code tree on the same synthetic maps (8-bit values, as a
prepared dataset gives them) and box holes, PConvTrainer with the paper's loss, run round-robin (old, new, new
compiled, then the reverse order, ...) so a busy shared machine slows them alike; each run trains 2 x --steps steps and the img/s of
its second half (logged by train() itself, warm) is kept, best of --reps. The old tree's uvlib is imported beside
this one (its modules swapped into sys.modules for the import), so both run in this one process.

Variants: one PConvTrainer.training_step and PConvUNet.complete per numeric variant (fp32 eager, channels_last,
bf16 autocast...), all from the same weights and data; the fastest one is reported as the optimised path.
"""

import argparse
import importlib
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from uvlib.models import vgg
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.train import losses
from uvlib.train.loop import Runtime, resolve_device
from uvlib.train.trainers import PConvTrainer

BASELINE = ("fp32 eager", False, False, False)
CPU_VARIANTS = [("channels_last", False, True, False),
                ("bf16 autocast", True, False, False),
                ("bf16 + channels_last", True, True, False)]
CUDA_VARIANTS = [("bf16 + channels_last", True, True, False)]
COMPILE_VARIANT = ("bf16 + channels_last + compile", True, True, True)


def make_loss(losses_module, vgg_module, args):
    """The paper's loss; without a feature net its perceptual and style terms are off."""
    if args.feature_net == "none":
        return losses_module.InpaintingLoss({"perceptual": 0.0, "style": 0.0})
    return losses_module.InpaintingLoss(feature_net=vgg_module.load_feature_net(args.feature_net))


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {torch.get_num_threads()} threads"


def make_batch(args):
    g = torch.Generator().manual_seed(0)
    s, b = args.size, args.batch
    hole = torch.zeros(b, 1, s, s)
    hole[..., s // 4: s // 2, s // 8: s // 2] = 1
    return {"uv": torch.rand(b, 3, s, s, generator=g),
            "observed": (torch.rand(b, 1, s, s, generator=g) > 0.2).float(),
            "hole": hole}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, device):
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


class Variant:
    """One model + stage + inputs set up for a (name, bf16, channels_last, compile) combination."""

    def __init__(self, spec, args, device, batch):
        self.name, amp, channels_last, compile_ = spec
        torch.manual_seed(0)
        self.model = PConvUNet(PConvUNetConfig(uv_size=args.size, base_width=args.width))
        loss = make_loss(losses, vgg, args)
        self.stage = PConvTrainer(self.model, loss, atlas=torch.ones(args.size, args.size))
        self.runtime = Runtime(device, torch.bfloat16 if amp else None, channels_last)
        self.stage.configure(self.runtime)
        if compile_:
            self.model.compile()
        self.batch = self.runtime.to_device(batch)
        self.grad_mode = torch.no_grad if spec == BASELINE else torch.inference_mode
        self.steps = 0

    def train_step(self):
        self.steps += 1
        self.stage.training_step(self.batch, self.steps)

    def complete(self):
        uv_in, known, _ = self.stage.inputs(self.batch)
        self.model.eval()
        with self.grad_mode(), self.runtime.autocast():
            self.model.complete(uv_in, known)
        self.model.train()


def measure(variants, args, device):
    """Round-robin over variants so a busy, shared machine slows them alike; best step wins."""
    train_s = {v.name: float("inf") for v in variants}
    complete_s = dict(train_s)
    for rep in range(args.warmup + args.steps):
        for v in variants:
            t = seconds(v.train_step, device)
            c = min(seconds(v.complete, device) for _ in range(3))
            if rep >= args.warmup:
                train_s[v.name] = min(train_s[v.name], t)
                complete_s[v.name] = min(complete_s[v.name], c)
    return [(v.name, args.batch / train_s[v.name], args.batch / complete_s[v.name]) for v in variants]


def import_tree(root: Path, names):
    """{name: module} of uvlib modules imported from another checkout `root`, beside the uvlib already loaded."""
    ours = {k: v for k, v in sys.modules.items() if k == "uvlib" or k.startswith("uvlib.")}
    for k in ours:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    try:
        modules = {name: importlib.import_module(name) for name in names}
        if not Path(modules["uvlib.train.loop"].__file__).is_relative_to(root):
            raise SystemExit(f"--old-tree {root} has no uvlib/train/loop.py; pass a checkout of the project")
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k == "uvlib" or k.startswith("uvlib.")]:
            del sys.modules[k]
        sys.modules.update(ours)
    return modules


TREE_MODULES = ("uvlib.train.loop", "uvlib.train.trainers", "uvlib.train.batches", "uvlib.train.losses",
                "uvlib.models.pconv", "uvlib.models.vgg")


def synthetic_maps(args, n=256):
    """n maps with 8-bit values (as Dataset.load gives them), observed masks and a bank of 64 box holes."""
    g = torch.Generator().manual_seed(0)
    s = args.size
    uv = torch.rand(n, 3, s, s, generator=g).mul(255).round().div(255)
    observed = (torch.rand(n, 1, s, s, generator=g) > 0.2).float()
    bank = torch.zeros(64, s, s, dtype=torch.bool)
    for hole, (y, x) in zip(bank, torch.randint(0, s // 2, (64, 2), generator=g).tolist()):
        hole[y:y + s // 3, x:x + s // 3] = True
    return uv, observed, bank


def loop_run(tree, args, device, data, out_dir, compile_=False):
    """img/s of train() of one code tree over the second half of 2 x args.steps steps."""
    m = {name.rsplit(".", 1)[1]: module for name, module in tree.items()}
    torch.manual_seed(0)
    model = m["pconv"].PConvUNet(m["pconv"].PConvUNetConfig(uv_size=args.size, base_width=args.width))
    loss = make_loss(m["losses"], m["vgg"], args)
    trainer = m["trainers"].PConvTrainer(model, loss, atlas=torch.ones(args.size, args.size))
    uv, observed, bank = data
    new_api = "device" in m["batches"].TrainingBatches.__init__.__code__.co_varnames
    placed = {"device": device} if new_api else {}          # the old TrainingBatches kept its maps on the host
    batches = m["batches"].TrainingBatches(uv, observed, m["batches"].HoleSampler(bank), args.batch, seed=0, **placed)
    options = {"compile": True} if compile_ else {}
    cfg = m["loop"].TrainConfig(max_steps=2 * args.steps, log_every=args.steps, checkpoint_every=10 ** 9,
                                sample_every=10 ** 9, device=str(device), out_dir=str(out_dir), progress=False,
                                **options)
    return m["loop"].train(trainer, batches, cfg)["images_per_s"]


def compare_loops(args, device):
    new = {name: importlib.import_module(name) for name in TREE_MODULES}
    runs = [(f"old loop ({args.old_tree})", import_tree(Path(args.old_tree).resolve(), TREE_MODULES), False),
            ("new loop", new, False)] if args.old_tree else [("new loop", new, False)]
    runs += [("new loop + torch.compile", new, True)] if args.compile else []
    data = synthetic_maps(args)
    best = {name: 0.0 for name, _, _ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for k, (name, tree, compile_) in enumerate(runs if rep % 2 == 0 else runs[::-1]):  # no loop always first
                ips = loop_run(tree, args, device, data, Path(tmp, f"{rep}-{k}"), compile_)
                best[name] = max(best[name], ips)
    print(f"training loop, PConvUNet {args.size}x{args.size}, width {args.width}, batch {args.batch}, loss feature "
          f"net {args.feature_net}, {args.steps} warm steps, best of {args.reps} round-robin runs (order alternating)")
    print(f"{'loop':<60}{'train img/s':>12}")
    for name, ips in best.items():
        print(f"{name:<60}{ips:>12.2f}")
    first = next(iter(best.values()))
    for name, ips in list(best.items())[1:]:
        print(f"{name}: {ips / first:.2f}x {next(iter(best))}")


def compare_variants(args, device):
    batch = make_batch(args)
    specs = [BASELINE] + (CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS)
    specs += [COMPILE_VARIANT] if args.compile else []
    print(f"PConvUNet {args.size}x{args.size}, width {args.width}, batch {args.batch}, "
          f"loss feature net {args.feature_net}, best of {args.steps} steps, variants round-robin")
    rows = measure([Variant(spec, args, device, batch) for spec in specs], args, device)
    print(f"{'variant':<34}{'train img/s':>12}{'complete img/s':>16}")
    for name, train_ips, complete_ips in rows:
        print(f"{name:<34}{train_ips:>12.2f}{complete_ips:>16.2f}")
    base = rows[0]
    best_train = max(rows[1:], key=lambda r: r[1])
    best_complete = max(rows[1:], key=lambda r: r[2])
    print(f"optimised training:   {best_train[0]}, {best_train[1] / base[1]:.2f}x fp32 eager")
    print(f"optimised completion: {best_complete[0]} + inference_mode, {best_complete[2] / base[2]:.2f}x fp32 eager")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per run or variant")
    parser.add_argument("--reps", type=int, default=2, help="loop comparison: runs of each loop (best kept)")
    parser.add_argument("--warmup", type=int, default=1, help="variants: untimed steps first")
    parser.add_argument("--feature-net", default="random_vgg16", choices=["random_vgg16", "none"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--old-tree", help="a checkout of the code before, whose training loop is timed beside this one")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--variants", action="store_true", help="time numeric variants of one step instead")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device: {device.type} ({device_name(device)}), torch {torch.__version__}")
    if args.variants:
        compare_variants(args, device)
    else:
        compare_loops(args, device)


if __name__ == "__main__":
    main()
