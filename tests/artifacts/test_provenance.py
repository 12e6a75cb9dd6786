"""Manifests record package versions, the project's git commit (+ dirty) and every config's hash."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import REPO
from ensemble.artifacts import provenance
from ensemble.artifacts import file_hash
from test_vote_cli import make_competition, make_run

NEEDED = ("torch", "timm", "albumentations", "numpy", "scikit-learn", "optuna")


def test_vote_manifest_records_versions_git_and_config_hashes(tmp_path, monkeypatch):
    from ensemble.vote.__main__ import main
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    dirs = [make_run(tmp_path / "runs", comp, n, s, seed=i) for i, (n, s) in enumerate([("a", 2.0), ("b", 1.0)])]
    assert main(["--competition", "tiny", "--runs-dir", "runs", "--out-dir", "subs", "--method", "mean"]) == 0
    (f,) = (tmp_path / "subs" / "tiny").glob("*.json")
    m = json.loads(f.read_text())
    for pkg in NEEDED:
        assert isinstance(m["versions"][pkg], str) and m["versions"][pkg][0].isdigit(), pkg
    assert m["versions"]["python"].count(".") == 2
    git = m["git"]
    if shutil.which("git") and (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
        assert git["commit"] == head.stdout.strip() and git["dirty"] == bool(status.stdout.strip())
    want = {d.name: file_hash(d / "config.yaml") for d in dirs}
    assert m["configs"] == want
    assert {r["name"]: r["config_sha256"] for r in m["runs"]} == want


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_state_clean_dirty_and_not_a_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
    run("init", "-q")
    (repo / "x.py").write_text("a = 1\n")
    run("add", "x.py")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    clean = provenance.git_state(repo)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["changed"] == []
    (repo / "x.py").write_text("a = 2\n")
    dirty = provenance.git_state(repo)
    assert dirty["commit"] == clean["commit"] and dirty["dirty"] is True and dirty["changed"] == ["x.py"]
    (tmp_path / "plain").mkdir()
    assert provenance.git_state(tmp_path / "plain")["commit"] is None


def test_versions_and_config_hashes(tmp_path):
    v = provenance.versions(("numpy", "no-such-package-xyz"))
    assert v["numpy"] and v["no-such-package-xyz"] is None and "python" in v
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "config.yaml").write_text("name: r1\n")
    (tmp_path / "r2").mkdir()
    assert provenance.config_hashes([tmp_path / "r1", tmp_path / "r2"]) == {
        "r1": file_hash(tmp_path / "r1" / "config.yaml"), "r2": None}
