"""Adversarial validation: a classifier that tells train images from test images, cross-validated.

Every row (train and test) gets an out-of-fold probability p(test | x). Their ROC AUC says how far
apart the two sets are (0.5: indistinguishable, 1: fully separable); train rows' p gives the
density ratio p_test(x) / p_train(x) = p / (1 - p) * n_train / n_test that importance-weighted
CV uses (normalised to mean 1, clipped, renormalised; the effective sample size says what is left).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

CLASSIFIERS = ("logreg", "gbm")
P_EPS = 1e-4


def make_classifier(name: str, seed: int = 0, C: float = 0.1, n_quantiles: int = 200):
    """A scikit-learn classifier for train (0) vs test (1) rows, balanced between the two sets."""
    from sklearn.pipeline import make_pipeline
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import QuantileTransformer
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression
        return make_pipeline(SimpleImputer(strategy="median"),
                             QuantileTransformer(n_quantiles=max(2, n_quantiles), output_distribution="normal", subsample=100_000,
                                                 random_state=seed),
                             LogisticRegression(C=C, max_iter=2000, class_weight="balanced"))
    if name == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=15,
                                              class_weight="balanced", random_state=seed)
    raise ValueError(f"unknown classifier '{name}'; available: {', '.join(CLASSIFIERS)}")


@dataclass
class Adversarial:
    """Out-of-fold p(test | x) of every row and the AUC it gives."""
    p_train: np.ndarray  # (N_train,)
    p_test: np.ndarray  # (N_test,)
    auc: float
    ci: tuple[float, float]  # bootstrap 95% interval of the AUC
    fold_aucs: list[float]

    @property
    def pm(self) -> float:
        """Half-width of the confidence interval (the '+-' of a one-line summary)."""
        return (self.ci[1] - self.ci[0]) / 2


def auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the ROC AUC over bootstrap resamples of the rows (within each class)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0 or n_boot < 1:
        return (np.nan, np.nan)
    aucs = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        aucs.append(roc_auc_score(y[idx], p[idx]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def adversarial_cv(x_train: np.ndarray, x_test: np.ndarray, classifier: str = "logreg", folds: int = 5,
                   seed: int = 0, n_boot: int = 200) -> Adversarial:
    """Cross-validate `classifier` on train (label 0) vs test (label 1) rows of the feature matrices."""
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"feature matrices must be (N, F) with the same F, got {x_train.shape} and {x_test.shape}")
    n_tr, n_te = len(x_train), len(x_test)
    k = min(folds, n_tr, n_te)
    if k < 2:
        raise ValueError(f"adversarial validation needs >= 2 train and test rows, got {n_tr} train, {n_te} test")
    x = np.vstack([x_train, x_test]).astype(np.float64)
    y = np.r_[np.zeros(n_tr, int), np.ones(n_te, int)]
    p = np.empty(len(y))
    fold_aucs = []
    for tr, va in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        clf = make_classifier(classifier, seed, n_quantiles=min(200, len(tr))).fit(x[tr], y[tr])
        p[va] = clf.predict_proba(x[va])[:, 1]
        fold_aucs.append(float(roc_auc_score(y[va], p[va])))
    return Adversarial(p[:n_tr], p[n_tr:], float(roc_auc_score(y, p)), auc_ci(y, p, n_boot, seed), fold_aucs)


def density_weights(p_train: np.ndarray, n_train: int, n_test: int, clip: float = 10.0,
                    balanced: bool = True) -> np.ndarray:
    """(N,) importance weights p_test(x) / p_train(x) from p(test | x), mean 1, clipped at `clip` x mean.

    balanced: the classifier was fitted with balanced class weights, so p / (1 - p) already is the
    density ratio; otherwise it is rescaled by n_train / n_test (a constant: the normalisation removes it).
    """
    if clip <= 1:
        raise ValueError(f"clip must be > 1 (a multiple of the mean weight), got {clip}")
    p = np.clip(np.asarray(p_train, np.float64), P_EPS, 1 - P_EPS)
    r = p / (1 - p) * (1.0 if balanced else n_train / max(n_test, 1))
    w = r / r.mean()
    for _ in range(20):  # clipping lowers the mean; repeat until the clipped weights keep mean 1
        w = np.minimum(w, clip)
        w = w / w.mean()
        if w.max() <= clip * (1 + 1e-9):
            break
    return w


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (N for equal weights)."""
    w = np.asarray(w, np.float64)
    return float(w.sum() ** 2 / max(np.sum(w ** 2), 1e-300))


def stat_differences(stats_train: np.ndarray, stats_test: np.ndarray, names) -> list[dict]:
    """Per statistic: train and test mean, standardised mean difference, univariate AUC (test high);
    sorted by how well the statistic alone separates the sets (|AUC - 0.5|)."""
    out = []
    y = np.r_[np.zeros(len(stats_train), int), np.ones(len(stats_test), int)]
    for j, name in enumerate(names):
        a, b = stats_train[:, j].astype(np.float64), stats_test[:, j].astype(np.float64)
        v = np.r_[a, b]
        ok = np.isfinite(v)
        if ok.sum() < 2 or len(np.unique(y[ok])) < 2:
            continue
        sd = np.sqrt((np.nanvar(a) + np.nanvar(b)) / 2)
        auc = roc_auc_score(y[ok], v[ok]) if np.nanstd(v) > 0 else 0.5
        out.append({"stat": name, "train_mean": float(np.nanmean(a)), "test_mean": float(np.nanmean(b)),
                    "smd": float((np.nanmean(b) - np.nanmean(a)) / sd) if sd > 0 else 0.0, "auc": float(auc)})
    return sorted(out, key=lambda d: -abs(d["auc"] - 0.5))


def class_shift(p_train: np.ndarray, p_test: np.ndarray, w: np.ndarray, y: np.ndarray, classes) -> list[dict]:
    """Per training class: its share of train, its share after importance weighting (a covariate-shift
    guess of its test share), mean p(test | x), and the AUC of its train rows against all test rows."""
    out = []
    for k, c in enumerate(classes):
        m = y == k
        if not m.any():
            continue
        lab = np.r_[np.zeros(int(m.sum()), int), np.ones(len(p_test), int)]
        auc = roc_auc_score(lab, np.r_[p_train[m], p_test]) if len(p_test) else np.nan
        out.append({"class": str(c), "n": int(m.sum()), "train_share": float(m.mean()),
                    "weighted_share": float(w[m].sum() / w.sum()), "mean_p_test": float(p_train[m].mean()),
                    "auc": float(auc)})
    return out


def verdict(auc: float) -> str:
    """How to read a train-vs-test AUC, in a few words."""
    if not np.isfinite(auc):
        return "could not be measured"
    if auc < 0.6:
        return "train and test look alike: CV can be trusted"
    if auc < 0.75:
        return "mild shift: CV may be optimistic; weighted CV will be shown beside it"
    return "CV is likely optimistic; weighted CV will be shown beside it"
