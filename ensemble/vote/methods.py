"""Vote methods: combine M models' predictions, stacked as (M, N, C) float32, into one (N, C).

C is the number of classes (probability runs) or 1 (ordinal runs: a regressed `score` column).
Each method is one function in a registry; methods that learn from OOF predictions also register
a `fit`. For a grade metric (QWK) on class probabilities, a spec may decode the combined
probabilities into the expected grade sum_k p_k k (N, 1) and cut it like an ordinal score. `cross_validate` gives every spec an honest CV score: anything fitted on OOF (hill-climb,
stacking, per-class bias, ordinal thresholds) is refitted on K-1 folds and scored on the held-out one.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression

EPS = 1e-7


@dataclass(frozen=True)
class Objective:
    """One competition metric. score_probs(y (N,), probs (N, C)); score_labels(y (N,), labels (N,)).

    Ordinal predictions (N, 1) are cut into n_classes labels by thresholds (default k + 0.5).
    """
    score_probs: Callable[[np.ndarray, np.ndarray], float]
    score_labels: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    n_classes: int
    class_balanced: bool = False  # the metric weighs every class equally (balanced accuracy, macro F1)

    def __call__(self, y: np.ndarray, pred: np.ndarray, post: np.ndarray | None = None) -> float:
        """Metric of pred (N, C) probabilities (post = per-class log bias) or (N, 1) scores
        (post = thresholds)."""
        if pred.shape[1] == 1:
            return float(self.score_labels(y, ordinal_labels(pred, post, self.n_classes)))
        return float(self.score_probs(y, pred if post is None else apply_bias(pred, post)))

    def gain(self, y, pred, post=None) -> float:
        """The metric oriented so that larger is always better (NaN: -inf, never chosen)."""
        v = self(y, pred, post)
        return -np.inf if np.isnan(v) else (v if self.greater_is_better else -v)


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class Method:
    name: str
    combine: Callable[[np.ndarray, dict], np.ndarray]  # (stack (M,N,C), state) -> (N, C) float32
    fit: Callable[..., dict] | None  # (oof (M,N,C), y (N,), objective, **options) -> state
    ordinal: bool
    needs_weights: bool

    @property
    def summary(self) -> str:
        return (self.combine.__doc__ or "").strip().splitlines()[0]


METHODS: dict[str, Method] = {}


def register(name: str, *, fit=None, ordinal: bool = False, needs_weights: bool = False):
    def deco(fn):
        METHODS[name] = Method(name, fn, fit, ordinal, needs_weights)
        return fn
    return deco


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown vote method '{name}'; available: {', '.join(METHODS)}")
    return METHODS[name]


def check_weights(weights, n_models: int) -> np.ndarray:
    """-> (M,) float64 non-negative weights summing to 1."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n_models,):
        raise ValueError(f"expected {n_models} weights (one per run), got {w.size}")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return w / w.sum()


def _wmean(stack: np.ndarray, w: np.ndarray) -> np.ndarray:
    m, n, c = stack.shape
    return (np.asarray(w, np.float32) @ stack.reshape(m, n * c)).reshape(n, c)


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= x.sum(axis=1, keepdims=True)
    return x


# ---------------------------------------------------------------- methods
@register("mean", ordinal=True)
def mean(stack: np.ndarray, state: dict) -> np.ndarray:
    """Arithmetic mean of the models' probabilities (or ordinal scores)."""
    return _wmean(stack, np.full(len(stack), 1.0 / len(stack)))


@register("weighted", ordinal=True, needs_weights=True)
def weighted(stack: np.ndarray, state: dict) -> np.ndarray:
    """Weighted mean with user weights (--weights), normalised to sum to 1."""
    if "weights" not in state:
        raise ValueError("method 'weighted' needs weights (one per run)")
    return _wmean(stack, check_weights(state["weights"], len(stack)))


@register("geometric")
def geometric(stack: np.ndarray, state: dict) -> np.ndarray:
    """Geometric mean of the probabilities, renormalised so each row sums to 1."""
    acc = np.zeros(stack.shape[1:], np.float32)
    for p in stack:
        acc += np.log(np.maximum(p, EPS))
    acc /= len(stack)
    acc -= acc.max(axis=1, keepdims=True)
    return _normalise(np.exp(acc, out=acc))


def _rank_col(col: np.ndarray) -> np.ndarray:
    """Average ranks 1..N of a 1-d float32 array (ties share their mean rank), float32.

    Sorts (order-preserving uint32 key << 32 | row) as uint64: one SIMD sort, ~30% faster than argsort.
    """
    n = len(col)
    u = (np.ascontiguousarray(col, np.float32) + np.float32(0)).view(np.uint32)  # -0.0 -> 0.0
    key = u ^ ((np.uint32(0) - (u >> np.uint32(31))) | np.uint32(0x80000000))
    packed = (key.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64(0xFFFFFFFF)).astype(np.intp)
    s = (packed >> np.uint64(32)).astype(np.uint32)
    del packed
    new = np.empty(n, bool)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    avg = ((starts + np.append(starts[1:], n) + 1) * 0.5).astype(np.float32)
    out = np.empty(n, np.float32)
    out[order] = avg[np.cumsum(new) - 1]
    return out


@register("rank")
def rank(stack: np.ndarray, state: dict) -> np.ndarray:
    """Rank average: each model's per-class ranks over rows, scaled to (0, 1], then averaged."""
    m, n, c = stack.shape
    acc = np.zeros((n, c), np.float32)
    jobs = [(i, j) for i in range(m) for j in range(c)]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as ex:  # numpy sorts free the GIL
        for (i, j), r in zip(jobs, ex.map(lambda ij: _rank_col(stack[ij[0], :, ij[1]]), jobs)):
            acc[:, j] += r
    acc /= m * n
    return acc


