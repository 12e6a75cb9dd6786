"""The built-in metrics (scikit-learn underneath). Each is registered with ``register_metric`` and
scored through ensemble.metrics (see its docstring for the conventions: absent classes, NaN)."""
from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

from ensemble.metrics.arrays import per_class_recall
from ensemble.metrics.registered import register_metric


def _recall_per_class(y, pred, n_classes):
    """(C,) recall; NaN for a class absent from y."""
    return per_class_recall(y, pred, n_classes)


def _f1_per_class(y, pred, n_classes):
    """(C,) F1 (0 when undefined); NaN for a class in neither y nor pred."""
    f1 = skm.f1_score(y, pred, labels=np.arange(n_classes), average=None, zero_division=0)
    seen = np.isin(np.arange(n_classes), np.concatenate([y, pred]))
    return np.where(seen, f1, np.nan)


def _auc_per_class(y, probs, n_classes):
    """(C,) one-vs-rest AUC of probs[:, c]; NaN for a class without both outcomes in y."""
    return np.array([skm.roc_auc_score(y == c, probs[:, c]) if 0 < np.sum(y == c) < len(y) else np.nan
                     for c in range(n_classes)])


@register_metric("accuracy", greater_is_better=True, needs="label")
def _accuracy(y, pred, n_classes):
    return skm.accuracy_score(y, pred)


@register_metric("balanced_accuracy", greater_is_better=True, needs="label", per_class=_recall_per_class,
                 balanced=True)
def _balanced_accuracy(y, pred, n_classes):
    """Mean recall over the classes present in ``y``."""
    return skm.balanced_accuracy_score(y, pred)


@register_metric("macro_f1", greater_is_better=True, needs="label", per_class=_f1_per_class, balanced=True)
def _macro_f1(y, pred, n_classes):
    """Macro F1 over the classes present in ``y`` or ``pred``."""
    return skm.f1_score(y, pred, average="macro", zero_division=0)


@register_metric("qwk", greater_is_better=True, needs="label", grades=True)
def _qwk(y, pred, n_classes):
    """Quadratic weighted kappa; ``labels=range(C)`` keeps grade distances right when a grade is absent."""
    return skm.cohen_kappa_score(y, pred, labels=np.arange(n_classes), weights="quadratic")


@register_metric("roc_auc", greater_is_better=True, needs="proba", per_class=_auc_per_class)
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
