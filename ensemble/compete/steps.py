"""compete's steps: one list, run by one loop, for `--budget` and `--time` alike.

    job = Job("demo", cfgs, setup_cfg, dups=True, shift="stats", vote=VoteOptions())
    result = run_steps(job_steps(job), bar=True)      # duplicates, shift, one train step per model, vote, report

A Step is (name, estimate, run). `run(progress)` does the work and may return more steps to run
right after it (compete --time's top-up); every step resumes (training skips finished folds, the
duplicates and the shift check are reused), so running a job again continues it. The progress line
and the --time plan read the same list. Adding a step to every compete job is one factory here (its
run and, for --time, its cost) and one line in `setup_steps` or `final_steps`; steps that use the
first vote go after `vote_step` in `final_steps`, as the pseudo-label round does (ensemble.compete.pseudo).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from ensemble.artifacts import atomic_write_json
from ensemble.artifacts.paths import CompetitionPaths
from ensemble.compete.progress import PlanProgress, epochs_of
from ensemble.compete.spec import PseudoSpec, ShiftCheck
from ensemble.compete.plandata import Plan
from ensemble.vote.options import VoteOptions

logger = logging.getLogger(__name__)

DUPS_WORKERS = 2  # hashing threads: compete leaves the other cores to whatever else runs


SKIPPED = ("skipped",)  # what a step's run returns when it did nothing: no time is recorded under its name


@dataclass
class Step:
    name: str  # the key of its time in the saved state: a model's name, "duplicates", "vote", ...
    estimate: float | None  # seconds (None: not planned, --budget)
    run: Callable[[PlanProgress], Sequence["Step"] | None]  # -> steps to run next, None, or SKIPPED
    label: str | None = None  # the progress line's text (default: name)


@dataclass(frozen=True)
class Costing:
    """What --time prices the setup, vote and report steps from (measured before anything runs)."""
    n_train: int
    n_test: int
    n_classes: int
    decode_s: float  # seconds per image on one thread: read, decode, resize
    hash_s: float  # ... a perceptual hash
    stats_s: float  # ... header and pixel statistics
    embed_rate: float | None = None  # img/s of the shift check's backbone (None: not measured)
    cached: tuple[int, ...] = ()  # image sizes whose cache exists
    n_models: int = 1  # models the vote and report will see (at most)
    folds: int = 5

    @property
    def n_images(self) -> int:
        return self.n_train + self.n_test

    def cache_s(self, size: int | None, workers: int) -> float:
        """Seconds to decode every image into the cache of `size` (0 when it exists; None: any size)."""
        return 0.0 if size in self.cached else 1.1 * self.n_images * self.decode_s / _threads(workers)


@dataclass
class CompeteResult:
    """What a compete job did: the vote, the Kaggle call (with --submit) and the report page."""
    vote: object | None = None  # VoteResult (the last vote: the second one after a pseudo-label round)
    submitted: object | None = None  # SubmitResult
    report: Path | None = None
    first_vote: object | None = None  # VoteResult of the first vote, when a pseudo-label round follows it
    pseudo: object | None = None  # PseudoLabels (ensemble.vote.pseudo) of the pseudo-label round


@dataclass
class Job:
    """What compete's steps act on. cfgs: model name -> Config, in training order; setup_cfg: the config
    the duplicates and shift steps read (competition, image size, workers); tune: --budget's tune
    (name, cfg) -> the tuned model's cfg; notes: model name -> text for its '== train' line."""
    competition: str
    cfgs: dict
    setup_cfg: object
    dups: bool
    shift: ShiftCheck
    vote: VoteOptions
    submit: bool = False
    tune: Callable | None = None
    notes: dict[str, str] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)  # step name -> seconds (the --time plan)
    costing: Costing | None = None  # prices the steps not in `estimates` (--time, while planning)
    trained: dict = field(default_factory=dict)  # model name -> the Config it trained (tuned or not)
    result: CompeteResult = field(default_factory=CompeteResult)
    pseudo: PseudoSpec | None = None  # the pseudo-label round after the first vote (None: no round)
    reruns: list[str] | None = None  # its models (None: pseudo.models of cfgs; --time: the planned ones)
    rerun_set: dict[str, list[str]] = field(default_factory=dict)  # second-round model -> overrides (--time)
    pseudo_file: Path | None = None  # the pseudo-labelled rows, once the round's first step wrote some

    @property
    def paths(self) -> CompetitionPaths:
        return CompetitionPaths(self.setup_cfg.competition_dir)

    def estimate(self, name: str, cost: Callable[[Costing], float]) -> float | None:
        known = self.estimates.get(name)
        return known if known is not None or self.costing is None else float(cost(self.costing))


