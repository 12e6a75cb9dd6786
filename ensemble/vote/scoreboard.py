"""Every score a vote computed: the text report vote prints (single models and ensembles, error
correlations, weights, fitted bias/thresholds) and the same scores as manifest data (each ensemble
method, nested CV where something was fitted on OOF, which one was chosen, the single models beside
them), which the HTML report reads back, so it can show all methods, not only the written ones."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ensemble.vote.cv import error_correlation
from ensemble.vote.kaggle import runs_text
from ensemble.vote.objective import Objective
from ensemble.vote.runs import Runs


def _f(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def vote_scores(names: Sequence[str], run_metrics: Sequence[dict], singles, results, best: int,
                ordinal: bool) -> dict:
    """-> {'ensembles': [...], 'singles': [...]}.

    singles: CVScore per run (fold-mean CV of its OOF); results: [(Spec, CVScore, Fitted)] in the
    order vote printed them; best: the index of the chosen one."""
    ensembles = []
    for i, (spec, cv, fitted) in enumerate(results):
        w = fitted.state.get("weights")
        ensembles.append({
            "method": spec.name(ordinal), "score": _f(cv.score), "std": _f(cv.std),
            "cv_is": "nested" if spec.fits else "fold mean", "in_sample": _f(cv.in_sample),
            "chosen": i == best,
            "weights": None if w is None else {n: round(float(v), 6) for n, v in zip(names, w)}})
    singles_out = [{"run": n, "score": _f(s.score), "std": _f(s.std), "metrics_cv": _f(m.get("cv")),
                    "backbone": m.get("backbone"), "input_size": m.get("input_size"), "weights": m.get("weights")}
                   for n, s, m in zip(names, singles, run_metrics)]
    return {"ensembles": ensembles, "singles": singles_out}


def _fmt_table(rows: list[list[str]], header: list[str]) -> str:
    width = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, width)))
    return "\n".join([line(header)] + [line(r) for r in rows])


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def report(data: Runs, objective: Objective, singles, results, best: int) -> str:
    """Scores of single models and ensembles, error correlations and the chosen weights."""
    names, ordinal = data.names, data.ordinal
    rows = [[n, f"{s.score:.4f}", f"{s.std:.4f}", "fold mean", "", _num(r.metrics.get("cv"))]
            for n, s, r in zip(names, singles, data.runs)]
    for i, (spec, cv, _) in enumerate(results):
        rows.append([("* " if i == best else "  ") + spec.name(ordinal), f"{cv.score:.4f}", f"{cv.std:.4f}",
                     "nested" if spec.fits else "fold mean", "" if cv.in_sample is None else f"{cv.in_sample:.4f}", ""])
    direction = "higher" if objective.higher_is_better else "lower"
    out = [f"{data.competition}: {runs_text(len(names))}, {len(np.unique(data.folds))} folds, OOF {len(data.y)} rows, "
           f"test {data.test.shape[1]} rows; {data.metric} ({direction} is better)",
           "cv = mean of per-fold scores; nested = fitted on K-1 folds, scored on the held-out fold; "
           "in-sample = fitted on all OOF (optimistic)",
           _fmt_table(rows, ["run / ensemble (* best)", "cv", "std", "cv is", "in-sample", "metrics.json cv"])]
    if len(names) > 1:  # one run has nothing to correlate with
        corr = error_correlation(data.oof, data.y)
        short = [n[:14] for n in names]
        out += ["", "OOF error correlation",
                _fmt_table([[s] + [f"{v:.2f}" for v in row] for s, row in zip(short, corr)], ["run"] + short)]
    wcols = [(spec, fitted) for spec, _, fitted in results if "weights" in fitted.state]
    if wcols:
        rows = [[n] + [f"{f.state['weights'][i]:.3f}" for _, f in wcols] for i, n in enumerate(names)]
        out += ["", "weights (methods not listed: equal; stacking: share of |coef|)",
                _fmt_table(rows, ["run"] + [s.name(ordinal) for s, _ in wcols])]
    for spec, _, fitted in results:
        if fitted.post is not None:
            labels = [f"t{k}" for k in range(len(fitted.post))] if ordinal or spec.grade else data.classes
            out.append(f"{spec.name(ordinal)}: " + " ".join(f"{c}={v:+.2f}" for c, v in zip(labels, fitted.post)))
    return "\n".join(out)
