"""`python -m ensemble.compete --competition NAME --time 60m`: the whole job planned to fit the wall time.

Reads the `time:` section of configs/<NAME>/compete.yaml:

    time:
      candidates:            # in priority order: pretrained first, diverse backbones for the vote
        - {cfg: efficientnet_lite0.yaml, sizes: [128, 160, 192], head_epochs: 2}
        - {cfg: efficientnet_lite0.yaml, name: efficientnet_lite0-scratch, set: [model.pretrained=false],
           twin: efficientnet_lite0}
      set: [output.progress=false]     # every model
      target_epochs: 5                 # a larger size is taken only when this many epochs still fit

Steps: duplicates -> measure each candidate's img/s on a few batches -> plan (printed with
estimated times, saved as runs/<NAME>/compete-t<TIME>.json) -> train each planned model, every fold
limited to its share (`train.time_limit`: it stops at the end of an epoch with its best checkpoint)
-> vote -> report -> plan vs actual. Running the same command again resumes the saved plan.
"""
from __future__ import annotations

import logging
import json
import re
import time
from dataclasses import replace
from typing import Sequence

from ensemble.artifacts import atomic_write_json
from ensemble.compete.run import _prepare, _vote_and_report, load_compete_file
from ensemble.config import ConfigError, load_config
from ensemble.compete.timeplan import (Plan, Speed, Workload, format_plan, make_plan, measure_speed, parse_duration,
                                        top_up)
from ensemble.train.mix import mix_spec
from ensemble.train.tta import expand_tta
from ensemble.artifacts.paths import CompetitionPaths, RunPaths

logger = logging.getLogger(__name__)


def time_label(text: str) -> str:
    """'60m' -> 't60m' (run names and the plan file); '1.5h' -> 't1p5h'."""
    return "t" + re.sub(r"[^0-9a-z]", "", str(text).strip().lower().replace(".", "p"))


def _measure(cands, cfgs, n_classes: int) -> dict[str, Speed]:
    from ensemble.train.engine import resolve_device
    from ensemble.models import build_model, set_trainable
    speeds = {}
    for c in cands:
        cfg = cfgs[c.label]
        model = build_model(cfg.model.backbone, n_classes, head_hidden=cfg.model.head.hidden,
                            head_batchnorm=cfg.model.head.batchnorm)
        set_trainable(model, c.train)  # a frozen stem and early stages make each step far cheaper
        sp = measure_speed(model, min(c.sizes), cfg.train.batch_size, device=resolve_device(cfg.train.device),
                           channels_last=cfg.train.channels_last, ema=cfg.train.ema is not None,
                           mix=mix_spec(cfg.augment.mix))
        trains = "" if c.train == "all" else f" (last {c.train} stages)"
        logger.info(f"measured {c.label} @ {sp.size}px: train{trains} {sp.train:.1f} img/s, predict {sp.eval:.1f} img/s")
        speeds[c.label] = sp
    return speeds


