"""`--submit -m MSG` on vote and compete: a fake `kaggle` executable on PATH records its arguments."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from ensemble.compete import __main__ as compete
from ensemble.vote import kaggle
from test_vote_cli import make_competition, make_run

FAKE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_KAGGLE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
print("Successfully submitted to Fake Competition" if os.environ.get("FAKE_KAGGLE_RC", "0") == "0"
      else "403 - Forbidden: accept the competition rules first")
sys.exit(int(os.environ.get("FAKE_KAGGLE_RC", "0")))
"""


@pytest.fixture
def voted(tmp_path, monkeypatch):
    """Three runs of a tiny competition; a clean HOME (no Kaggle credentials) and PATH without kaggle."""
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    for i, (name, strength) in enumerate([("good", 2.5), ("ok", 1.5), ("weak", 0.5)]):
        make_run(tmp_path / "runs", comp, name, strength, seed=i)
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]))
    return tmp_path


def fake_kaggle(tmp: Path, monkeypatch, rc: int = 0) -> Path:
    """A `kaggle` on PATH that appends its argv (JSON) to a log file; credentials in ~/.kaggle."""
    bindir = tmp / "fakebin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "kaggle"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(tmp / "kaggle.log"))
    monkeypatch.setenv("FAKE_KAGGLE_RC", str(rc))
    (tmp / "home" / ".kaggle").mkdir(parents=True, exist_ok=True)
    (tmp / "home" / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    return tmp / "kaggle.log"


def vote(*args):
    from ensemble.vote.__main__ import main
    return main(["--competition", "tiny", "--runs-dir", "runs", "--out-dir", "subs", "--method", "mean,hillclimb",
                 *args])


def only_manifest(tmp: Path) -> tuple[Path, dict]:
    (f,) = sorted((tmp / "subs" / "tiny").glob("*.json"))
    return f.with_suffix(".csv").relative_to(tmp), json.loads(f.read_text())  # vote ran in tmp


def test_submit_runs_kaggle_and_records_the_call(voted, monkeypatch, capsys):
    log = fake_kaggle(voted, monkeypatch)
    assert vote("--submit", "-m", "first try: mean of 3") == 0
    out = capsys.readouterr().out
    csv, manifest = only_manifest(voted)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [["competitions", "submit", "-c", "tiny", "-f", str(csv), "-m", "first try: mean of 3"]]
    rec = manifest["kaggle_submit"]
    assert rec["argv"] == ["kaggle", *calls[0]] and rec["returncode"] == 0
    assert "Successfully submitted" in rec["output"] and rec["credentials"].endswith("kaggle.json")
    assert manifest["kaggle_command"] == f"kaggle competitions submit -c tiny -f {csv} -m 'first try: mean of 3'"
    assert manifest["kaggle_command"] in out  # the command is still printed
    assert "submitted to Kaggle (tiny): Successfully submitted to Fake Competition" in out


def test_submit_uses_slug_and_default_message(voted, monkeypatch, capsys):
    log = fake_kaggle(voted, monkeypatch)
    assert vote("--submit", "--kaggle", "ham-slug") == 0
    (call,) = [json.loads(line) for line in log.read_text().splitlines()]
    _, manifest = only_manifest(voted)
    assert call[:4] == ["competitions", "submit", "-c", "ham-slug"]
    assert call[-1] == f"{manifest['method']} cv {manifest['cv']['score']:.4f} (3 runs)"


def test_without_kaggle_one_line_says_what_to_install(voted, capsys):
    if shutil.which("kaggle"):
        pytest.skip(f"a real kaggle command is on PATH: {shutil.which('kaggle')}")
    assert vote("--submit", "-m", "x") == 1
    out = capsys.readouterr().out
    lines = [s for s in out.splitlines() if s.startswith("--submit:")]
    assert lines == [f"--submit: the kaggle command is not installed: {kaggle.INSTALL}"]
    assert "pip install kaggle" in lines[0] and "~/.kaggle/kaggle.json" in lines[0]
    csv, manifest = only_manifest(voted)
    assert "kaggle_submit" not in manifest and (voted / csv).exists()
    assert f"to submit by hand: kaggle competitions submit -c tiny -f {csv} -m x" in out


def test_kaggle_without_credentials_says_where_they_go(voted, monkeypatch, capsys):
    log = fake_kaggle(voted, monkeypatch)
    (voted / "home" / ".kaggle" / "kaggle.json").unlink()
    assert vote("--submit") == 1
    out = capsys.readouterr().out
    assert "but has no credentials: put your API token in ~/.kaggle/kaggle.json" in out
    assert not log.exists()
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    assert kaggle.credentials() == "KAGGLE_USERNAME/KAGGLE_KEY"


def test_failing_kaggle_is_recorded_and_exits_1(voted, monkeypatch, capsys):
    fake_kaggle(voted, monkeypatch, rc=1)
    assert vote("--submit", "-m", "x") == 1
    out = capsys.readouterr().out
    assert "--submit: kaggle failed (exit 1): 403 - Forbidden" in out
    _, manifest = only_manifest(voted)
    assert manifest["kaggle_submit"]["returncode"] == 1


def test_submit_needs_a_written_file(voted, capsys):
    with pytest.raises(SystemExit):
        vote("--submit", "--write", "none")
    assert "--submit sends the written best submission" in capsys.readouterr().err


def test_compete_forwards_submit_to_vote(monkeypatch):
    seen = {}

    def fake(competition, budget, **kw):
        seen.update(kw, competition=competition)

    monkeypatch.setattr(compete, "compete", fake)
    assert compete.main(["--competition", "demo", "--budget", "smoke", "--submit", "-m", "smoke run",
                         "--kaggle", "digit-recognizer", "-q"]) == 0
    assert (seen["submit"], seen["message"], seen["kaggle"]) == (True, "smoke run", "digit-recognizer")
    assert seen["quiet"] is True
