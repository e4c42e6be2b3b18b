"""Train an atlas autoencoder with a masked MSE on the observed texels (the original study's loop)."""

import math
import time

import torch
from tqdm.auto import tqdm

from uvlib.ops import masked_mean


def fit_autoencoder(model, uv, observed, *, epochs, lr=1e-3, batch_size=64, seed=0, hole_sampler=None,
                    on_epoch=None, device=None, progress=True):
    """Adam on the masked MSE over observed atlas texels; returns per-epoch rows {epoch, loss, seconds}.

    hole_sampler(observed_batch, generator) -> hole_batch (1 = hide) makes it denoising training:
    the input also hides observed*hole, the loss still counts every observed texel.
    The data stay where they are (batches move to `device`, default the model's device); shuffling
    and hole sampling use one torch.Generator on the data's device seeded with `seed`.
    """
    if uv.ndim != 4 or uv.shape[1] != 3 or tuple(observed.shape) != (uv.shape[0], 1, *uv.shape[2:]):
        raise ValueError(f"uv must be (N,3,S,S) and observed (N,1,S,S); got {tuple(uv.shape)}, {tuple(observed.shape)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator(device=uv.device).manual_seed(seed)
    atlas = model.atlas.to(device).float()
    n = uv.shape[0]
    history = []
    bar = tqdm(range(1, epochs + 1), desc=type(model).__name__, disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for idx in torch.randperm(n, generator=generator, device=uv.device).split(batch_size):
            target, obs = uv[idx], observed[idx]
            known = obs if hole_sampler is None else obs * (1 - hole_sampler(obs, generator))
            target, obs, known = target.to(device), obs.to(device), known.to(device)
            loss = masked_mean((model(target * known, known) - target).square(), obs * atlas)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach() * len(idx)
        loss_value = loss_sum.item() / n
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at epoch {epoch}: lower lr (now {lr}) or check uv for NaN")
        row = {"epoch": epoch, "loss": loss_value, "seconds": time.perf_counter() - start}
        history.append(row)
        bar.set_postfix(loss=f"{loss_value:.5f}")
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch, model, row)
            model.train()
    model.eval()
    return history