def _actual_table(plan: Plan, cfgs: dict, actual: dict[str, float], twins: dict[str, str]) -> str:
    rows = [["model", "est. min", "actual min", "CV"]]
    cv = {}
    for e in plan.entries:
        path = RunPaths(cfgs[e.name].run_dir).metrics
        cv[e.name] = json.loads(path.read_text())["cv"] if path.exists() else float("nan")
        rows.append([e.name, f"{e.est_seconds / 60:.1f}", f"{actual.get(e.name, float('nan')) / 60:.1f}",
                     f"{cv[e.name]:.4f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for name, twin in twins.items():
        if name in cv and twin in cv:
            lines.append(f"equal time: {twin} CV {cv[twin]:.4f} vs {name} CV {cv[name]:.4f} "
                         f"({cv[twin] - cv[name]:+.4f})")
    return "\n".join(lines)


def _top_up(plan: Plan, ts, state: dict, w: Workload, budget_s: float) -> list:
    """The models that fit into the time left after the plan (see timeplan.top_up), logged."""
    left_s = budget_s * (1 - ts.reserve) - 30.0 - state["elapsed_s"]
    entries = top_up(plan, ts.candidates, state["actual_s"], w, left_s, min_epochs=ts.min_epochs,
                     target_epochs=ts.target_epochs, max_epochs=ts.max_epochs,
                     max_models=ts.max_models - len(plan.entries))
    if entries:
        logger.info(f"== ahead of the plan ({left_s / 60:.1f} min left): adding\n"
                    f"{format_plan(replace(plan, entries=entries))}")
    return entries


def compete_time(competition: str, time_text: str, *, configs_dir: str = "configs",
                 extra: Sequence[str] = (), plan_only: bool = False, quiet: bool = False,
                 vote_extra: Sequence[str] = ()) -> int:
    """Plan, train, vote and report within ``time_text`` (e.g. '60m') of wall time; resumable.

    plan_only: measure and print the plan, save and train nothing; quiet: no progress bars;
    vote_extra: more vote flags (--submit -m MSG, --kaggle SLUG)."""
    from ensemble.compete.progress import PlanProgress, epochs_of
    from ensemble.data.competition import load_competition
    from ensemble.train.run import train
    t0 = time.perf_counter()
    extra = [*extra, *(["output.progress=false"] if quiet else [])]
    budget_s = parse_duration(time_text)
    folder, spec = load_compete_file(competition, configs_dir)
    if spec.time is None:
        raise ConfigError(f"{folder / 'compete.yaml'}: no 'time:' section (the candidate models for --time)")
    ts, label = spec.time, time_label(time_text)
    names = [c.label for c in ts.candidates]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"{folder / 'compete.yaml'}: two time candidates are named '{dup}'; give one a name:")
    bad_twin = next((c for c in ts.candidates if c.twin and c.twin not in names[:names.index(c.label)]), None)
    if bad_twin:
        raise ConfigError(f"{folder / 'compete.yaml'}: candidate '{bad_twin.label}' names twin '{bad_twin.twin}', "
                          f"which is not a candidate listed before it")

    def cfg_of(name: str, cfg_file: str, overrides: Sequence[str]):
        return load_config(folder / cfg_file, [*ts.set, *overrides, *extra, f"name={name}-{label}"])

    cfgs = {c.label: cfg_of(c.label, c.cfg, c.set) for c in ts.candidates}
    first = cfgs[names[0]]
    _prepare(competition, spec.builder, first, ts.dups, ts.shift)
    state_file = first.competition_dir / f"compete-{label}.json"
    before = 0.0  # seconds spent by earlier, interrupted invocations
    comp = load_competition(first.competition)
    w = Workload(len(comp.train), len(comp.test), first.folds.n, len(expand_tta(first.predict.tta)))
    if state_file.exists():
        state = json.loads(state_file.read_text())
        plan, before = Plan.from_dict(state["plan"]), state["elapsed_s"]
        logger.info(f"resuming the plan in {state_file} ({before / 60:.1f} min spent before)")
    else:
        speeds = _measure(ts.candidates, cfgs, len(comp.classes))
        remaining = budget_s - (time.perf_counter() - t0)  # duplicates, shift and measuring came out of the budget
        folds_file = CompetitionPaths(first.competition_dir).folds
        options = ts.folds or [first.folds.n]
        if folds_file.exists():  # every model of a competition shares one folds.csv
            import pandas as pd
            options = [int(pd.read_csv(folds_file, usecols=["fold"])["fold"].max()) + 1]
        plan = make_plan(ts.candidates, speeds, w, remaining, folds=options, reserve=ts.reserve, min_epochs=ts.min_epochs,
                         target_epochs=ts.target_epochs, max_epochs=ts.max_epochs, max_models=ts.max_models)
        state = {"time": time_text, "budget_s": budget_s, "plan": plan.to_dict(), "actual_s": {},
                 "elapsed_s": time.perf_counter() - t0}
        if not plan_only:
            atomic_write_json(state_file, state)
    logger.info(f"== plan for {time_text} ({plan.available_s / 60:.1f} min to train after setup and reserve)\n"
        f"{format_plan(plan)}")
    run_cfgs = {e.name: cfg_of(e.name, e.cfg, e.overrides()) for e in plan.entries}
    if plan_only:
        return 0
    i = 0  # issue 13: one line for the whole plan (step k of n, elapsed, ETA; compete/progress.py)
    prog = PlanProgress([(f"train {run_cfgs[e.name].run_name}", e.est_seconds) for e in plan.entries]
                        + [("vote + report", 0.0)], bar=not quiet, done_before=before)
    with prog.shown():
        while i < len(plan.entries):
            e = plan.entries[i]
            cfg = run_cfgs[e.name]
            prog.start(i)
            logger.info(f"== train {cfg.run_name} ({i + 1}/{len(plan.entries)}, {cfg.model.backbone} @ {e.size}px, "
                        f"{e.head_epochs} head + {e.epochs} epochs, est. {e.est_seconds / 60:.1f} min)")
            ts0 = time.perf_counter()
            train(cfg, resume=True, on_epoch=prog.epoch_counter(epochs_of(cfg)))
            prog.finish(i)
            state["actual_s"][e.name] = state["actual_s"].get(e.name, 0.0) + time.perf_counter() - ts0
            state["elapsed_s"] = before + time.perf_counter() - t0
            i += 1
            if i == len(plan.entries):  # ran faster than measured: plan more models into the time left
                extra_entries = _top_up(plan, ts, state, w, budget_s)
                if extra_entries:
                    plan = replace(plan, entries=[*plan.entries, *extra_entries])
                    state["plan"] = plan.to_dict()
                    run_cfgs.update({x.name: cfg_of(x.name, x.cfg, x.overrides()) for x in extra_entries})
                    prog.add([(f"train {run_cfgs[x.name].run_name}", x.est_seconds) for x in extra_entries])
            atomic_write_json(state_file, state)
        prog.start(prog.n - 1)
        rc = _vote_and_report(competition, list(run_cfgs.values()), [*ts.vote, *vote_extra])
        prog.finish(prog.n - 1)
    state["elapsed_s"] = before + time.perf_counter() - t0
    atomic_write_json(state_file, state)
    if rc != 0:
        return rc
    twins = {c.label: c.twin for c in ts.candidates if c.twin}
    logger.info(f"== plan vs actual\n{_actual_table(plan, run_cfgs, state['actual_s'], twins)}\n"
        f"compete {competition} --time {time_text}: {state['elapsed_s'] / 60:.1f} min of "
        f"{budget_s / 60:.1f} ({100 * state['elapsed_s'] / budget_s:.0f}% of the budget)")
    return 0
