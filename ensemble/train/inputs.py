"""FoldInputs: everything a fold needs besides its plan (cached images, row indices, targets)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FoldInputs:
    """Everything a fold needs besides its plan: cached images, row indices, and the soft targets of
    its training rows (one-hot labels unless a teacher's probabilities or extra rows are given)."""

    train_images: np.ndarray  # (N, S, S, 3) uint8
    test_images: np.ndarray  # (T, S, S, 3) uint8
    train_idx: np.ndarray  # rows of train_images used for training
    val_idx: np.ndarray  # rows used for validation
    test_idx: np.ndarray  # rows of test_images to predict
    y: np.ndarray  # (N,) class index of every train row
    n_classes: int
    train_tf: object  # albumentations Compose (augmentation)
    eval_tf: object  # albumentations Compose (evaluation)
    targets: np.ndarray | None = None  # (N, C) soft target of every train row (None: one-hot of y)
    extra_images: np.ndarray | None = None  # (E, S, S, 3) uint8 rows that join the training part only
    extra_targets: np.ndarray | None = None  # (E, C) their soft targets (a row's sum is its weight)

    def train_targets(self) -> np.ndarray:
        """(M + E, C) float32 soft targets of the training part: its own rows, then the extra rows.
        The training loaders' labels are rows of this table."""
        own = self.targets if self.targets is not None else np.eye(self.n_classes, dtype=np.float32)[self.y]
        parts = [np.asarray(own, np.float32)[self.train_idx]]
        if self.extra_images is not None:
            parts.append(np.asarray(self.extra_targets, np.float32))
        return np.concatenate(parts)
