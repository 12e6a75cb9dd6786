"""`python -m ensemble.compete --competition demo --budget smoke`, end to end (the CI smoke run)."""
import json
import re
import shutil

import pandas as pd
import pytest

from conftest import REPO
import ensemble.vote.__main__ as vote
from ensemble.compete.__main__ import main
from ensemble.compete.spec import load_budget
from ensemble.compete.steps import RunState
from ensemble.compete.plandata import parse_duration
from ensemble.config import ConfigError


def test_demo_smoke_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "configs" / "demo", tmp_path / "configs" / "demo")
    monkeypatch.chdir(tmp_path)
    assert main(["--competition", "demo", "--budget", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "== duplicates (demo)" in out and "wrote runs/demo/dups.csv" in out
    assert "== train/test shift (demo)\ntrain/test shift AUC 0." in out  # compete.yaml: shift: stats
    assert json.loads((tmp_path / "runs/demo/shift/shift.json").read_text())["backbone"] == "none"
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
    assert abs(metrics["shift"]["weighted_cv"] - metrics["cv"]) < 0.1  # the check's weights reached training

    assert main(["--competition", "demo", "--budget", "smoke"]) == 0  # resumes: nothing retrained
    out = capsys.readouterr().out
    assert out.count("already finished, skipped") == 6 and "stage 1 epoch" not in out


def test_budget_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"compete.yaml not found"):
        load_budget("nope", "cpu", tmp_path)
    with pytest.raises(ConfigError, match=r"demo/compete.yaml: unknown budget 'huge'; available: smoke"):
        load_budget("demo", "huge", REPO / "configs")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "compete.yaml").write_text("budgets:\n  cpu: {models: [a.yaml], shift: maybe}\n")
    with pytest.raises(ConfigError) as e:
        load_budget("x", "cpu", tmp_path)
    assert "budgets.cpu.shift" in str(e.value) and "maybe" in str(e.value), str(e.value)


def test_demo_time_budget_plans_trains_and_respects_it(tmp_path, monkeypatch, capsys):
    """The CI run of `--time 3m`: measured, planned within the budget, trained, voted, resumable. The
    plan uses the speeds of an idle 2-core machine, so that it does not depend on the load of the one
    running the tests (how close a job comes to its plan: scripts/bench_time.py)."""
    from ensemble.compete import timed
    from ensemble.compete.plandata import Speed
    measure = timed.measure_candidates

    def idle(cands, cfgs, n_classes, quick=False):
        speeds, build_s = measure(cands, cfgs, n_classes, quick=quick)  # measured for real (and logged) ...
        return {k: Speed(v.size, 300.0, 1500.0) for k, v in speeds.items()}, build_s  # ... planned as if idle
    monkeypatch.setattr(timed, "measure_candidates", idle)
    shutil.copytree(REPO / "configs" / "demo", tmp_path / "configs" / "demo")
    monkeypatch.chdir(tmp_path)
    assert main(["--competition", "demo", "--time", "3m"]) == 0
    out = capsys.readouterr().out
    assert "measured resnet18 @ 32px: train" in out and "== plan for 3m" in out and "== plan vs actual" in out
    state = RunState.load(tmp_path / "runs/demo/compete-t3m.json")
    assert state.planned_s + 0.15 * 180 <= 180  # the plan as printed; compete.yaml's reserve: 0.15
    assert set(state.plan.setup) == {"measure + plan", "duplicates", "train/test shift"}
    assert set(state.plan.tail) == {"vote", "report"} and set(state.actual_s) >= {*state.plan.setup, *state.plan.tail}
    assert state.elapsed_s >= sum(state.actual_s.values()) - 1e-6
    trained = [e.name for e in state.plan.entries if e.name in state.actual_s]
    assert trained[:1] == [state.plan.entries[0].name]  # the first model always trains
    for e in state.plan.entries:  # the others too, unless the job ran so far behind that they would not fit
        assert e.name in trained or f"warning: {e.name} is left out: the job runs behind its plan" in out
    for name in trained:  # (how good they are depends on the epochs the load allowed: the smoke test checks that)
        assert 0 <= json.loads((tmp_path / f"runs/demo/{name}-t3m/metrics.json").read_text())["cv"] <= 1
    subs = sorted((tmp_path / "submissions" / "demo").glob("*.csv"))
    assert len(subs) == 1 and vote.main(["--check", str(subs[0]), "--competition", "demo"]) == 0
    manifest = json.loads(subs[0].with_suffix(".json").read_text())
    assert sorted(r["name"] for r in manifest["runs"]) == sorted(f"{n}-t3m" for n in trained)
    capsys.readouterr()
    assert main(["--competition", "demo", "--time", "3m"]) == 0  # resumes the saved plan: nothing retrained
    out = capsys.readouterr().out
    assert "resuming the plan in runs/demo/compete-t3m.json" in out and "stage 1 epoch" not in out
    assert "measured" not in out  # the saved plan is not measured again


