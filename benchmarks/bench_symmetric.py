"""Training throughput of the completion rows that see the face's other side, beside the plain PConv.

    python benchmarks/bench_symmetric.py                 # CPU or the GPU when present
    python benchmarks/bench_symmetric.py --steps 100

Rows, all PConvTrainer steps of a PConvUNet on the same synthetic 8-bit maps with half-face holes (bf16 autocast
and channels-last on CUDA): plain (the original inputs), symmetric (+ the mirrored map and its visibility,
computed on the device by grid_sample) and mirror-Poisson cascade (+ the mirror-Poisson fill as extra channels,
solved per map on the host with scipy, which is what limits it on a GPU). Prints images/s per row, timed after
--warmup untimed steps.
"""
import argparse
import platform
import time

import torch

from uvlib.geometry.mesh import uv_atlas
from uvlib.models.cascade import MirrorPoissonPConvCascade
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.train.loop import Runtime, resolve_device
from uvlib.train.losses import InpaintingLoss
from uvlib.train.trainers import PConvTrainer


def batch(size, n, seed):
    g = torch.Generator().manual_seed(seed)
    uv = (torch.randint(0, 256, (n, 3, size, size), generator=g) / 255)
    hole = torch.zeros(n, 1, size, size)
    hole[..., size // 2:] = 1                                  # the right half of the face hidden
    return {"uv": uv, "observed": torch.ones(n, 1, size, size), "hole": hole}


def images_per_s(row, args, device):
    torch.manual_seed(0)
    cascade = row == "mirror-Poisson cascade"
    model = PConvUNet(PConvUNetConfig(uv_size=args.size, base_width=args.width, symmetric=row == "symmetric",
                                      extra_channels=3 if cascade else 0, predict_residual_on_extra=cascade))
    extra_fn = MirrorPoissonPConvCascade(model).fill if cascade else None
    cuda = device.type == "cuda"
    trainer = PConvTrainer(model, InpaintingLoss({"perceptual": 0.0, "style": 0.0}),
                           atlas=torch.from_numpy(uv_atlas(args.size).mask).float(), extra_fn=extra_fn)
    trainer.configure(Runtime(device, torch.bfloat16 if cuda else None, cuda))
    batches = [{k: v.to(device) for k, v in batch(args.size, args.batch, s).items()} for s in range(4)]
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        trainer.training_step(batches[step % 4], step)
    if cuda:
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{name}, torch {torch.__version__}, {args.size}x{args.size}, batch {args.batch}, width {args.width}, "
          f"{args.steps} timed steps")
    for row in ("plain", "symmetric", "mirror-Poisson cascade"):
        print(f"{row:24s} {images_per_s(row, args, device):8.1f} images/s")


if __name__ == "__main__":
    main()
