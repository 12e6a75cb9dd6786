"""`python -m ensemble.tune --cfg X --dashboard`: optuna-dashboard on 127.0.0.1, fetched over HTTP, stopped."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import optuna
import pytest

from conftest import REPO, make_competition, write_configs
from ensemble.tune import dashboard

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard not installed: pip install -e '.[dashboard]' "
                                               "(the README's first command installs it)")
TIMEOUT_S = 60  # start + first page, bounded


def journal(runs):
    """The journal storage of runs/tiny/tune/optuna.journal."""
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(runs / "tiny" / "tune" / "optuna.journal")))


def child_env() -> dict:
    """This checkout first on a subprocess's import path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def tiny_study(runs) -> str:
    """A 3-trial study in runs/tiny/tune/optuna.journal (no training: a quadratic objective)."""
    (runs / "tiny" / "tune").mkdir(parents=True)
    storage = journal(runs)
    study = optuna.create_study(storage=storage, study_name="tiny/tinyrun")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2, n_trials=3)
    return study.study_name


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=15) as r:  # 127.0.0.1 only
        return r.status, r.read().decode()


def test_tune_dashboard_serves_the_study_on_localhost(tmp_path):
    cfg = write_configs(tmp_path / "configs", make_competition(tmp_path / "comp", n_per_class=2, n_test=2),
                        tmp_path / "runs")
    name = tiny_study(tmp_path / "runs")
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "ensemble.tune", "--cfg", str(cfg), "--dashboard", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(s) for s in proc.stdout], daemon=True).start()
    try:
        deadline, url, seen = time.monotonic() + TIMEOUT_S, None, []
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, f"dashboard exited ({proc.returncode}): {''.join(seen)}"
                continue
            seen.append(line)
            if "http://127.0.0.1:" in line:
                url = next(w for w in line.split() if w.startswith("http://127.0.0.1:"))
        assert url, f"no URL printed within {TIMEOUT_S} s: {''.join(seen)}"
        assert "optuna.journal" in seen[-1] and "127.0.0.1 only" in seen[-1]
        status, page = fetch(url)
        assert status == 200 and "<html" in page.lower()
        api = json.loads(fetch(url.replace("/dashboard", "/api/studies"))[1])
        studies = api.get("study_summaries", api.get("studies"))  # the key's name differs between versions
        assert [s["study_name"] for s in studies] == [name]
    finally:
        proc.send_signal(signal.SIGINT)
        why = ""
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            why = stuck(proc.pid)
            proc.kill()
            proc.wait()
    time.sleep(0.2)  # the reader thread drains the closed pipe
    after = "".join(lines.get() for _ in range(lines.qsize()))
    assert proc.returncode == 0, f"still running 15 s after Ctrl-C ({why}); output after the URL: {after!r}"
    assert "dashboard stopped" in after


def stuck(pid: int) -> str:
    """Why a process outlived its Ctrl-C: its signal masks and what each thread waits in (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = [line.strip() for line in f if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
        threads = []
        for task in sorted(os.listdir(f"/proc/{pid}/task")):
            with open(f"/proc/{pid}/task/{task}/comm") as c, open(f"/proc/{pid}/task/{task}/wchan") as w:
                threads.append(f"{c.read().strip()}:{w.read().strip()}")
        return f"{' '.join(masks)}; threads {threads}"
    except OSError as e:
        return f"no /proc details: {e}"


def test_ctrl_c_stops_it_even_when_started_with_sigint_ignored(tmp_path):
    """A shell script's `cmd &` starts a process with SIGINT ignored; serve() sets its own handler."""
    tiny_study(tmp_path / "runs")
    script = ("import logging, sys, optuna; from ensemble.tune import dashboard;"
              "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s');"
              "storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(sys.argv[1]));"
              "sys.exit(dashboard.serve(storage, 'the journal', port=0))")
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "runs" / "tiny" / "tune" / "optuna.journal")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        first = proc.stdout.readline()  # blocks until serving (or the process dies: "")
        assert "http://127.0.0.1:" in first, first + proc.stdout.read()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "dashboard stopped" in out


def test_start_and_stop_in_process(tmp_path):
    tiny_study(tmp_path / "runs")
    storage = journal(tmp_path / "runs")
    dash = dashboard.start(storage, port=0)
    try:
        assert dash.url.startswith("http://127.0.0.1:") and fetch(dash.url)[0] == 200
    finally:
        dash.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(dash.url, timeout=5)


def test_an_idle_open_connection_does_not_hold_up_stop(tmp_path):
    """Browsers open sockets ahead of requests; stop() must not wait for one that never speaks."""
    import socket
    tiny_study(tmp_path / "runs")
    storage = journal(tmp_path / "runs")
    dash = dashboard.start(storage, port=0)
    idle = socket.create_connection(dash.server.server_address[:2], timeout=5)
    try:
        time.sleep(0.3)  # the server has accepted it and a handler thread waits for a request line
        stopper = threading.Thread(target=dash.stop, daemon=True)
        stopper.start()
        stopper.join(timeout=20)
        assert not stopper.is_alive(), "stop() waited for an idle connection"
    finally:
        idle.close()


def test_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails
    with pytest.raises(dashboard.DashboardError, match=r"optuna-dashboard is not installed: pip install -e '\.\[dashboard\]'"):
        dashboard.start("sqlite:///x.db", port=0)
