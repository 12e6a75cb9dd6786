"""Pseudo-labels from a vote: which test rows the chosen ensemble labels confidently enough to train on.

    oof, test = chosen_predictions(result)                  # held-out OOF (N, C) and test (T, C) probabilities
    pl = pseudo_labels(oof, y, test, classes, precision=0.95, max_fraction=1.0)
    pl.lines()                                              # one line per class: threshold, OOF precision, rows
    frame = pl.frame(ids, paths, weight=0.5, hard=False)    # train.extra_rows' columns

Per class c, the OOF rows the ensemble predicts as c (argmax) are ranked by their probability of c;
the threshold is the lowest value t such that the rows with p_c >= t are labelled c with precision
>= `precision` (the held-out rows' own labels say so). A test row becomes a pseudo-label of c when
its argmax is c and p_c >= t. A class whose OOF precision never reaches the target gets no rows.
Pure numpy: no torch, no files (chosen_predictions reads the vote's manifest).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

PRECISION_TOL = 1e-9  # 19 of 20 rows is a precision of 0.95, whatever the float rounding says


@dataclass(frozen=True)
class ClassThreshold:
    """One class's choice. threshold None: its OOF precision never reaches the target (best: the
    highest precision of any threshold, at best_threshold)."""

    name: str
    threshold: float | None
    precision: float | None  # OOF precision of the rows at or above the threshold
    oof_rows: int  # OOF rows at or above it (predicted as this class)
    taken: int = 0  # test rows labelled with this class
    best: float | None = None  # when no threshold reaches the target: the best precision seen
    best_threshold: float | None = None

    def line(self, target: float) -> str:
        if self.threshold is None:
            seen = "no OOF row is predicted as it" if self.best is None else (
                f"best {self.best:.3f} at threshold {self.best_threshold:.3f}")
            return f"pseudo-labels: {self.name}: OOF precision never reaches {target:g} ({seen}); no test rows"
        return (f"pseudo-labels: {self.name}: threshold {self.threshold:.3f}, OOF precision {self.precision:.3f} "
                f"({self.oof_rows} OOF rows), {self.taken} test rows")


def _curve(conf: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct value of conf as a threshold, highest first -> (thresholds, correct rows and rows
    at or above each). Equal values are never split: a threshold takes them all."""
    order = np.argsort(-np.asarray(conf, np.float64), kind="stable")
    c, ok = np.asarray(conf, np.float64)[order], np.asarray(correct, bool)[order]
    ends = np.r_[c[1:] != c[:-1], True][:len(c)]
    return c[ends], np.cumsum(ok)[ends], np.arange(1, len(c) + 1)[ends]


def class_threshold(conf: np.ndarray, correct: np.ndarray, precision: float) -> tuple[float, float, int] | None:
    """conf (n,): a class's probability on the OOF rows predicted as it; correct (n,) bool: their label
    is that class. -> (threshold, precision of the rows with conf >= threshold, their count) for the
    lowest threshold whose precision is >= `precision`, or None when none is."""
    t, hits, n = _curve(conf, correct)
    passing = np.flatnonzero(hits >= precision * n - PRECISION_TOL)
    if not len(passing):
        return None
    i = passing[-1]  # the lowest threshold that passes
    return float(t[i]), float(hits[i] / n[i]), int(n[i])


def _best(conf: np.ndarray, correct: np.ndarray) -> tuple[float | None, float | None]:
    """The highest precision any threshold gives, and the lowest threshold that gives it."""
    t, hits, n = _curve(conf, correct)
    if len(t) == 0:
        return None, None
    prec = hits / n
    i = int(np.flatnonzero(prec == prec.max())[-1])
    return float(prec[i]), float(t[i])


@dataclass
class PseudoLabels:
    """The chosen test rows: take (T,) bool, label (T,) class index, probs (T, C) rows summing to 1."""

    classes: list[str]
    thresholds: list[ClassThreshold]
    take: np.ndarray
    label: np.ndarray
    probs: np.ndarray
    precision: float
    capped: int = 0  # rows that passed a threshold but were left out by max_fraction

    @property
    def n(self) -> int:
        return int(self.take.sum())

    def lines(self) -> list[str]:
        out = [t.line(self.precision) for t in self.thresholds]
        if self.capped:
            out.append(f"pseudo-labels: {self.capped} more test rows passed their threshold; max_fraction kept "
                       f"the {self.n} most confident")
        return out

    def frame(self, ids: Sequence[str], paths: Sequence[str], weight: float, hard: bool) -> pd.DataFrame:
        """train.extra_rows' table of the taken rows: id, path, one probability column per class (the
        ensemble's probabilities, or one-hot when hard), weight."""
        idx = np.flatnonzero(self.take)
        p = np.eye(len(self.classes), dtype=np.float64)[self.label[idx]] if hard else self.probs[idx].astype(np.float64)
        df = pd.DataFrame(p, columns=self.classes)
        df.insert(0, "path", [str(paths[i]) for i in idx])
        df.insert(0, "id", [str(ids[i]) for i in idx])
        df["weight"] = float(weight)
        return df


