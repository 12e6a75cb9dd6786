"""Shift-aware scores of out-of-fold predictions: importance-weighted CV and the test-like fifth.

The weights come from runs/<competition>/shift/weights.csv (written by `python -m ensemble.shift`).
Any metric of the registry (plugins included) is weighted the same way: each row is repeated in
proportion to its weight (`resolution` copies for a weight of 1), which for integer counts is exactly
what sample weights do to accuracy, recall, F1, kappa, AUC and log loss.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.csv"
TEST_LIKE_FRACTION = 0.2
MAX_ROWS = 2_000_000  # replicated rows per weighted score


def shift_dir(comp_dir: str | Path) -> Path:
    return Path(comp_dir) / "shift"


def load_weights(comp_dir: str | Path) -> pd.DataFrame | None:
    """Train rows of shift/weights.csv indexed by id (p_test, weight, test_like), or None when absent."""
    f = shift_dir(comp_dir) / WEIGHTS_FILE
    if not f.is_file():
        return None
    df = pd.read_csv(f, dtype={"id": str}, keep_default_na=False)
    missing = {"id", "split", "p_test", "weight", "test_like"} - set(df.columns)
    if missing:
        raise ValueError(f"{f}: missing columns {', '.join(sorted(missing))}; re-run python -m ensemble.shift")
    tr = df[df["split"] == "train"].set_index("id")
    tr["test_like"] = tr["test_like"].astype(str).str.lower() == "true"
    return tr[["p_test", "weight", "test_like"]].astype({"p_test": float, "weight": float})


def align(weights: pd.DataFrame, ids) -> tuple[np.ndarray, np.ndarray]:
    """-> (weights (N,), test_like (N,) bool) for ids; ids unknown to weights.csv get weight 1, not test-like."""
    sub = weights.reindex(pd.Index(np.asarray(ids).astype(str)))
    unknown = int(sub["weight"].isna().sum())
    if unknown:
        logger.warning("%d ids are not in shift/weights.csv (weight 1); re-run python -m ensemble.shift", unknown)
    return sub["weight"].fillna(1.0).to_numpy(np.float64), sub["test_like"].fillna(False).to_numpy(bool)


def replicate_counts(w: np.ndarray, resolution: int = 64) -> np.ndarray:
    """(N,) integer copies per row, proportional to w (mean weight -> `resolution` copies)."""
    w = np.asarray(w, np.float64)
    if len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be finite, >= 0 and not all 0")
    res = max(4, min(resolution, MAX_ROWS // max(len(w), 1)))
    return np.rint(w / w.mean() * res).astype(np.int64)


def weighted_score(score: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, pred: np.ndarray,
                   w: np.ndarray, resolution: int = 64) -> float:
    """score(y, pred) with row i counted in proportion to w[i]; equal weights give score(y, pred) exactly."""
    counts = replicate_counts(w, resolution)
    if counts.sum() == 0:
        return float("nan")
    if np.all(counts == counts[0]):
        return float(score(y, pred))
    return float(score(np.repeat(y, counts, axis=0), np.repeat(pred, counts, axis=0)))


def subset_score(score, y, pred, mask) -> float:
    """score on the rows in mask (NaN when there are none or the metric is undefined there)."""
    import warnings
    if not np.any(mask):
        return float("nan")
    try:
        with warnings.catch_warnings():  # a small subset may hold a single class
            warnings.simplefilter("ignore", UserWarning)
            return float(score(y[mask], pred[mask]))
    except ValueError:
        return float("nan")


def ess(w: np.ndarray) -> float:
    w = np.asarray(w, np.float64)
    return float(w.sum() ** 2 / max(np.sum(w ** 2), 1e-300))


def shift_cv(comp_dir: str | Path, ids, y: np.ndarray, out: np.ndarray, metric, task: str) -> dict | None:
    """metrics.json's "shift" entry of a run's OOF outputs (pooled over folds, like its "cv"):
    weighted_cv, test_like_cv, the effective sample size and the shift AUC; None without weights.csv.
    metric: the competition's BoundMetric."""
    weights = load_weights(comp_dir)
    if weights is None:
        return None
    w, like = align(weights, ids)
    fn = (lambda yy, pp: metric.score_outputs(task, yy, pp))
    info = read_summary(comp_dir)
    return {"weighted_cv": weighted_score(fn, y, out, w), "test_like_cv": subset_score(fn, y, out, like),
            "ess": round(ess(w), 1), "ess_frac": round(ess(w) / len(w), 4), "n_test_like": int(like.sum()),
            "shift_auc": info.get("auc"), "weights": str(shift_dir(comp_dir) / WEIGHTS_FILE)}


def read_summary(comp_dir: str | Path) -> dict:
    """shift/shift.json as a dict ({} when absent or unreadable)."""
    import json
    f = shift_dir(comp_dir) / "shift.json"
    try:
        d = json.loads(f.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}
