"""`python -m ensemble.compete --competition NAME --budget smoke|cpu|gpu`: Kaggle folder -> submission.

Reads configs/<NAME>/compete.yaml:

    budgets:
      cpu:
        models: [mobilenetv3.yaml, {cfg: resnet18.yaml, set: [optim.lr.head=3e-3]}]
        set: [input.size=64, "stages=[{epochs: 8, train: all}]"]    # applied to every model
        tune: {trials: 12, folds: "0", timeout: 1800}                # optional: tune each model first
        dups: true                                                   # find near-duplicates before folds
        shift: embeddings                                            # train/test shift check: embeddings|stats|off

Steps (each resumes where it stopped when the command runs again): duplicates -> train/test shift -> (tune) -> train
every model on all folds -> vote with every method, keep the best by nested CV -> report.
Runs are named `<model>-<budget>` so budgets never overwrite each other.
"""
from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

from ensemble.config import ConfigError, build, load_config, read_yaml
from ensemble.compete.timeplan import Candidate, check_candidate
from ensemble.config.ranges import NON_NEGATIVE_INT, POSITIVE_INT, UNIT_OPEN, check_values, stage_count
from ensemble.registry import Registry
from ensemble.artifacts.paths import CompetitionPaths

logger = logging.getLogger(__name__)


ShiftCheck = Literal["embeddings", "stats", "off"]  # stats: image statistics only (seconds, for tiny budgets)


@dataclass(frozen=True)
class ModelEntry:
    cfg: str
    set: list[str] = field(default_factory=list)
    name: str | None = None  # run name stem (default: the config file's stem)


@dataclass(frozen=True)
class TuneBudget:
    trials: int = 20
    folds: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Budget:
    models: list[str | ModelEntry]
    set: list[str] = field(default_factory=list)
    tune: TuneBudget | None = None
    dups: bool = True
    shift: ShiftCheck = "embeddings"
    vote: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TimeSpec:
    """`time:` in compete.yaml: what `--time 60m` may choose from (see ensemble.compete.timeplan)."""

    candidates: list[Candidate]
    set: list[str] = field(default_factory=list)
    vote: list[str] = field(default_factory=list)
    dups: bool = True
    shift: ShiftCheck = "embeddings"
    folds: list[int] = field(default_factory=list)  # fold counts to try in order (default: the config's)
    min_epochs: int = 2
    target_epochs: int = 5
    max_epochs: int = 15
    max_models: int = 4
    reserve: float = 0.08


TIME_RANGES = {  # time: numbers, checked when compete.yaml loads (ensemble.config.ranges)
    "time.candidates": ((lambda v: len(v) > 0), "at least one candidate"),
    "time.candidates.*.sizes": ((lambda v: len(v) > 0), "at least one image size"),
    "time.candidates.*.sizes.*": POSITIVE_INT,
    "time.candidates.*.head_epochs": NON_NEGATIVE_INT,
    "time.folds.*": ((lambda v: POSITIVE_INT[0](v) and v >= 2), "fold counts >= 2"),
    "time.min_epochs": POSITIVE_INT,
    "time.target_epochs": POSITIVE_INT,
    "time.max_epochs": POSITIVE_INT,
    "time.max_models": POSITIVE_INT,
    "time.reserve": UNIT_OPEN,
}


@dataclass(frozen=True)
class CompeteFile:
    budgets: dict[str, Budget] = field(default_factory=dict)
    builder: str | None = None  # makes the competition folder when missing (BUILDERS)
    time: TimeSpec | None = None


def _build_digits(root: Path) -> None:
    from ensemble.data.digits import build_demo
    build_demo(root)


BUILDERS: Registry[Callable[[Path], None]] = Registry("builder")  # compete.yaml `builder:` -> makes the folder
BUILDERS.register("digits", _build_digits)


