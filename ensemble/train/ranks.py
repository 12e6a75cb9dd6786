"""A run's start-up on several ranks (nodes) that do not share runs/: rank 0 alone writes the run's
files; every other rank builds its own image cache and learns the rest from rank 0 through
torch.distributed, so no rank reads another rank's files.

    setup = start_ranks(env, comp, make_folds, build_images, write_run, cfg.run_dir)

Rank 0 makes (or reads) folds.csv and broadcasts the folds. Every rank builds its own image cache;
rank 0 broadcasts a fingerprint of its inputs (train and test ids, labels, classes, one digest per
decoded image) and each other rank compares its own copy: when one differs, every rank stops with
the same line naming the rank, its host and the first differing rows, before labels.csv or the run
folder are written. Then rank 0 writes those and broadcasts which folds already have predictions
(`--resume` skips them).
"""
from __future__ import annotations

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
class RankSetup:
    """What every rank trains from: rank 0's folds and run folder, this rank's own image caches."""

    fold_of: np.ndarray  # (N,) fold of every train row
    folds_hash: str  # sha256 of rank 0's folds.csv (recorded in run.json and metrics.json)
    run_dir: Path  # rank 0 writes here; the other ranks write nothing
    finished: list[int]  # folds whose predictions exist already (skipped by --resume)
    train: CacheResult
    test: CacheResult


def image_digests(cache: CacheResult) -> np.ndarray:
    """(N,) uint64: a digest of every row's decoded pixels, 0 for an unreadable image (about a
    second per GB of cache)."""
    out = np.zeros(len(cache.array), np.uint64)
    for i in np.flatnonzero(cache.ok):
        row = np.ascontiguousarray(cache.array[i])
        out[i] = int.from_bytes(hashlib.sha1(row.data).digest()[:8], "little")
    return out


def input_digest(comp: Competition, train: CacheResult, test: CacheResult) -> dict[str, np.ndarray]:
    """What must be the same on every rank, by name: ids, labels, classes, decoded images."""
    return {"classes": np.asarray(comp.classes, dtype=str),
            "train ids": comp.train["id"].to_numpy(str), "train labels": comp.train["y"].to_numpy(np.int64),
            "test ids": comp.test["id"].to_numpy(str),
            "train images": image_digests(train), "test images": image_digests(test)}


def inputs_difference(mine: dict[str, np.ndarray], main: dict[str, np.ndarray],
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


def check_same_inputs(env: DistEnv, comp: Competition, train: CacheResult, test: CacheResult) -> None:
    """Every rank compares its fingerprint with rank 0's; one that differs stops every rank with
    the same line (ValueError on that rank, RankError on the others)."""
    if not env.enabled:
        return
    main = broadcast_object(input_digest(comp, train, test) if env.is_main else None, env)
    diff = None if env.is_main else inputs_difference(input_digest(comp, train, test), main, comp)
    settle(ValueError(f"rank {env.rank} on {socket.gethostname()}: {diff}; every rank needs the same competition "
                      f"files (train.csv, sample submission, images under competition.root)") if diff else None, env)


def start_ranks(env: DistEnv, comp: Competition, make_folds: Callable[[], tuple[np.ndarray, str]],
                build_images: Callable[[], tuple[CacheResult, CacheResult]],
                write_run: Callable[[str], tuple[Path, list[int]]], run_dir: Path) -> RankSetup:
    """-> this rank's RankSetup, in this order (rank 0 alone runs make_folds and write_run):
    make_folds() -> (fold_of, folds_hash), folds.csv; build_images() -> this rank's own (train, test)
    image caches; check_same_inputs; write_run(folds_hash) -> (run dir, finished folds), labels.csv
    and the run folder. comp: this rank's competition; run_dir: this rank's cfg.run_dir.
    A failure on any rank stops every rank (RankError on the others).
    """
    fold_of, folds_hash = broadcast_object(_in_turns(env, make_folds, main_only=True), env)
    train, test = _in_turns(env, build_images)
    check_same_inputs(env, comp, train, test)
    written, finished = broadcast_object(_in_turns(env, lambda: write_run(folds_hash), main_only=True), env)
    # the other ranks keep their own (unused) run folder path: nothing of rank 0's is read or written there
    return RankSetup(fold_of, folds_hash, written if env.is_main else Path(run_dir), finished, train, test)
