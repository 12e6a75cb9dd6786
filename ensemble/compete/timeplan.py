"""Fit a whole compete job into a wall-clock budget: from each candidate's measured speed, choose
models, image sizes and epochs (like AutoGluon's ``time_limit``). Pure functions, no training.

    plan = make_plan(candidates, speeds, Workload(...), budget_s=3600, setup={...}, tail={...})
    text = format_plan(plan)                   # the table the command logs

The cost model of one model, per fold (seconds, rates at size s scaled from the measured size by
pixel count, which slightly overestimates large sizes):
    features  (n_train + n_val) / eval_rate          once, when there are head-only epochs
    epoch     n_train / train_rate + n_val / eval_rate
    predict   (n_val + n_test) * views / eval_rate
times ``overhead`` (loaders, augmentation, checkpoints), plus once per image size the image cache
(``Workload.cache_s``) unless it exists. The budget pays, in this order: the setup steps and the
vote and report steps (their estimates, ``setup`` and ``tail``), the reserve, then the models.
Allocation: the most candidates (in priority order, up to ``max_models``) that each get
``min_epochs`` at their smallest size in an equal share; each then takes the largest size at which
``target_epochs`` still fit, and as many epochs as fit (at most ``max_epochs``). A twin (same
backbone, e.g. scratch vs pretrained) gets its twin's size and as many epochs as fit in its twin's
time, so the two compare at equal time; with ``twins="required"`` every twin and the model it twins
are planned (room is kept for them first, the model twinned takes a size at which its twin gets
``min_epochs`` in its time; the other candidates fill what is left). A second round
(``Rerun``: pseudo-labels) retrains some planned models with the same recipe on more rows per fold;
its cost is reserved by giving the first round the largest time with which both rounds fit (when
none does, the plan has no second round). When the first candidate alone does not get ``min_epochs``,
the first one that does is planned; when none does, the first one whose smallest recipe fits (head
epochs on cached features only, else one epoch) gets what fits; when none fits, BudgetError says
the smallest budget that works. A plan never exceeds its budget.
"""
from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import Sequence

from ensemble.compete.plandata import MAX_BUDGET_S, BudgetError, Entry, Plan, Rerun, Speed, Workload, duration_text
from ensemble.compete.spec import Candidate

def fold_cost(speed: Speed, w: Workload, head_epochs: int, epochs: int) -> tuple[float, float]:
    """-> (seconds of one fold, of which seconds in training epochs)."""
    feats = (w.n_fit + w.n_val) / speed.eval if head_epochs else 0.0
    head = head_epochs * (w.n_fit / (50 * speed.eval) + 1.0)  # a small MLP on cached features
    epoch = w.n_fit / speed.train + w.n_val / speed.eval
    predict = (w.n_val + w.n_test) * w.views / speed.eval
    train = head + epochs * epoch
    return (feats + train + predict) * w.overhead, train * w.overhead


def _cache(w: Workload, size: int, cached: set[int]) -> float:
    return 0.0 if size in cached else w.cache_s


def _fit(c: Candidate, speed: Speed, w: Workload, share: float, target: int, max_epochs: int,
         cached: set[int]) -> tuple[int, int]:
    """-> (size, epochs) for one candidate in ``share`` seconds (all folds; epochs < 0: nothing fits)."""
    def epochs_at(size: int) -> int:
        sp = speed.at(size)
        fixed = fold_cost(sp, w, c.head_epochs, 0)[0]
        per_epoch = fold_cost(sp, w, c.head_epochs, 1)[0] - fixed
        return min(max_epochs, math.floor(((share - _cache(w, size, cached)) / w.folds - fixed) / per_epoch + 1e-9))
    sizes = sorted(c.sizes)
    for size in reversed(sizes):
        e = epochs_at(size)
        if e >= target:
            return size, e
    return sizes[0], epochs_at(sizes[0])


def _epochs_within(c: Candidate, speed: Speed, w: Workload, seconds: float, max_epochs: int) -> int:
    """The most epochs (<= max_epochs, 0 when none) of c at speed whose folds take at most ``seconds``."""
    e = max_epochs
    while e > 0 and w.folds * fold_cost(speed, w, c.head_epochs, e)[0] > seconds:
        e -= 1
    return e


