"""`--submit -m MESSAGE` (vote, compete): send the written submission with the Kaggle CLI.

`kaggle competitions submit -c SLUG -f FILE -m MESSAGE` runs when the `kaggle` command is on PATH
and finds credentials; the call (argv, exit code, output, time) is recorded in the submission's
manifest under "kaggle_submit". Without the command or the credentials one line says what to
install and where the credentials go; the command to run by hand is printed either way.
The `kaggle` package is not a dependency of this project.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ensemble.artifacts import atomic_write_json
from ensemble.artifacts.provenance import portable

TIMEOUT_S = 600
OUTPUT_CHARS = 2000  # of kaggle's output kept in the manifest

INSTALL = ("pip install kaggle, then put your API token in ~/.kaggle/kaggle.json "
           "(kaggle.com > Settings > API > Create New Token; chmod 600) or set KAGGLE_USERNAME and KAGGLE_KEY")


def add_submit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--submit", action="store_true",
                   help="run `kaggle competitions submit` with the written submission (needs the kaggle "
                        "package and ~/.kaggle/kaggle.json); the call is recorded in the manifest")
    p.add_argument("-m", "--message", help="the Kaggle submission message (default: method, CV and runs)")


def runs_text(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def default_message(method: str, score: float, n_runs: int, alone: str | None = None) -> str:
    """The Kaggle message when none is given: 'hillclimb cv 0.9304 (2 runs)'; an ensemble equal to one
    model says which: 'hillclimb cv 0.9304 (2 runs; = strong alone)'."""
    tail = f"; = {alone} alone" if alone is not None and n_runs > 1 else ""
    return f"{method} cv {score:.4f} ({runs_text(n_runs)}{tail})"


def kaggle_argv(slug: str, path: str | Path, message: str) -> list[str]:
    return ["kaggle", "competitions", "submit", "-c", slug, "-f", str(path), "-m", message]


def kaggle_command(slug: str, path: str | Path, message: str) -> str:
    """The command as text, to print (and run by hand)."""
    return shlex.join(kaggle_argv(slug, path, message))


def credentials(env: dict | None = None) -> str | None:
    """Where the Kaggle CLI would find credentials, or None: KAGGLE_USERNAME + KAGGLE_KEY,
    KAGGLE_API_TOKEN, $KAGGLE_CONFIG_DIR/kaggle.json, ~/.kaggle/kaggle.json, ~/.config/kaggle/kaggle.json."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    home = Path(env.get("HOME") or Path.home())
    dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    dirs += [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    for d in dirs:
        for name in ("kaggle.json", "access_token"):
            if (d / name).is_file():
                return str(d / name)
    return None


@dataclass
class SubmitResult:
    done: bool  # kaggle ran and exited 0
    record: dict | None  # what goes into the manifest (None: kaggle did not run)
    message: str  # one line for the user
    command: str | None = None  # the kaggle command to run by hand (submit_chosen)

    def lines(self) -> list[str]:
        """What the user reads: the one line, and the command to run by hand when kaggle did not take it."""
        return [self.message] + ([f"  to submit by hand: {self.command}"] if self.command and not self.done else [])


def submit(slug: str, path: str | Path, message: str, env: dict | None = None) -> SubmitResult:
    """Run the Kaggle CLI when it is installed and configured. -> SubmitResult (never raises for a
    missing or failing kaggle: the submission file is already written)."""
    env = dict(os.environ if env is None else env)
    exe = shutil.which("kaggle", path=env.get("PATH"))
    if exe is None:
        return SubmitResult(False, None, f"--submit: the kaggle command is not installed: {INSTALL}")
    where = credentials(env)
    if where is None:
        return SubmitResult(False, None, f"--submit: kaggle is installed ({exe}) but has no credentials: "
                                         f"put your API token in ~/.kaggle/kaggle.json (kaggle.com > Settings > "
                                         f"API > Create New Token; chmod 600) or set KAGGLE_USERNAME and KAGGLE_KEY")
    argv = kaggle_argv(slug, path, message)
    started, t0 = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"), time.perf_counter()
    try:
        proc = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
        rc, out = proc.returncode, (proc.stdout + proc.stderr).strip()
    except subprocess.TimeoutExpired:
        rc, out = None, f"timed out after {TIMEOUT_S} s"
    except OSError as e:
        rc, out = None, str(e)
    record = portable({"argv": argv, "executable": Path(exe).name, "credentials": where, "returncode": rc,
                       "output": out[-OUTPUT_CHARS:], "started_utc": started,
                       "seconds": round(time.perf_counter() - t0, 2)})  # no absolute path of this machine
    last = out.splitlines()[-1] if out else ""
    if rc == 0:
        return SubmitResult(True, record, f"submitted to Kaggle ({slug}): {last or 'ok'}")
    return SubmitResult(False, record, f"--submit: kaggle failed ({'exit ' + str(rc) if rc is not None else out}): "
                                       f"{last}")


def submit_chosen(result, slug: str, message: str | None = None, env: dict | None = None) -> SubmitResult:
    """`--submit`: run kaggle on the chosen (best) ensemble's written submission of a VoteResult and
    record the call in its manifest. -> SubmitResult (done: kaggle accepted it; command: to run by hand)."""
    if result.chosen is None:
        return SubmitResult(False, None, "--submit: the best ensemble's submission was not written")
    path, cmd = result.chosen
    res = submit(slug, path, message or result.message(), env)
    if res.record is not None:
        mpath = path.with_suffix(".json")
        manifest = json.loads(mpath.read_text())
        manifest["kaggle_submit"] = res.record
        atomic_write_json(mpath, portable(manifest))
    res.command = cmd
    return res
