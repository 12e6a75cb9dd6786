"""Find the runs of a competition and load them aligned for voting.

Every run must share the class list (and order), the folds.csv hash, the OOF ids and the test ids
of the sample submission; each mismatch is a RunsError naming the run and what differs. Arrays are
aligned by id with vectorised indexing and stacked as (M, N, C) float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from ensemble.artifacts import RunPaths, competition_cfg, file_hash, read_metrics, read_probs, split_probs
from ensemble.artifacts.paths import RunsError
from ensemble.artifacts.paths import find_runs  # noqa: F401 (re-exported: vote's run discovery)
from ensemble.metrics import BoundMetric, bind_metric
from ensemble.vote.submission import SUM_TOL, examples, id_differences, read_sample, same_ids

REQUIRED_KEYS = ("run", "competition", "metric", "classes", "folds_hash")


@dataclass
class Run:
    name: str
    paths: RunPaths
    metrics: dict

    @property
    def ordinal(self) -> bool:
        return self.metrics.get("task", "classification") == "ordinal"


@dataclass
class Runs:
    """M runs aligned on N OOF rows and T test rows (sample-submission order)."""
    runs: list[Run]
    competition: str
    classes: list[str]
    metric: BoundMetric  # bound to `classes` (an AUC on a subset sample names its classes); str(): its text
    ordinal: bool
    folds_hash: str
    oof_ids: np.ndarray  # (N,) str
    y: np.ndarray  # (N,) int class index
    folds: np.ndarray  # (N,) int
    oof: np.ndarray  # (M, N, C) float32; C = 1 for ordinal scores
    test: np.ndarray  # (M, T, C) float32
    sample: pd.DataFrame  # the sample submission (ids as strings; see submission.read_sample)
    sample_path: Path
    id_col: str

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runs]


# ---------------------------------------------------------------- competition data
class LabelsAndSample(NamedTuple):
    labels: pd.Series  # train id -> class index (int), indexed by id
    classes: list[str]
    sample: pd.DataFrame
    sample_path: Path
    metric: str
    id_col: str
    declared: bool = False  # the config lists competition.classes (not taken from the labels)


def subset_problem(classes: Sequence[str], sample: pd.DataFrame, id_col: str, declared: bool, name: str,
                   labels: pd.Series | None = None) -> str | None:
    """A sample with >= 2 probability columns for only some of the classes (ISIC 2017's two of three)
    is a subset submission only when the config declares the classes; with classes taken from the
    labels, a class missing from the sample is an unknown label that became a class."""
    cols = [str(c) for c in sample.columns if str(c) != id_col]
    missing = [c for c in classes if c not in cols]
    if declared or len(cols) < 2 or not missing or not set(cols) <= set(classes):
        return None
    counts = labels.value_counts() if labels is not None else None
    what = ", ".join(repr(c) + ("" if counts is None else f" ({int(counts.get(classes.index(c), 0))} train rows)")
                     for c in missing[:5])
    return (f"{name} has {len(cols)} of the {len(classes)} classes as columns; not in it: {what}. Declare "
            f"competition.classes in the config if the sample really scores only some classes; otherwise "
            f"those labels are not classes of the competition: fix the train labels and retrain")


def load_labels_and_sample(run_dir: str | Path) -> LabelsAndSample:
    """True labels (by metrics.json's class order) and the sample submission, from the artifacts.

    Labels: runs/<competition>/labels.csv (written by training); for older csv-layout runs, the id
    and label columns of the competition's train.csv named by the run's config.yaml.
    """
    metrics = read_metrics(run_dir)
    classes = [str(c) for c in metrics["classes"]]
    cfg = competition_cfg(run_dir)
    root = Path(cfg.root)
    labels_file = RunPaths(run_dir).competition.labels
    if labels_file.is_file():  # written by training: vote reads artifacts only
        train = pd.read_csv(labels_file, dtype=str, keep_default_na=False)
        ids, labels = train["id"], train["label"]
    elif cfg.layout == "csv":  # runs trained before labels.csv existed
        path = root / cfg.train_csv
        if not path.is_file():
            raise RunsError(f"{run_dir}: train labels not found: {path}")
        train = pd.read_csv(path, dtype=str, keep_default_na=False,
                            usecols=lambda c: c in (cfg.id_col, cfg.label_col))
        for col in (cfg.id_col, cfg.label_col):
            if col not in train.columns:
                raise RunsError(f"{path}: missing column '{col}' (columns: {', '.join(train.columns)})")
        ids, labels = train[cfg.id_col], train[cfg.label_col].str.strip()
    else:
        raise RunsError(f"{run_dir}: no {labels_file} (the train labels of a folders-layout competition); "
                        f"write it with python -m ensemble.train --cfg <the run's config> --assemble")
    y = labels.map(pd.Series(np.arange(len(classes)), index=classes))
    if y.isna().any():
        bad = labels[y.isna()].unique()[:3]
        raise RunsError(f"{run_dir}: train labels {list(bad)} are not in the run's classes {classes}")
    sample_path = root / cfg.sample_submission
    sample = read_sample(sample_path, cfg.id_col)
    id_col = cfg.id_col if cfg.id_col in sample.columns else str(sample.columns[0])
    return LabelsAndSample(pd.Series(y.to_numpy(np.int64), index=pd.Index(ids.astype(str))), classes, sample,
                           sample_path, metrics["metric"], id_col, bool(cfg.classes))


# ---------------------------------------------------------------- checks and alignment
def _short(h: str) -> str:
    return str(h)[:12]


def id_diff(got: np.ndarray, want: np.ndarray) -> str | None:
    """None if `got` has exactly the ids of `want` (any order); else what differs."""
    parts = []
    dup, missing, extra = id_differences(got, want)
    if len(dup):
        parts.append(f"{len(dup)} duplicated (e.g. {examples(dup)})")
    if len(missing):
        parts.append(f"{len(missing)} missing (e.g. {examples(missing)})")
    if len(extra):
        parts.append(f"{len(extra)} extra (e.g. {examples(extra)})")
    return ", ".join(parts) or None


def align(got: np.ndarray, want: np.ndarray, what: str) -> np.ndarray | None:
    """Row positions that put `got` into the order of `want` (None: already identical)."""
    if len(got) == len(want) and np.array_equal(got, want):
        return None
    diff = id_diff(got, want)
    if diff:
        raise RunsError(f"{what}: {diff}")
    return pd.Index(got).get_indexer(want)


def check_metadata(runs: list[Run], folds_csv: Path | None = None) -> None:
    """Same competition, metric, task, classes (and order) and folds hash for every run."""
    for r in runs:
        missing = [k for k in REQUIRED_KEYS if k not in r.metrics]
        if missing:
            raise RunsError(f"run '{r.name}': metrics.json lacks {', '.join(missing)}")
    ref = runs[0]
    current = file_hash(folds_csv) if folds_csv is not None and folds_csv.is_file() else None
    for r in runs:
        a, b = r.metrics, ref.metrics
        for key in ("competition", "metric"):
            if a[key] != b[key]:
                raise RunsError(f"run '{r.name}': {key} '{a[key]}' differs from run '{ref.name}' ('{b[key]}')")
        if r.ordinal != ref.ordinal:
            kind = {True: "ordinal scores", False: "class probabilities"}
            raise RunsError(f"run '{r.name}' stores {kind[r.ordinal]} but run '{ref.name}' "
                            f"stores {kind[ref.ordinal]}")
        if list(a["classes"]) != list(b["classes"]):
            how = " (same classes, another order)" if sorted(a["classes"]) == sorted(b["classes"]) else ""
            raise RunsError(f"run '{r.name}': classes {list(a['classes'])} differ from run "
                            f"'{ref.name}' {list(b['classes'])}{how}")
        if a["folds_hash"] != b["folds_hash"]:
            raise RunsError(f"run '{r.name}': folds_hash {_short(a['folds_hash'])} differs from run "
                            f"'{ref.name}' ({_short(b['folds_hash'])}): trained on another folds.csv")
        if current is not None and a["folds_hash"] != current:
            raise RunsError(f"run '{r.name}': folds_hash {_short(a['folds_hash'])} does not match the "
                            f"current {folds_csv} ({_short(current)})")


def _frame(run: Run, which: str, columns: list[str]) -> pd.DataFrame:
    """A run's oof/test frame with exactly `columns`, every value finite (and in [0, 1] for probabilities)."""
    path = getattr(run.paths, which)
    try:
        df = read_probs(path)
    except ValueError as e:  # a text cell: "could not convert string to float: 'abc'"
        raise RunsError(f"run '{run.name}': {path}: {str(e).splitlines()[0]}") from None
    cols = [c for c in df.columns if c not in ("id", "fold")]
    if cols != columns:
        raise RunsError(f"run '{run.name}': {path.name} columns {cols} do not match its classes {columns}")
    probs = columns != ["score"]
    where = (lambda i: f"{path}: line {i + 2} (id {str(df['id'].iat[i])!r})") if path.suffix == ".csv" else (
        lambda i: f"{path}: row {i + 1} (id {str(df['id'].iat[i])!r})")
    sums = np.zeros(len(df), np.float64)
    for c in columns:
        v = df[c].to_numpy(np.float32)
        bad = np.flatnonzero(~np.isfinite(v) | ((v < 0) | (v > 1) if probs else False))
        if len(bad):
            raise RunsError(f"run '{run.name}': {where(int(bad[0]))}: column '{c}' is {v[bad[0]]:g}, expected "
                            f"{'a probability in [0, 1]' if probs else 'a finite score'} "
                            f"({len(bad)} bad value{'' if len(bad) == 1 else 's'} in the column)")
        sums += v
    off = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOL) if probs else []
    if len(off):  # the artifact contract: softmax rows
        raise RunsError(f"run '{run.name}': {where(int(off[0]))}: probabilities sum to {sums[off[0]]:.6g}, expected "
                        f"1 (+-{SUM_TOL:g}) ({len(off)} row{'' if len(off) == 1 else 's'} like this)")
    return df


def run_metric(run: Run, info: LabelsAndSample) -> BoundMetric:
    """metrics.json's metric, checked against the registry and the classes; an AUC with no class
    parameters is restricted to the sample submission's columns when they are a subset (as in training)."""
    scored = [str(c) for c in info.sample.columns if str(c) != info.id_col]
    try:
        return bind_metric(run.metrics["metric"], info.classes, scored)
    except ValueError as e:
        raise RunsError(f"run '{run.name}': metrics.json metric: {e}") from None


def load_runs(run_dirs: Sequence[str | Path]) -> Runs:
    """Check and load runs: metadata first, then OOF (aligned on the first run's ids), then test
    (aligned on the sample submission's ids)."""
    runs = [Run(Path(d).name, RunPaths.find(d), read_metrics(d)) for d in run_dirs]
    check_metadata(runs, RunPaths(run_dirs[0]).competition.folds)
    ref = runs[0]
    info = load_labels_and_sample(ref.paths.root)
    if not ref.ordinal:
        bad = subset_problem(info.classes, info.sample, info.id_col, info.declared, info.sample_path.name, info.labels)
        if bad:
            raise RunsError(f"run '{ref.name}': {bad}")
    columns = ["score"] if ref.ordinal else info.classes
    m = len(runs)
    oof = None
    for i, r in enumerate(runs):
        ids, _, values, folds = split_probs(_frame(r, "oof", columns))
        if folds is None:
            raise RunsError(f"run '{r.name}': {r.paths.oof.name} has no 'fold' column")
        if oof is None:
            oof_ids, fold_ref = ids, folds.astype(np.int64)
            oof = np.empty((m, len(ids), len(columns)), np.float32)
            pos = None
        else:
            pos = align(ids, oof_ids, f"run '{r.name}': OOF ids differ from run '{ref.name}'")
        values, folds = (values, folds) if pos is None else (values[pos], folds[pos])
        moved = np.flatnonzero(folds != fold_ref)
        if len(moved):
            raise RunsError(f"run '{r.name}': {len(moved)} OOF rows are in another fold than in run "
                            f"'{ref.name}' (e.g. id {oof_ids[moved[0]]!r})")
        oof[i] = values
    y = info.labels.reindex(oof_ids)
    if y.isna().any():
        raise RunsError(f"run '{ref.name}': {int(y.isna().sum())} OOF ids are not in the train labels "
                        f"(e.g. {examples(oof_ids[y.isna().to_numpy()])})")
    sample_ids = info.sample[info.id_col].astype(str)
    test = np.empty((m, len(sample_ids), len(columns)), np.float32)
    for i, r in enumerate(runs):  # column by column into the stack: no (T, C) temporaries
        df = _frame(r, "test", columns)
        pos = None if same_ids(df["id"], sample_ids) else align(
            df["id"].to_numpy(object), sample_ids.to_numpy(object),
            f"run '{r.name}': test ids differ from {info.sample_path.name}")
        for j, c in enumerate(columns):
            values = df[c].to_numpy(np.float32)
            test[i, :, j] = values if pos is None else values[pos]
        del df
    return Runs(runs, ref.metrics["competition"], info.classes, run_metric(ref, info), ref.ordinal,
                ref.metrics["folds_hash"], oof_ids, y.to_numpy(np.int64), fold_ref, oof, test,
                info.sample, Path(info.sample_path), info.id_col)