def load_compete_file(competition: str, configs_dir: str | Path = "configs") -> tuple[Path, CompeteFile]:
    """-> (configs/<competition>/, its validated compete.yaml). Errors name the file and key."""
    folder = Path(configs_dir) / competition
    path = folder / "compete.yaml"
    if not path.is_file():
        raise ConfigError(f"--competition {competition}: {path} not found (it lists the models and budgets)")
    spec = build(CompeteFile, read_yaml(path), "", lambda key: str(path))
    from ensemble.vote.flags import check_vote_flags  # vote: flags fail now, not after every model trained
    vote_flags = {f"budgets.{n}.vote": b.vote for n, b in spec.budgets.items()}
    if spec.time is not None:
        vote_flags["time.vote"] = spec.time.vote
    for key, flags in vote_flags.items():
        check_vote_flags(flags, f"{path}: {key}")
    if spec.builder is not None and spec.builder not in BUILDERS:
        raise ConfigError(f"{path}: unknown builder '{spec.builder}'; available: {', '.join(BUILDERS)}")
    if spec.time is not None:
        check_values(spec, TIME_RANGES, lambda key: str(path))
        t = spec.time
        if not t.min_epochs <= t.target_epochs <= t.max_epochs:
            raise ConfigError(f"{path}: time: expected min_epochs <= target_epochs <= max_epochs, got "
                              f"{t.min_epochs}, {t.target_epochs}, {t.max_epochs}")
    for i, c in enumerate(spec.time.candidates if spec.time else []):
        if c.train != "all" or c.partial is not None:  # k needs the backbone's stage count
            backbone = load_config(folder / c.cfg, [*spec.time.set, *c.set]).model.backbone
            try:
                n = stage_count(backbone)
            except ValueError as e:
                raise ConfigError(f"{path}: time.candidates[{i}].train: {e}") from None
            try:
                check_candidate(c, f"{path}: time.candidates[{i}]", backbone, n)
            except ValueError as e:
                raise ConfigError(str(e)) from None
    return folder, spec


def load_budget(competition: str, budget: str, configs_dir: str | Path = "configs"
                ) -> tuple[Path, Budget, str | None]:
    """-> (configs/<competition>/, the validated budget, builder). Errors name the file and key."""
    folder, spec = load_compete_file(competition, configs_dir)
    path = folder / "compete.yaml"
    if budget not in spec.budgets:
        raise ConfigError(f"{path}: unknown budget '{budget}'; available: {', '.join(spec.budgets)}")
    return folder, spec.budgets[budget], spec.builder


def _entries(b: Budget) -> list[ModelEntry]:
    return [m if isinstance(m, ModelEntry) else ModelEntry(m) for m in b.models]


def model_overrides(entry: ModelEntry, b: Budget, budget: str, extra: Sequence[str]) -> list[str]:
    name = entry.name or Path(entry.cfg).name.split(".")[0]
    return [*b.set, *entry.set, *extra, f"name={name}-{budget}"]


def _prepare(competition: str, builder: str | None, cfg, dups: bool, shift: ShiftCheck = "off") -> None:
    """Build the competition folder when the compete file says how, find near-duplicates, then print
    the one-line train/test shift check (its weights feed weighted CV; it is skipped when shift.json exists)."""
    if builder:
        BUILDERS[builder](Path(cfg.competition.root))
    comp_dir = CompetitionPaths(cfg.competition_dir)
    if dups and not comp_dir.dups.exists():
        if comp_dir.folds.exists():
            logger.info(f"note: {comp_dir.folds} exists without dups.csv; duplicates are not searched "
                f"(run `python -m ensemble.dups` and delete folds.csv to make folds duplicate-aware)")
        else:
            from ensemble.data.competition import load_competition
            from ensemble.data.dups import run_dups
            logger.info(f"== duplicates ({competition})")
            run_dups(load_competition(cfg.competition), comp_dir.root, "phash", 4, 0.98, 2)
    if shift != "off":
        from ensemble.shift.run import shift_check
        shift_check(cfg, embeddings=shift == "embeddings")


