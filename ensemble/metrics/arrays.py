"""The arrays a metric scores, checked, and the label rules every scorer shares: labels (N,) and
probabilities (N, C) as the metrics take them, confusion counts, per-class recall, and the one
ordinal score -> grade rule."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def check_labels(y, what: str, n_classes: int | None = None) -> np.ndarray:
    """(N,) integer class indices (in [0, n_classes) when given) -> int64; ValueError naming `what`."""
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


def check_probs(y_true, probs) -> tuple[np.ndarray, np.ndarray, int]:
    """y_true (N,), probs (N, C) -> (labels int64, probabilities float64, C); ValueError when they do
    not fit together."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2, got {p.shape}")
    y = check_labels(y_true, "y_true", p.shape[1])
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but probs has {len(p)}")
    if len(y) == 0:
        raise ValueError("cannot score an empty set (0 rows)")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and >= 0")
    return y, p, p.shape[1]


def confusion(y_true, pred, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    y, p = check_labels(y_true, "y_true", n_classes), check_labels(pred, "pred", n_classes)
    return skm.confusion_matrix(y, p, labels=np.arange(n_classes))


def per_class_recall(y_true, pred, n_classes: int) -> np.ndarray:
    """(C,) recall per class; NaN for a class with no true samples."""
    cm = confusion(y_true, pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def ordinal_labels(scores: np.ndarray, thresholds: np.ndarray | None, n_classes: int) -> np.ndarray:
    """(N,) or (N, 1) ordinal scores -> (N,) labels in 0..n_classes-1, cut at `thresholds`
    (n_classes - 1,) ascending; default k + 0.5. A score on a cut point goes up (2.5 -> 3).
    The one score -> grade rule: training's CV and vote's submissions both use it."""
    thr = np.arange(n_classes - 1) + 0.5 if thresholds is None else thresholds
    return np.searchsorted(thr, np.ravel(scores), side="right")


def output_labels(task: str, out: np.ndarray, n_classes: int) -> np.ndarray:
    """Model outputs -> class indices: argmax of (N, C) probabilities, or the (N, 1)
    ordinal score cut at k + 0.5 (ordinal_labels)."""
    if task == "ordinal":
        return ordinal_labels(out[:, 0], None, n_classes)
    return out.argmax(1)
