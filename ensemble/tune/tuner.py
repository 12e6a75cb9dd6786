"""`python -m ensemble.tune --cfg configs/<competition>/<model>.yaml`: Optuna search, one study per model.

Trials train through `ensemble.train.train` (runs/<competition>/tune/<model>/trial-NNNN), report every
epoch's validation score and are pruned at once. The study lives in runs/<competition>/tune/optuna.journal
(or --storage postgresql://...: start the same command on several machines). Running the command again
continues the study; after every trial it writes configs/<competition>/<model>.best.yaml,
runs/<competition>/tune/<model>/trials.csv, history.png and importance.png.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from ensemble.artifacts import atomic_path, atomic_write_csv, atomic_write_text
from ensemble.config import Config, ConfigError, dump_config, load_config, parse_overrides
from ensemble.metrics import get_metric
from ensemble.plugins import add_plugin_argument, load_plugins
from ensemble.tune.space import TuneSpec, decode, defaults, load_tuning, sample, scale_epochs
from ensemble.tune.study import PRUNERS, build_pruner, fail_dead_trials, open_storage, open_study, worker_id
from ensemble.train.run import parse_folds, train
from ensemble.artifacts.paths import CompetitionPaths, RunPaths

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
MAX_FAILS = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- one model
@dataclasses.dataclass
class Tuner:
    """The study of one model config: objective, budget loop, outputs."""

    path: Path
    cfg: Config
    spec: TuneSpec
    folds: list[int]
    study: optuna.Study
    where: str
    overrides: list[str]
    best_path: Path
    keep_checkpoints: bool = False
    verbose: bool = False
    n_trials: int = 0
    _surplus: bool = False
    _last_state: TrialState | None = None

    @property
    def model(self) -> str:
        return self.cfg.run_name

    @property
    def tune_dir(self) -> Path:
        return CompetitionPaths(self.cfg.competition_dir).tune / self.model

    def trial_config(self, trial_number: int, params: dict) -> Config:
        """The trial's config: the model config + sampled values, epochs capped by tune.epochs."""
        base = dict(_parse(self.overrides))
        cfg = load_config(self.path, {**base, **params, "name": f"tune/{self.model}/trial-{trial_number:04d}",
                                      "output.progress": False, "output.tensorboard": False})
        if self.spec.epochs:
            epochs = scale_epochs([s.epochs for s in cfg.stages], self.spec.epochs)
            cfg = dataclasses.replace(cfg, stages=[dataclasses.replace(s, epochs=e)
                                                   for s, e in zip(cfg.stages, epochs)])
        return cfg

    def objective(self, trial: optuna.Trial) -> float:
        states = FINISHED + (TrialState.RUNNING,)
        active = sorted(t.number for t in self.study.get_trials(deepcopy=False, states=states))
        if trial.number in active and active.index(trial.number) >= self.n_trials:
            self._surplus = True  # another worker took the last slot between our check and ask()
            trial.set_user_attr("surplus", True)
            raise RuntimeError(f"budget of {self.n_trials} trials reached by other workers")
        trial.set_user_attr("worker", worker_id())
        params = sample(self.spec.space, trial)
        trial.set_user_attr("overrides", params)
        cfg = self.trial_config(trial.number, params)
        trial.set_user_attr("epochs", [s.epochs for s in cfg.stages])
        stride, pos, trained, t0 = self.spec.max_epochs, {k: i for i, k in enumerate(self.folds)}, [0], time.time()
        metric = cfg.competition.metric

        def on_epoch(fold: int, global_epoch: int, score: float) -> None:
            trained[0] += 1
            trial.report(score, pos[fold] * stride + global_epoch)  # same step = same fold and epoch
            if trial.should_prune():
                raise optuna.TrialPruned(f"fold {fold} epoch {global_epoch + 1}: {metric} {score:.4f}")

        log_file = self.tune_dir / "logs" / f"trial-{trial.number:04d}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log_file, "w") as f, contextlib.redirect_stdout(sys.stdout if self.verbose else f):
                try:
                    metrics = train(cfg, folds=self.folds, fresh=True, on_epoch=on_epoch)
                except optuna.TrialPruned as e:
                    print(f"pruned: {e}")
                    raise
                except Exception:
                    traceback.print_exc(file=f)
                    raise
            return float(metrics["cv"]) if metrics else fold_score(cfg, self.folds)
        except KeyboardInterrupt:  # not the trial's fault: run its params again next time
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": 0})
            raise
        finally:
            trial.set_user_attr("epochs_trained", trained[0])
            trial.set_user_attr("seconds", round(time.time() - t0, 2))
            if not self.keep_checkpoints:
                for ckpt in RunPaths(cfg.run_dir).checkpoints():
                    ckpt.unlink()

    def run(self, n_trials: int, timeout: float | None) -> int:
        """Run trials until the study has n_trials finished (all workers together) or timeout. -> exit code."""
        self.n_trials, t0, fails = n_trials, time.time(), 0
        while True:
            dead = fail_dead_trials(self.study)
            if dead:
                log(f"[{self.model}] trial(s) {', '.join(f'#{n}' for n in dead)} of a killed worker marked failed")
                for n in dead if not self.keep_checkpoints else ():
                    for ckpt in RunPaths(self.tune_dir / f"trial-{n:04d}").checkpoints():
                        ckpt.unlink()
            counts = self.counts()
            if counts["finished"] + counts["running"] >= n_trials:
                log(f"[{self.model}] {counts['finished']}/{n_trials} trials finished"
                    + (f", {counts['running']} running in other workers" if counts["running"] else "") + ": done")
                break
            if timeout is not None and time.time() - t0 >= timeout:
                log(f"[{self.model}] --timeout {timeout:g}s reached")
                break
            self.study.optimize(self.objective, n_trials=1, catch=(Exception,), callbacks=[self.after_trial])
            if self._surplus:
                break
            fails = fails + 1 if self._last_state == TrialState.FAIL else 0
            if fails >= MAX_FAILS:
                log(f"[{self.model}] error: {fails} trials in a row failed; see {self.tune_dir / 'logs'}")
                return 1
        self.write_outputs()
        return 0

    def counts(self) -> dict[str, int]:
        states = [t.state for t in self.study.get_trials(deepcopy=False)]
        return {"finished": sum(s in FINISHED for s in states), "running": states.count(TrialState.RUNNING),
                "pruned": states.count(TrialState.PRUNED), "failed": states.count(TrialState.FAIL)}

    def after_trial(self, study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        self._last_state = t.state
        if self._surplus:
            return
        self.write_outputs()
        c, secs = self.counts(), t.user_attrs.get("seconds", 0)
        if t.state == TrialState.COMPLETE:
            what = f"{self.cfg.competition.metric} {t.value:.4f}"
        elif t.state == TrialState.PRUNED:
            steps = max(t.intermediate_values, default=0)
            what = f"pruned after {t.user_attrs.get('epochs_trained', steps + 1)} epoch(s)"
        else:
            what = f"failed (see {self.tune_dir / 'logs' / f'trial-{t.number:04d}.log'})"
        best = self._best()
        best_txt = f"best {best.value:.4f} (#{best.number})" if best else "best -"
        log(f"[{self.model}] trial {c['finished']}/{self.n_trials} #{t.number}: {what}, {secs:.0f}s | {best_txt} | "
            f"{c['pruned']} pruned, {c['failed']} failed")

    def _best(self) -> optuna.trial.FrozenTrial | None:
        try:
            return self.study.best_trial
        except ValueError:
            return None

    # ------------------------------------------------------------ outputs
    def write_outputs(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        self.tune_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(self.tune_dir / "trials.csv", trials_frame(trials))
        best = self._best()
        if best is not None:
            self.write_best(best)
        write_plots(self.study, self.tune_dir)

    def write_best(self, best: optuna.trial.FrozenTrial) -> None:
        params = best.user_attrs.get("overrides") or {k: decode(v) for k, v in best.params.items()}
        cfg = load_config(self.path, {**_parse(self.overrides), **params, "name": f"{self.model}-best"})
        cfg = dataclasses.replace(cfg, tune={})
        epochs = best.user_attrs.get("epochs")
        header = (f"# Best trial #{best.number} of study '{self.study.study_name}' ({self.where}): "
                  f"{self.cfg.competition.metric} {best.value:.4f} on fold(s) {','.join(map(str, self.folds))}"
                  f"{f' with stage epochs {epochs}' if epochs else ''}.\n"
                  f"# Written by python -m ensemble.tune; train it: python -m ensemble.train --cfg {self.best_path}\n")
        atomic_write_text(self.best_path, header + dump_config(cfg))


def _parse(overrides: Sequence[str]) -> dict:
    return parse_overrides(overrides)


def fold_score(cfg: Config, folds: Sequence[int]) -> float:
    """The metric over the val rows of the trained folds (their preds.npz), like metrics.json's cv."""
    from ensemble.metrics import score_outputs
    from ensemble.data.competition import load_competition
    comp = load_competition(cfg.competition)
    parts = [np.load(RunPaths(cfg.run_dir).preds(k)) for k in folds]
    idx = np.concatenate([p["val_idx"] for p in parts])
    out = np.concatenate([p["val"] for p in parts])
    return float(score_outputs(comp.metric, cfg.competition.task, comp.train["y"].to_numpy()[idx], out,
                        len(comp.classes)))


def trials_frame(trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    """One row per trial: number, state, value, seconds, epochs trained, worker, then the params."""
    rows = []
    for t in trials:
        w = t.user_attrs.get("worker") or {}
        row = {"number": t.number, "state": t.state.name, "value": t.value,
               "seconds": t.user_attrs.get("seconds"), "epochs_trained": t.user_attrs.get("epochs_trained"),
               "worker": f"{w.get('host')}:{w.get('pid')}" if w else None, "retry_of": t.user_attrs.get("retry_of")}
        row.update({f"param:{k}": str(v) if isinstance(v, (list, dict)) else v
                    for k, v in (t.user_attrs.get("overrides") or t.params).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_plots(study: optuna.Study, out_dir: Path) -> None:
    """history.png (value per trial, best so far) and importance.png (fANOVA; needs 2+ completed trials)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    plots = {"history.png": ovm.plot_optimization_history} if done else {}
    if len(done) >= 2 and len({tuple(sorted(map(str, t.params.items()))) for t in done}) >= 2:
        plots["importance.png"] = ovm.plot_param_importances
    for name, fn in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
            ax.set_title(f"{study.study_name}: {ax.get_title().lower().replace(' plot', '')}")
            fig = ax.figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            with atomic_path(out_dir / name) as tmp:
                fig.savefig(tmp, format="png", dpi=100)
            plt.close(fig)
        except (ValueError, RuntimeError) as e:  # e.g. importances of a space with one point
            log(f"{name}: not drawn ({e})")


# ---------------------------------------------------------------- CLI
def expand_cfgs(patterns: Sequence[str]) -> list[Path]:
    """--cfg values and globs -> model configs. Among several files, *.best.yaml and configs without a
    tune.space (base.yaml, compete.yaml) are skipped; one file named alone must have a tune.space."""
    found = [p for pat in patterns for p in (sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat])]
    found = list(dict.fromkeys(found))
    if len(found) == 1:
        return [Path(found[0])]
    out = [Path(p) for p in found if not p.endswith(".best.yaml") and "space" in (_tune_section(p) or {})]
    if not out:
        raise ConfigError(f"--cfg {' '.join(patterns)}: no model config with a tune.space")
    return out


def _tune_section(path: str) -> dict | None:
    from ensemble.config import read_yaml
    if "tune" not in read_yaml(path):  # base.yaml, compete.yaml, ...
        return None
    return load_config(path).tune  # a broken model config is an error, not skipped


def best_config_path(cfg_path: str | Path, best_dir: str | Path | None = None) -> Path:
    """configs/<competition>/<model>.yaml -> configs/<competition>/<model>.best.yaml (or in best_dir)."""
    cfg_path = Path(cfg_path)
    return (Path(best_dir) if best_dir else cfg_path.parent) / f"{cfg_path.name.split('.')[0]}.best.yaml"


def tune_model(path: Path, args: argparse.Namespace) -> int:
    cfg, spec = load_tuning(path, args.overrides)
    folds = parse_folds(args.folds, cfg.folds.n) if args.folds else (spec.folds or list(range(cfg.folds.n)))
    direction = "maximize" if get_metric(cfg.competition.metric).greater_is_better else "minimize"
    tune_dir = CompetitionPaths(cfg.competition_dir).tune
    storage, where = open_storage(args.storage, tune_dir)
    name = args.study or f"{cfg.competition.name}/{cfg.run_name}"
    pruner = build_pruner(args.pruner or spec.pruner, spec.startup_trials, spec.warmup_epochs,
                          spec.max_epochs * len(folds))
    signature = {"metric": cfg.competition.metric, "folds": ",".join(map(str, folds)), "epochs": spec.epochs or 0}
    study = open_study(storage, name, direction, None, pruner, signature, lambda: defaults(spec.space, cfg, log))
    # a resumed study with --seed must not replay the random draws of its first run
    seed = None if args.seed is None else args.seed + sum(t.state != TrialState.WAITING for t in study.trials)
    study.sampler = (optuna.samplers.RandomSampler(seed=seed) if args.sampler == "random" else
                     optuna.samplers.TPESampler(n_startup_trials=spec.startup_trials, seed=seed, constant_liar=True))
    best_path = best_config_path(path, args.best_dir)
    tuner = Tuner(path, cfg, spec, folds, study, where, list(args.overrides), best_path,
                  args.keep_checkpoints, args.verbose)
    n = args.trials or spec.trials
    dash = where if "://" not in where else f"'{where}'"
    log(f"[{cfg.run_name}] study '{name}' in {where}: {direction} {cfg.competition.metric} on fold(s) "
        f"{','.join(map(str, folds))}, {n} trials, pruner {args.pruner or spec.pruner}, "
        f"{tuner.counts()['finished']} finished trial(s) so far\n[{cfg.run_name}] dashboard: optuna-dashboard {dash}")
    rc = tuner.run(n, args.timeout)
    best = tuner._best()
    if best is not None:
        log(f"[{cfg.run_name}] best {cfg.competition.metric} {best.value:.4f} (trial #{best.number}) -> {best_path}; "
            f"trials: {tuner.tune_dir / 'trials.csv'}")
    return rc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.tune", description=__doc__.splitlines()[0])
    p.add_argument("--cfg", action="extend", nargs="+", required=True,
                   help="model config(s) with a tune: section, or a glob: each model is tuned in turn")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every trial (and the best config)")
    p.add_argument("--trials", type=int, help="finished trials the study should have, counting earlier runs "
                                              "and other workers (default: tune.trials or 20)")
    p.add_argument("--timeout", type=float, help="seconds per model after which no new trial starts")
    p.add_argument("--folds", help="folds each trial trains, e.g. 0 (default: tune.folds or all)")
    p.add_argument("--pruner", choices=sorted(PRUNERS), help="default: tune.pruner or median")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--seed", type=int, help="sampler seed (leave unset when several workers share a study)")
    p.add_argument("--storage", help="postgresql://user:pass@host/db (several workers), sqlite:///x.db or a journal "
                                     "file (default: runs/<competition>/tune/optuna.journal)")
    p.add_argument("--study", help="study name (default: <competition>/<model>)")
    p.add_argument("--best-dir", help="where <model>.best.yaml goes (default: beside the model config)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the trials' .pt files")
    p.add_argument("--verbose", action="store_true", help="show training output (default: logs/trial-NNNN.log)")
    add_plugin_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.trials is not None and args.trials < 1:
        build_parser().error(f"--trials expected a number >= 1, got {args.trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        load_plugins(args.plugin)
        for path in expand_cfgs(args.cfg):
            rc = tune_model(path, args)
            if rc:
                return rc
    except KeyboardInterrupt:
        log("interrupted: finished trials are kept and the interrupted one is queued again; "
            "run the same command to continue")
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
