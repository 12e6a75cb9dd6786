"""A small Kaggle-layout competition from scikit-learn's digits (the demo's and the tests' data).

data/demo/                 train.csv (id,label), train/*.png, test/*.png, sample_submission.csv
data/demo_solution.csv     the hidden test labels (outside the competition folder)
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ensemble.artifacts import atomic_path, atomic_write_csv


def digit_images(size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits as (N, size, size, 3) uint8 RGB images and (N,) labels.

    Each digit is upscaled, tinted with a random colour and given a little noise, so the
    images are RGB like a real competition's and not trivially identical per class.
    """
    from sklearn.datasets import load_digits
    d = load_digits()
    rng = np.random.default_rng(seed)
    grey = np.stack([cv2.resize((im * (255 / 16)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
                     for im in d.images])
    tint = rng.uniform(0.55, 1.0, size=(len(grey), 1, 1, 3))
    noise = rng.normal(0, 8, size=grey.shape + (3,))
    rgb = np.clip(grey[..., None] * tint + noise, 0, 255).astype(np.uint8)
    return rgb, d.target.astype(np.int64)


def build_demo(root: str | Path = "data/demo", size: int = 32, test_fraction: float = 0.2,
               seed: int = 0) -> Path:
    """Write the demo competition (idempotent: an existing complete one is kept). -> root."""
    root = Path(root)
    solution = root.parent / f"{root.name}_solution.csv"
    if (root / "sample_submission.csv").exists() and solution.exists():
        return root
    from sklearn.model_selection import train_test_split
    images, labels = digit_images(size, seed)
    ids = np.array([f"digit_{i:04d}" for i in range(len(labels))])
    tr, te = train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed)
    for split, rows in (("train", tr), ("test", te)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in rows:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR))
            with atomic_path(root / split / f"{ids[i]}.png") as tmp:
                tmp.write_bytes(buf.tobytes())
    te = np.sort(te)
    atomic_write_csv(root / "train.csv", pd.DataFrame({"id": ids[tr], "label": labels[tr]}))
    atomic_write_csv(solution, pd.DataFrame({"id": ids[te], "label": labels[te]}))
    atomic_write_csv(root / "sample_submission.csv", pd.DataFrame({"id": ids[te], "label": 0}))
    return root
