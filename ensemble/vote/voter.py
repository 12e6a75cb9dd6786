"""vote_runs: M finished runs -> every requested method's honest CV score -> submission files.

    result = vote_runs(["runs/ham10000/resnet18", "runs/ham10000/effnet"], VoteOptions(methods="hillclimb,mean"))
    result.best_ensemble.name, result.best_ensemble.cv.score, result.written   # -> submissions/ham10000/*.csv + .json

The runs are aligned by id (vote.runs), each method spec is fitted and scored by nested CV
(vote.cv), and the best (or every) spec is written as a validated submission with its manifest
(vote.manifest); vote.scoreboard holds every score (the printed report, the manifest's scores).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ensemble.artifacts import competition_cfg, read_metrics
from ensemble.artifacts.paths import CompetitionPaths
from ensemble.artifacts.provenance import provenance
from ensemble.metrics import BoundMetric
from ensemble.vote.cv import CVScore, Fitted, Spec, cross_validate, model_scores
from ensemble.vote.methods import METHODS, check_weights, get_method
from ensemble.vote.objective import Objective
from ensemble.vote.calibrate import calibrate_nested, scale
from ensemble.vote.options import VoteOptions, method_names
from ensemble.vote.kaggle import default_message
from ensemble.vote.manifest import single_model, write_ensemble_oof, write_submission
from ensemble.vote.shift import VoteShift, choose, priors_hook, vote_shift
from ensemble.vote.runs import Runs, load_runs, subset_problem
from ensemble.vote.scoreboard import report, vote_scores
from ensemble.vote.submission import SubmissionError, check_file, detect_format, read_sample

logger = logging.getLogger(__name__)


def decodes_grades(metric: BoundMetric, ordinal: bool) -> bool:
    """Class-probability runs scored by a grade metric (QWK) also get expected-grade variants."""
    return not ordinal and metric.grades


def parse_weights(text: str | None, names: list[str]) -> np.ndarray | None:
    """'2,1,1' (run order) or 'runA=2,runB=1' (others 0) -> (M,) normalised weights."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    named = all("=" in s for s in items)
    try:
        pairs = {k.strip(): float(v) for k, v in (s.split("=", 1) for s in items)} if named else {}
        w = [pairs.get(n, 0.0) for n in names] if named else [float(s) for s in items]
    except ValueError:
        raise ValueError(f"--weights: expected numbers or run=number, got {text!r}") from None
    unknown = sorted(set(pairs) - set(names))
    if unknown:
        raise ValueError(f"--weights: unknown run {unknown[0]!r}; runs: {', '.join(names)}")
    try:
        return check_weights(w, len(names))
    except ValueError as e:
        raise ValueError(f"--weights: {e} ({', '.join(names)})") from None


def build_specs(method: str, weights, bias: str, ordinal: bool, max_iter: int, stack_c: float,
                grades: bool = False, two_class_labels: bool = False):
    """-> (specs, notes). method: 'all' or comma-separated names. grades: also add expected-grade
    variants (+grade, +grade+thr as --bias allows) that compete with argmax by nested CV.
    two_class_labels: two classes scored on labels, where 'all' leaves out the methods without a
    two-class argmax (rank) unless a bias is fitted."""
    names = method_names(method)
    specs, notes = [], []
    for name in names:
        m = get_method(name)
        if ordinal and not m.ordinal:
            if method == "all":
                continue
            ok = ", ".join(n for n, x in METHODS.items() if x.ordinal)
            raise ValueError(f"method '{name}' does not support ordinal (score) runs; use one of: {ok}")
        if m.needs_weights and weights is None:
            if method == "all":
                notes.append(f"'{name}' skipped: no --weights")
                continue
            raise ValueError(f"method '{name}' needs --weights")
        opts = {"weighted": {"weights": weights}, "hillclimb": {"max_iter": max_iter},
                "stacking": {"C": stack_c}}.get(name, {})
        tune = {"on": [False, True], "off": [False], "auto": [False, True] if ordinal else [False]}[bias]
        if two_class_labels and not m.two_class_argmax and method == "all":
            tune = [t for t in tune if t]  # only a fitted bias turns its columns into labels
            if not tune:
                notes.append(f"'{name}' skipped: with two classes and a metric on labels its argmax splits the rows "
                             "in half (--bias on fits a threshold to it)")
                continue
        specs += [Spec(name, opts, t) for t in tune]
        if grades:  # thresholds as for ordinal runs: auto/on -> also fitted ones
            specs += [Spec(name, opts, t, grade=True) for t in ([False] if bias == "off" else [False, True])]
    if ordinal and method == "all":
        notes.append("skipped for ordinal runs: " + ", ".join(n for n, x in METHODS.items() if not x.ordinal))
    return specs, notes


