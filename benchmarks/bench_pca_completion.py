"""Completion throughput of a fitted masked PCA, plain posterior beside the robust (Cauchy-reweighted) one, on the
CPU and, when present, the GPU, with the largest difference between the devices' completions; then, on the CPU,
the two ways of building the per-image Gram matrices side by side for batch sizes from a cascade's few maps per
fold to stage 01's 256 (completion picks per-image products under k/3 images, shared per-texel outer products above).

    python benchmarks/bench_pca_completion.py runs/celeba-dev/01_pca/model-masked_pca_k256.pt [--n 512]

Inputs are synthetic maps drawn from the model itself (mean + loadings @ N(0, I) codes), the left half of the atlas
seen, a patch of 64 maps' seen texels painted white (something for the robust weights to discount); every
setting is timed after one untimed batch.
"""
import argparse
import time

import torch

from uvlib.models.pca import (_texel_outer, atlas_index, gram_by_products, gram_by_texel_outer, scatter_atlas,
                              uses_per_image_products)
from uvlib.models.registry import load_model


def synthetic_inputs(pca, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randn(n, pca.components_.shape[1], generator=g)
    size = pca.atlas.shape[0]
    uv = scatter_atlas((pca.mean_ + codes @ pca.loadings().T).clamp(0, 1), atlas_index(pca.atlas), size)
    known = torch.zeros(n, 1, size, size)
    known[..., : size // 2] = 1
    uv[:64, :, size // 6: size // 3, size // 12: size // 4] = 1.0
    return uv, known * pca.atlas.float()


def images_per_s(pca, uv, known, setting, device):
    def run(u, k):
        out = pca.complete_with(u, k, [setting])[0]
        if device == "cuda":
            torch.cuda.synchronize()
        return out
    run(uv[:32], known[:32])
    start = time.perf_counter()
    out = run(uv, known)
    return len(uv) / (time.perf_counter() - start), out.cpu()


def gram_ms_per_image(pca, batch_sizes, seed=0):
    """{b: (outer-products ms/image, per-image-products ms/image, max |difference|)} for random 0/1 texel weights."""
    w = pca.loadings()
    k, texels = w.shape[1], w.shape[0] // 3
    g = torch.Generator().manual_seed(seed)
    times = {}
    for b in batch_sizes:
        weight = (torch.rand(b, texels, generator=g) < 0.6).float()
        start = time.perf_counter()
        by_outer = gram_by_texel_outer(weight, _texel_outer(w), k)
        middle = time.perf_counter()
        by_products = gram_by_products(weight, w)
        end = time.perf_counter()
        times[b] = (1e3 * (middle - start) / b, 1e3 * (end - middle) / b, float((by_outer - by_products).abs().max()))
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a masked PCA model file (stage 01's model-masked_pca_kK.pt)")
    parser.add_argument("--n", type=int, default=512, help="maps completed per timed run")
    parser.add_argument("--gram-batches", type=int, nargs="*", default=[3, 16, 64, 256],
                        help="batch sizes of the Gram comparison (none: skip it)")
    args = parser.parse_args()
    complete, _ = load_model(args.model)
    pca = complete.__self__
    if pca.config.robust_scale is None:
        pca.config.robust_scale = 0.05   # a plain model: time the robust completion at a typical scale
    uv, known = synthetic_inputs(pca, args.n)
    settings = {"plain": (pca.ridge(), None), "robust": (pca.ridge(), pca.config.robust_scale)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    outs = {}
    print(f"masked PCA k={pca.components_.shape[1]}, {pca.atlas.shape[0]} px, {args.n} maps, ridge {pca.ridge():.4g}, "
          f"robust scale {pca.config.robust_scale:g} ({pca.config.robust_iters} rounds), torch {torch.__version__}")
    for device in devices:
        name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        pca.to(device)
        for label, setting in settings.items():
            rate, outs[device, label] = images_per_s(pca, uv.to(device), known.to(device), setting, device)
            print(f"{name:32s} {label:7s} {rate:10.1f} images/s")
    if "cuda" in devices:
        for label in settings:
            print(f"{label}: max |cpu - cuda| {float((outs['cpu', label] - outs['cuda', label]).abs().max()):.2e}")
    pca.to("cpu")
    k = pca.components_.shape[1]
    for b, (outer_ms, products_ms, diff) in gram_ms_per_image(pca, args.gram_batches).items():
        used = "products" if uses_per_image_products(b, k) else "outer"
        print(f"Gram, batch {b:4d}: per-texel outer products {outer_ms:8.1f} ms/image, per-image products "
              f"{products_ms:8.1f} ms/image (completion uses {used}; max |difference| {diff:.1e})")


if __name__ == "__main__":
    main()
