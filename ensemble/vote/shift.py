"""vote's shift hooks: weighted and test-like CV of every single run and vote method,
`--select cv|weighted|test_like` and `--priors train|estimated|<list>`.

Scores here are fold means, like vote's CV: each method's held-out predictions (CVScore.oof of its
nested CV: fitted on K-1 folds when it fits on OOF) are scored per fold with the rows' importance
weights (weighted) and on the fold's rows among the most test-like fifth (test_like).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.vote.cv import Fitted
from ensemble.vote.objective import Objective
from ensemble.shift.priors import PriorEstimate, estimate_priors, parse_priors
from ensemble.shift.scores import align, ess, load_weights, read_summary, shift_dir, subset_score, weighted_score

SELECT = ("cv", "weighted", "test_like")


def fold_means(objective, y, pred, folds, w, like) -> tuple[float, float]:
    """(weighted, test-like) fold-mean scores of finished predictions (or of raw ordinal scores, which the
    objective cuts at k + 0.5)."""
    score = lambda yy, pp: objective(yy, pp)
    wt, tl = [], []
    for k in np.unique(folds):
        m = folds == k
        wt.append(weighted_score(score, y[m], pred[m], w[m]))
        tl.append(subset_score(score, y[m], pred[m], like[m]))
    tl = [v for v in tl if np.isfinite(v)]
    return float(np.nanmean(wt)), (float(np.mean(tl)) if tl else float("nan"))


@dataclass
class VoteShift:
    """Shift-aware scores beside vote's CV: rows = single runs then methods (results order)."""
    names: list[str]
    cv: list[float]
    weighted: list[float]
    test_like: list[float]
    n_singles: int
    ess: float
    n: int
    auc: float | None
    weights_file: Path

    def method(self, i: int) -> dict:
        """The manifest's "shift" entry for results[i]."""
        j = self.n_singles + i
        return {"weighted_cv": self.weighted[j], "test_like_cv": self.test_like[j], "ess": round(self.ess, 1),
                "n": self.n, "shift_auc": self.auc, "weights": str(self.weights_file)}

    def table(self, best: int, select: str) -> str:
        rows = [[("* " if i - self.n_singles == best else "  ") + n, f"{c:.4f}", f"{w:.4f}", f"{t:.4f}",
                 f"{w - c:+.4f}"] for i, (n, c, w, t) in enumerate(zip(self.names, self.cv, self.weighted,
                                                                        self.test_like))]
        width = [max(len(r[i]) for r in rows + [self._head]) for i in range(5)]
        line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, width)))
        auc = "-" if self.auc is None else f"{self.auc:.3f}"
        return "\n".join([f"train/test shift (AUC {auc}): weighted = importance-weighted CV (effective sample size "
                          f"{self.ess:.0f} of {self.n}), test-like = CV on the most test-like fifth of the rows; "
                          f"* = chosen by --select {select}", line(self._head), *map(line, rows)])

    _head = ["run / ensemble", "cv", "weighted", "test-like", "w - cv"]


def vote_shift(data, objective: Objective, singles, results) -> VoteShift | None:
    """Scores of every run and method when runs/<competition>/shift/weights.csv exists, else None."""
    comp_dir = Path(data.runs[0].paths.root).parent
    weights = load_weights(comp_dir)
    if weights is None:
        return None
    w, like = align(weights, data.oof_ids)
    names, cv, wt, tl = [], [], [], []
    for name, s, run_oof in zip(data.names, singles, data.oof):
        a, b = fold_means(objective, data.y, run_oof, data.folds, w, like)  # ordinal scores: cut at k + 0.5
        names.append(name), cv.append(s.score), wt.append(a), tl.append(b)
    for spec, score, _ in results:
        a, b = fold_means(objective, data.y, score.oof, data.folds, w, like)
        names.append(spec.name(data.ordinal)), cv.append(score.score), wt.append(a), tl.append(b)
    return VoteShift(names, cv, wt, tl, len(data.names), ess(w), len(w), read_summary(comp_dir).get("auc"),
                     shift_dir(comp_dir) / "weights.csv")


def choose(select: str, vs: VoteShift | None, best: int, greater_is_better: bool, competition: str) -> int:
    """The index into results that --select picks (vote's choice by CV for 'cv')."""
    if select not in SELECT:
        raise ValueError(f"unknown --select '{select}'; available: {', '.join(SELECT)}")
    if select == "cv":
        return best
    if vs is None:
        raise ValueError(f"--select {select} needs runs/{competition}/shift/weights.csv: "
                         f"run python -m ensemble.shift --competition {competition} first")
    vals = np.array((vs.weighted if select == "weighted" else vs.test_like)[vs.n_singles:], float)
    sign = 1 if greater_is_better else -1
    return int(np.argmax(np.nan_to_num(sign * vals, nan=-np.inf)))


def priors_hook(data, fitted: Fitted, priors: str) -> tuple[PriorEstimate | None, np.ndarray | None, list[str]]:
    """Estimate the test priors of the chosen ensemble; -> (estimate, target priors to apply or None, notes)."""
    test_pred = fitted.predict(data.test)
    if test_pred.shape[1] == 1:
        if priors != "train":
            raise ValueError(f"--priors {priors}: class priors need class probabilities; this ensemble predicts a grade")
        return None, None, ["class priors: not estimated (the ensemble predicts a grade, not class probabilities)"]
    n_classes = len(data.classes)
    train = np.bincount(data.y, minlength=n_classes) / len(data.y)
    est = estimate_priors(test_pred, data.classes, train, fitted.predict(data.oof), data.y)
    target = None if priors == "train" else (est.estimated if priors == "estimated" else parse_priors(priors, data.classes))
    notes = est.lines()
    if target is not None:
        notes.append("submission probabilities adjusted to priors " + ", ".join(
            f"{c} {p:.3f}" for c, p in zip(data.classes, target)) + f" (--priors {priors})")
    return est, target, notes