def job_vote(options: VoteOptions, competition: str, *, submit: bool = False, kaggle: str | None = None,
             message: str | None = None) -> VoteOptions:
    """compete.yaml's vote options with the command line's --kaggle / -m; --submit needs a written file."""
    if submit and options.write == "none":
        raise ValueError("--submit sends the written best submission: compete.yaml's vote: write must be best or all, "
                         "got 'none'")
    return replace(options, kaggle=kaggle or options.kaggle or competition, message=message or options.message)


def _threads(workers: int) -> int:
    return max(1, min(workers, os.cpu_count() or 1))


# ----------------------------------------------------------------------------- setup


def dups_step(job: Job) -> Step | None:
    """Near-duplicates before the folds are made (they keep a duplicate group in one fold)."""
    if not job.dups or job.paths.dups.exists():
        return None
    if job.paths.folds.exists():
        logger.info(f"note: {job.paths.folds} exists without dups.csv; duplicates are not searched "
                    f"(run `python -m ensemble.dups` and delete folds.csv to make folds duplicate-aware)")
        return None

    def run(progress: PlanProgress) -> None:
        from ensemble.data.competition import load_competition
        from ensemble.data.dups import run_dups
        logger.info(f"== duplicates ({job.competition})")
        run_dups(load_competition(job.setup_cfg.competition), job.paths.root, workers=DUPS_WORKERS)

    def cost(c: Costing) -> float:  # hashing, then pairing (a fraction of it)
        return 0.5 + 1.2 * c.n_images * c.hash_s / _threads(DUPS_WORKERS)

    return Step("duplicates", job.estimate("duplicates", cost), run)


def shift_step(job: Job) -> Step | None:
    """The train/test shift check: one line; its weights feed weighted CV (reused when shift.json exists)."""
    if job.shift == "off":
        return None

    def run(progress: PlanProgress) -> None:
        from ensemble.shift.run import shift_check
        shift_check(job.setup_cfg, embeddings=job.shift == "embeddings")

    def cost(c: Costing) -> float:
        from ensemble.shift.run import reusable
        if reusable(job.setup_cfg)[1]:
            return 0.5  # reused: written for these very files
        cfg = job.setup_cfg
        seconds = c.cache_s(cfg.input.size, max(2, cfg.train.num_workers))
        seconds += c.n_images * (c.stats_s + 5e-4) + 1.5  # statistics, then the train-vs-test classifier
        if job.shift == "embeddings":  # a pretrained backbone's pass (slower than the bare model measured)
            seconds += 2.0 + 1.5 * c.n_images / (c.embed_rate or 50.0) + 1e-3 * c.n_images
        return seconds

    return Step("train/test shift", job.estimate("train/test shift", cost), run)


def setup_steps(job: Job) -> list[Step]:
    """The steps before the models, in order (those with nothing to do are left out)."""
    return [s for s in (dups_step(job), shift_step(job)) if s is not None]


# ----------------------------------------------------------------------------- models


def train_step(job: Job, name: str) -> Step:
    """Train one model on every fold (tune it first when the budget says so); resumes its folds."""
    cfg = job.cfgs[name]

    def run(progress: PlanProgress) -> None:
        from ensemble.train.run import train
        c = job.tune(name, cfg) if job.tune is not None else cfg
        names = list(job.cfgs)
        logger.info(f"== train {c.run_name} ({names.index(name) + 1}/{len(names)}, {c.model.backbone} @ "
                    f"{c.input.size}px{job.notes.get(name, '')})")
        train(c, resume=True, on_epoch=progress.epoch_counter(epochs_of(c)))
        job.trained[name] = c

    label = f"{'tune + ' if job.tune is not None else ''}train {cfg.run_name}"
    return Step(name, job.estimates.get(name), run, label)


# ----------------------------------------------------------------------------- after the models


def vote_job(job: Job, what: str = "") -> object:
    """Vote every run of job.cfgs (trained or tuned); -> the VoteResult (also job.result.vote)."""
    from ensemble.vote.voter import vote_runs
    cfgs = [job.trained.get(n, c) for n, c in job.cfgs.items()]
    logger.info(f"== vote{what} ({len(cfgs)} runs, every method, best by nested CV)")
    result = job.result.vote = vote_runs([c.run_dir for c in cfgs], job.vote)
    logger.info(result.summary())
    return result


def submit_vote(job: Job, result) -> None:
    """With --submit: send the vote's written best submission to Kaggle."""
    if not job.submit:
        return
    from ensemble.vote.kaggle import submit_chosen
    sent = job.result.submitted = submit_chosen(result, job.vote.kaggle or job.competition, job.vote.message)
    for line in sent.lines():
        (logger.info if sent.done else logger.warning)(line)
    if not sent.done:
        logger.warning("the submission is written but was not sent to Kaggle (see above)")