@dataclass
class Ensemble:
    """One scored method spec: its honest CV score and the spec fitted on all OOF rows."""
    spec: Spec
    cv: CVScore
    fitted: Fitted
    name: str


@dataclass
class VoteResult:
    """What vote_runs found and wrote. ensembles are in spec order; best_index is the chosen one's
    position in it (best_ensemble: that Ensemble, with .name and .cv)."""
    runs: Runs
    objective: Objective
    singles: list[CVScore]  # each run alone (fold mean)
    ensembles: list[Ensemble]
    best_index: int
    notes: list[str] = field(default_factory=list)
    written: list[tuple[Path, str]] = field(default_factory=list)  # (submission CSV, kaggle command)
    chosen: tuple[Path, str] | None = None  # the best ensemble's entry of written (None: not written)
    timings: dict[str, float] = field(default_factory=dict)
    shift: VoteShift | None = None  # weighted / test-like CV (runs/<competition>/shift/weights.csv)
    select: str = "cv"
    prior_lines: list[str] = field(default_factory=list)
    alone: str | None = None  # the run the chosen ensemble equals (one run, or a method that kept one model)

    def message(self) -> str:
        """The default Kaggle message of the chosen ensemble."""
        b = self.best_ensemble
        return default_message(b.name, b.cv.score, len(self.runs.runs), self.alone)

    @property
    def best_ensemble(self) -> Ensemble:
        return self.ensembles[self.best_index]

    def summary(self) -> str:
        """What `python -m ensemble.vote` prints: the report, the notes and each written file with its
        kaggle command."""
        return "\n".join([self.report(), *(f"note: {n}" for n in self.notes),
                          *(f"wrote {path} (+ .json manifest)\n  {cmd}" for path, cmd in self.written)])

    def report(self) -> str:
        """The score table, error correlations, weights and fitted bias/thresholds (text)."""
        return report(self.runs, self.objective, self.singles,
                      [(e.spec, e.cv, e.fitted) for e in self.ensembles], self.best_index) + "\n" + (
            self.shift.table(self.best_index, self.select) if self.shift else
            f"note: no train/test shift weights: python -m ensemble.shift --competition {self.runs.competition} "
            "adds weighted and test-like CV") + "".join("\n" + line for line in self.prior_lines)


def vote_runs(run_dirs: Sequence[str | Path], options: VoteOptions | None = None, *,
              command: str | None = None) -> VoteResult:
    """Vote finished runs into submissions.

    run_dirs: M run directories of one competition (same classes, folds.csv and ids; vote.runs).
    options: how to vote and what to write (VoteOptions; default: every method, the best written under
    submissions/<competition>/), checked first. command: the manifest's "command" (default: the vote
    command that repeats this vote).
    Every manifest also holds every method's score, provenance and each run's config hash.
    Every spec's score is honest: fold mean, nested (fitted on K-1 folds, scored on the held-out
    one) for specs that fit anything on the OOF stack (M, N, C).
    """
    with threadpool_limits(limits=1, user_api="blas"):  # small fits: spare BLAS threads only spin on a busy machine
        return _vote(run_dirs, options, command)


