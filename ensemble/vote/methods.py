"""Vote methods: combine M models' predictions, stacked as (M, N, C) float32, into one (N, C).

C is the number of classes (probability runs) or 1 (ordinal runs: a regressed `score` column).
Each method is one function in a registry; methods that learn from OOF predictions also register
a `fit`. Specs, fitting and honest CV scores: ensemble.vote.cv; the metric they fit to, bias and
ordinal thresholds: ensemble.vote.objective.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression

from ensemble.registry import Registry
from ensemble.vote.objective import Objective
from ensemble.vote.postprocess import normalise

EPS = 1e-7


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class Method:
    name: str
    combine: Callable[[np.ndarray, dict], np.ndarray]  # (stack (M,N,C), state) -> (N, C) float32
    fit: Callable[..., dict] | None  # (oof (M,N,C), y (N,), objective, **options) -> state
    ordinal: bool
    needs_weights: bool
    # False: with two classes its columns sum to a constant, so the argmax is a fixed split of the
    # rows whatever the models say (rank); a metric on labels needs a fitted bias on top
    two_class_argmax: bool = True

    @property
    def summary(self) -> str:
        return (self.combine.__doc__ or "").strip().splitlines()[0]


METHODS: Registry[Method] = Registry("vote method")


def register(name: str, *, fit=None, ordinal: bool = False, needs_weights: bool = False,
             two_class_argmax: bool = True):
    """Decorator: ``@register("mean", ordinal=True)`` on ``combine(stack (M, N, C), state) -> (N, C)``;
    fit(oof, y, objective, **options) -> state, when the method learns from the OOF rows."""
    def deco(fn):
        METHODS.register(name, Method(name, fn, fit, ordinal, needs_weights, two_class_argmax))
        return fn
    return deco


def get_method(name: str) -> Method:
    return METHODS.get(name)


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
    return normalise(np.exp(acc, out=acc))


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


@register("rank", two_class_argmax=False)
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
    weighted by inverse frequency when the metric weighs every class equally.

    -> plain numbers (what a manifest stores and `stacking` replays): coef (K, M*C) and intercept (K,)
    over the K classes seen in y (`classes`; K = 2 is one binary row), n_classes, weights (M,).
    """
    model = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if objective.class_balanced else None)
    model.fit(_stack_features(oof), y)
    share = np.abs(model.coef_).reshape(len(model.coef_), len(oof), -1).sum(axis=(0, 2))
    return {"coef": model.coef_.astype(np.float64), "intercept": model.intercept_.astype(np.float64),
            "classes": model.classes_.astype(np.int64), "n_classes": oof.shape[2], "weights": share / share.sum()}


def _stacker_probs(feats: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """scikit-learn's LogisticRegression.predict_proba from its coefficients: softmax of the decision
    values, or (1 - p, p) with p = sigmoid for a binary model (one coefficient row)."""
    z = feats @ coef.T + intercept
    if coef.shape[0] == 1:
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


@register("stacking", fit=fit_stacking)
def stacking(stack: np.ndarray, state: dict) -> np.ndarray:
    """Stacking: a scikit-learn logistic regression fitted on the OOF probabilities."""
    coef, intercept = np.asarray(state["coef"], np.float64), np.asarray(state["intercept"], np.float64)
    classes, n = np.asarray(state["classes"], np.int64), stack.shape[1]
    out = np.zeros((n, state["n_classes"]), np.float32)
    for a in range(0, n, 50_000):  # chunks keep the (rows, M*C) float64 features small
        out[a:a + 50_000, classes] = _stacker_probs(_stack_features(stack[:, a:a + 50_000]), coef, intercept)
    return out