def _vote_and_report(competition: str, cfgs: Sequence, vote_args: Sequence[str]) -> int:
    """vote_runs over the trained runs (every method unless compete.yaml's vote: says otherwise, the
    best by nested CV written), then build_report. -> exit code."""
    from ensemble.report.page import build_report
    from ensemble.vote.__main__ import parse_args, print_result, submit_chosen, vote_options
    from ensemble.vote.voter import vote_runs
    logger.info(f"== vote ({len(cfgs)} runs, every method, best by nested CV)")
    va = parse_args(["--runs", "-", *vote_args])  # --submit -m MSG --kaggle SLUG (issue 13)
    try:
        result = vote_runs([c.run_dir for c in cfgs], **vote_options(vote_args), write="best",
                           kaggle=va.kaggle or competition, message=va.message,
                           command="python -m ensemble.vote " + shlex.join(
                               ["--runs", *[str(c.run_dir) for c in cfgs], "--method", "all", "--write", "best",
                                "--kaggle", competition, *vote_args]))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(result)
    if va.submit and submit_chosen(result, va.kaggle or competition, va.message) != 0:
        logger.warning("the submission is written but was not sent to Kaggle (see above)")
    logger.info("== report")
    try:
        index = build_report(competition, cfgs[0].competition_dir.parent)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {index} ({len(list(index.parent.glob('img/*.png')))} images); open it in a browser")
    return 0


def compete(competition: str, budget: str, *, configs_dir: str = "configs", extra: Sequence[str] = (),
            quiet: bool = False, vote_extra: Sequence[str] = ()) -> int:
    """quiet: no progress bars (output.progress=false and no live overall line); vote_extra: more vote
    flags (--submit -m MSG, --kaggle SLUG)."""
    from ensemble.compete.progress import PlanProgress, epochs_of
    from ensemble.train.run import train
    t0 = time.perf_counter()
    extra = [*extra, *(["output.progress=false"] if quiet else [])]
    folder, b, builder = load_budget(competition, budget, configs_dir)
    entries = _entries(b)
    if builder:
        BUILDERS[builder](Path(load_config(folder / entries[0].cfg, list(extra)).competition.root))
    cfgs = [load_config(folder / e.cfg, model_overrides(e, b, budget, extra)) for e in entries]
    _prepare(competition, None, cfgs[0], b.dups, b.shift)
    steps = [(f"{'tune + ' if b.tune else ''}train {c.run_name}", None) for c in cfgs] + [("vote + report", None)]
    prog = PlanProgress(steps, bar=not quiet)  # issue 13: one line for the whole budget (compete/progress.py)
    with prog.shown():
        for i, (entry, cfg) in enumerate(zip(entries, cfgs)):
            prog.start(i)
            if b.tune is not None:
                cfg = _tuned(folder / entry.cfg, cfg, b, budget, model_overrides(entry, b, budget, extra))
            logger.info(f"== train {cfg.run_name} ({i + 1}/{len(cfgs)}, {cfg.model.backbone} @ {cfg.input.size}px)")
            train(cfg, resume=True, on_epoch=prog.epoch_counter(epochs_of(cfg)))
            prog.finish(i)
        prog.start(len(cfgs))
        rc = _vote_and_report(competition, cfgs, [*b.vote, *vote_extra])
        prog.finish(len(cfgs))
    if rc == 0:
        logger.info(f"compete {competition} --budget {budget}: done in {time.perf_counter() - t0:.0f}s")
    return rc


def _tuned(cfg_path: Path, cfg, b: Budget, budget: str, overrides: list[str]):
    """Tune the model (the study resumes if it exists), then train its best config."""
    from ensemble.train.run import parse_folds
    from ensemble.tune.tuner import tune_model
    logger.info(f"== tune {cfg.run_name} ({b.tune.trials} trials)")
    sets = [o for o in overrides if not o.startswith("name=")]
    result = tune_model(cfg_path, overrides=sets, trials=b.tune.trials, timeout=b.tune.timeout or None,
                        folds=parse_folds(b.tune.folds, cfg.folds.n) if b.tune.folds else None)
    if result.rc != 0:
        raise RuntimeError(f"tuning {cfg_path} failed")
    return load_config(result.best_path, [f"name={cfg.run_name}-tuned"])
