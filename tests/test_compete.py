"""`python -m ensemble.compete --competition demo --budget smoke`, end to end (the CI smoke run)."""
import json
import shutil

import pandas as pd
import pytest

from conftest import REPO
from ensemble import vote
from ensemble.compete import load_budget, main
from ensemble.config import ConfigError


def test_demo_smoke_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "configs" / "demo", tmp_path / "configs" / "demo")
    monkeypatch.chdir(tmp_path)
    assert main(["--competition", "demo", "--budget", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "== duplicates (demo)" in out and "wrote runs/demo/dups.csv" in out
    subs = sorted((tmp_path / "submissions" / "demo").glob("*.csv"))
    assert len(subs) == 1
    manifest = json.loads(subs[0].with_suffix(".json").read_text())
    assert sorted(r["name"] for r in manifest["runs"]) == ["mobilenetv3-smoke", "resnet18-smoke"]
    sub = pd.read_csv(subs[0], dtype=str)
    sample = pd.read_csv(tmp_path / "data/demo/sample_submission.csv", dtype=str)
    assert sub["id"].tolist() == sample["id"].tolist() and list(sub.columns) == ["id", "label"]
    assert vote.main(["--check", str(subs[0]), "--competition", "demo"]) == 0
    assert (tmp_path / "runs/demo/report/index.html").exists()
    metrics = json.loads((tmp_path / "runs/demo/resnet18-smoke/metrics.json").read_text())
    assert metrics["cv"] > 0.5  # 10 digit classes: far above chance (0.1)

    assert main(["--competition", "demo", "--budget", "smoke"]) == 0  # resumes: nothing retrained
    out = capsys.readouterr().out
    assert out.count("already finished, skipped") == 6 and "stage 1 epoch" not in out


def test_budget_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"compete.yaml not found"):
        load_budget("nope", "cpu", tmp_path)
    with pytest.raises(ConfigError, match=r"demo/compete.yaml: unknown budget 'huge'; available: smoke"):
        load_budget("demo", "huge", REPO / "configs")
