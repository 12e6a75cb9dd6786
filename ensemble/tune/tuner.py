"""tune_model: an Optuna study over one model config -> TuneResult (best trial, best config file).

    result = tune_model("configs/demo/resnet18.yaml", trials=20, folds=[0])

Trials train through `ensemble.train.train_run` (runs/<competition>/tune/<model>/trial-NNNN), report every
epoch's validation score and are pruned at once. The study lives in runs/<competition>/tune/optuna.journal
(or --storage postgresql://...: start the same command on several machines). Running the command again
continues the study; after every trial it writes configs/<competition>/<model>.best.yaml,
runs/<competition>/tune/<model>/trials.csv, history.png and importance.png.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from ensemble.artifacts import CompetitionPaths, RunPaths, atomic_write_csv, atomic_write_text
from ensemble.artifacts.io import NoSpaceError
from ensemble.cli import capture_logs
from ensemble.config import CompetitionCfg, Config, dump_config, load_config, parse_overrides
from ensemble.config.checks import check_argument
from ensemble.config.ranges import BOOL, INTEGER, POSITIVE, POSITIVE_INT, Range, fold_numbers
from ensemble.train import train_run
from ensemble.tune.outputs import best_config_path, trials_frame, write_plots
from ensemble.tune.space import TuneSpec, decode, defaults, load_tuning, sample, scale_epochs
from ensemble.tune.study import (PRUNERS, SAMPLERS, build_pruner, fail_dead_trials, open_storage, open_study,
                                 worker_id)

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
MAX_FAILS = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


logger = logging.getLogger(__name__)
trial_logger = logging.getLogger("ensemble.tune.trial")  # into the trial's log file only
log = logger.info


class TuneError(RuntimeError):
    """The study stopped: too many trials in a row failed (their logs say why)."""


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
    storage: optuna.storages.BaseStorage | None = None  # the study's (dead-worker detection)
    _surplus: bool = False
    _last_state: TrialState | None = None
    _fatal: Exception | None = None  # not the trial's fault (a full disk): stop the study, retry these params later

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
        """One trial: sample the space, train the trial's folds (runs/<competition>/tune/<model>/trial-NNNN),
        report every epoch's validation score at step fold_position * max_epochs + global_epoch (so
        the pruner compares like with like) -> the CV metric over the trained folds' val rows."""
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
            # training's messages go to the trial's log file (and the console only with verbose)
            with capture_logs(log_file, echo=self.verbose, keep=(logger.name,)):
                try:
                    metrics = train_run(cfg, folds=self.folds, fresh=True, on_epoch=on_epoch).metrics
                except optuna.TrialPruned as e:
                    trial_logger.info(f"pruned: {e}")
                    raise
                except NoSpaceError as e:
                    self._fatal = e
                    raise
                except Exception:
                    trial_logger.exception("trial failed")
                    raise
            return float(metrics["cv"]) if metrics else fold_score(cfg.run_dir, cfg.competition, self.folds)
        except (KeyboardInterrupt, NoSpaceError):  # not the trial's fault: run its params again next time
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": 0})
            raise
        finally:
            trial.set_user_attr("epochs_trained", trained[0])
            trial.set_user_attr("seconds", round(time.time() - t0, 2))
            if not self.keep_checkpoints:
                for ckpt in RunPaths(cfg.run_dir).checkpoints():
                    ckpt.unlink()

    def run(self, n_trials: int, timeout: float | None) -> None:
        """Run trials until the study has n_trials finished (all workers together) or timeout.
        Raises TuneError after MAX_FAILS failed trials in a row."""
        self.n_trials, t0, fails = n_trials, time.time(), 0
        while True:
            dead = fail_dead_trials(self.study, self.storage)
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
            if self._fatal is not None:
                raise self._fatal
            if self._surplus:
                break
            fails = fails + 1 if self._last_state == TrialState.FAIL else 0
            if fails >= MAX_FAILS:
                raise TuneError(f"[{self.model}] {fails} trials in a row failed; see {self.tune_dir / 'logs'}")
        self.write_outputs()

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


def fold_score(run_dir: Path, competition: CompetitionCfg, folds: Sequence[int]) -> float:
    """The metric over the val rows of the trained folds (their preds.npz), like metrics.json's cv."""
    from ensemble.data.competition import load_competition
    comp = load_competition(competition)
    parts = [np.load(RunPaths(run_dir).preds(k)) for k in folds]
    idx = np.concatenate([p["val_idx"] for p in parts])
    out = np.concatenate([p["val"] for p in parts])
    return float(comp.metric.score_outputs(competition.task, comp.train["y"].to_numpy()[idx], out))


@dataclasses.dataclass
class TuneResult:
    """What tune_model did: the study, its best trial (None before any completes) and where the best
    config and trials.csv are."""
    study: optuna.Study
    best: optuna.trial.FrozenTrial | None
    best_path: Path
    trials_csv: Path

    @property
    def best_value(self) -> float | None:
        return None if self.best is None else self.best.value


