"""Assemble per-fold predictions into the run artifacts: oof, test, metrics.json, PNGs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.metrics import BoundMetric, MetricLike, bind_metric, confusion, output_labels, per_class_recall
from ensemble.artifacts import RunPaths, atomic_write_json, probs_frame, write_probs


class AssembleError(RuntimeError):
    """Fold predictions are missing or do not fit together."""


def missing_folds(run_dir: Path, n_folds: int) -> list[int]:
    return RunPaths(run_dir).missing_folds(n_folds)


def assemble_run(run_dir: Path, *, fmt: str, ids: np.ndarray, test_ids: np.ndarray, y: np.ndarray,
                 folds: np.ndarray, classes: list[str], metric: BoundMetric | MetricLike, task: str, folds_hash: str,
                 fallback: np.ndarray | None = None, skipped: list[str] = (), extra: dict | None = None,
                 plots: bool = True) -> dict:
    """Combine fold<k>/preds.npz of all K folds. -> the metrics.json dict.

    metric: the competition's BoundMetric (or a name, spec text or MetricSpec, bound to `classes` here);
    metrics.json stores its text form. ids, y, folds: (N,) train rows; fallback: (C,) class prior given to rows that were not
    predicted (skipped images); the CV score is computed on predicted rows only. plots: also draw
    confusion.png and curves.png.
    """
    run_dir = Path(run_dir)
    metric = bind_metric(metric, classes)
    n_folds = int(folds.max()) + 1
    gone = missing_folds(run_dir, n_folds)
    if gone:
        raise AssembleError(f"{run_dir}: cannot assemble, fold(s) {', '.join(map(str, gone))} of "
                            f"{n_folds} have no predictions yet (fold<k>/preds.npz); train them first")
    width = 1 if task == "ordinal" else len(classes)
    oof = np.full((len(ids), width), np.nan, dtype=np.float32)
    test = np.zeros((len(test_ids), width), dtype=np.float64)
    fold_scores, results = {}, {}
    paths = RunPaths(run_dir, fmt)
    for k in range(n_folds):
        with np.load(paths.preds(k)) as p:
            idx, val, tst = p["val_idx"], p["val"], p["test"]
        if np.any(folds[idx] != k):
            raise AssembleError(f"{paths.fold_dir(k)}: predicted rows are not fold {k} of folds.csv")
        if tst.shape != test.shape:
            raise AssembleError(f"{paths.fold_dir(k)}: test predictions have shape {tst.shape}, expected {test.shape}")
        oof[idx] = val
        test += tst / n_folds
        fold_scores[str(k)] = metric.score_outputs(task, y[idx], val)
        results[str(k)] = json.loads(paths.result(k).read_text())
    done = ~np.isnan(oof[:, 0])
    if fallback is not None:
        oof[~done] = fallback
    if np.isnan(oof).any():
        raise AssembleError(f"{run_dir}: {int((~done).sum())} train rows have no out-of-fold prediction")
    cols = ["score"] if task == "ordinal" else classes
    write_probs(paths.oof, probs_frame(ids, oof, cols, folds))
    write_probs(paths.test, probs_frame(test_ids, test.astype(np.float32), cols))
    pred = output_labels(task, oof[done], len(classes))
    cm = confusion(y[done], pred, len(classes))
    out = {
        "run": run_dir.name, "competition": run_dir.parent.name, "task": task, "metric": metric.text,
        "greater_is_better": metric.higher_is_better,
        "cv": metric.score_outputs(task, y[done], oof[done]),
        "cv_folds": fold_scores,
        "cv_std": float(np.std(list(fold_scores.values()))),
        "per_class_recall": {c: (None if np.isnan(r) else round(float(r), 4))  # None: class absent
                             for c, r in zip(classes, per_class_recall(y[done], pred, len(classes)))},
        "confusion": cm.tolist(), "classes": classes, "folds_hash": folds_hash,
        "n_train": int(len(ids)), "n_test": int(len(test_ids)), "skipped_images": list(skipped),
        "folds": results, **(extra or {}),
        # training time of all folds, whichever processes and resumes they ran in
        "wall_seconds": float(sum(r["seconds"] for r in results.values())),
    }
    from ensemble.shift.scores import shift_cv  # weighted and test-like CV when shift/weights.csv exists
    shift = shift_cv(run_dir.parent, ids[done], y[done], oof[done], metric, task)
    if shift is not None:
        out["shift"] = shift
    atomic_write_json(paths.metrics, out)
    if plots:  # output.plots: confusion.png, curves.png
        _plots(run_dir, out, classes, metric.text)
    return out


def _plots(run_dir: Path, out: dict, classes: list[str], metric: str) -> None:
    from ensemble.train.plots import plot_confusion, plot_curves
    plot_confusion(np.array(out["confusion"]), classes, RunPaths(run_dir).confusion_png,
                   f"{out['run']}: OOF {metric} {out['cv']:.4f}")
    hist = [pd.read_csv(h) for h in RunPaths(run_dir).histories()]
    if hist:
        plot_curves(pd.concat(hist, ignore_index=True), metric, RunPaths(run_dir).curves_png)
