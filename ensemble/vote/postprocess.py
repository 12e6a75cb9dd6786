"""Post-processing fitted on OOF rows: per-class log-bias for probabilities, cut points for grades.

probs: (N, C) probabilities; scores: (N,) or (N, 1) ordinal scores or expected grades. The
objective is a vote.methods.Objective (the competition metric, larger-is-better via `gain`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ensemble.metrics import ordinal_labels  # noqa: F401 (the one score -> grade rule, re-exported)

if TYPE_CHECKING:
    from ensemble.vote.methods import Objective


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= x.sum(axis=1, keepdims=True)
    return x


def apply_bias(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """probs (N, C) * exp(bias (C,)), renormalised: shifts argmax decisions, stays a distribution."""
    return _normalise(probs * np.exp(bias).astype(np.float32))


def expected_grade(probs: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities (or any non-negative scores) -> (N, 1) expected grade sum_k p_k k,
    with each row normalised first (rank averages do not sum to 1)."""
    p = np.asarray(probs, np.float64)
    sums = p.sum(axis=1, keepdims=True)
    grade = (p @ np.arange(p.shape[1], dtype=np.float64))[:, None] / np.where(sums > 0, sums, 1.0)
    return grade.astype(np.float32)


def _coordinate_ascent(x: np.ndarray, candidates, gain, passes: int) -> np.ndarray:
    """Improve x one coordinate at a time over candidates(k, x); moves only on strict gains."""
    best = gain(x)
    for _ in range(passes):
        for k in range(len(x)):
            for value in candidates(k, x):
                trial = x.copy()
                trial[k] = value
                v = gain(trial)
                if v > best:
                    best, x = v, trial
    return x


def fit_bias(probs, y, objective: Objective, grid=np.linspace(-2, 2, 17), passes: int = 2):
    """Per-class log-bias (C,) by coordinate ascent on the metric."""
    return _coordinate_ascent(np.zeros(probs.shape[1]), lambda k, b: grid,
                              lambda b: objective.gain(y, probs, b), passes)


def fit_thresholds(scores, y, objective: Objective, steps: int = 21, passes: int = 3):
    """Ordinal cut points (n_classes - 1,) by coordinate search between their neighbours."""
    def between(k: int, thr: np.ndarray) -> np.ndarray:
        lo = thr[k - 1] if k > 0 else thr[k] - 1.0
        hi = thr[k + 1] if k + 1 < len(thr) else thr[k] + 1.0
        return np.linspace(lo, hi, steps)[1:-1]

    return _coordinate_ascent(np.arange(objective.n_classes - 1) + 0.5, between,
                              lambda t: objective.gain(y, scores, t), passes)
