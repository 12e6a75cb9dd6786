"""Metric registry over scikit-learn.

Every metric is called as ``metric(y_true, probs)`` with ``y_true`` (N,) int class indices and
``probs`` (N, C) probabilities; "label" metrics score ``probs.argmax(1)``. Folds in which some classes
are absent are fine: label metrics use the classes that occur, roc_auc averages the classes that
have both positives and negatives, log_loss uses ``labels=range(C)``. Undefined scores are NaN.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning


@dataclass(frozen=True)
class Metric:
    """``fn(y_true (N,), pred, n_classes) -> float``; ``pred`` is labels (N,) or probs (N, C) per ``needs``."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray, int], float]
    greater_is_better: bool
    needs: str  # "label" | "proba"

    def __call__(self, y_true, probs) -> float:
        return score(self.name, y_true, probs)


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, greater_is_better: bool, needs: str) -> Callable:
    if needs not in ("label", "proba"):
        raise ValueError(f"metric needs must be 'label' or 'proba', got '{needs}'")

    def deco(fn):
        METRICS[name] = Metric(name, fn, greater_is_better, needs)
        return fn

    return deco


@contextmanager
def _quiet():
    """Silence sklearn's harmless warnings for folds with absent classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", category=RuntimeWarning, message="invalid value encountered")
        yield


@register_metric("accuracy", greater_is_better=True, needs="label")
def _accuracy(y, pred, n_classes):
    return skm.accuracy_score(y, pred)


@register_metric("balanced_accuracy", greater_is_better=True, needs="label")
def _balanced_accuracy(y, pred, n_classes):
    """Mean recall over the classes present in ``y``."""
    return skm.balanced_accuracy_score(y, pred)


@register_metric("macro_f1", greater_is_better=True, needs="label")
def _macro_f1(y, pred, n_classes):
    """Macro F1 over the classes present in ``y`` or ``pred``."""
    return skm.f1_score(y, pred, average="macro", zero_division=0)


@register_metric("qwk", greater_is_better=True, needs="label")
def _qwk(y, pred, n_classes):
    """Quadratic weighted kappa; ``labels=range(C)`` keeps grade distances right when a grade is absent."""
    return skm.cohen_kappa_score(y, pred, labels=np.arange(n_classes), weights="quadratic")


@register_metric("roc_auc", greater_is_better=True, needs="proba")
def _roc_auc(y, probs, n_classes):
    """Binary: AUC of probs[:, 1]. Multiclass: one-vs-rest macro over classes with both outcomes present."""
    if n_classes == 2:
        return skm.roc_auc_score(y, probs[:, 1]) if len(np.unique(y)) == 2 else math.nan
    aucs = [skm.roc_auc_score(y == c, probs[:, c]) for c in range(n_classes) if 0 < np.sum(y == c) < len(y)]
    return float(np.mean(aucs)) if aucs else math.nan


@register_metric("log_loss", greater_is_better=False, needs="proba")
def _log_loss(y, probs, n_classes):
    sums = probs.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError(f"probs rows must sum to > 0 for log_loss; row(s) {np.flatnonzero(sums[:, 0] <= 0)[:5].tolist()} sum to 0")
    p = probs / sums  # float32 rows that sum to 1 +- 1e-7 would trip sklearn's check
    return skm.log_loss(y, p, labels=np.arange(n_classes))


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'; available: {', '.join(METRICS)}")
    return METRICS[name]


def _labels(y, what: str, n_classes: int | None = None) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-d class indices (N,), got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
            raise ValueError(f"{what} must be integer class indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if n_classes is not None and a.size and (a.min() < 0 or a.max() >= n_classes):
        bad = sorted(set(a[(a < 0) | (a >= n_classes)].tolist()))[:5]
        raise ValueError(f"{what} has class indices outside [0, {n_classes}): {bad}")
    return a


def _probs(y_true, probs) -> tuple[np.ndarray, np.ndarray, int]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2, got {p.shape}")
    y = _labels(y_true, "y_true", p.shape[1])
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but probs has {len(p)}")
    if len(y) == 0:
        raise ValueError("cannot score an empty set (0 rows)")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and >= 0")
    return y, p, p.shape[1]


def score(name: str, y_true, probs) -> float:
    """Score probabilities (N, C) against y_true (N,); label metrics use ``probs.argmax(1)``."""
    m = get_metric(name)
    y, p, n_classes = _probs(y_true, probs)
    with _quiet():
        return float(m.fn(y, p.argmax(axis=1) if m.needs == "label" else p, n_classes))


def score_labels(name: str, y_true, y_pred, n_classes: int | None = None) -> float:
    """Score hard labels (N,) with a "label" metric; ``n_classes`` defaults to max label + 1."""
    m = get_metric(name)
    if m.needs != "label":
        label_names = ", ".join(k for k, v in METRICS.items() if v.needs == "label")
        raise ValueError(f"metric '{name}' needs probabilities; score_labels supports: {label_names}")
    y, pred = _labels(y_true, "y_true", n_classes), _labels(y_pred, "y_pred", n_classes)
    if len(y) != len(pred):
        raise ValueError(f"y_true has {len(y)} rows but y_pred has {len(pred)}")
    if len(y) == 0:
        raise ValueError("cannot score an empty set (0 rows)")
    if n_classes is None:
        n_classes = int(max(y.max(), pred.max())) + 1
    with _quiet():
        return float(m.fn(y, pred, n_classes))


def confusion(y_true, pred, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    y, p = _labels(y_true, "y_true", n_classes), _labels(pred, "pred", n_classes)
    return skm.confusion_matrix(y, p, labels=np.arange(n_classes))


def per_class_recall(y_true, pred, n_classes: int) -> np.ndarray:
    """(C,) recall per class; NaN for a class with no true samples."""
    cm = confusion(y_true, pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def is_better(metric_name: str, a: float, b: float | None) -> bool:
    """True if score ``a`` is strictly better than ``b`` (``b`` None or NaN: any finite ``a`` wins)."""
    m = get_metric(metric_name)
    if a is None or math.isnan(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a > b if m.greater_is_better else a < b


def output_labels(task: str, out: np.ndarray, n_classes: int) -> np.ndarray:
    """Model outputs -> class indices: argmax of (N, C) probabilities, or the (N, 1)
    ordinal score rounded and clipped to 0..C-1."""
    if task == "ordinal":
        return np.clip(np.rint(out[:, 0]), 0, n_classes - 1).astype(int)
    return out.argmax(1)


def score_outputs(metric: str, task: str, y_true: np.ndarray, out: np.ndarray, n_classes: int) -> float:
    """The competition metric of a run's outputs (probabilities, or ordinal scores)."""
    if task == "ordinal":
        return score_labels(metric, y_true, output_labels(task, out, n_classes), n_classes)
    return score(metric, y_true, out)
