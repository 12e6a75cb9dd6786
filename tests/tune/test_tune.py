"""`python -m ensemble.tune`: studies on tiny generated competitions, pruning, kill -9 resume, PostgreSQL."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import REPO, make_competition, write_configs
from ensemble.config import ConfigError, load_config
from ensemble.tune.space import load_tuning
from ensemble.train.run import train
from ensemble.tune.study import build_pruner, mask_url, open_storage
from ensemble.tune.__main__ import expand_cfgs, main
from ensemble.tune.tuner import Tuner, fold_score

TUNE = """tune:
  trials: 3
  startup_trials: 1
  warmup_epochs: 0
  space:
    optim.lr.head: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
    model.head.hidden: {type: categorical, choices: [[8], [16]]}
"""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture
def tuned(tmp_path):
    """(model config with a tune: section, runs dir) of a tiny 3-class competition."""
    comp = make_competition(tmp_path / "comp")
    return write_configs(tmp_path / "configs", comp, tmp_path / "runs", extra=TUNE), tmp_path / "runs"


def _journal(runs: Path) -> optuna.storages.JournalStorage:
    backend = optuna.storages.journal.JournalFileBackend(str(runs / "tiny" / "tune" / "optuna.journal"))
    return optuna.storages.JournalStorage(backend)


def _cli(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ensemble.tune", "--cfg", str(cfg), "--folds", "0", "--pruner", "none", *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_study_writes_outputs_continues_and_reproduces(tmp_path, capsys):
    runs = tmp_path / "runs"  # log loss: a score that moves with every parameter
    cfg_path = write_configs(tmp_path / "configs", make_competition(tmp_path / "comp"), runs, metric="log_loss",
                             extra=TUNE)
    assert main(["--cfg", str(cfg_path), "--folds", "0", "--trials", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"dashboard: optuna-dashboard {runs / 'tiny' / 'tune' / 'optuna.journal'}" in out
    assert "minimize log_loss on fold(s) 0" in out
    assert "[tinyrun] trial 2/2 #1: log_loss" in out and "0 pruned, 0 failed" in out
    # running again with a larger budget continues the same study
    assert main(["--cfg", str(cfg_path), "--folds", "0", "--trials", "3"]) == 0
    assert "2 finished trial(s) so far" in capsys.readouterr().out
    study = optuna.load_study(study_name="tiny/tinyrun", storage=_journal(runs))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert study.trials[0].params == {"optim.lr.head": 3e-3, "model.head.hidden": "[16]"}  # the config's values
    assert study.trials[0].user_attrs["config_defaults"] is True
    tdir = runs / "tiny" / "tune" / "tinyrun"
    csv = pd.read_csv(tdir / "trials.csv")
    assert csv["number"].tolist() == [0, 1, 2] and set(csv["state"]) == {"COMPLETE"}
    assert csv["epochs_trained"].tolist() == [2, 2, 2]
    assert (tdir / "history.png").stat().st_size > 1000 and (tdir / "importance.png").stat().st_size > 1000
    assert not list(tdir.glob("trial-*/fold*/*.pt")) and (tdir / "trial-0002" / "fold0" / "preds.npz").exists()
    # the best config is a standalone config that ensemble.train accepts and that reproduces the score
    best = study.best_trial
    best_path = cfg_path.parent / "model.best.yaml"
    assert best_path.read_text().startswith(f"# Best trial #{best.number} of study 'tiny/tinyrun'")
    cfg = load_config(best_path)
    assert cfg.name == "tinyrun-best" and cfg.tune == {} and cfg.run_dir == runs / "tiny" / "tinyrun-best"
    assert cfg.optim.lr.head == pytest.approx(best.user_attrs["overrides"]["optim.lr.head"])
    assert cfg.model.head.hidden == best.user_attrs["overrides"]["model.head.hidden"]
    assert train(cfg, folds=[0]) is None
    assert len({round(t.value, 6) for t in study.trials}) == 3
    assert fold_score(cfg.run_dir, cfg.competition, [0]) == pytest.approx(best.value, abs=1e-6)


def test_pruned_trial_stops_at_once(tmp_path):
    comp = make_competition(tmp_path / "comp")
    path = write_configs(tmp_path / "configs", comp, tmp_path / "runs", metric="log_loss", extra=TUNE)
    cfg, spec = load_tuning(path)
    study = optuna.create_study(direction="minimize", pruner=build_pruner("median", 0, 0, 4))
    # a finished trial with a perfect log loss at every step: the next one is worse at step 0
    study.add_trial(optuna.trial.create_trial(value=0.0, intermediate_values={0: 0.0, 1: 0.0}, params={},
                                              distributions={}))
    tuner = Tuner(path, cfg, spec, [0], study, "memory", [], tmp_path / "best.yaml", n_trials=5)
    study.optimize(tuner.objective, n_trials=1)
    t = study.trials[-1]
    assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [0]
    assert t.user_attrs["epochs_trained"] == 1 and t.user_attrs["epochs"] == [1, 1]
    run = tmp_path / "runs" / "tiny" / "tune" / "tinyrun" / "trial-0001"
    assert len(pd.read_csv(run / "fold0" / "history.csv")) == 1  # stopped after its first epoch
    assert not (run / "fold0" / "preds.npz").exists() and not list(run.glob("fold0/*.pt"))


def test_all_folds_report_one_step_per_fold_and_epoch(tuned):
    cfg_path, runs = tuned
    cfg, spec = load_tuning(cfg_path, ["tune.epochs=2", "stages.1.epochs=3"])
    assert spec.max_epochs == 2
    study = optuna.create_study(direction="maximize")
    tuner = Tuner(cfg_path, cfg, spec, [0, 1], study, "memory", ["tune.epochs=2", "stages.1.epochs=3"],
                  runs / "b.yaml", n_trials=1)
    study.optimize(tuner.objective, n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == [1, 1]
    assert sorted(t.intermediate_values) == [0, 1, 2, 3]  # step = fold position * 2 + epoch
    metrics = load_config(cfg_path)  # the value is the OOF score over both folds (metrics.json's cv)
    run = runs / "tiny" / "tune" / metrics.run_name / "trial-0000"
    import json
    assert t.value == pytest.approx(json.loads((run / "metrics.json").read_text())["cv"])


def test_sigkill_mid_trial_then_resume(tuned, capsys):
    cfg_path, runs = tuned
    cmd = _cli(cfg_path, "--trials", "3")
    proc = subprocess.Popen(cmd, cwd=cfg_path.parent, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, before = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        try:
            trials = optuna.load_study(study_name="tiny/tinyrun", storage=_journal(runs)).trials
        except (KeyError, FileNotFoundError):  # the study or its folder is not there yet
            trials = []
        running = [t for t in trials if t.state == TrialState.RUNNING and "overrides" in t.user_attrs]
        if running and any(t.state == TrialState.COMPLETE for t in trials):
            os.kill(proc.pid, signal.SIGKILL)
            before = trials
            break
        time.sleep(0.1)
    proc.wait(timeout=30)
    assert before is not None, f"never saw a COMPLETE and a RUNNING trial: {proc.stderr.read().decode()[-2000:]}"
    killed = next(t for t in before if t.state == TrialState.RUNNING)
    done = {t.number: (t.params, t.value) for t in before if t.state == TrialState.COMPLETE}
    assert main(cmd[3:]) == 0  # the same command again (in this process: one torch import less)
    assert f"trial(s) #{killed.number} of a killed worker marked failed" in capsys.readouterr().out
    trials = optuna.load_study(study_name="tiny/tinyrun", storage=_journal(runs)).trials
    assert sum(t.state in FINISHED for t in trials) == 3 and trials[killed.number].state == TrialState.FAIL
    assert {t.number: (t.params, t.value) for t in trials if t.number in done} == done  # intact
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state == TrialState.COMPLETE


# ---------------------------------------------------------------- PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server (initdb in a temp dir) -> URL of an empty database."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [p for p in [shutil.which("initdb")] if p]
    if not found:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin, PATH); run scripts/ci_postgres.sh")
    bindir, base = Path(found[-1]).parent, Path(tempfile.mkdtemp(prefix="tune-pg-"))
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        shutil.chown(base, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def pg(*args):
        subprocess.run(as_user + [str(a) for a in args], check=True, capture_output=True, timeout=120)

    pg(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    pg(bindir / "pg_ctl", "-D", data, "-l", base / "server.log", "-w", "-o", f"-p {port} -k {base} -h 127.0.0.1 "
       "-c fsync=off", "start")
    try:
        pg(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "tune")
        yield f"postgresql://postgres:s3cret@127.0.0.1:{port}/tune"  # trust auth: the password is only a probe
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # RDB heartbeat
def test_two_workers_share_a_postgres_study(tuned, postgres_url):
    cfg_path, runs = tuned
    cmd = _cli(cfg_path, "--trials", "4", "--storage", postgres_url)
    procs = [subprocess.Popen(cmd, cwd=cfg_path.parent, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("s3cret" not in o and "postgresql://postgres:***@127.0.0.1" in o for o in outs)
    trials = optuna.load_study(study_name="tiny/tinyrun", storage=open_storage(postgres_url, runs)[0]).trials
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 4 and len({t.number for t in finished}) == 4
    # nothing left running or queued; a failed trial may only be a slot lost to the other worker's race
    assert all(t.state in FINISHED or t.user_attrs.get("surplus") for t in trials)
    assert sum(bool(t.user_attrs.get("config_defaults")) for t in trials) == 1
    assert {t.user_attrs["worker"]["pid"] for t in finished} == {p.pid for p in procs}  # both worked
    for t in finished:  # every finished trial has its own run
        assert (runs / "tiny" / "tune" / "tinyrun" / f"trial-{t.number:04d}" / "fold0" / "history.csv").exists()
    text = (cfg_path.parent / "model.best.yaml").read_text()
    assert "s3cret" not in text and load_config(cfg_path.parent / "model.best.yaml").name == "tinyrun-best"


# ---------------------------------------------------------------- small pieces
def test_mask_url():
    assert mask_url("postgresql://u:pw@db.example:5432/optuna") == "postgresql://u:***@db.example:5432/optuna"
    assert mask_url("postgresql://db/optuna") == "postgresql://db/optuna"


def test_unknown_pruner():
    with pytest.raises(ConfigError, match="^unknown pruner 'asha'; available: median, hyperband, none$"):
        build_pruner("asha", 1, 0, 4)


def test_glob_skips_base_and_best_configs(tuned):
    cfg_path, _ = tuned
    (cfg_path.parent / "model.best.yaml").write_text(cfg_path.read_text())
    assert expand_cfgs([str(cfg_path.parent / "*.yaml")]) == [cfg_path]
    assert expand_cfgs([str(cfg_path.parent / "base.yaml"), str(cfg_path)]) == [cfg_path]  # a shell's expansion
    with pytest.raises(ConfigError, match="no model config with a tune.space"):
        expand_cfgs([str(cfg_path.parent / "base.yaml"), str(cfg_path.parent / "model.best.yaml")])
    assert expand_cfgs([str(cfg_path.parent / "b*.yaml")]) == [cfg_path.parent / "base.yaml"]  # alone: strict


def test_cli_error_names_the_key(tuned, capsys):
    cfg_path, _ = tuned
    cfg_path.write_text(cfg_path.read_text().replace("optim.lr.head:", "optim.lrr:"))
    assert main(["--cfg", str(cfg_path)]) == 2
    assert capsys.readouterr().err.strip() == \
        f"error: {cfg_path}: tune.space: unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"


def test_full_disk_stops_the_study_with_one_line_and_retries_the_params(tuned, capsys, monkeypatch):
    """A full disk is not the trial's fault: tune stops at once (not after MAX_FAILS failed trials),
    says so in one line, and the interrupted trial's params run first next time."""
    from ensemble.tune import tuner
    from ensemble.artifacts.io import NoSpaceError
    cfg_path, runs = tuned
    calls = []

    def full(cfg, **kw):
        calls.append(cfg.run_name)
        raise NoSpaceError(runs / "tiny" / "x.npy", 30 * 2**20, 2 * 2**20)
    monkeypatch.setattr(tuner, "train_run", full)
    assert main(["--cfg", str(cfg_path), "--folds", "0", "--trials", "3"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no space left on device writing {runs / 'tiny' / 'x.npy'} (needs ~30 MB, 2 MB free)\n"
    assert len(calls) == 1
    trials = optuna.load_study(study_name="tiny/tinyrun", storage=_journal(runs)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].system_attrs["fixed_params"] == trials[0].params


def test_trials_that_keep_failing_stop_the_study_with_one_line(tuned, capsys, monkeypatch):
    """tune_model raises TuneError after MAX_FAILS failed trials in a row; the command says it in one
    line and exits 1."""
    from ensemble.tune import tuner
    cfg_path, runs = tuned

    def broken(cfg, **kw):
        raise RuntimeError("the model diverged")
    monkeypatch.setattr(tuner, "train_run", broken)
    with pytest.raises(tuner.TuneError, match=r"^\[tinyrun\] 3 trials in a row failed; see .*tune/tinyrun/logs$"):
        tuner.tune_model(cfg_path, folds=[0], trials=5, pruner="none")
    assert main(["--cfg", str(cfg_path), "--folds", "0", "--trials", "8"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: [tinyrun] 3 trials in a row failed; see {runs / 'tiny' / 'tune' / 'tinyrun' / 'logs'}\n"
    assert "the model diverged" in (runs / "tiny" / "tune" / "tinyrun" / "logs" / "trial-0000.log").read_text()