def _entry(c: Candidate, speed: Speed, w: Workload, size: int, epochs: int, cached: set[int],
           limit_slack: float) -> Entry:
    total, train = fold_cost(speed.at(size), w, c.head_epochs, epochs)
    return Entry(c.label, c.cfg, list(c.set), size, c.head_epochs, epochs, total * w.folds + _cache(w, size, cached),
                 math.ceil(train * limit_slack), w.folds, c.partial, c.train)


def make_plan(candidates: list[Candidate], speeds: dict[str, Speed], w: Workload, budget_s: float, *,
              folds: Sequence[int] = (), reserve: float = 0.08, reserve_s: float = 30.0,
              setup: dict[str, float] | None = None, tail: dict[str, float] | None = None, min_epochs: int = 2,
              target_epochs: int = 5, max_epochs: int = 15, max_models: int = 4, limit_slack: float = 1.05,
              twin_time: dict[str, tuple[int, float]] | None = None, fallback: bool = True,
              twins: str = "optional", rerun: Rerun | None = None) -> Plan:
    """Choose folds, models, sizes and epochs that fit ``budget_s`` (see the module docstring).

    folds: fold counts to try in order (default: w.folds); the first with which the first
    candidate gets ``target_epochs`` at its smallest size wins, else the last.
    setup, tail: estimated seconds of the steps before and after the models (paid first).
    twin_time: {name: (size, seconds)} of models planned before, for twins of theirs.
    fallback: when no candidate gets ``min_epochs``, plan the first whose smallest recipe fits (raises
    BudgetError when none does; TwinsError when twins are required); else return a plan without entries.
    twins: "required" plans every twin and the model it twins (max_models grows to hold them).
    rerun: a second round to reserve time for (the plan's ``rerun``; none when it does not fit).
    """
    setup, tail = dict(setup or {}), dict(tail or {})
    fixed = budget_s * reserve + reserve_s + sum(setup.values()) + sum(tail.values())
    available = budget_s - fixed
    options = list(folds) or [w.folds]
    required = required_twins(candidates) if twins == "required" else set()

    def first_round(share: float) -> tuple[Workload, list[Entry]]:
        ww = w
        for n in options:
            ww = replace(w, folds=n)
            c = candidates[0]
            if _fit(c, speeds[c.label], ww, share, target_epochs, max_epochs, set(ww.cached))[1] >= target_epochs:
                break
        if share <= 0:
            return ww, []
        return ww, _allocate(candidates, speeds, ww, share, min_epochs, target_epochs, max_epochs,
                             max(max_models, len(required)), limit_slack, twin_time or {}, required)

    plan = Plan(budget_s, available, [], {k: asdict(v) for k, v in speeds.items()}, setup, tail)
    w, entries = first_round(available)
    plan = replace(plan, entries=entries)
    if entries and rerun is not None:
        both = _with_rerun(first_round, speeds, rerun, available, limit_slack)
        if both is not None:
            w, first, second = both
            copies = {e.name: plan.speeds[e.name[:-len(rerun.suffix)]] for e in second}  # same model, same speed
            plan = replace(plan, entries=first, rerun=second, rerun_steps=dict(rerun.steps),
                           speeds={**plan.speeds, **copies})
    if plan.entries or not fallback:
        return plan
    if required:  # the smallest budget that holds every twin (bisection: more budget, more room)
        def holds(b: float) -> bool:
            return bool(make_plan(candidates, speeds, w, b, folds=folds, reserve=reserve, reserve_s=reserve_s,
                                  setup=setup, tail=tail, min_epochs=min_epochs, target_epochs=target_epochs,
                                  max_epochs=max_epochs, max_models=max_models, limit_slack=limit_slack,
                                  fallback=False, twins="required").entries)
        lo, hi = budget_s, 2 * budget_s
        while not holds(hi) and hi < MAX_BUDGET_S:
            lo, hi = hi, 2 * hi
        if holds(hi):
            for _ in range(30):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if holds(mid) else (mid, hi)
        names = sorted(required, key=[c.label for c in candidates].index)
        raise TwinsError(budget_s, hi if holds(hi) else None, names, min_epochs)
    w = replace(w, folds=min(options))  # not even one model gets min_epochs: the smallest recipe that fits
    for c in candidates:
        size, e = _fit(c, speeds[c.label], w, available, 1, max_epochs, set(w.cached))
        if e >= (0 if c.head_epochs else 1):
            return replace(plan, entries=[_entry(c, speeds[c.label], w, size, e, set(w.cached), limit_slack)])
    smallest = min((_entry(c, speeds[c.label], w, min(c.sizes), 0 if c.head_epochs else 1, set(w.cached), limit_slack)
                    for c in candidates), key=lambda e: e.est_seconds)
    needed = (smallest.est_seconds + fixed - budget_s * reserve) / (1 - reserve)
    raise BudgetError(budget_s, needed, smallest, needed - smallest.est_seconds)


