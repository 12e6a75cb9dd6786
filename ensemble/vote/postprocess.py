"""Post-processing of combined predictions: per-class log-bias for probabilities, expected grades,
and the score -> grade cut (what ensemble.vote.objective fits them to: fit_bias, fit_thresholds).

probs: (N, C) probabilities; scores: (N,) or (N, 1) ordinal scores or expected grades.
"""
from __future__ import annotations

import numpy as np

from ensemble.metrics import ordinal_labels  # noqa: F401 (the one score -> grade rule, re-exported)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows of x (N, C) divided by their sums, in place. -> x."""
    x /= x.sum(axis=1, keepdims=True)
    return x


def apply_bias(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """probs (N, C) * exp(bias (C,)), renormalised: shifts argmax decisions, stays a distribution."""
    return normalise(probs * np.exp(bias).astype(np.float32))


def expected_grade(probs: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities (or any non-negative scores) -> (N, 1) expected grade sum_k p_k k,
    with each row normalised first (rank averages do not sum to 1)."""
    p = np.asarray(probs, np.float64)
    sums = p.sum(axis=1, keepdims=True)
    grade = (p @ np.arange(p.shape[1], dtype=np.float64))[:, None] / np.where(sums > 0, sums, 1.0)
    return grade.astype(np.float32)
