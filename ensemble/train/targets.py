"""Soft training targets beyond the labels: extra rows and the training rows' own soft targets.

train.extra_rows: FILE.csv   id, path, one probability column per class, weight
    Rows (pseudo-labelled test images, a distillation set) that join EVERY fold's training part and
    never a validation part; OOF predictions and CV stay on the competition's own rows. Their
    images go through the same decoding, resizing and cache as the test images (rows that are
    test images are taken from the test cache).
train.soft_targets: {file: FILE.csv, alpha: A}   id (+ fold), one probability column per class
    A soft target for every training row (a teacher's out-of-fold probabilities when distilling):
    target = A * probabilities + (1 - A) * one-hot label. Validation keeps the hard labels.

Targets are soft rows (N, C) whose sum is the row's weight (ensemble.train.losses): 1 for a
competition row, `weight` for an extra row. Relative image paths are relative to the working
directory, like the config's `competition.root`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)
SUM_TOL = 1e-3  # probability rows must sum to 1 within this (CSV rounding)


@dataclass
class ExtraRows:
    """Soft-target rows for every fold's training part. targets (E, C): probabilities x weight."""
    ids: np.ndarray  # (E,) str
    paths: list[str]  # (E,) image files
    targets: np.ndarray  # (E, C) float32; a row's sum is its weight
    source: Path


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} not found")
    try:
        df = pd.read_csv(path, dtype={"id": str, "path": str}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{what}: {path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    if df.empty:
        raise ValueError(f"{what}: {path} has no rows")
    return df


def _check_columns(df: pd.DataFrame, path: Path, what: str, required: Sequence[str], optional: Sequence[str] = ()):
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: {path}: missing column(s) {', '.join(repr(c) for c in missing)}; expected "
                         f"{', '.join(required)}")
    unknown = [c for c in df.columns if c not in required and c not in optional]
    if unknown:
        raise ValueError(f"{what}: {path}: unknown column(s) {', '.join(repr(str(c)) for c in unknown)}; expected "
                         f"{', '.join([*required, *optional])} (one probability column per class)")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise ValueError(f"{what}: {path}: id {dup.iat[0]!r} appears more than once")


def _line(df: pd.DataFrame, i: int, path: Path) -> str:
    return f"{path}: line {i + 2} (id {str(df['id'].iat[i])!r})"


def _probabilities(df: pd.DataFrame, classes: Sequence[str], path: Path, what: str) -> np.ndarray:
    """The class columns as (N, C) float32 rows of probabilities summing to 1."""
    try:
        p = df[list(classes)].to_numpy(np.float64)
    except ValueError as e:
        raise ValueError(f"{what}: {path}: class columns must hold numbers ({str(e).splitlines()[0]})") from None
    bad = np.flatnonzero(~np.isfinite(p).all(1) | (p < 0).any(1) | (p > 1).any(1))
    if len(bad):
        raise ValueError(f"{what}: {_line(df, int(bad[0]), path)}: expected probabilities in [0, 1], got "
                         f"{p[bad[0]].tolist()}")
    off = np.flatnonzero(np.abs(p.sum(1) - 1.0) > SUM_TOL)
    if len(off):
        raise ValueError(f"{what}: {_line(df, int(off[0]), path)}: probabilities sum to {p[off[0]].sum():.6g}, "
                         f"expected 1 ({len(off)} row(s) like this)")
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def read_extra_rows(path: str | Path, classes: Sequence[str], train_ids: Sequence[str],
                    train_paths: Sequence[str]) -> ExtraRows:
    """Read and check train.extra_rows (before anything is written): its columns, probabilities,
    weights > 0 and image files; no row may be a training row (by id or image file): that image
    would sit in a validation part too. Soft targets for the training rows go in train.soft_targets."""
    path, what = Path(path), "train.extra_rows"
    df = _read_csv(path, what)
    _check_columns(df, path, what, ["id", "path", *classes, "weight"])
    probs = _probabilities(df, classes, path, what)
    w = pd.to_numeric(df["weight"], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
    if len(bad):
        raise ValueError(f"{what}: {_line(df, int(bad[0]), path)}: weight must be a number > 0, got "
                         f"{str(df['weight'].iat[bad[0]])!r}")
    ids = df["id"].astype(str).to_numpy(object)
    clash = np.flatnonzero(pd.Index(ids).isin(pd.Index([str(i) for i in train_ids])))
    if len(clash):
        raise ValueError(f"{what}: {_line(df, int(clash[0]), path)}: the id is a training row of the competition "
                         f"({len(clash)} such row(s)); soft targets of training rows go in train.soft_targets")
    paths = [str(p) for p in df["path"].astype(str)]
    resolved = [str(Path(p).resolve()) for p in paths]
    train_files = {str(Path(p).resolve()) for p in train_paths}
    clash = [i for i, r in enumerate(resolved) if r in train_files]
    if clash:
        raise ValueError(f"{what}: {_line(df, clash[0], path)}: {paths[clash[0]]} is a training image of the "
                         f"competition; it would also be in a validation part")
    missing = [i for i, r in enumerate(resolved) if not Path(r).is_file()]
    if missing:
        raise FileNotFoundError(f"{what}: {_line(df, missing[0], path)}: image {paths[missing[0]]} not found "
                                f"({len(missing)} missing; relative paths are relative to {Path.cwd()})")
    return ExtraRows(ids, paths, (probs * w[:, None]).astype(np.float32), path)


def read_soft_targets(path: str | Path, classes: Sequence[str], ids: Sequence[str]) -> np.ndarray:
    """train.soft_targets' probabilities aligned on the training ids (N,) -> (N, C) float32.
    Every training id must have a row, and every row a training id."""
    path, what = Path(path), "train.soft_targets.file"
    df = _read_csv(path, what)
    _check_columns(df, path, what, ["id", *classes], optional=["fold"])
    probs = _probabilities(df, classes, path, what)
    index = pd.Index(df["id"].astype(str))
    want = pd.Index([str(i) for i in ids])
    pos = index.get_indexer(want)
    if (pos < 0).any():
        missing = want[pos < 0]
        raise ValueError(f"{what}: {path}: {len(missing)} training id(s) have no row (e.g. {missing[0]!r}); "
                         f"expected one row per row of the competition's train.csv")
    extra = index[~index.isin(want)]
    if len(extra):
        raise ValueError(f"{what}: {path}: {len(extra)} id(s) are not training rows (e.g. {extra[0]!r})")
    return probs[pos]


def target_table(y: np.ndarray, n_classes: int, soft: np.ndarray | None = None, alpha: float = 1.0) -> np.ndarray:
    """Soft targets of the competition rows: one-hot labels y (N,), or alpha * soft (N, C) +
    (1 - alpha) * one-hot. -> (N, C) float32, rows summing to 1."""
    onehot = np.eye(n_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
    if soft is None:
        return onehot
    return (alpha * np.asarray(soft, np.float32) + (1.0 - alpha) * onehot).astype(np.float32)


def extra_images(rows: ExtraRows, test_paths: Sequence[str], test_cache, size: int, cache_dir: Path, *,
                 policy: str = "fail", workers: int = 2, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(E, S, S, 3) uint8 images of the extra rows and their readable mask (E,): from the test
    cache (a CacheResult) when every row is a test image, else decoded and resized into
    `cache_dir` like the test images (input.bad_images `policy`)."""
    where = {str(Path(p).resolve()): i for i, p in enumerate(test_paths)}
    pos = np.asarray([where.get(str(Path(p).resolve()), -1) for p in rows.paths])
    if (pos >= 0).all():
        return np.asarray(test_cache.array[pos]), np.asarray(test_cache.ok, bool)[pos]
    from ensemble.data.images import build_cache
    res = build_cache(rows.paths, size, cache_dir, policy=policy, workers=workers, progress=progress)
    return res.array, np.asarray(res.ok, bool)


@dataclass
class SoftInputs:
    """A run's train.extra_rows and train.soft_targets, read and checked once before anything is written."""
    extra: ExtraRows | None = None
    soft: np.ndarray | None = None  # (N, C) probabilities of the training rows
    alpha: float = 1.0
    soft_file: Path | None = None

    @classmethod
    def read(cls, extra_rows: str | None, soft_targets, comp) -> "SoftInputs":
        """extra_rows: the CSV path or None; soft_targets: a SoftTargetsCfg (file, alpha) or None;
        comp: the Competition (classes, train ids and image paths)."""
        classes = list(comp.classes)
        ids = comp.train["id"].astype(str).tolist()
        extra = read_extra_rows(extra_rows, classes, ids, comp.train["path"].tolist()) if extra_rows else None
        if soft_targets is None:
            return cls(extra)
        return cls(extra, read_soft_targets(soft_targets.file, classes, ids), float(soft_targets.alpha),
                   Path(soft_targets.file))

    def fold_inputs(self, y: np.ndarray, n_classes: int, test_paths: Sequence[str], test_cache, size: int,
                    cache_dir: Path, *, policy: str = "fail", workers: int = 2, progress: bool = False
                    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """-> FoldInputs' targets (N, C) or None, extra_images (E, S, S, 3) or None, extra_targets (E, C)
        or None. Extra rows whose image could not be read (input.bad_images: skip) are left out."""
        targets = target_table(y, n_classes, self.soft, self.alpha) if self.soft is not None else None
        if self.extra is None:
            return targets, None, None
        images, ok = extra_images(self.extra, test_paths, test_cache, size, cache_dir, policy=policy,
                                  workers=workers, progress=progress)
        if not ok.all():
            logger.warning(f"warning: {int((~ok).sum())} extra training row(s) of {self.extra.source} could not be "
                           f"read and are left out: {', '.join(map(str, self.extra.ids[~ok][:5]))}")
        logger.info(f"{int(ok.sum())} extra training rows from {self.extra.source} join every fold's training part "
                    f"(weights {self.extra.targets[ok].sum(1).min():g}..{self.extra.targets[ok].sum(1).max():g})")
        return targets, np.asarray(images[ok]), self.extra.targets[ok]

    def provenance(self) -> dict:
        """metrics.json fields naming the files (and their sha256) the run's targets came from."""
        from ensemble.artifacts import file_hash
        out = {}
        if self.extra is not None:
            out["extra_rows"] = {"path": str(self.extra.source), "sha256": file_hash(self.extra.source),
                                 "rows": int(len(self.extra.ids))}
        if self.soft_file is not None:
            out["soft_targets"] = {"path": str(self.soft_file), "sha256": file_hash(self.soft_file),
                                   "alpha": self.alpha}
        return out