@register("majority")
def majority(stack: np.ndarray, state: dict) -> np.ndarray:
    """Hard majority vote; ties broken by mean probability. -> (votes + mean prob) / (M + 1)."""
    m, n, c = stack.shape
    out = mean(stack, {})
    rows = np.arange(n)
    for p in stack:
        out[rows, p.argmax(axis=1)] += 1.0
    out /= m + 1
    return out


def fit_hillclimb(oof: np.ndarray, y: np.ndarray, objective: Objective,
                  max_iter: int = 100) -> dict:
    """Caruana greedy forward selection with replacement, starting from the best single model.

    Stops when no addition strictly improves the OOF metric. -> {"weights" (M,), "counts" (M,)}.
    """
    m = len(oof)
    gains = [objective.gain(y, p) for p in oof]
    counts = np.zeros(m, np.int64)
    best = int(np.argmax(gains))
    counts[best] = 1
    total, current = oof[best].astype(np.float64), gains[best]
    for _ in range(max_iter - 1):
        k = counts.sum()
        cand = [objective.gain(y, (total + p) / (k + 1)) for p in oof]
        j = int(np.argmax(cand))
        if cand[j] <= current:
            break
        counts[j] += 1
        total += oof[j]
        current = cand[j]
    return {"weights": counts / counts.sum(), "counts": counts}


@register("hillclimb", fit=fit_hillclimb, ordinal=True)
def hillclimb(stack: np.ndarray, state: dict) -> np.ndarray:
    """Hill-climbing (Caruana): weighted mean with weights fitted greedily on OOF for the metric."""
    return _wmean(stack, state["weights"])


def _stack_features(stack: np.ndarray) -> np.ndarray:
    """(M, N, C) probabilities -> (N, M*C) log-probabilities."""
    m, n, c = stack.shape
    return np.log(np.maximum(stack, EPS)).transpose(1, 0, 2).reshape(n, m * c)


def fit_stacking(oof: np.ndarray, y: np.ndarray, objective: Objective, C: float = 1.0) -> dict:
    """Multinomial logistic regression on the models' OOF log-probabilities; classes are
    weighted by inverse frequency when the metric weighs every class equally."""
    model = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if objective.class_balanced else None)
    model.fit(_stack_features(oof), y)
    share = np.abs(model.coef_).reshape(len(model.coef_), len(oof), -1).sum(axis=(0, 2))
    return {"model": model, "n_classes": oof.shape[2], "weights": share / share.sum()}


@register("stacking", fit=fit_stacking)
def stacking(stack: np.ndarray, state: dict) -> np.ndarray:
    """Stacking: a scikit-learn logistic regression fitted on the OOF probabilities."""
    model, n = state["model"], stack.shape[1]
    out = np.zeros((n, state["n_classes"]), np.float32)
    for a in range(0, n, 50_000):  # chunks keep the (rows, M*C) float64 features small
        out[a:a + 50_000, model.classes_] = model.predict_proba(_stack_features(stack[:, a:a + 50_000]))
    return out


# ---------------------------------------------------------------- post-processing
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


def ordinal_labels(scores: np.ndarray, thresholds: np.ndarray | None, n_classes: int) -> np.ndarray:
    """(N,) or (N, 1) scores -> (N,) labels in 0..n_classes-1; default thresholds k + 0.5."""
    thr = np.arange(n_classes - 1) + 0.5 if thresholds is None else thresholds
    return np.searchsorted(thr, np.ravel(scores), side="right")


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


# ---------------------------------------------------------------- specs, fitting, CV
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


def fold_scores(pred: np.ndarray, y: np.ndarray, folds: np.ndarray, objective: Objective,
                post=None) -> list[float]:
    return [objective(y[folds == k], pred[folds == k], post) for k in np.unique(folds)]


def _cv(scores: list[float], in_sample: float | None = None) -> CVScore:
    return CVScore(float(np.mean(scores)), float(np.std(scores)), scores, in_sample)


def model_scores(oof: np.ndarray, y, folds, objective: Objective) -> list[CVScore]:
    """Each single model's fold-mean CV score."""
    return [_cv(fold_scores(p, y, folds, objective)) for p in oof]


def cross_validate(spec: Spec, oof: np.ndarray, y: np.ndarray, folds: np.ndarray,
                   objective: Objective) -> tuple[CVScore, Fitted]:
    """-> (honest CV score, the spec fitted on all OOF rows). oof (M, N, C), y/folds (N,)."""
    full = fit(spec, oof, y, objective)
    in_sample = fold_scores(full.predict(oof), y, folds, objective, full.post)
    if not spec.fits:
        return _cv(in_sample), full
    keys = np.unique(folds)
    if len(keys) < 2:
        raise ValueError(f"'{spec.name(oof.shape[2] == 1)}' fits on OOF: a nested score needs >= 2 folds")
    nested = []
    for k in keys:
        held = folds == k
        f = fit(spec, oof[:, ~held], y[~held], objective)
        nested.append(objective(y[held], f.predict(oof[:, held]), f.post))
    return _cv(nested, float(np.mean(in_sample))), full


def error_correlation(oof: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(M, M) correlation of the models' OOF residuals (one-hot(y) - p, or y - score)."""
    m, n, c = oof.shape
    target = y[:, None].astype(np.float32) if c == 1 else np.eye(c, dtype=np.float32)[y]
    return np.atleast_2d(np.corrcoef((target[None] - oof).reshape(m, n * c)))  # one run: [[1.0]]
