"""`python -m ensemble.compete --competition NAME --budget smoke|cpu|gpu`: Kaggle folder -> submission.

Reads configs/<NAME>/compete.yaml:

    budgets:
      cpu:
        models: [mobilenetv3.yaml, {cfg: resnet18.yaml, set: [optim.lr.head=3e-3]}]
        set: [input.size=64, "stages=[{epochs: 8, train: all}]"]    # applied to every model
        tune: {trials: 12, folds: "0", timeout: 1800}                # optional: tune each model first
        dups: true                                                   # find near-duplicates before folds

Steps (each resumes where it stopped when the command runs again): duplicates -> (tune) -> train
every model on all folds -> vote with every method, keep the best by nested CV -> report.
Runs are named `<model>-<budget>` so budgets never overwrite each other.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .config import ConfigError, build, load_config, read_yaml
from .plan import Candidate
from .plugins import add_plugin_argument, load_plugins


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
    vote: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TimeSpec:
    """`time:` in compete.yaml: what `--time 60m` may choose from (see ensemble.plan)."""

    candidates: list[Candidate]
    set: list[str] = field(default_factory=list)
    vote: list[str] = field(default_factory=list)
    dups: bool = True
    folds: list[int] = field(default_factory=list)  # fold counts to try in order (default: the config's)
    min_epochs: int = 2
    target_epochs: int = 5
    max_epochs: int = 15
    max_models: int = 4
    reserve: float = 0.08


@dataclass(frozen=True)
class CompeteFile:
    budgets: dict[str, Budget] = field(default_factory=dict)
    builder: str | None = None  # makes the competition folder when missing (BUILDERS)
    time: TimeSpec | None = None


def _build_digits(root: Path) -> None:
    from .demo import build_demo
    build_demo(root)


BUILDERS = {"digits": _build_digits}


def load_compete_file(competition: str, configs_dir: str | Path = "configs") -> tuple[Path, CompeteFile]:
    """-> (configs/<competition>/, its validated compete.yaml). Errors name the file and key."""
    folder = Path(configs_dir) / competition
    path = folder / "compete.yaml"
    if not path.is_file():
        raise ConfigError(f"--competition {competition}: {path} not found (it lists the models and budgets)")
    spec = build(CompeteFile, read_yaml(path), "", lambda key: str(path))
    if spec.builder is not None and spec.builder not in BUILDERS:
        raise ConfigError(f"{path}: unknown builder '{spec.builder}'; available: {', '.join(BUILDERS)}")
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


def _prepare(competition: str, builder: str | None, cfg, dups: bool, log) -> None:
    """Build the competition folder when the compete file says how, then find near-duplicates."""
    if builder:
        BUILDERS[builder](Path(cfg.competition.root))
    comp_dir = cfg.competition_dir
    if dups and not (comp_dir / "dups.csv").exists():
        if (comp_dir / "folds.csv").exists():
            log(f"note: {comp_dir / 'folds.csv'} exists without dups.csv; duplicates are not searched "
                f"(run `python -m ensemble.dups` and delete folds.csv to make folds duplicate-aware)")
        else:
            from .competition import load_competition
            from .dups import run_dups
            log(f"== duplicates ({competition})")
            run_dups(load_competition(cfg.competition), comp_dir, "phash", 4, 0.98, 2)


def _vote_and_report(competition: str, cfgs: Sequence, vote_args: Sequence[str], log) -> int:
    from . import report, vote
    log(f"== vote ({len(cfgs)} runs, every method, best by nested CV)")
    rc = vote.main(["--runs", *[str(c.run_dir) for c in cfgs], "--method", "all", "--write", "best",
                    "--kaggle", competition, *vote_args])
    if rc != 0:
        return rc
    log("== report")
    return report.main(["--competition", competition, "--runs-dir", str(cfgs[0].competition_dir.parent)])


def compete(competition: str, budget: str, *, configs_dir: str = "configs", extra: Sequence[str] = (),
            log=print) -> int:
    from .train import train
    t0 = time.perf_counter()
    folder, b, builder = load_budget(competition, budget, configs_dir)
    entries = _entries(b)
    if builder:
        BUILDERS[builder](Path(load_config(folder / entries[0].cfg, list(extra)).competition.root))
    cfgs = [load_config(folder / e.cfg, model_overrides(e, b, budget, extra)) for e in entries]
    _prepare(competition, None, cfgs[0], b.dups, log)
    for i, (entry, cfg) in enumerate(zip(entries, cfgs)):
        if b.tune is not None:
            cfg = _tuned(folder / entry.cfg, cfg, b, budget, model_overrides(entry, b, budget, extra), log)
        log(f"== train {cfg.run_name} ({i + 1}/{len(cfgs)}, {cfg.model.backbone} @ {cfg.input.size}px)")
        train(cfg, resume=True)
    rc = _vote_and_report(competition, cfgs, b.vote, log)
    if rc == 0:
        log(f"compete {competition} --budget {budget}: done in {time.perf_counter() - t0:.0f}s")
    return rc


def _tuned(cfg_path: Path, cfg, b: Budget, budget: str, overrides: list[str], log):
    """Tune the model (the study resumes if it exists), then train its best config."""
    from . import tune
    log(f"== tune {cfg.run_name} ({b.tune.trials} trials)")
    args = ["--cfg", str(cfg_path), "--trials", str(b.tune.trials)]
    args += ["--folds", b.tune.folds] if b.tune.folds else []
    args += ["--timeout", str(b.tune.timeout)] if b.tune.timeout else []
    args += [a for o in overrides if not o.startswith("name=") for a in ("--set", o)]
    if tune.main(args) != 0:
        raise RuntimeError(f"tuning {cfg_path} failed")
    best = tune.best_config_path(cfg_path)
    return load_config(best, [f"name={cfg.run_name}-tuned"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ensemble.compete", description=__doc__.splitlines()[0])
    p.add_argument("--competition", required=True, help="a folder under configs/ with compete.yaml")
    p.add_argument("--budget", default="cpu", help="a budget from compete.yaml (smoke, cpu, gpu)")
    p.add_argument("--time", help="plan the whole job to fit this wall time (e.g. 60m, 1.5h) from "
                                  "compete.yaml's time: candidates, instead of a fixed --budget")
    p.add_argument("--plan-only", action="store_true",
                   help="with --time: measure and print the plan with its estimated times, train nothing")
    p.add_argument("--threads", type=int, help="torch CPU threads (e.g. 1 each for two jobs at once)")
    p.add_argument("--configs-dir", default="configs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every model")
    add_plugin_argument(p)
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        import torch
        torch.set_num_threads(args.threads)
    try:
        load_plugins(args.plugin)
        if args.time:
            from .compete_time import compete_time
            return compete_time(args.competition, args.time, configs_dir=args.configs_dir, extra=args.overrides,
                                plan_only=args.plan_only)
        return compete(args.competition, args.budget, configs_dir=args.configs_dir, extra=args.overrides)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
