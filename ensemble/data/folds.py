"""K-fold assignment, written once per competition to runs/<competition>/folds.csv and reused."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ensemble.artifacts import atomic_path, file_hash


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


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def check_fold_counts(y: np.ndarray, n: int, classes: Sequence[str] | None = None,
                      groups: np.ndarray | None = None) -> None:
    """FoldsError unless every class present has >= n rows and there are >= n groups; the message
    names the classes and offers the choices that work."""
    if n < 2:
        raise FoldsError(f"folds.n must be >= 2, got {n}")
    counts = np.bincount(np.asarray(y))
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(len(counts))]
    rare = [k for k in np.argsort(counts, kind="stable") if 0 < counts[k] < n]
    if rare:
        need = f"(stratified folds need >= {n} rows per class)"
        if len(rare) == 1:
            what = f"class '{names[rare[0]]}' has only {_rows(counts[rare[0]])} {need}"
        else:
            listed = ", ".join(f"'{names[k]}' {counts[k]}" for k in rare[:5]) + (", ..." if len(rare) > 5 else "")
            what = f"{len(rare)} classes have fewer than {n} rows: {listed} {need}"
        singles = [f"'{names[k]}'" for k in rare if counts[k] == 1]
        splittable = counts[counts >= 2]
        limit = f"folds.n <= {splittable.min()}" if len(splittable) and splittable.min() < n else None
        if singles:
            one = len(singles) == 1
            fix = (f"merge {'class ' + singles[0] if one else 'classes ' + ', '.join(singles[:5])} into "
                   f"{'another class' if one else 'others'} or drop {'its row' if one else 'their rows'} "
                   f"(1 row cannot be split into folds)" + (f", then use {limit}" if limit else ""))
        else:
            one = len(rare) == 1
            fix = (f"use {limit}, or merge {f'class {names[rare[0]]!r}' if one else 'those classes'} into "
                   f"{'another class' if one else 'others'} or drop {'its' if one else 'their'} rows")
        raise FoldsError(f"folds.n={n} but {what}: {fix}")
    if groups is not None:
        g = len(np.unique(groups))
        if g < n:
            fix = f"use folds.n <= {g}" if g >= 2 else "no folds can be made; check competition.group_col (and dups.csv)"
            raise FoldsError(f"folds.n={n} but the rows form only {g} group{'s' if g != 1 else ''} "
                             f"(a group stays in one fold): {fix}")


def assign_folds(y: np.ndarray, n: int, seed: int, groups: np.ndarray | None = None,
                 classes: Sequence[str] | None = None) -> np.ndarray:
    """-> (N,) fold index per row: StratifiedKFold, or StratifiedGroupKFold with groups.
    classes: names of the class indices in y, for the error messages."""
    y = np.asarray(y)
    check_fold_counts(y, n, classes, groups)
    fold = np.full(len(y), -1, dtype=np.int64)
    if groups is None:
        splits = StratifiedKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    else:
        splits = StratifiedGroupKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)
    for k, (_, val) in enumerate(splits):
        fold[val] = k
    return fold


def folds_frame(ids: Sequence[str], fold: np.ndarray, groups: np.ndarray | None = None,
                extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The rows of folds.csv: id, fold (+ group, + extra columns such as dup_group)."""
    df = pd.DataFrame({"id": np.asarray(ids, dtype=object), "fold": fold})
    if groups is not None:
        df["group"] = groups
    for k, v in (extra or {}).items():
        df[k] = v
    return df


def plan_folds(path: Path, ids: Sequence[str], y: np.ndarray, n: int, seed: int,
               groups: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None,
               classes: Sequence[str] | None = None) -> tuple[np.ndarray, pd.DataFrame | None]:
    """folds.csv read back if present (checking it fits), else the folds to write, without writing.
    -> ((N,) folds, the frame to write or None when the file exists). classes: names for messages."""
    path = Path(path)
    ids = np.asarray(ids, dtype=object)
    if path.exists():
        return read_folds(path, ids, n), None
    fold = assign_folds(y, n, seed, groups, classes)
    return fold, folds_frame(ids, fold, groups, extra)


def frame_bytes(df: pd.DataFrame) -> bytes:
    """The exact bytes folds.csv gets (so its sha256 is known before it is written)."""
    return df.to_csv(index=False).encode("utf-8")


def ensure_folds(path: Path, ids: Sequence[str], y: np.ndarray, n: int, seed: int,
                 groups: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None,
                 classes: Sequence[str] | None = None) -> tuple[np.ndarray, str]:
    """Read folds.csv if present (checking it fits), else write it. -> ((N,) folds, sha256).
    classes: names of the class indices in y, for the error messages."""
    fold, df = plan_folds(path, ids, y, n, seed, groups, extra, classes)
    if df is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(frame_bytes(df))
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