def _check_arguments(*, sampler, pruner, trials, timeout, seed, overrides, **flags) -> None:
    """tune_model's arguments, checked before the config is read (ConfigError in the loader's words)."""
    check = lambda name, value, rng=None, **kw: check_argument("tune_model", name, value, rng, **kw)
    check("sampler", sampler, registry=SAMPLERS)
    check("pruner", pruner, registry=PRUNERS)
    check("trials", trials, POSITIVE_INT)
    check("timeout", timeout, POSITIVE)
    check("seed", seed, INTEGER)
    check("overrides", overrides, Range(lambda v: not isinstance(v, str), "a list of key=value strings"))
    for name, value in flags.items():
        check(name, value, BOOL)


def tune_model(cfg_path: str | Path, *, overrides: Sequence[str] = (), trials: int | None = None,
               timeout: float | None = None, folds: Sequence[int] | None = None, pruner: str | None = None,
               sampler: str = "tpe", seed: int | None = None, storage: str | None = None, study: str | None = None,
               best_dir: str | Path | None = None, keep_checkpoints: bool = False,
               verbose: bool = False) -> TuneResult:
    """Run (or continue) the study of one model config until it has `trials` finished trials (all
    workers together; default tune.trials) or `timeout` seconds pass. folds: the folds every trial
    trains (default tune.folds or all); storage: an Optuna URL or journal file (default
    runs/<competition>/tune/optuna.journal). Writes <model>.best.yaml beside the config (or in
    best_dir), trials.csv and plots after every trial. Raises TuneError when trials keep failing."""
    _check_arguments(sampler=sampler, pruner=pruner, trials=trials, timeout=timeout, seed=seed, overrides=overrides,
                     keep_checkpoints=keep_checkpoints, verbose=verbose)
    path = Path(cfg_path)
    cfg, spec = load_tuning(path, list(overrides))
    check_argument("tune_model", "folds", folds if folds else None, fold_numbers(cfg.folds.n))
    from ensemble.data.competition import load_competition
    from ensemble.data.folds import check_fold_counts, merge_groups
    comp = load_competition(cfg.competition)  # bad labels or too few rows: one error now, not a failed trial each
    if comp.classes_inferred:
        log(f"[{cfg.run_name}] {comp.describe_classes()}")
    if not CompetitionPaths(cfg.competition_dir).folds.exists():
        check_fold_counts(comp.train["y"].to_numpy(), cfg.folds.n, comp.classes,
                          merge_groups(comp.train["group"] if cfg.competition.group_col else None))
    folds = list(folds) if folds else (spec.folds or list(range(cfg.folds.n)))
    direction = "maximize" if comp.metric.higher_is_better else "minimize"
    tune_dir = CompetitionPaths(cfg.competition_dir).tune
    storage, where = open_storage(storage, tune_dir)
    name = study or f"{cfg.competition.name}/{cfg.run_name}"
    pruner_name = pruner or spec.pruner
    pruner = build_pruner(pruner_name, spec.startup_trials, spec.warmup_epochs, spec.max_epochs * len(folds))
    signature = {"metric": cfg.competition.metric, "folds": ",".join(map(str, folds)), "epochs": spec.epochs or 0}
    opened = open_study(storage, name, direction, None, pruner, signature, lambda: defaults(spec.space, cfg, log))
    # a resumed study with --seed must not replay the random draws of its first run
    seed = None if seed is None else seed + sum(t.state != TrialState.WAITING for t in opened.trials)
    opened.sampler = SAMPLERS.get(sampler)(spec.startup_trials, seed)
    best_path = best_config_path(path, best_dir)
    tuner = Tuner(path, cfg, spec, folds, opened, where, list(overrides), best_path,
                  keep_checkpoints, verbose, storage=storage)
    n = trials or spec.trials
    from ensemble.tune import dashboard
    log(f"[{cfg.run_name}] study '{name}' in {where}: {direction} {cfg.competition.metric} on fold(s) "
        f"{','.join(map(str, folds))}, {n} trials, pruner {pruner_name}, "
        f"{tuner.counts()['finished']} finished trial(s) so far\n[{cfg.run_name}] dashboard: {dashboard.command(where)}  "
        f"(or python -m ensemble.tune --cfg {path} --dashboard, in another terminal)")
    tuner.run(n, timeout)
    best = tuner._best()
    if best is not None:
        log(f"[{cfg.run_name}] best {cfg.competition.metric} {best.value:.4f} (trial #{best.number}) -> {best_path}; "
            f"trials: {tuner.tune_dir / 'trials.csv'}")
    return TuneResult(opened, best, best_path, tuner.tune_dir / "trials.csv")
