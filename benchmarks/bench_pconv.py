"""Training and completion throughput of PConvUNet: optimised paths vs plain fp32 eager.

    python benchmarks/bench_pconv.py                       # 128x128, batch 16, width 64
    python benchmarks/bench_pconv.py --steps 5 --compile   # also try torch.compile

Training = one PConvTrainer.training_step (forward, the paper's loss with a VGG16-sized feature
net, backward, Adam). Completion = PConvUNet.complete in eval mode. Every variant starts from the
same weights and data; the fastest one is reported as the optimised path.
"""

import argparse
import platform
import time

import torch

from uvlib.train.losses import InpaintingLoss
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.models.vgg import load_feature_net
from uvlib.train.loop import Runtime, resolve_device
from uvlib.train.trainers import PConvTrainer

BASELINE = ("fp32 eager", False, False, False)
CPU_VARIANTS = [("channels_last", False, True, False),
                ("bf16 autocast", True, False, False),
                ("bf16 + channels_last", True, True, False)]
CUDA_VARIANTS = [("bf16 + channels_last", True, True, False)]
COMPILE_VARIANT = ("bf16 + channels_last + compile", True, True, True)


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
        loss = InpaintingLoss(feature_net=load_feature_net(args.feature_net))
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per variant (best kept)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--feature-net", default="random_vgg16", choices=["random_vgg16", "none"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batch = make_batch(args)
    specs = [BASELINE] + (CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS)
    specs += [COMPILE_VARIANT] if args.compile else []

    print(f"device: {device.type} ({device_name(device)}), torch {torch.__version__}")
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


if __name__ == "__main__":
    main()
