"""`folds.strategy: test_like`: fold 0 holds the most test-like training rows (by the shift check's
out-of-fold p(test | x)), so the model of fold 0 stops early and keeps its checkpoint on the rows
that look most like the test set, and fold 0's score in metrics.json is a test-like score; the
other rows are split into folds 1..K-1 as usual (stratified, grouped). Written once, like folds.csv.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..artifacts import atomic_path, file_hash
from ..data.folds import FoldsError, assign_folds, check_fold_counts, folds_frame, frame_bytes, read_folds
from .scores import load_weights, shift_dir


def test_like_fold(p_test: np.ndarray, n: int, groups: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: the most test-like groups (by their highest p(test | x)) until 1/n of the rows."""
    g = np.arange(len(p_test)) if groups is None else pd.factorize(pd.Series(groups, dtype=object))[0]
    score = pd.Series(p_test).groupby(g).max().sort_values(ascending=False, kind="stable")
    size = pd.Series(g).value_counts()
    take = score.index[np.cumsum(size.reindex(score.index).to_numpy()) <= int(np.ceil(len(p_test) / n))]
    return np.isin(g, take.to_numpy())


def test_like_folds(comp_dir: str | Path, ids: Sequence[str], y: np.ndarray, n: int, seed: int,
                    groups: np.ndarray | None = None, extra: dict | None = None,
                    classes: Sequence[str] | None = None) -> tuple[np.ndarray, str]:
    """Read runs/<competition>/folds.csv, or write it with fold 0 = the test-like rows. -> (folds, sha256).
    classes: the names of y's indices, for error messages."""
    path = Path(comp_dir) / "folds.csv"
    fold, df = plan_test_like_folds(comp_dir, ids, y, n, seed, groups, extra, classes)
    if df is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(frame_bytes(df))
    return fold, file_hash(path)


def plan_test_like_folds(comp_dir: str | Path, ids: Sequence[str], y: np.ndarray, n: int, seed: int,
                         groups: np.ndarray | None = None, extra: dict | None = None,
                         classes: Sequence[str] | None = None) -> tuple[np.ndarray, pd.DataFrame | None]:
    """test_like_folds without writing: -> (folds, the frame to write or None when folds.csv exists)."""
    path = Path(comp_dir) / "folds.csv"
    ids = np.asarray(ids, dtype=object)
    if path.exists():
        return read_folds(path, ids, n), None
    weights = load_weights(comp_dir)
    if weights is None:
        raise FoldsError(f"folds.strategy test_like needs {shift_dir(comp_dir) / 'weights.csv'}: run "
                         f"python -m ensemble.shift --competition {Path(comp_dir).name} first")
    if n < 3:
        raise FoldsError(f"folds.strategy test_like needs folds.n >= 3 (a test-like fold and >= 2 others), got {n}")
    check_fold_counts(np.asarray(y), n, classes, groups)
    p = weights["p_test"].reindex(pd.Index(ids.astype(str))).fillna(0.0).to_numpy()
    like = test_like_fold(p, n, groups)
    fold = np.zeros(len(ids), np.int64)
    rest = np.flatnonzero(~like)
    try:
        fold[rest] = 1 + assign_folds(np.asarray(y)[rest], n - 1, seed,
                                      None if groups is None else np.asarray(groups)[rest], classes)
    except FoldsError as e:  # its folds.n counts the n - 1 folds left after the test-like fold 0
        why = re.sub(r"folds\.n <= (\d+)", lambda m: f"folds.n <= {int(m.group(1)) + 1}",
                     str(e).replace(f"folds.n={n - 1} but ", ""))
        raise FoldsError(f"folds.strategy test_like: after fold 0 took the most test-like rows, the rest must "
                         f"split into folds 1..{n - 1}, but {why}") from None
    df = folds_frame(ids, fold, groups, extra)
    df["test_like_fold"] = like
    return fold, df
