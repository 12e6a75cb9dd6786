"""Calibration of class probabilities: reliability (ECE), the temperature that fixes it, and
`vote --calibrate` (temperature scaling, fitted honestly, for metrics scored on probabilities).

    t = fit_temperature(p, y)                 # p (N, C) probabilities, y (N,) class index
    scale(p, t)                               # softmax(log p / t): t > 1 softens, t < 1 sharpens
    ece(p, y), reliability(p, y)              # top-label expected calibration error, per-bin table
    calibrate_nested(p, y, folds, objective)  # T fitted on K-1 folds, scored on the held-out one

Temperature scaling (Guo et al. 2017) keeps every row's argmax, so label metrics never change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

EPS = 1e-7
BINS = 15


def scale(p: np.ndarray, t: float) -> np.ndarray:
    """(N, C) probabilities -> softmax(log p / t), float32, rows summing to 1."""
    z = np.log(np.clip(p, EPS, 1.0)).astype(np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))))


def fit_temperature(p: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood of y under scale(p, t)."""
    res = minimize_scalar(lambda lt: nll(scale(p, np.exp(lt)), y), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[dict]:
    """Top-label reliability: per equal-width confidence bin, {lo, hi, n, confidence, accuracy}."""
    conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else None,
                    "accuracy": float(hit[m].mean()) if m.any() else None})
    return out


def ece(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of (bin share) x |accuracy - confidence|."""
    n = len(y)
    return float(sum(r["n"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability(p, y, bins) if r["n"]))


@dataclass(frozen=True)
class Calibration:
    temperature: float  # fitted on every OOF row
    cv_before: float  # fold mean of the metric, uncalibrated
    cv_after: float  # nested: each fold scaled by the temperature fitted on the other folds
    ece_before: float
    ece_after: float  # of the nested scaled OOF rows
    applied: bool  # the nested score is not worse

    def to_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}

    def line(self, metric: str) -> str:
        verdict = "applied" if self.applied else "not applied: it would not improve the nested CV"
        return (f"calibration: temperature {self.temperature:.3f}; {metric} CV {self.cv_before:.4f} -> "
                f"{self.cv_after:.4f} (nested); ECE {self.ece_before:.3f} -> {self.ece_after:.3f}; {verdict}")


def calibrate_nested(p: np.ndarray, y: np.ndarray, folds: np.ndarray, objective) -> Calibration:
    """p (N, C): the ensemble's (held-out) OOF probabilities. objective(y, p) -> score (vote.objective)."""
    keys = np.unique(folds)
    scaled = np.empty_like(p, dtype=np.float32)
    for k in keys:
        held = folds == k
        scaled[held] = scale(p[held], fit_temperature(p[~held], y[~held]) if (~held).any() else 1.0)
    before = float(np.mean([objective(y[folds == k], p[folds == k]) for k in keys]))
    after = float(np.mean([objective(y[folds == k], scaled[folds == k]) for k in keys]))
    better = after >= before if objective.higher_is_better else after <= before
    return Calibration(fit_temperature(p, y), before, after, ece(p, y), ece(scaled, y), bool(better))