def _vote(run_dirs: Sequence[str | Path], options: VoteOptions | None, command: str | None) -> VoteResult:
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise ValueError(f"vote_runs: argument 'run_dirs' expected a list of run directories (at least one), "
                         f"got {type(run_dirs).__name__} {run_dirs!r}")
    if options is not None and not isinstance(options, VoteOptions):
        raise TypeError(f"vote_runs: argument 'options' expected a VoteOptions (e.g. VoteOptions(methods='mean')), "
                        f"got {type(options).__name__} {options!r}")
    opts = (options or VoteOptions()).check()
    command = command or opts.command(run_dirs)
    t0 = time.perf_counter()
    data = load_runs(run_dirs)
    t1 = time.perf_counter()
    logger.info(f"loaded {len(data.runs)} runs in {t1 - t0:.1f} s (OOF {data.oof.shape[1]} x {data.oof.shape[2]}, "
                f"test {data.test.shape[1]} x {data.test.shape[2]})")
    objective = Objective(data.metric)
    w = parse_weights(opts.weights, data.names)
    specs, notes = build_specs(opts.methods, w, opts.bias, data.ordinal, opts.max_iter, opts.stack_c,
                               decodes_grades(data.metric, data.ordinal),
                               two_class_labels=data.metric.needs == "label" and data.metric.n_classes == 2
                               and not data.ordinal)
    if len(data.runs) == 1:
        notes.append(f"one run ('{data.names[0]}'): an ensemble of one; mean, weighted, geometric and hillclimb "
                     "submit its probabilities, the other methods transform them")
    singles = model_scores(data.oof, data.y, data.folds, objective)
    ensembles = [Ensemble(s, *cross_validate(s, data.oof, data.y, data.folds, objective), s.name(data.ordinal))
                 for s in specs]
    sign = 1 if objective.higher_is_better else -1
    best = int(np.argmax([np.nan_to_num(sign * e.cv.score, nan=-np.inf) for e in ensembles]))
    results = [(e.spec, e.cv, e.fitted) for e in ensembles]
    shift = vote_shift(data, objective, singles, results)  # weighted / test-like CV, --select
    best = choose(opts.select, shift, best, objective.higher_is_better, data.competition)
    result = VoteResult(data, objective, singles, ensembles, best, notes, shift=shift, select=opts.select)
    t2 = time.perf_counter()
    todo = {"best": [best], "all": range(len(ensembles)), "none": []}[opts.write]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    prior = {i: priors_hook(data, ensembles[i].fitted, opts.priors) for i in sorted({best, *todo})}  # --priors
    alone = {i: single_model(ensembles[i].fitted, data.oof, data.names) for i in prior}
    result.alone = alone[best]
    if result.alone is not None and len(data.runs) > 1:
        notes.append(f"the chosen ensemble ({ensembles[best].name}) equals one model: {result.alone} alone")
    result.prior_lines = list(prior[best][2]) + [x for i in todo if i != best for x in prior[i][2]]
    cal, held = None, ensembles[best].cv.oof_probs
    if opts.calibrate and (held is None or data.metric.needs != "proba"):
        notes.append(f"--calibrate: skipped: {data.metric} scores {'labels' if held is not None else 'grades'}; "
                     "temperature scaling keeps every row's class")
    elif opts.calibrate:
        cal = calibrate_nested(held, data.y, data.folds, objective)
        result.prior_lines.append(cal.line(data.metric))
    temperature = cal.temperature if cal is not None and cal.applied else None
    base_extra = {**vote_scores(data.names, [r.metrics for r in data.runs], singles, results, best, data.ordinal),
                  **provenance([r.paths.root for r in data.runs])}
    for i in todo:
        e = ensembles[i]
        est, target, _ = prior[i]
        extra = {**base_extra, "select": opts.select, "shift": shift.method(i) if shift else None,
                 "priors": {**(est.to_dict() if est else {}), "applied": opts.priors},
                 "calibration": cal.to_dict() if cal is not None and i == best else None}
        result.written.append(write_submission(data, e.spec, e.cv, e.fitted, Path(opts.out_dir), stamp,
                                               opts.kaggle or data.competition, command,
                                               opts.message if i == best else None, prior=est, target=target,
                                               extra=extra, tag=("" if target is None else "+priors") + (
                                                   "+temp" if i == best and temperature else ""),
                                               alone=alone.get(i), temperature=temperature if i == best else None))
        if i == best:
            result.chosen = result.written[-1]
            if held is not None:  # the report's gallery and reliability diagram of the chosen ensemble
                write_ensemble_oof(data, held if temperature is None else scale(held, temperature),
                                   result.chosen[0])
    result.timings = {"load": t1 - t0, "scores": t2 - t1, "submission": time.perf_counter() - t2}
    return result


def check_submission(path: str | Path, *, sample: str | Path | None = None, classes: Sequence[str] | None = None,
                     competition: str | None = None, runs_dir: str | Path = "runs") -> tuple[list[str], Path, str, int]:
    """Validate a submission file against the sample submission (found from the competition's runs
    when `sample` or `classes` is not given). -> (problems, sample path, format kind, sample rows)."""
    sample_path, id_col = (Path(sample) if sample else None), None
    declared = classes is not None
    classes = list(classes) if classes else None
    if competition and (sample_path is None or classes is None):
        runs = CompetitionPaths(Path(runs_dir) / competition).runs()
        if runs:
            classes = classes or [str(c) for c in read_metrics(runs[0])["classes"]]
            cfg = competition_cfg(runs[0])
            id_col, declared = cfg.id_col, declared or bool(cfg.classes)
            sample_path = sample_path or Path(cfg.root) / cfg.sample_submission
    if sample_path is None:
        raise ValueError(f"--check needs --sample PATH or runs under {Path(runs_dir) / (competition or 'NAME')}")
    frame = read_sample(sample_path, id_col)
    bad = classes and subset_problem(classes, frame, id_col or str(frame.columns[0]), declared, sample_path.name)
    if bad:
        raise SubmissionError(bad)
    fmt = detect_format(frame, classes, id_col, sample_path.name)
    return check_file(path, frame, fmt, sample_path.name), sample_path, fmt.kind, len(frame)
