"""torch.distributed glue for `torchrun -m ensemble.train`: process group, sharding, gathering,
broadcasting rank 0's objects and weights, and failing together.

Without torchrun (WORLD_SIZE unset or 1) everything here is a no-op single-process `DistEnv`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistEnv()


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group torchrun describes (env:// rendezvous). -> DistEnv.

    Backend: nccl when the ranks use CUDA, else gloo (CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    env = DistEnv(world, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and not device.startswith("cpu")
        if cuda:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return env


def rank_device(env: DistEnv, device: str) -> str:
    """Each rank takes its own GPU (cuda:LOCAL_RANK) under torchrun."""
    if env.enabled and torch.cuda.is_available() and not device.startswith("cpu"):
        return f"cuda:{env.local_rank}"
    return device


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


class RankError(ValueError):
    """Another rank failed; the message is that rank's own error line."""


def settle(err: Exception | None, env: DistEnv) -> None:
    """Every rank says whether it failed (a collective, so also a barrier); then, if any did, all
    raise: the failing rank its own `err`, the others RankError with the first failure's message.
    So no rank waits forever in a later collective for a rank that has exited."""
    if not env.enabled:
        if err is not None:
            raise err
        return
    messages: list = [None] * env.world_size
    dist.all_gather_object(messages, None if err is None else str(err))
    if err is not None:
        raise err
    failed = next((m for m in messages if m is not None), None)
    if failed is not None:
        raise RankError(failed)


def broadcast_object(obj, env: DistEnv):
    """Rank 0's `obj` on every rank (pickled; tensors in it should be on the CPU)."""
    if not env.enabled:
        return obj
    box = [obj if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(model: torch.nn.Module, env: DistEnv) -> None:
    """Copy rank 0's parameters and buffers into `model` on every rank, in place, tensor by tensor
    (on the model's device: NCCL sends them GPU to GPU)."""
    if not env.enabled:
        return
    with torch.no_grad():
        for t in model.state_dict().values():  # detached views of the parameters and buffers
            buf = t if t.is_contiguous() else t.contiguous()  # e.g. channels_last conv weights
            dist.broadcast(buf, src=0)
            if buf is not t:
                t.copy_(buf)


def shard(indices: np.ndarray, env: DistEnv) -> np.ndarray:
    """This rank's contiguous share of `indices` (no padding: shares differ by at most one)."""
    return np.array_split(indices, env.world_size)[env.rank] if env.enabled else indices


def gather_rows(out: np.ndarray, env: DistEnv) -> np.ndarray:
    """Concatenate every rank's `shard` outputs in rank order -> the full (N, ...) array on all ranks."""
    if not env.enabled:
        return out
    parts: list = [None] * env.world_size
    dist.all_gather_object(parts, out)
    return np.concatenate(parts)


def wrap_model(model: torch.nn.Module, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel over the currently trainable parameters (re-wrap after freezing)."""
    if not env.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=True)


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
