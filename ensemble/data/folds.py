"""K-fold assignment, written once per competition to runs/<competition>/folds.csv and reused."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ensemble.artifacts import atomic_write_csv, file_hash


class FoldsError(ValueError):
    """folds.csv does not fit the competition or the run."""


def merge_groups(*groupings: Sequence | None) -> np.ndarray | None:
    """Union of several groupings of the same N rows -> (N,) int component id.

    Two rows share a component when any grouping puts them together (e.g. the patient
    column and duplicate-image groups); None entries are ignored.
    """
    arrays = [_codes(g) for g in groupings if g is not None]
    if not arrays:
        return None
    n = len(arrays[0])
    rows, cols, offset = [], [], n
    for codes in arrays:  # bipartite graph: row node i -- group node offset + code
        rows.append(np.arange(n))
        cols.append(offset + codes)
        offset += codes.max() + 1 if n else 0
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    return pd.factorize(labels[:n])[0]


def _codes(grouping: Sequence) -> np.ndarray:
    """Group codes; a missing value (None/NaN/"") is a group of its own row."""
    s = pd.Series(grouping, dtype=object)
    blank = s.isna() | (s.astype(str) == "")
    s = s.astype(str).where(~blank, "\0row" + pd.Series(np.arange(len(s))).astype(str))
    return pd.factorize(s)[0]


def assign_folds(y: np.ndarray, n: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """-> (N,) fold index per row: StratifiedKFold, or StratifiedGroupKFold with groups."""
    y = np.asarray(y)
    if n < 2:
        raise FoldsError(f"folds.n must be >= 2, got {n}")
    counts = np.bincount(y)
    present = counts[counts > 0]
    if present.min() < n:
        raise FoldsError(f"folds.n={n} but the rarest class has only {present.min()} rows; "
                         f"use folds.n <= {present.min()}")
    if groups is not None and len(np.unique(groups)) < n:
        raise FoldsError(f"folds.n={n} but there are only {len(np.unique(groups))} groups")
    fold = np.full(len(y), -1, dtype=np.int64)
    if groups is None:
        splits = StratifiedKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    else:
        splits = StratifiedGroupKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)
    for k, (_, val) in enumerate(splits):
        fold[val] = k
    return fold


def ensure_folds(path: Path, ids: Sequence[str], y: np.ndarray, n: int, seed: int,
                 groups: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, str]:
    """Read folds.csv if present (checking it fits), else write it. -> ((N,) folds, sha256)."""
    path = Path(path)
    ids = np.asarray(ids, dtype=object)
    if path.exists():
        return read_folds(path, ids, n), file_hash(path)
    fold = assign_folds(y, n, seed, groups)
    df = pd.DataFrame({"id": ids, "fold": fold})
    if groups is not None:
        df["group"] = groups
    for k, v in (extra or {}).items():
        df[k] = v
    atomic_write_csv(path, df)
    return fold, file_hash(path)


def read_folds(path: Path, ids: np.ndarray, n: int | None = None) -> np.ndarray:
    """folds.csv aligned to `ids`; any mismatch is a FoldsError naming the file."""
    df = pd.read_csv(path, dtype={"id": str})
    for col in ("id", "fold"):
        if col not in df.columns:
            raise FoldsError(f"{path}: missing column '{col}'")
    k = int(df["fold"].max()) + 1
    if n is not None and k != n:
        raise FoldsError(f"{path} has {k} folds but folds.n={n}; set folds.n={k} or delete "
                         f"{path} (and the runs made with it) to re-split")
    s = pd.Series(df["fold"].to_numpy(), index=df["id"])
    missing = pd.Index(ids).difference(s.index)
    if len(missing) or len(s) != len(ids):
        raise FoldsError(f"{path}: ids do not match train.csv ({len(missing)} train ids missing, "
                         f"{len(s)} rows vs {len(ids)}); delete it to re-split")
    return s.reindex(ids).to_numpy(np.int64)
