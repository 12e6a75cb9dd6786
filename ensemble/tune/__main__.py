"""`python -m ensemble.tune --cfg configs/<competition>/<model>.yaml`: Optuna search, one study per model.

Trials train through `ensemble.train.train_run` (runs/<competition>/tune/<model>/trial-NNNN), report every
epoch's validation score and are pruned at once. The study lives in runs/<competition>/tune/optuna.journal
(or --storage postgresql://...: start the same command on several machines). Running the command again
continues the study; after every trial it writes configs/<competition>/<model>.best.yaml,
runs/<competition>/tune/<model>/trials.csv, history.png and importance.png.
"""
from __future__ import annotations

import argparse
import glob
import logging
import sys
from pathlib import Path
from typing import Sequence

import optuna

from ensemble.cli import Parser, int_at_least, port_number, positive_number, run_command
from ensemble.config import ConfigError, load_config, read_yaml
from ensemble.plugins import add_plugin_argument, load_plugins
from ensemble.train.run import parse_folds
from ensemble.tune.study import PRUNERS, SAMPLERS
from ensemble.tune.tuner import TuneError, tune_model

logger = logging.getLogger("ensemble.tune.tuner")


def expand_cfgs(patterns: Sequence[str]) -> list[Path]:
    """--cfg values and globs -> model configs. Among several files, *.best.yaml and configs without a
    tune.space (base.yaml, compete.yaml) are skipped; one file named alone must have a tune.space."""
    found = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat]
        if not hits:  # dropped silently before: a typo in one glob tuned the other models only
            raise ConfigError(f"--cfg {pat!r} matched no file")
        found += hits
    found = list(dict.fromkeys(found))
    if len(found) == 1:
        return [Path(found[0])]
    out = [Path(p) for p in found if not p.endswith(".best.yaml") and "space" in (_tune_section(p) or {})]
    if not out:
        raise ConfigError(f"--cfg {' '.join(patterns)}: no model config with a tune.space")
    return out


def _tune_section(path: str) -> dict | None:
    if "tune" not in read_yaml(path):  # base.yaml, compete.yaml, ...
        return None
    return load_config(path).tune  # a broken model config is an error, not skipped


def best_config_path(cfg_path: str | Path, best_dir: str | Path | None = None) -> Path:
    """configs/<competition>/<model>.yaml -> configs/<competition>/<model>.best.yaml (or in best_dir)."""
    cfg_path = Path(cfg_path)
    return (Path(best_dir) if best_dir else cfg_path.parent) / f"{cfg_path.name.split('.')[0]}.best.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m ensemble.tune", description=__doc__.splitlines()[0])
    p.add_argument("--cfg", action="extend", nargs="+", required=True,
                   help="model config(s) with a tune: section, or a glob: each model is tuned in turn")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every trial (and the best config)")
    p.add_argument("--trials", type=int_at_least(1), help="finished trials the study should have, counting earlier runs "
                                              "and other workers (default: tune.trials or 20)")
    p.add_argument("--timeout", type=positive_number, help="seconds per model after which no new trial starts")
    p.add_argument("--folds", help="folds each trial trains, e.g. 0 (default: tune.folds or all)")
    p.add_argument("--pruner", choices=sorted(PRUNERS), help="default: tune.pruner or median")
    p.add_argument("--sampler", choices=list(SAMPLERS), default="tpe", help="Optuna sampler (default tpe)")
    p.add_argument("--seed", type=int, help="sampler seed (leave unset when several workers share a study)")
    p.add_argument("--storage", help="postgresql://user:pass@host/db (several workers), sqlite:///x.db or a journal "
                                     "file (default: runs/<competition>/tune/optuna.journal)")
    p.add_argument("--study", help="study name (default: <competition>/<model>)")
    p.add_argument("--best-dir", help="where <model>.best.yaml goes (default: beside the model config)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the trials' .pt files")
    p.add_argument("--verbose", dest="show_training", action="store_true", help="show training output (default: logs/trial-NNNN.log)")
    add_plugin_argument(p)
    p.add_argument("--dashboard", action="store_true",
                   help="serve the study's storage with optuna-dashboard on 127.0.0.1 (no tuning) until Ctrl-C")
    p.add_argument("--port", type=port_number, default=8080, help="--dashboard port (default 8080; 0: any free port)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="fewer messages (warnings and errors only)")
    return p


def serve_dashboard(args: argparse.Namespace) -> int:
    """--dashboard: the storage tuning would use, served by tune/dashboard.py."""
    from ensemble.artifacts.paths import CompetitionPaths
    from ensemble.tune.dashboard import serve
    from ensemble.tune.study import open_storage
    cfg = load_config(expand_cfgs(args.cfg)[0], args.overrides)
    storage, where = open_storage(args.storage, CompetitionPaths(cfg.competition_dir).tune)
    return serve(storage, where, args.port)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, (ValueError, FileNotFoundError, RuntimeError))


def _run(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        load_plugins(args.plugin)
        if args.dashboard:
            return serve_dashboard(args)
        for path in expand_cfgs(args.cfg):
            tune_model(path, overrides=args.overrides, trials=args.trials, timeout=args.timeout,
                       folds=parse_folds(args.folds, load_config(path, args.overrides).folds.n) if args.folds
                       else None, pruner=args.pruner, sampler=args.sampler, seed=args.seed,
                       storage=args.storage, study=args.study, best_dir=args.best_dir,
                       keep_checkpoints=args.keep_checkpoints, verbose=args.show_training)
    except TuneError as e:  # the study itself failed (every trial pruned or failed): exit 1, not a usage error
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        logger.info("interrupted: finished trials are kept and the interrupted one is queued again; "
                    "run the same command to continue")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
