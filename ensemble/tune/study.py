"""Optuna study plumbing for `ensemble.tune`: pruners, storage (journal file or a database URL),
and trials left RUNNING by workers that died."""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from ensemble.config import ConfigError
from ensemble.registry import Registry

HEARTBEAT_S, GRACE_S, ORPHAN_S, MAX_RETRIES = 30, 120, 300, 2
PRUNERS: Registry[Callable[..., optuna.pruners.BasePruner]] = Registry("pruner")
SAMPLERS: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("sampler")  # (startup_trials, seed) -> sampler


logger = logging.getLogger(__name__)
log = logger.info


def register_pruner(name: str):
    """Decorator: ``factory(startup_trials, warmup_steps, max_steps) -> optuna pruner``."""
    return PRUNERS.register(name)


@register_pruner("median")
def _median(startup: int, warmup: int, max_steps: int):
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


@register_pruner("hyperband")
def _hyperband(startup: int, warmup: int, max_steps: int):
    return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=max(max_steps, 2))


@register_pruner("none")
def _nop(startup: int, warmup: int, max_steps: int):
    return optuna.pruners.NopPruner()


def build_pruner(name: str, startup: int, warmup: int, max_steps: int) -> optuna.pruners.BasePruner:
    try:
        make = PRUNERS.get(name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return make(startup, warmup, max_steps)


SAMPLERS.register("tpe", lambda startup, seed: optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed,
                                                                          constant_liar=True))
SAMPLERS.register("random", lambda startup, seed: optuna.samplers.RandomSampler(seed=seed))


# ---------------------------------------------------------------- storage and workers
def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (never print a password)."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL: nothing to hide
        return url


def open_storage(url: str | None, tune_dir: Path) -> tuple[optuna.storages.BaseStorage, str]:
    """-> (storage, printable location). Default: a journal file (a kill -9 loses only running trials);
    a database URL gets Optuna's heartbeat so trials of dead workers on other machines are failed."""
    if url is None or "://" not in url:
        path = Path(url) if url else tune_dir / "optuna.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend), str(path)
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    for attempt in range(5):  # workers started together race to create the tables: the losers retry
        try:
            storage = optuna.storages.RDBStorage(
                _driver(url), engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S, heartbeat_stale_trial_callback=retry_trial)
            return storage, mask_url(url)
        except ImportError:  # Optuna's "Failed to import DB access module" names no package
            raise ConfigError(f"--storage {mask_url(url)}: {driver_hint(_driver(url))}") from None
        except ArgumentError as e:  # a malformed URL or an unknown dialect: retrying cannot help
            raise ConfigError(f"--storage {mask_url(url)}: {str(e).splitlines()[0]}; expected a database URL "
                              "like sqlite:///tune.db, mysql+pymysql://... or postgresql://..., "
                              "or a journal file path") from None
        except SQLAlchemyError as e:
            err = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            time.sleep(0.5 + attempt)
    raise RuntimeError(f"cannot open storage {mask_url(url)}: {err}")


# SQLAlchemy dialect -> (database, {driver: pip package}, the driver to suggest for the bare dialect)
_DRIVERS = {
    "mysql": ("MySQL", {"mysqldb": "mysqlclient", "pymysql": "pymysql", "mysqlconnector": "mysql-connector-python",
                        "asyncmy": "asyncmy", "aiomysql": "aiomysql"}, "pymysql"),
    "mariadb": ("MariaDB", {"mysqldb": "mysqlclient", "pymysql": "pymysql", "mariadbconnector": "mariadb"},
                "pymysql"),
    "postgresql": ("PostgreSQL", {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]", "pg8000": "pg8000",
                                  "asyncpg": "asyncpg"}, "psycopg2"),
    "mssql": ("SQL Server", {"pyodbc": "pyodbc", "pymssql": "pymssql"}, "pyodbc"),
    "oracle": ("Oracle", {"oracledb": "oracledb", "cx_oracle": "cx_Oracle"}, "oracledb"),
}


def driver_hint(url: str) -> str:
    """'mysql://...' -> 'the MySQL driver is not installed; pip install pymysql (and use mysql+pymysql://)'."""
    scheme = url.split("://", 1)[0].lower()
    dialect, _, driver = scheme.partition("+")
    if dialect not in _DRIVERS:
        return f"the database driver for {scheme}:// is not installed"
    db, packages, default = _DRIVERS[dialect]
    if driver:
        return f"the {db} driver '{driver}' is not installed; pip install {packages.get(driver, driver)}"
    return (f"the {db} driver is not installed; pip install {packages[default]} "
            f"(and use {dialect}+{default}://)")


def _driver(url: str) -> str:
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3; use psycopg2 where only that one is installed."""
    import importlib.util
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a Linux process, or None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def worker_id() -> dict:
    stat = _proc_stat(os.getpid())
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": stat[1] if stat else None}


def worker_alive(w: dict) -> bool:
    """Is the (same-host) process that ran a trial still alive? A reused pid has another start time."""
    try:
        os.kill(int(w["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(int(w["pid"]))
    if stat is None:
        return os.path.exists("/proc") is False  # no /proc: trust kill(pid, 0)
    return stat[0] != "Z" and (w.get("start") is None or stat[1] == w["start"])


def retry_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue a trial whose worker died with the same params (at most MAX_RETRIES times)."""
    n = int(trial.user_attrs.get("retries", 0))
    if trial.params and n < MAX_RETRIES:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": n + 1})
        log(f"trial #{trial.number}: its worker died; its params are queued again")


def fail_dead_trials(study: optuna.Study, storage: optuna.storages.BaseStorage | None) -> list[int]:
    """Mark RUNNING trials whose worker process on this host is gone as FAIL and queue them again.
    storage: the study's storage (Optuna's Study has no public accessor for it; the storage's own
    public API sets a trial's state). None (an in-memory study): no other process can have died.

    Journal files have no heartbeat, and a killed process can tell nothing: the worker (host, pid,
    process start time) stored on each trial decides; a trial that never got one (killed right after
    ask()) is failed after ORPHAN_S. Trials of other hosts are left to the RDB heartbeat."""
    if storage is None:
        return []
    host, failed, now = socket.gethostname(), [], time.time()
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.user_attrs.get("worker")
        if w is None:  # set right after ask(): a worker killed in between leaves none
            if t.datetime_start is None or now - t.datetime_start.timestamp() < ORPHAN_S:
                continue
        elif w.get("host") != host or worker_alive(w):
            continue
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(t.number)
                retry_trial(study, t)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    return failed


def open_study(storage, name: str, direction: str, sampler, pruner, signature: dict,
               first: Callable[[], dict]) -> optuna.Study:
    """Create or load the study; a new one gets `signature` attrs and `first` (the config's values) queued."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,
                                    pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study '{name}' is set to {study.direction.name.lower()} but metric "
                          f"{signature['metric']} needs {direction}; use --study <new name>")
    for key, value in signature.items():
        old = study.user_attrs.get(key)
        if old is not None and old != value:
            raise ConfigError(f"study '{name}' was run with {key}={old}, now {key}={value}: its scores would not "
                              f"compare; use --study <new name> or the old setting")
    if "signature" not in study.user_attrs and not study.get_trials(deepcopy=False):
        study.set_user_attr("signature", True)
        for key, value in signature.items():
            study.set_user_attr(key, value)
        study.enqueue_trial(first(), user_attrs={"config_defaults": True})
    return study
