"""Class-prior shift: estimate the test set's class mix from a model's own test probabilities.

EM of Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier to new a priori
probabilities": starting from the training priors, alternate (E) re-weighting each test row's
posterior by the ratio of the current to the training priors and (M) setting the priors to the mean
re-weighted posterior. A bootstrap over the test rows gives a confidence interval. Posteriors are
first calibrated on the OOF predictions by bias-corrected temperature scaling (BCTS, Alexandari et
al. 2020): EM assumes posteriors calibrated to the training priors, which a model trained with
class weights or a fitted bias does not give.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

EPS = 1e-12


def adjust(probs: np.ndarray, train_priors: np.ndarray, test_priors: np.ndarray) -> np.ndarray:
    """Bayes' rule for new priors: p'(y|x) proportional to p(y|x) * test_prior(y) / train_prior(y)."""
    ratio = np.asarray(test_priors, np.float64) / np.maximum(np.asarray(train_priors, np.float64), EPS)
    q = np.asarray(probs, np.float64) * ratio[None]
    return q / np.maximum(q.sum(1, keepdims=True), EPS)


def em_priors(probs: np.ndarray, train_priors: np.ndarray, max_iter: int = 1000, tol: float = 1e-8
              ) -> tuple[np.ndarray, int]:
    """(T, C) test posteriors under the training priors -> (estimated test priors (C,), iterations)."""
    train_priors = np.asarray(train_priors, np.float64)
    pri = train_priors.copy()
    for it in range(1, max_iter + 1):
        new = adjust(probs, train_priors, pri).mean(0)
        if np.abs(new - pri).max() < tol:
            return new, it
        pri = new
    return pri, max_iter


def _logits(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, np.float64), EPS, 1))


def calibrate(probs: np.ndarray, t: float, bias: np.ndarray | None = None) -> np.ndarray:
    """softmax(log p / t + bias): temperature and per-class bias (bias None: temperature only)."""
    z = _logits(probs) / t + (0 if bias is None else np.asarray(bias, np.float64)[None])
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def temper(probs: np.ndarray, t: float) -> np.ndarray:
    return calibrate(probs, t)


def fit_calibration(probs: np.ndarray, y: np.ndarray, bias: bool = True) -> tuple[float, np.ndarray]:
    """Bias-corrected temperature scaling (BCTS; Alexandari et al. 2020, the calibration under which EM
    is hard to beat for label shift): the temperature t and per-class bias b minimising the log loss of
    softmax(log p / t + b) on labelled rows (OOF). -> (t, b); b = 0 when bias is False."""
    from scipy.optimize import minimize
    lg, y = _logits(probs), np.asarray(y, np.int64)
    c = lg.shape[1]
    onehot = np.eye(c)[y]

    def nll(theta):
        inv_t, b = np.exp(theta[0]), (theta[1:] if bias else np.zeros(c))
        z = lg * inv_t + b[None]
        z = z - z.max(1, keepdims=True)
        logq = z - np.log(np.exp(z).sum(1, keepdims=True))
        g = np.exp(logq) - onehot  # d nll / d z, per row
        grad = [np.sum(g * lg) * inv_t / len(y)] + (list(g.sum(0) / len(y)) if bias else [])
        return -np.mean(logq[np.arange(len(y)), y]), np.array(grad)

    res = minimize(nll, np.zeros(1 + (c if bias else 0)), jac=True, method="L-BFGS-B")
    t = float(1 / np.exp(res.x[0]))
    b = res.x[1:] - res.x[1:].mean() if bias else np.zeros(c)
    return t, b


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature alone (no bias) minimising the OOF log loss."""
    return fit_calibration(probs, y, bias=False)[0]