class TwinsError(ValueError):
    """``twins: required`` and the budget does not hold every twin and its model at ``min_epochs``;
    ``needed_s``: the smallest budget that does (None: none does, a twin never gets min_epochs in its
    model's time)."""

    def __init__(self, budget_s: float, needed_s: float | None, names: list[str], min_epochs: int):
        self.budget_s, self.needed_s = budget_s, needed_s
        fix = (f"use --time {duration_text(needed_s)} or more" if needed_s is not None else
               "no budget does (a twin never gets them in its model's time)")
        super().__init__(f"time.twins: required: a budget of {duration_text(budget_s)} does not hold "
                         f"{', '.join(names)} with {min_epochs} epochs each; {fix}, or set time.twins: optional")


def required_twins(candidates: Sequence[Candidate]) -> set[str]:
    """The labels of every candidate with a twin and of the candidates they twin (chains included)."""
    by_label = {c.label: c for c in candidates}
    out: set[str] = set()
    for c in candidates:
        while c is not None and c.twin:
            out |= {c.label, c.twin}
            c = by_label.get(c.twin)
    return out


def rerun_entries(entries: Sequence[Entry], speeds: dict[str, Speed], w: Workload, rerun: Rerun,
                  limit_slack: float = 1.05) -> list[Entry]:
    """The second round of ``entries``: the models ``rerun`` names, same recipe, ``rerun.extra`` more rows
    in every fold's training part (their images come from the test cache: no cache is built)."""
    out = []
    for e in entries:
        if rerun.models is not None and e.name not in rerun.models:
            continue
        total, train = fold_cost(speeds[e.name].at(e.size), replace(w, folds=e.folds, extra=rerun.extra),
                                 e.head_epochs, e.epochs)
        out.append(replace(e, name=e.name + rerun.suffix, est_seconds=total * e.folds,
                           fold_limit=math.ceil(train * limit_slack)))
    return out


def _with_rerun(first_round, speeds, rerun: Rerun, available: float, limit_slack: float):
    """The first round in the largest share of ``available`` with which its second round fits too:
    -> (workload, first-round entries, second-round entries), or None when no share does. A share
    too small plans no model; one too large leaves no room: bisection between the two."""
    fixed = sum(rerun.steps.values())

    def attempt(share: float):
        w, first = first_round(share)
        if not first:
            return -1, None
        second = rerun_entries(first, speeds, w, rerun, limit_slack)
        used = sum(e.est_seconds for e in first) + sum(e.est_seconds for e in second) + fixed
        return (0, (w, first, second)) if second and used <= available + 1e-9 else (1 if second else -1, None)

    lo, hi, best = 0.0, available - fixed, None
    if hi <= 0:
        return None
    status, found = attempt(hi)
    if status == 0:
        return found
    for _ in range(40):
        mid = (lo + hi) / 2
        status, found = attempt(mid)
        if status == 0:
            best, lo = found, mid
        elif status < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 0.5:
            break
    return best


