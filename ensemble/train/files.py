"""A fold's files: checkpoints and prediction arrays, written atomically; the validation loss."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ensemble.artifacts import atomic_path


def save_torch(obj, path: Path) -> None:
    """torch.save into memory first, so a full disk fails before a byte is written (atomic)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getbuffer()
    with atomic_path(path, size=data.nbytes) as tmp:  # a full disk: NoSpaceError before writing
        tmp.write_bytes(data)


def save_npz(path: Path, **arrays) -> None:
    """np.savez, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def val_loss(task: str, y: np.ndarray, out: np.ndarray) -> float:
    """Validation loss of outputs (V, C) against labels (V,): squared error of an ordinal score, else NLL."""
    if task == "ordinal":
        return float(np.mean((out[:, 0] - y) ** 2))
    return float(-np.mean(np.log(np.clip(out[np.arange(len(y)), y], 1e-7, 1.0))))
