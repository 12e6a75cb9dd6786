"""vote's objective: the competition metric (a BoundMetric) scoring a combined prediction together with
its post-processing, oriented so that larger is always better; and the post-processing fitted to it.

    objective = Objective(runs.metric)
    objective(y, probs, bias)            # the metric of probs (N, C) shifted by a per-class log-bias (C,)
    objective(y, scores, thresholds)     # the metric of (N, 1) ordinal scores cut at thresholds (C-1,)
    bias = fit_bias(probs, y, objective); thresholds = fit_thresholds(scores, y, objective)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble.metrics import BoundMetric
from ensemble.vote.postprocess import apply_bias, ordinal_labels


@dataclass(frozen=True)
class Objective:
    """The competition metric as vote optimises it. Ordinal predictions (N, 1) are cut into n_classes
    labels by thresholds (default k + 0.5)."""

    metric: BoundMetric

    @property
    def n_classes(self) -> int:
        return self.metric.n_classes

    @property
    def higher_is_better(self) -> bool:
        return self.metric.higher_is_better

    @property
    def class_balanced(self) -> bool:
        """The metric weighs every class equally (balanced accuracy, macro F1)."""
        return self.metric.balanced

    def __call__(self, y: np.ndarray, pred: np.ndarray, post: np.ndarray | None = None) -> float:
        """Metric of pred (N, C) probabilities (post = per-class log bias) or (N, 1) scores
        (post = thresholds)."""
        if pred.shape[1] == 1:
            return float(self.metric.score_labels(y, ordinal_labels(pred, post, self.n_classes)))
        return float(self.metric.score(y, pred if post is None else apply_bias(pred, post)))

    def gain(self, y, pred, post=None) -> float:
        """The metric oriented so that larger is always better (NaN: -inf, never chosen)."""
        v = self(y, pred, post)
        return -np.inf if np.isnan(v) else (v if self.higher_is_better else -v)


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
