"""Specs (method + options + bias/threshold tuning), fitting on OOF rows, and honest CV scores.

oof: (M, N, C) float32 stacked out-of-fold predictions of M runs; y, folds: (N,). A spec that
fits anything on OOF rows (hill-climb weights, stacking, per-class bias, ordinal thresholds) gets
a nested score: fitted on K-1 folds, scored on the held-out fold, averaged over the K folds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ensemble.vote.methods import get_method
from ensemble.vote.objective import Objective, fit_bias, fit_thresholds
from ensemble.vote.postprocess import apply_bias, expected_grade, ordinal_labels


@dataclass(frozen=True)
class Spec:
    """A method, its options (weights, max_iter, C), whether to tune bias/thresholds on OOF and
    whether to decode class probabilities into the expected grade (then thresholds, not bias)."""
    method: str
    options: dict = field(default_factory=dict)
    tune: bool = False
    grade: bool = False

    @property
    def fits(self) -> bool:
        return self.tune or get_method(self.method).fit is not None

    def name(self, ordinal: bool = False) -> str:
        if self.grade:
            return self.method + "+grade" + ("+thr" if self.tune else "")
        return self.method + (("+thr" if ordinal else "+bias") if self.tune else "")


@dataclass
class Fitted:
    spec: Spec
    state: dict
    post: np.ndarray | None  # bias (C,) or ordinal thresholds (C-1,)

    def predict(self, stack: np.ndarray) -> np.ndarray:
        """(M, N, C) -> raw combined (N, C), or (N, 1) expected grade (before bias / thresholds)."""
        out = get_method(self.spec.method).combine(stack, self.state)
        return expected_grade(out) if self.spec.grade else out

    def finish(self, pred: np.ndarray, n_classes: int) -> np.ndarray:
        """Raw combined -> submission values: (N, C) probabilities, or (N,) labels if ordinal."""
        if pred.shape[1] == 1:
            return ordinal_labels(pred, self.post, n_classes)
        return pred if self.post is None else apply_bias(pred, self.post)

    def finished(self, pred: np.ndarray, n_classes: int) -> np.ndarray:
        """finish() kept 2-d: (N, C) probabilities or (N, 1) labels as float32, which an objective
        scores as they are (labels cut at k + 0.5 stay the same labels)."""
        out = self.finish(pred, n_classes)
        return out.astype(np.float32)[:, None] if out.ndim == 1 else out


def fit(spec: Spec, oof: np.ndarray, y: np.ndarray, objective: Objective) -> Fitted:
    method = get_method(spec.method)
    if oof.shape[2] == 1 and not method.ordinal:
        raise ValueError(f"method '{spec.method}' does not support ordinal (score) runs")
    if spec.grade and oof.shape[2] < 2:
        raise ValueError(f"'{spec.name()}' decodes class probabilities; ordinal runs already hold a grade")
    state = method.fit(oof, y, objective, **spec.options) if method.fit else dict(spec.options)
    fitted = Fitted(spec, state, None)
    if spec.tune:
        pred = fitted.predict(oof)
        tuner = fit_thresholds if pred.shape[1] == 1 else fit_bias
        fitted.post = tuner(pred, y, objective)
    return fitted


@dataclass(frozen=True)
class CVScore:
    score: float  # honest: fold mean; nested (fit on K-1 folds) when the spec fits on OOF
    std: float
    folds: list[float]
    in_sample: float | None = None  # fold mean of the spec fitted on all OOF (fitting specs only)
    # the held-out predictions: every OOF row's submitted values, each predicted by the spec fitted without
    # its fold (nested) or, when nothing is fitted, as is. (N, C) probabilities, or (N, 1) grade labels
    # (float32) for ordinal runs and expected grades; None for a single run's score (model_scores)
    oof: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def oof_probs(self) -> np.ndarray | None:
        """oof when it holds class probabilities (N, C), else None (grade labels or no predictions)."""
        return self.oof if self.oof is not None and self.oof.shape[1] > 1 else None


def fold_scores(pred: np.ndarray, y: np.ndarray, folds: np.ndarray, objective: Objective,
                post=None) -> list[float]:
    return [objective(y[folds == k], pred[folds == k], post) for k in np.unique(folds)]


def _cv(scores: list[float], in_sample: float | None = None, oof: np.ndarray | None = None) -> CVScore:
    return CVScore(float(np.mean(scores)), float(np.std(scores)), scores, in_sample, oof)


def model_scores(oof: np.ndarray, y, folds, objective: Objective) -> list[CVScore]:
    """Each single model's fold-mean CV score."""
    return [_cv(fold_scores(p, y, folds, objective)) for p in oof]


def cross_validate(spec: Spec, oof: np.ndarray, y: np.ndarray, folds: np.ndarray,
                   objective: Objective) -> tuple[CVScore, Fitted]:
    """-> (honest CV score with its held-out predictions (CVScore.oof), the spec fitted on all OOF
    rows). oof (M, N, C), y/folds (N,)."""
    full = fit(spec, oof, y, objective)
    pred = full.predict(oof)
    in_sample = fold_scores(pred, y, folds, objective, full.post)
    if not spec.fits:
        return _cv(in_sample, oof=full.finished(pred, objective.n_classes)), full
    keys = np.unique(folds)
    if len(keys) < 2:
        raise ValueError(f"'{spec.name(oof.shape[2] == 1)}' fits on OOF: a nested score needs >= 2 folds")
    nested, held_out = [], np.zeros(pred.shape, np.float32)
    for k in keys:
        held = folds == k
        f = fit(spec, oof[:, ~held], y[~held], objective)
        p = f.predict(oof[:, held])
        nested.append(objective(y[held], p, f.post))
        held_out[held] = f.finished(p, objective.n_classes)
    return _cv(nested, float(np.mean(in_sample)), held_out), full


def error_correlation(oof: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(M, M) correlation of the models' OOF residuals (one-hot(y) - p, or y - score)."""
    m, n, c = oof.shape
    target = y[:, None].astype(np.float32) if c == 1 else np.eye(c, dtype=np.float32)[y]
    return np.atleast_2d(np.corrcoef((target[None] - oof).reshape(m, n * c)))  # one run: [[1.0]]