def vote_cost(job: Job, c: Costing, n_models: int) -> float:
    """Stacking's logistic regressions dominate: one per fold and one on every row, K more for the
    shift-weighted scores when the shift check ran, twice with bias tuning; each about rows x classes x
    1.5e-5 s; then the priors' 200 bootstrap EM runs. 3-5x over the demo's and ham10000's on a busy 2-core
    machine with BLAS on one thread (vote_runs; its default threads made each fit 5-10x slower)."""
    fits = (2 * c.folds + 1 if job.shift != "off" else c.folds + 1) * (2 if job.vote.bias == "on" else 1)
    stacking = fits * 1.5e-5 * c.n_train * c.n_classes * (1 + 0.25 * (n_models - 1))
    return 3.0 + stacking + 5.4e-6 * c.n_test * c.n_classes * 200


def vote_step(job: Job) -> Step:
    """Vote the trained runs (every method unless compete.yaml's vote: says otherwise; the best by
    nested CV written), then send it to Kaggle with --submit (after the pseudo-label round, if any)."""
    def run(progress: PlanProgress) -> None:
        result = vote_job(job)
        if job.pseudo is None:
            submit_vote(job, result)

    return Step("vote", job.estimate("vote", lambda c: vote_cost(job, c, max(c.n_models, len(job.cfgs)))), run)


def report_step(job: Job) -> Step:
    """The HTML report of every run and ensemble."""
    def run(progress: PlanProgress) -> None:
        from ensemble.report.page import build_report
        logger.info("== report")
        index = job.result.report = build_report(job.competition, job.paths.root.parent, job.vote.out_dir)
        logger.info(f"wrote {index} ({len(list(index.parent.glob('img/*.png')))} images); open it in a browser")

    def cost(c: Costing) -> float:  # a few plots per run and class
        return 2.0 + 0.5 * max(c.n_models, len(job.cfgs)) + 0.05 * c.n_classes

    return Step("report", job.estimate("report", cost), run)


def final_steps(job: Job) -> list[Step]:
    """The steps after the models, in order. Steps that use the first vote go right after it."""
    from ensemble.compete.pseudo import pseudo_steps
    return [vote_step(job), *pseudo_steps(job), report_step(job)]


def job_steps(job: Job) -> list[Step]:
    """Every step of a compete job, in order: setup, one train step per model, then the final steps."""
    return [*setup_steps(job), *(train_step(job, name) for name in job.cfgs), *final_steps(job)]


# ----------------------------------------------------------------------------- the loop


@dataclass
class RunState:
    """compete --time's saved plan and progress (runs/<competition>/compete-t<TIME>.json): the plan (with
    the models added when the job ran ahead of it), the setup it chose, the seconds each step took (summed
    over runs of the command) and in all, and the plan's total when it was made."""

    time: str
    budget_s: float
    plan: Plan
    dups: bool = True
    shift: ShiftCheck = "embeddings"
    actual_s: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    planned_s: float | None = None

    def save(self, path: Path) -> None:
        atomic_write_json(path, {**asdict(self), "plan": self.plan.to_dict()})

    @classmethod
    def load(cls, path: Path) -> "RunState":
        d = json.loads(Path(path).read_text())
        return cls(d["time"], d["budget_s"], Plan.from_dict(d["plan"]), d.get("dups", True),
                   d.get("shift", "embeddings"), d.get("actual_s", {}), d.get("elapsed_s", 0.0), d.get("planned_s"))


def run_steps(steps: Sequence[Step], *, bar: bool = True, started: float | None = None,
              state: RunState | None = None, state_file: Path | None = None) -> None:
    """Run `steps` in order under one progress line (bar: the live line, else log lines only).
    started: perf_counter() when the command began (its time before the first step counts as
    elapsed); state (saved to state_file after every step): adds each step's seconds and the elapsed time."""
    steps = list(steps)
    started = time.perf_counter() if started is None else started
    before = state.elapsed_s if state is not None else 0.0

    def record(name: str | None = None, seconds: float = 0.0) -> None:
        if state is not None:
            if name is not None:
                state.actual_s[name] = state.actual_s.get(name, 0.0) + seconds
            state.elapsed_s = before + time.perf_counter() - started
            if state_file is not None:
                state.save(state_file)

    progress = PlanProgress([(s.label or s.name, s.estimate) for s in steps], bar=bar,
                            done_before=before + time.perf_counter() - started)
    with progress.shown():
        i = 0
        try:
            while i < len(steps):
                progress.start(i)
                t0 = time.perf_counter()
                out = steps[i].run(progress)
                progress.finish(i)
                skipped = out is SKIPPED  # a left-out model has no time: top_up reads actual_s as "trained"
                record(None if skipped else steps[i].name, time.perf_counter() - t0)
                more = [] if skipped else list(out or [])
                if more:
                    steps[i + 1:i + 1] = more
                    progress.add([(s.label or s.name, s.estimate) for s in more], at=i + 1)
                i += 1
        finally:
            record()