@dataclass
class PriorEstimate:
    classes: list[str]
    train: np.ndarray  # (C,) class shares of the labelled rows
    estimated: np.ndarray  # (C,) EM estimate for the test rows
    lo: np.ndarray  # (C,) bootstrap 2.5% quantile
    hi: np.ndarray  # (C,) bootstrap 97.5% quantile
    predicted: np.ndarray  # (C,) share of test rows predicted as each class (argmax), for comparison
    temperature: float
    bias: np.ndarray  # (C,) calibration bias (BCTS on OOF; zeros without OOF)
    iterations: int

    def adjusted(self, probs: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
        """probs calibrated as for the estimate, then re-weighted to `target` (default: the estimate)."""
        return adjust(calibrate(probs, self.temperature, self.bias), self.train,
                      self.estimated if target is None else target)

    def lines(self) -> list[str]:
        cells = [f"{c} {t:.3f} -> {e:.3f} [{lo:.3f}, {hi:.3f}]"
                 for c, t, e, lo, hi in zip(self.classes, self.train, self.estimated, self.lo, self.hi)]
        return ["class priors, train -> estimated test [95% CI] (EM of Saerens et al. 2002 on the test "
                f"probabilities after BCTS calibration on OOF, temperature {self.temperature:.2f}): " + ", ".join(cells),
                "  test rows predicted per class (argmax): "
                + ", ".join(f"{c} {p:.3f}" for c, p in zip(self.classes, self.predicted))]

    def to_dict(self) -> dict:
        r = lambda a: [round(float(v), 4) for v in a]
        return {"classes": self.classes, "train": r(self.train), "estimated": r(self.estimated),
                "ci_low": r(self.lo), "ci_high": r(self.hi), "predicted": r(self.predicted),
                "temperature": round(self.temperature, 3), "bias": r(self.bias),
                "method": "EM (Saerens et al. 2002) after BCTS calibration"}


def estimate_priors(test_probs: np.ndarray, classes: Sequence[str], train_priors: np.ndarray,
                    oof_probs: np.ndarray | None = None, y: np.ndarray | None = None, n_boot: int = 200,
                    seed: int = 0) -> PriorEstimate:
    """Estimated test priors with a bootstrap 95% interval. oof_probs/y (labelled rows): calibrate first."""
    p = np.asarray(test_probs, np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[1] < 2:
        raise ValueError(f"class-prior estimation needs (T, C) class probabilities with C = {len(classes)} >= 2, "
                         f"got shape {p.shape}")
    train_priors = np.asarray(train_priors, np.float64)
    t, b = fit_calibration(oof_probs, y) if oof_probs is not None and y is not None else (1.0, np.zeros(p.shape[1]))
    p = calibrate(p, t, b)
    est, it = em_priors(p, train_priors)
    rng = np.random.default_rng(seed)
    boots = np.array([em_priors(p[rng.integers(0, len(p), len(p))], train_priors, 200, 1e-6)[0]
                      for _ in range(n_boot)]) if n_boot else est[None]
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    pred = np.bincount(p.argmax(1), minlength=p.shape[1]) / len(p)
    return PriorEstimate([str(k) for k in classes], train_priors, est, lo, hi, pred, t, b, it)


def parse_priors(text: str, classes: Sequence[str]) -> np.ndarray | None:
    """--priors: 'train' -> None (no change), 'estimated' -> the string itself is handled by the caller,
    '0.3,0.7' (class order) or 'NORMAL=0.3,PNEUMONIA=0.7' -> (C,) priors summing to 1."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    named = all("=" in s for s in items)
    try:
        if named:
            pairs = {k.strip(): float(v) for k, v in (s.split("=", 1) for s in items)}
            unknown = sorted(set(pairs) - set(classes))
            if unknown:
                raise ValueError(f"--priors: unknown class {unknown[0]!r}; classes: {', '.join(classes)}")
            vals = [pairs.get(c, 0.0) for c in classes]
        else:
            vals = [float(s) for s in items]
    except ValueError as e:
        if "unknown class" in str(e):
            raise
        raise ValueError(f"--priors: expected 'train', 'estimated' or one number per class "
                         f"({', '.join(classes)}), got {text!r}") from None
    if len(vals) != len(classes):
        raise ValueError(f"--priors: got {len(vals)} numbers for {len(classes)} classes ({', '.join(classes)})")
    v = np.asarray(vals, np.float64)
    if np.any(v < 0) or not np.all(np.isfinite(v)) or v.sum() <= 0:
        raise ValueError(f"--priors: priors must be >= 0 and not all 0, got {text!r}")
    return v / v.sum()