def test_time_budget_errors(tmp_path, capsys):
    (tmp_path / "c" / "x").mkdir(parents=True)
    (tmp_path / "c" / "x" / "compete.yaml").write_text("budgets: {}\n")
    assert main(["--competition", "x", "--time", "3m", "--configs-dir", str(tmp_path / "c")]) == 2
    assert f"{tmp_path / 'c' / 'x' / 'compete.yaml'}: no 'time:' section" in capsys.readouterr().err
    assert main(["--competition", "demo", "--time", "soon", "--configs-dir", str(REPO / "configs")]) == 2
    assert "--time expected a positive duration like 60m, 1.5h or 900s, got 'soon'" in capsys.readouterr().err


def test_a_budget_too_short_says_the_smallest_that_works_and_writes_nothing(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "configs" / "demo", tmp_path / "configs" / "demo")
    monkeypatch.chdir(tmp_path)
    assert main(["--competition", "demo", "--time", "5s", "--plan-only"]) == 2
    err = capsys.readouterr().err.strip()
    m = re.fullmatch(r"error: a budget of 5s is too short: the smallest plan \((\S+) at 32px, 3 folds, 1 epoch, with "
                     r"\d+s of setup, vote, report and reserve\) needs (\S+) at the speeds measured now; use --time (\S+) "
                     r"or more", err)
    assert m and m.group(1) in ("resnet18", "mobilenetv3"), err
    assert not (tmp_path / "runs").exists()  # priced before anything ran: no dups, shift or cache
    assert parse_duration(m.group(3)) >= 1.15 * parse_duration(m.group(2)) - 1  # the advice leaves room
    budget = 2 * parse_duration(m.group(2))  # measuring again gives other speeds: leave room
    assert main(["--competition", "demo", "--time", f"{budget:.0f}s", "--plan-only"]) == 0
    total = capsys.readouterr().out.split("\ntotal")[1].split()
    assert float(total[0]) <= float(total[2]) == pytest.approx(budget / 60, abs=0.05)  # "x.x of y.y" minutes
    assert not (tmp_path / "runs").exists()


def test_the_setup_shrinks_before_the_models(tmp_path, monkeypatch, capsys):
    """Embeddings for the shift check would take most of a 2-minute budget: the plan uses image statistics."""
    from conftest import make_competition, write_configs
    from ensemble.compete import timed
    from ensemble.compete.measure import ImageRates
    from ensemble.compete.plandata import Speed
    comp = make_competition(tmp_path / "comp", n_per_class=20, n_test=20)
    cfg = write_configs(tmp_path / "configs" / "tiny", comp, tmp_path / "runs")
    (cfg.parent / "compete.yaml").write_text("time:\n  candidates: [{cfg: model.yaml, sizes: [24]}]\n"
                                             "  shift: embeddings\n  min_epochs: 2\n  target_epochs: 3\n")
    monkeypatch.setattr(timed, "measure_candidates", lambda cands, cfgs, n, quick=False:
                        ({c.label: Speed(24, 50.0, 200.0) for c in cands}, 0.1))
    monkeypatch.setattr(timed, "measure_images", lambda paths, size: ImageRates(0.01, 0.01, 0.001))
    monkeypatch.setattr(timed, "measure_eval", lambda backbone, size: 2.0)  # 2 img/s: 80 images take a minute
    args = ["--competition", "tiny", "--configs-dir", str(tmp_path / "configs"), "--plan-only"]
    assert main([*args, "--time", "2m"]) == 0
    out = capsys.readouterr().out
    assert "the setup shrinks to fit the budget: the shift check uses image statistics" in out
    assert re.search(r"\ntrain/test shift +0\.0\n", out)  # statistics of 80 images: seconds
    assert main([*args, "--time", "20m"]) == 0  # a budget that holds the embedding pass keeps it
    out = capsys.readouterr().out
    assert "the setup shrinks" not in out and re.search(r"\ntrain/test shift +1\.\d\n", out)
    assert not (tmp_path / "runs").exists()