def _allocate(candidates, speeds, w: Workload, available: float, min_epochs: int, target_epochs: int,
              max_epochs: int, max_models: int, limit_slack: float,
              twin_time: dict[str, tuple[int, float]], required: set[str] = frozenset()) -> list[Entry]:
    def seconds(c: Candidate, size: int, epochs: int) -> float:  # all folds of c at size
        return w.folds * fold_cost(speeds[c.label].at(size), w, c.head_epochs, epochs)[0]

    def twin_epochs(c: Candidate, size: int, twin_s: float) -> int:  # at its twin's size, in its twin's time
        return _epochs_within(c, speeds[c.label].at(size), w, min(share, twin_s), max_epochs)

    chosen: list[tuple[Candidate, int, int]] = []
    others = [c for c in candidates if c.label not in required]
    for m in range(min(len(candidates), max_models), max(len(required), 1) - 1, -1):
        share = available / m
        chosen, cached = [], set(w.cached)
        keep = required | {c.label for c in others[:m - len(required)]}  # the twins first, then priority order
        for c in (c for c in candidates if c.label in keep):
            twin = next((x for x in chosen if x[0].label == c.twin), None)
            if twin is not None:
                size = twin[1]
                e = twin_epochs(c, size, seconds(twin[0], size, twin[2]))
            elif c.twin in twin_time:
                size, twin_s = twin_time[c.twin]
                e = twin_epochs(c, size, twin_s)
            else:
                size, e = _fit(c, speeds[c.label], w, share, target_epochs, max_epochs, cached)
                twins = [d for d in candidates if d.twin == c.label and d.label in required]
                # a required twin trains at this model's size, in its time: a smaller size, so that it can
                while size > min(c.sizes) and any(twin_epochs(d, size, seconds(c, size, e)) < min_epochs for d in twins):
                    size, e = _fit(replace(c, sizes=[x for x in c.sizes if x < size]), speeds[c.label], w, share,
                                   target_epochs, max_epochs, cached)
            if e < min_epochs:
                break
            chosen.append((c, size, e))
            cached.add(size)
        if len(chosen) == m:
            break
    else:  # the first candidate alone does not get min_epochs: the first one that does (twins need theirs)
        if required:
            return []
        single = ((c, *_fit(c, speeds[c.label], w, available, target_epochs, max_epochs, set(w.cached)))
                  for c in candidates if not c.twin)
        chosen = [next((x for x in single if x[2] >= min_epochs), None)]
        if chosen[0] is None:
            return []
    entries, cached = [], set(w.cached)
    for c, size, e in chosen:
        entries.append(_entry(c, speeds[c.label], w, size, e, cached, limit_slack))
        cached.add(size)
    return entries


def top_up(plan: Plan, candidates: list[Candidate], actual_s: dict[str, float], w: Workload, remaining_s: float,
           **kw) -> list[Entry]:
    """Models to add when the plan ran faster than estimated and ``remaining_s`` is left.

    The measured speeds are corrected by how the trained entries actually ran (estimated /
    actual seconds, within 0.5..4), then the candidates not in the plan are planned into the
    remaining time (``make_plan``'s keywords); a twin of a trained model gets that model's actual
    time. Returns [] when nothing gets ``min_epochs``.
    """
    done = [e for e in plan.entries if actual_s.get(e.name)]
    left = [c for c in candidates if plan.entry(c.label) is None]
    if not done or not left or remaining_s <= 0:
        return []
    ratio = min(4.0, max(0.5, sum(e.est_seconds for e in done) / sum(actual_s[e.name] for e in done)))
    speeds = {c.label: replace(Speed(**plan.speeds[c.label]), train=plan.speeds[c.label]["train"] * ratio,
                               eval=plan.speeds[c.label]["eval"] * ratio) for c in left}
    twins = {e.name: (e.size, actual_s[e.name]) for e in done}
    cached = tuple(sorted({*w.cached, *(e.size for e in plan.entries)}))
    sub = make_plan(left, speeds, replace(w, folds=done[0].folds, cached=cached), remaining_s, reserve=0.0,
                    reserve_s=0.0, twin_time=twins, fallback=False, **kw)
    return sub.entries


def format_plan(plan: Plan) -> str:
    """The plan as a table: one row per model (the second round's after the first's), then the setup,
    vote and report steps (and the second round's) and the total."""
    rows = [["model", "size", "folds", "epochs (head+partial+rest)", "rest trains", "train img/s", "fold limit s",
             "est. min"]]
    for e in [*plan.entries, *plan.rerun]:
        sp = Speed(**plan.speeds[e.name]).at(e.size)
        partial = 1 if e.partial and e.epochs > 1 else 0
        rows.append([e.name, str(e.size), str(e.folds), f"{e.head_epochs}+{partial}+{e.epochs - partial}",
                     "all" if e.train == "all" else f"last {e.train}", f"{sp.train:.1f}",
                     f"{e.fold_limit:.0f}", f"{e.est_seconds / 60:.1f}"])
    for name, seconds in [*plan.setup.items(), *plan.tail.items(), *plan.rerun_steps.items()]:
        rows.append([name, "", "", "", "", "", "", f"{seconds / 60:.1f}"])
    rows.append(["total", "", "", "", "", "", "", f"{plan.total_seconds / 60:.1f} of {plan.budget_s / 60:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in rows)
