"""`python -m ensemble.compete --competition NAME --time 60m`: the whole job planned to fit the wall time.

Reads the `time:` section of configs/<NAME>/compete.yaml (ensemble.compete.spec):

    time:
      candidates:            # in priority order: pretrained first, diverse backbones for the vote
        - {cfg: efficientnet_lite0.yaml, sizes: [128, 160, 192], head_epochs: 2}
        - {cfg: efficientnet_lite0.yaml, name: efficientnet_lite0-scratch, set: [model.pretrained=false],
           twin: efficientnet_lite0}
      set: [output.progress=false]     # every model
      target_epochs: 5                 # a larger size is taken only when this many epochs still fit

Before anything is written: one quick batch per candidate and a few images are timed, which prices
every step (duplicates, the shift check, a fuller speed measurement, the image caches, each model,
vote and report; ensemble.compete.steps). The setup shrinks first when the budget is tight (the
shift check falls back to image statistics, then the fuller measurement is skipped, then the shift
check when nothing needs it); when not even the smallest plan fits, one line says the smallest budget
that works. The plan (printed, never over the budget, saved as runs/<NAME>/compete-t<TIME>.json) then
runs as one step list; every fold is limited to its share (`train.time_limit`). Running the same
command again resumes the saved plan. At the end: plan vs actual.

`twins: required` plans every `twin:` candidate with the model it twins (room is kept for them first).
`pseudo:` (ensemble.compete.pseudo) reserves the second round in the plan: the first round gets the
largest share with which the retrained models (the same recipe on up to max_fraction x the test rows
more per fold), the labelling and the second vote still fit; when none does, one line says the round
is skipped.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ensemble.compete.measure import full_measure_seconds, measure_candidates, measure_eval, measure_images
from ensemble.compete.spec import BUILDERS, PSEUDO_SUFFIX, ShiftCheck, TimeSpec, time_spec
from ensemble.compete.steps import (SKIPPED, CompeteResult, Costing, Job, RunState, Step, final_steps, job_steps,
                                    job_vote, run_steps, setup_steps, train_step)
from ensemble.compete.pseudo import ROUND_STEPS, VOTE_STEP
from ensemble.compete.plandata import Entry, Plan, Rerun, Workload, parse_duration
from ensemble.compete.timeplan import format_plan, make_plan, top_up
from ensemble.config import load_config

logger = logging.getLogger(__name__)

SETUP_SHARE = 0.25  # the setup may take this much of the budget before it shrinks
MEASURE = "measure + plan"  # the plan's row for the time spent before the plan (and the fuller measurement)


def time_label(text: str) -> str:
    """'60m' -> 't60m' (run names and the plan file); '1.5h' -> 't1p5h'."""
    return "t" + re.sub(r"[^0-9a-z]", "", str(text).strip().lower().replace(".", "p"))


@dataclass(frozen=True)
class Setup:
    """One rung of the setup ladder: what runs before the models."""

    dups: bool
    shift: ShiftCheck
    full_measure: bool

    def describe(self, wanted: "Setup") -> str:
        parts = []
        if self.shift != wanted.shift:
            parts.append("the shift check " + ("uses image statistics" if self.shift == "stats" else "is skipped"))
        if not self.full_measure:
            parts.append("speeds come from one batch per candidate")
        return "; ".join(parts)


def setup_ladder(spec: TimeSpec, shift_needed: bool) -> list[Setup]:
    """compete.yaml's setup first, then cheaper ones: statistics instead of embeddings, the quick speeds
    only, no shift check (only when neither folds nor vote need it)."""
    shifts = [spec.shift, *(["stats"] if spec.shift == "embeddings" else [])]
    ladder = [Setup(spec.dups, s, True) for s in shifts] + [Setup(spec.dups, shifts[-1], False)]
    if spec.shift != "off" and not shift_needed:
        ladder.append(Setup(spec.dups, "off", False))
    return ladder


def _cached(comp, cache_dir: Path, sizes) -> tuple[int, ...]:
    from ensemble.data.images import cache_paths
    lists = [comp.train["path"].tolist(), comp.test["path"].tolist()]
    return tuple(s for s in sorted(set(sizes)) if all(cache_paths(p, s, cache_dir)[0].exists() for p in lists))


def plan_time(spec: TimeSpec, cfgs: dict, job: Job, comp, budget_s: float, started: float) -> tuple[Plan, Setup]:
    """Measure (nothing is written), price every step, climb down the setup ladder until the plan fits.
    Raises BudgetError (timeplan) when not even the smallest plan fits."""
    first = job.setup_cfg
    speeds, build_s = measure_candidates(spec.candidates, cfgs, len(comp.classes), quick=True)
    rates = measure_images(comp.train["path"].tolist() + comp.test["path"].tolist(), first.input.size)
    embed = measure_eval("efficientnet_lite0", first.input.size) if spec.shift == "embeddings" else None
    sizes = {first.input.size, *(s for c in spec.candidates for s in c.sizes)}
    cached = _cached(comp, job.paths.cache, sizes)
    options = spec.folds or [first.folds.n]
    if job.paths.folds.exists():  # every model of a competition shares one folds.csv
        import pandas as pd
        options = [int(pd.read_csv(job.paths.folds, usecols=["fold"])["fold"].max()) + 1]
    costing = Costing(len(comp.train), len(comp.test), len(comp.classes), rates.decode_s, rates.hash_s, rates.stats_s,
                      embed, cached, min(spec.max_models, len(spec.candidates)), max(options))
    workers = max(2, first.train.num_workers)
    w = Workload(len(comp.train), len(comp.test), first.folds.n, _views(first), cache_s=costing.cache_s(None, workers))
    full_s = full_measure_seconds(spec.candidates, cfgs, speeds, build_s)
    needed = any(c.folds.strategy == "test_like" for c in cfgs.values()) or job.vote.select != "cv"
    ladder = setup_ladder(spec, needed)
    p = spec.pseudo
    models = None if p is None or p.models == "all" else tuple(p.models)

    def plan_with(s: Setup, measure_s: float, fallback: bool) -> Plan:
        """The plan after setup `s`; vote and report priced for m models, m from the most down to 1
        (fewer models leave more time for the vote), the first plan with models wins."""
        in_cache = cached + ((first.input.size,) if s.shift != "off" else ())  # the shift check builds it
        for m in range(costing.n_models, 0, -1):
            j = replace(job, dups=s.dups, shift=s.shift, costing=replace(costing, n_models=m))
            setup = {MEASURE: measure_s, **{st.name: st.estimate for st in setup_steps(j)}}
            after = {st.name: st.estimate for st in final_steps(j)}
            rerun = None if p is None else Rerun(int(p.max_fraction * len(comp.test) + 1e-9), models,
                                                 {k: v for k, v in after.items() if k in ROUND_STEPS})
            plan = make_plan(spec.candidates, speeds, replace(w, cached=in_cache), budget_s, folds=options,
                             reserve=spec.reserve, reserve_s=0.0, setup=setup,
                             tail={k: v for k, v in after.items() if k not in ROUND_STEPS}, min_epochs=spec.min_epochs,
                             target_epochs=spec.target_epochs, max_epochs=spec.max_epochs, max_models=m,
                             fallback=fallback and m == 1, twins=spec.twins, rerun=rerun)
            if plan.entries:
                break
        return plan

    spent = time.perf_counter() - started
    chosen = None
    for s in ladder:
        plan = plan_with(s, spent + (full_s if s.full_measure else 0.0), fallback=False)
        logger.debug(f"setup {s}: {sum(plan.setup.values()):.1f}s ({plan.setup}), vote + report "
                     f"{sum(plan.tail.values()):.1f}s, {len(plan.entries)} models")
        if plan.entries and sum(plan.setup.values()) <= SETUP_SHARE * budget_s:
            chosen = s
            break
    if chosen is None:
        chosen = ladder[-1]
        plan = plan_with(chosen, spent, fallback=True)  # raises BudgetError when nothing fits
    if chosen.full_measure:
        speeds, _ = measure_candidates(spec.candidates, cfgs, len(comp.classes))
        plan = plan_with(chosen, time.perf_counter() - started, fallback=True)
    shrunk = chosen.describe(ladder[0])
    if shrunk:
        logger.info(f"the setup shrinks to fit the budget: {shrunk}")
    return plan, chosen


def _views(cfg) -> int:
    from ensemble.train.tta import expand_tta
    return len(expand_tta(cfg.predict.tta))


def _table(plan: Plan, cfgs: dict, actual: dict[str, float], twins: dict[str, str]) -> str:
    """Plan vs actual: one row per model (with its CV), then the other steps and the total."""
    import json

    from ensemble.artifacts.paths import RunPaths
    rows = [["step", "est. min", "actual min", "CV"]]
    cv = {}
    for e in [*plan.entries, *plan.rerun]:
        if e.name not in cfgs:  # left out: the job ran behind its plan (or no pseudo-labels for a second round)
            rows.append([e.name, f"{e.est_seconds / 60:.1f}", "-", "left out" if e in plan.entries else "not trained"])
            continue
        path = RunPaths(cfgs[e.name].run_dir).metrics
        cv[e.name] = json.loads(path.read_text())["cv"] if path.exists() else float("nan")
        rows.append([e.name, f"{e.est_seconds / 60:.1f}", f"{actual.get(e.name, float('nan')) / 60:.1f}",
                     f"{cv[e.name]:.4f}"])
    for name, est in [*plan.setup.items(), *plan.tail.items(), *plan.rerun_steps.items()]:
        rows.append([name, f"{est / 60:.1f}", f"{actual.get(name, float('nan')) / 60:.1f}", ""])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for name, twin in twins.items():
        if name in cv and twin in cv:
            lines.append(f"equal time: {twin} CV {cv[twin]:.4f} vs {name} CV {cv[name]:.4f} "
                         f"({cv[twin] - cv[name]:+.4f})")
    return "\n".join(lines)


def _add_model(job: Job, e: Entry, cfg_of) -> None:
    """A planned model joins the job: its config, its '== train' note and its estimate."""
    job.cfgs[e.name] = cfg_of(e.name, e.cfg, e.overrides())
    job.notes[e.name] = f", {e.head_epochs} head + {e.epochs} epochs, est. {e.est_seconds / 60:.1f} min"
    job.estimates[e.name] = e.est_seconds


def _top_up_step(job: Job, state: RunState, spec: TimeSpec, comp, cfg_of) -> Step:
    """After the last planned model: when it ran faster than estimated, plan more models into the time
    left (timeplan.top_up) and run them next (each followed by this step again)."""
    def run(progress) -> list[Step] | None:
        plan = state.plan
        left_s = state.budget_s * (1 - spec.reserve) - state.elapsed_s - sum(plan.tail.values()) - plan.rerun_seconds
        w = Workload(len(comp.train), len(comp.test), job.setup_cfg.folds.n, _views(job.setup_cfg))
        entries = top_up(plan, spec.candidates, state.actual_s, w, left_s, min_epochs=spec.min_epochs,
                         target_epochs=spec.target_epochs, max_epochs=spec.max_epochs,
                         max_models=spec.max_models - len(plan.entries))
        if not entries:
            return None
        logger.info(f"== ahead of the plan ({left_s / 60:.1f} min left): adding\n"
                    f"{format_plan(replace(plan, entries=entries, setup={}, tail={}))}")
        state.plan = replace(plan, entries=[*plan.entries, *entries])
        for e in entries:
            _add_model(job, e, cfg_of)
        return [*(_on_time(train_step(job, e.name), job, state) for e in entries),
                _top_up_step(job, state, spec, comp, cfg_of)]

    return Step("top up", 0.0, run, "plan more models if time is left")


def _on_time(step: Step, job: Job, state: RunState, rerun: bool = False) -> Step:
    """A model's train step that is dropped when the job runs behind its plan so far that the model
    (its estimate scaled by how the trained models compared with theirs), vote and report would end
    past the budget. The first model always trains: a vote needs one. rerun: a second-round model
    (pseudo-labels), followed by the second vote and the report; the first round never waits for it."""
    def run(progress):
        plan = state.plan
        trained = [e for e in plan.entries if state.actual_s.get(e.name) and e.name != step.name]
        ratio = max(1.0, sum(state.actual_s[e.name] for e in trained) / sum(e.est_seconds for e in trained)
                    ) if trained else 1.0
        after = (plan.rerun_steps.get(VOTE_STEP, 0.0) + plan.tail.get("report", 0.0)) if rerun else \
            sum(plan.tail.values())
        end_s = state.elapsed_s + ratio * (step.estimate or 0.0) + after
        first = not rerun and list(job.cfgs).index(step.name) == 0
        if not first and end_s > state.budget_s and (job.pseudo_file is not None or not rerun):
            logger.warning(f"warning: {step.name} is left out: the job runs behind its plan and would end at "
                           f"{end_s / 60:.1f} min of {state.budget_s / 60:.1f} with it")
            if not rerun:
                del job.cfgs[step.name]
            return SKIPPED
        return step.run(progress)

    return replace(step, run=run)


def compete_time(competition: str, time_text: str, *, configs_dir: str = "configs", extra: Sequence[str] = (),
                 plan_only: bool = False, quiet: bool = False, submit: bool = False, kaggle: str | None = None,
                 message: str | None = None, started: float | None = None) -> CompeteResult | None:
    """Plan, train, vote and report within ``time_text`` (e.g. '60m') of wall time; resumable.

    plan_only: measure and print the plan, write and train nothing (-> None); quiet: no progress bars;
    submit, kaggle, message: as for `compete`; started: time.perf_counter() when the budget's clock
    started (default: now). Raises on bad input (BudgetError: the budget is too short)."""
    from ensemble.data.competition import load_competition
    started = time.perf_counter() if started is None else started
    extra = [*extra, *(["output.progress=false"] if quiet else [])]
    budget_s = parse_duration(time_text)
    folder, spec, builder = time_spec(competition, configs_dir)
    label = time_label(time_text)
    vote = job_vote(spec.vote, competition, submit=submit, kaggle=kaggle, message=message)

    def cfg_of(name: str, cfg_file: str, overrides: Sequence[str]):
        return load_config(folder / cfg_file, [*spec.set, *overrides, *extra, f"name={name}-{label}"])

    cfgs = {c.label: cfg_of(c.label, c.cfg, c.set) for c in spec.candidates}
    first = cfgs[spec.candidates[0].label]
    if builder:
        BUILDERS[builder](Path(first.competition.root))
    comp = load_competition(first.competition)
    job = Job(competition, {}, first, spec.dups, spec.shift, vote, submit, pseudo=spec.pseudo)  # priced while planning
    state_file = first.competition_dir / f"compete-{label}.json"
    if state_file.exists():
        state = RunState.load(state_file)
        logger.info(f"resuming the plan in {state_file} ({state.elapsed_s / 60:.1f} min spent before)")
    else:
        plan, setup = plan_time(spec, cfgs, job, comp, budget_s, started)
        state = RunState(time_text, budget_s, plan, setup.dups, setup.shift,
                         actual_s={MEASURE: time.perf_counter() - started}, planned_s=plan.total_seconds)
    plan = state.plan
    logger.info(f"== plan for {time_text} ({plan.available_s / 60:.1f} min to train after setup, vote, report and "
                f"reserve)\n{format_plan(plan)}")
    if spec.pseudo is not None and not plan.rerun:
        chosen = spec.pseudo.chosen([e.name for e in plan.entries])
        logger.info(f"pseudo-labels: the second round (retraining {', '.join(chosen)} on pseudo-labelled test rows, "
                    f"then a second vote) does not fit in {time_text} beside the first; it is skipped" if chosen else
                    f"pseudo-labels: none of pseudo.models ({', '.join(spec.pseudo.models)}) is planned; the second "
                    f"round is skipped")
    if plan_only:
        return None

    job = Job(competition, {}, first, state.dups, state.shift, vote, submit,
              estimates={**plan.setup, **plan.tail, **plan.rerun_steps, **{e.name: e.est_seconds for e in plan.rerun}},
              pseudo=spec.pseudo if plan.rerun else None, reruns=[e.name[:-len(PSEUDO_SUFFIX)] for e in plan.rerun],
              rerun_set={e.name: [f"train.time_limit={e.fold_limit:.0f}"] for e in plan.rerun})
    for e in plan.entries:
        _add_model(job, e, cfg_of)
    for e in plan.rerun:
        job.notes[e.name] = f", est. {e.est_seconds / 60:.1f} min"
    reruns = {e.name for e in plan.rerun}
    steps = [_on_time(s, job, state) if s.name in job.cfgs else _on_time(s, job, state, rerun=True)
             if s.name in reruns else s for s in job_steps(job)]
    last = max(i for i, step in enumerate(steps) if step.name in job.cfgs)
    steps.insert(last + 1, _top_up_step(job, state, spec, comp, cfg_of))
    state.save(state_file)
    run_steps(steps, bar=not quiet, started=started, state=state, state_file=state_file)
    twins = {c.label: c.twin for c in spec.candidates if c.twin}
    logger.info(f"== plan vs actual\n{_table(state.plan, job.cfgs, state.actual_s, twins)}\n"
                f"compete {competition} --time {time_text}: {state.elapsed_s / 60:.1f} min of "
                f"{budget_s / 60:.1f} ({100 * state.elapsed_s / budget_s:.0f}% of the budget)")
    return job.result