def _rows(p: np.ndarray) -> np.ndarray:
    """Non-negative scores (rank averages included) -> rows summing to 1 (probability rows stay as they are)."""
    p = np.clip(np.asarray(p, np.float64), 0.0, None)
    s = p.sum(1, keepdims=True)
    off = np.abs(s - 1.0) > 1e-6
    return np.where(off, np.divide(p, s, out=np.full_like(p, 1.0 / p.shape[1]), where=s > 0), p)


def pseudo_labels(oof: np.ndarray, y: np.ndarray, test: np.ndarray, classes: Sequence[str], *,
                  precision: float = 0.95, max_fraction: float = 1.0) -> PseudoLabels:
    """Thresholds per class on the held-out OOF probabilities oof (N, C) with labels y (N,), applied to
    test (T, C). max_fraction: at most this share of the test rows is taken, the most confident first."""
    if not 0 < precision <= 1:
        raise ValueError(f"pseudo-label precision must be in (0, 1], got {precision}")
    if not 0 < max_fraction <= 1:
        raise ValueError(f"pseudo-label max_fraction must be in (0, 1], got {max_fraction}")
    oof, test, y = _rows(oof), _rows(test), np.asarray(y, np.int64)
    if oof.shape[1] != len(classes) or test.shape[1] != len(classes) or len(y) != len(oof):
        raise ValueError(f"expected OOF (N, {len(classes)}) with N labels and test (T, {len(classes)}), got "
                         f"{oof.shape}, {y.shape} and {test.shape}")
    pred, label = oof.argmax(1), test.argmax(1)
    conf = test[np.arange(len(test)), label]
    take = np.zeros(len(test), bool)
    found: list[tuple[str, tuple | None, tuple]] = []
    for c, name in enumerate(classes):
        rows = pred == c
        chosen = class_threshold(oof[rows, c], y[rows] == c, precision)
        if chosen is not None:
            take |= (label == c) & (conf >= chosen[0])
        found.append((name, chosen, (None, None) if chosen else _best(oof[rows, c], y[rows] == c)))
    capped = 0
    limit = int(np.floor(max_fraction * len(test) + 1e-9))
    if take.sum() > limit:
        keep = np.flatnonzero(take)[np.argsort(-conf[take], kind="stable")[:limit]]
        capped = int(take.sum()) - limit
        take = np.zeros(len(test), bool)
        take[keep] = True
    thresholds = [ClassThreshold(name, *chosen, int((take & (label == c)).sum())) if chosen
                  else ClassThreshold(name, None, None, 0, 0, *best) for c, (name, chosen, best) in enumerate(found)]
    return PseudoLabels(list(classes), thresholds, take, label, test.astype(np.float32), precision, capped)


def chosen_predictions(result) -> tuple[np.ndarray, np.ndarray] | None:
    """A VoteResult's chosen ensemble -> (held-out OOF (N, C), test (T, C) probabilities), exactly as
    it submits them (the written manifest's recipe: bias, class priors and temperature included);
    None when it submits labels or grades (ordinal runs, expected grades)."""
    from ensemble.vote.calibrate import scale
    from ensemble.vote.recipe import make_recipe, replay
    best, data = result.best_ensemble, result.runs
    if best.cv.oof is None:
        return None
    if result.chosen is not None:
        recipe = json.loads(Path(result.chosen[0]).with_suffix(".json").read_text())["recipe"]
    else:  # vote: write none: the recipe as fitted (no prior adjustment or temperature)
        recipe = make_recipe(best.fitted, data.names, data.classes, data.ordinal)
    test = replay(recipe, data.test)
    if test.ndim != 2 or test.shape[1] != len(data.classes):
        return None
    oof = best.cv.oof if recipe.get("temperature") is None else scale(best.cv.oof, recipe["temperature"])
    return np.asarray(oof, np.float32), np.asarray(test, np.float32)
