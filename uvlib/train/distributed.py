"""torch.distributed for training under torchrun: which rank this process is, and the few collectives the loop needs.

Outside torchrun (no process group) every helper is the single-process identity: rank 0 of a world of 1,
barriers do nothing, so the same training code runs in a notebook, `uvlib train` and `torchrun ... uvlib train`.

    torchrun --nproc_per_node=2 -m uvlib train 03 --params params/quick.yaml   # gloo on CPU, nccl on GPUs

Each rank trains on its shard of every global batch (uvlib.train.batches.TrainingBatches); gradients are averaged
by DistributedDataParallel; rank 0 alone writes checkpoints, logs, samples and model files.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier():
    if active():
        dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> torch.device:
    """Join torchrun's process group (nccl on GPUs, gloo on CPU) and return this rank's device.

    Without torchrun (WORLD_SIZE unset or 1) nothing is joined and `device` is returned as it is."""
    if not launched_by_torchrun():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return device


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def shutdown():
    if active():
        dist.destroy_process_group()


def all_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (the tensor itself in a single process)."""
    if not active():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world_size()


def all_min(values: torch.Tensor) -> torch.Tensor:
    if not active():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return values


def shard_slice(batch_size: int) -> slice:
    """This rank's part of a global batch of `batch_size` items; a one-line error when it does not divide."""
    world = world_size()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split over {world} processes; use a multiple of "
                         f"{world} or another --nproc_per_node")
    per_rank = batch_size // world
    return slice(rank() * per_rank, (rank() + 1) * per_rank)


def from_main(fn):
    """fn() run on rank 0 alone (it may read and move files), its result (or its exception) sent to every rank."""
    if not active():
        return fn()
    result = [None]
    if is_main():
        try:
            result[0] = (fn(), None)
        except Exception as err:      # re-raised on every rank below, so none waits forever
            result[0] = (None, err)
    dist.broadcast_object_list(result, src=0)
    value, err = result[0]
    if err is not None:
        raise err
    return value
