"""A run's start-up on several ranks (nodes) that do not share runs/: rank 0 alone writes the run's
files; every other rank builds its own image cache and learns the rest from rank 0 through
torch.distributed, so no rank reads another rank's files.

    setup = start_ranks(env, comp, build_images, write_run, cfg.run_dir)

Every rank first builds its own image cache. Rank 0 broadcasts a fingerprint of its inputs (train
and test ids, labels, classes, one digest per decoded image); each other rank compares its own copy,
and when one differs every rank stops with the same line naming the rank, its host and the first
differing rows, before anything is written. Then rank 0 writes the run's files and broadcasts the
folds (and folds.csv's sha256) and the folds that already have predictions (`--resume` skips them).
"""
from __future__ import annotations

import dataclasses
import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ensemble.data.competition import Competition
from ensemble.data.images import CacheResult
from ensemble.train.distributed import DistEnv, broadcast_object, settle

_SHOWN = 5  # differing rows named in the error line


@dataclass
class RunStart:
    """What rank 0 writes and decides for the run."""

    fold_of: np.ndarray  # (N,) fold of every train row
    folds_hash: str  # sha256 of rank 0's folds.csv (recorded in run.json and metrics.json)
    run_dir: Path  # rank 0 writes here; the other ranks write nothing
    finished: list[int]  # folds whose predictions exist already (skipped by --resume)


@dataclass
class RankSetup(RunStart):
    """What every rank trains from: rank 0's RunStart and this rank's own image caches."""

    train: CacheResult | None = None
    test: CacheResult | None = None


def image_digests(cache: CacheResult) -> np.ndarray:
    """(N,) uint64: a digest of every row's decoded pixels, 0 for an unreadable image (about a
    second per GB of cache)."""
    out = np.zeros(len(cache.array), np.uint64)
    for i in np.flatnonzero(cache.ok):
        row = np.ascontiguousarray(cache.array[i])
        out[i] = int.from_bytes(hashlib.sha1(row.data).digest()[:8], "little")
    return out


def fingerprint(comp: Competition, train: CacheResult, test: CacheResult) -> dict[str, np.ndarray]:
    """What must be the same on every rank, by name: ids, labels, classes, decoded images."""
    return {"classes": np.asarray(comp.classes, dtype=str),
            "train ids": comp.train["id"].to_numpy(str), "train labels": comp.train["y"].to_numpy(np.int64),
            "test ids": comp.test["id"].to_numpy(str),
            "train images": image_digests(train), "test images": image_digests(test)}


def fingerprint_difference(mine: dict[str, np.ndarray], main: dict[str, np.ndarray],
                           comp: Competition) -> str | None:
    """The first part of this rank's fingerprint that differs from rank 0's, as words; else None."""
    rows = {"classes": np.asarray(comp.classes, dtype=str), "test": comp.test["id"].to_numpy(str),
            "train": comp.train["id"].to_numpy(str)}
    for key, ref in main.items():
        own = mine[key]
        if len(own) != len(ref):
            return f"{len(own)} {key}, rank 0 has {len(ref)}"
        bad = np.flatnonzero(own != ref)
        if len(bad):
            names = rows[key.split()[0]]
            shown = ", ".join(str(names[i]) for i in bad[:_SHOWN]) + (", ..." if len(bad) > _SHOWN else "")
            what = " (decoded pixels)" if key.endswith("images") else ""
            return f"{len(bad)} of {len(ref)} {key} differ from rank 0's{what}: {shown}"
    return None


def _in_turns(env: DistEnv, fn: Callable, *, main_only: bool = False):
    """fn() on every rank (main_only: on rank 0 alone): rank 0 first, then the first rank of every
    other node (one cache per node, where the node's ranks share a runs/), then the rest. A failure
    on any rank stops every rank. -> this rank's fn() (None where it did not run)."""
    turn = 0 if env.is_main else None if main_only else 1 if env.local_rank == 0 else 2
    out, err = None, None
    for t in range(3 if env.enabled and not main_only else 1):
        if t == turn:
            try:
                out = fn()
            except Exception as e:  # every rank learns of it in settle(), none waits for a dead one
                err = e
        settle(err, env)
    return out


def start_ranks(env: DistEnv, comp: Competition, build_images: Callable[[], tuple[CacheResult, CacheResult]],
                write_run: Callable[[], RunStart], run_dir: Path) -> RankSetup:
    """-> this rank's RankSetup. build_images (every rank): this rank's own (train, test) image
    caches; write_run (rank 0, or the only process): write folds.csv, labels.csv and the run
    directory. comp: this rank's competition; run_dir: this rank's cfg.run_dir.

    The images come first and, under DDP, every rank's are checked against rank 0's, so nothing
    is written when they differ. A failure on any rank stops every rank (RankError).
    """
    train, test = _in_turns(env, build_images)
    if env.enabled:
        main = broadcast_object(fingerprint(comp, train, test) if env.is_main else None, env)
        diff = None if env.is_main else fingerprint_difference(fingerprint(comp, train, test), main, comp)
        settle(ValueError(f"rank {env.rank} on {socket.gethostname()}: {diff}; every rank needs the same competition "
                          f"files (train.csv, sample submission, images under competition.root)") if diff else None, env)
    start = broadcast_object(_in_turns(env, write_run, main_only=True), env)
    if not env.is_main:  # where this rank would write (it writes nothing), not rank 0's folder
        start = dataclasses.replace(start, run_dir=Path(run_dir))
    return RankSetup(**vars(start), train=train, test=test)
