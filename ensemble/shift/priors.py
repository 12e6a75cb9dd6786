"""Class-prior shift: estimate the test set's class mix from a model's own test probabilities.

EM of Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier to new a priori
probabilities": starting from the training priors, alternate (E) re-weighting each test row's
posterior by the ratio of the current to the training priors and (M) setting the priors to the mean
re-weighted posterior. EM converges slowly (thousands of steps) when a prior tends to zero, so the
estimate and every bootstrap draw are solved to convergence by projected Newton steps on the same
likelihood (EM's fixed point, checked by its optimality conditions); a bootstrap over the test rows
gives the 95% interval, which therefore holds the estimate instead of draws stopped halfway. Posteriors are
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


def em_priors(probs: np.ndarray, train_priors: np.ndarray, max_iter: int = 1000, tol: float = 1e-8,
              start: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(T, C) test posteriors under the training priors -> (estimated test priors (C,), iterations);
    EM from `start` (default: the training priors). mle_priors reaches the same fixed point faster."""
    train_priors = np.asarray(train_priors, np.float64)
    pri = train_priors.copy() if start is None else np.asarray(start, np.float64).copy()
    for it in range(1, max_iter + 1):
        new = adjust(probs, train_priors, pri).mean(0)
        if np.abs(new - pri).max() < tol:
            return new, it
        pri = new
    return pri, max_iter


def mle_priors(probs: np.ndarray, train_priors: np.ndarray, max_iter: int = 200) -> tuple[np.ndarray, bool]:
    """(T, C) test posteriors under the training priors -> (the maximum-likelihood test priors (C,),
    converged): the fixed point of Saerens et al.'s EM, found by projected Newton steps. The loss is
    -mean_t log sum_k w_k p_tk / train_k + sum_k w_k over w >= 0 (convex; its minimum has sum w = 1, so no
    simplex constraint, and a class absent from the test rows gets exactly 0, where EM crawls for
    thousands of steps). Converged: the optimality conditions hold to 1e-8 (1e-6 where rounding
    stops every step)."""
    r = np.asarray(probs, np.float64) / np.maximum(np.asarray(train_priors, np.float64), EPS)[None]
    w = np.asarray(train_priors, np.float64).copy()

    def loss(v):
        return -np.mean(np.log(np.maximum(r @ v, EPS))) + v.sum()

    fw = loss(w)
    for _ in range(max_iter):
        q = r / np.maximum(r @ w, EPS)[:, None]
        g = 1 - q.mean(0)  # the gradient: 0 where w_k > 0, >= 0 where w_k = 0 at the minimum
        tiny = (w > 0) & (w < 1e-9) & (g > 0)  # a prior on its way to 0 that rounding keeps at 1e-11
        if tiny.any():
            w, fw = np.where(tiny, 0.0, w), loss(np.where(tiny, 0.0, w))
        kkt = np.abs(np.where(w > 0, g, np.minimum(g, 0))).max()
        if kkt < 1e-8:
            return w / w.sum(), True
        free = (w > 0) | (g < 0)
        step = np.zeros_like(w)
        hess = q[:, free].T @ q[:, free] / len(q)
        step[free] = -np.linalg.solve(hess + 1e-12 * np.eye(int(free.sum())), g[free])
        t = 1.0
        while True:  # backtracking (Armijo) along the projected path
            new = np.maximum(w + t * step, 0)
            fn = loss(new)
            if fn <= fw + 1e-4 * g @ (new - w):
                break
            t /= 2
            if t < 1e-10:
                break
        if not fn < fw:  # no step lowers the loss in float64: as close as it gets
            return w / w.sum(), bool(kkt < 1e-6)
        w, fw = new, fn
    return w / w.sum(), False


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
    iterations: int  # bootstrap draws (the interval's)
    unconverged: int = 0  # draws whose fit did not converge (left out of the interval)

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
                + ", ".join(f"{c} {p:.3f}" for c, p in zip(self.classes, self.predicted))
                + (f"; {self.unconverged} of {self.iterations} bootstrap fits did not converge (left out)"
                   if self.unconverged else "")]

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
    est, ok = mle_priors(p, train_priors)
    if not ok:  # not reached in 200 Newton steps (never seen): EM, polished from there
        est, _ = em_priors(p, train_priors, 100_000, 1e-10, start=est)
    rng = np.random.default_rng(seed)
    fits = [mle_priors(p[rng.integers(0, len(p), len(p))], train_priors) for _ in range(n_boot)]
    boots = np.array([w for w, ok in fits if ok] or [est])
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    pred = np.bincount(p.argmax(1), minlength=p.shape[1]) / len(p)
    return PriorEstimate([str(k) for k in classes], train_priors, est, lo, hi, pred, t, b, n_boot,
                         sum(not ok for _, ok in fits))


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
            missing = [c for c in classes if c not in pairs]
            if missing:  # a class left out would silently get prior 0: never predicted
                raise ValueError(f"--priors: no prior for class {missing[0]!r}; name every class "
                                 f"({', '.join(f'{c}=...' for c in classes)}) or none ('0.3,0.7' in class order)")
            vals = [pairs[c] for c in classes]
        else:
            vals = [float(s) for s in items]
    except ValueError as e:
        if str(e).startswith("--priors"):
            raise
        raise ValueError(f"--priors: expected 'train', 'estimated' or one number per class "
                         f"({', '.join(classes)}), got {text!r}") from None
    if len(vals) != len(classes):
        raise ValueError(f"--priors: got {len(vals)} numbers for {len(classes)} classes ({', '.join(classes)})")
    v = np.asarray(vals, np.float64)
    if np.any(v < 0) or not np.all(np.isfinite(v)) or v.sum() <= 0:
        raise ValueError(f"--priors: priors must be >= 0 and not all 0, got {text!r}")
    return v / v.sum()
