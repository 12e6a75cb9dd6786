"""Every score a vote computed, as manifest data: each ensemble method (nested CV where something was
fitted on OOF), which one was chosen, and the single models beside them. The report reads it back,
so it can show all methods, not only the ones whose submission file was written."""
from __future__ import annotations

import math
from typing import Sequence


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
