"""torch.distributed glue for `torchrun -m ensemble.train`: process group, sharding, gathering.

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
