"""compete's overall progress line (step k of n, elapsed, ETA) above the per-epoch bars; -q silences bars."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from conftest import make_competition, write_configs
from ensemble.compete.__main__ import main as compete_main
from ensemble.compete.progress import PlanProgress, clock
from ensemble.vote.options import VoteOptions
from ensemble.vote.kaggle import SubmitResult


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def fake_time(monkeypatch):
    c = Clock()
    monkeypatch.setattr("ensemble.compete.progress.time.perf_counter", c)
    return c


def test_eta_from_estimates_scaled_by_finished_steps(fake_time):
    p = PlanProgress([("train a", 100.0), ("train b", 300.0), ("vote + report", 0.0)], bar=False, log=lambda s: None)
    p.start(0)
    assert p.line() == "[compete 1/3] train a | elapsed 0s | ETA 6m 40s"
    fake_time.t += 50
    p.advance(0.5)
    assert p.line() == "[compete 1/3] train a 50% | elapsed 50s | ETA 5m 50s"
    fake_time.t += 150  # step a took 200 s instead of 100: the rest is expected to take twice as long too
    p.finish(0)
    p.start(1)
    assert p.line() == "[compete 2/3] train b | elapsed 3m 20s | ETA 10m 00s"


def test_a_short_setup_step_that_overran_does_not_rescale_the_training(fake_time):
    """A shift check planned at 1 s (reused) that had to run again (70 s) once made the ETA read 87h."""
    p = PlanProgress([("train/test shift", 1.0), ("train a", 600.0), ("vote", 5.0)], bar=False, log=lambda s: None)
    p.start(0)
    fake_time.t += 70
    p.finish(0)
    p.start(1)
    assert p.line() == "[compete 2/3] train a | elapsed 1m 10s | ETA 10m 05s"
    fake_time.t += 6000  # a training step 10x over its estimate scales the rest by at most 4
    p.finish(1)
    p.start(2)
    assert p.eta() == pytest.approx(20.0)


def test_eta_without_estimates_is_the_mean_step_time(fake_time):
    p = PlanProgress([("a", None), ("b", None), ("c", None), ("d", None)], bar=False, log=lambda s: None)
    p.start(0)
    assert p.eta() is None and p.line().endswith("ETA ?")
    fake_time.t += 60
    p.finish(0)
    p.start(1)
    assert p.line() == "[compete 2/4] b | elapsed 1m 00s | ETA 3m 00s"
    assert clock(3725) == "1h 02m" and clock(None) == "?"


def test_bar_stays_on_top_and_prints_go_above_it(capsys):
    stream = io.StringIO()
    p = PlanProgress([("train a", None), ("vote + report", None)], stream=stream, log=print)
    with p.shown():
        p.start(0)
        print("fold 0 epoch 1: accuracy 0.5")
        p.epoch_counter(2)(0, 0, 0.5)
        p.finish(0)
        p.start(1)
        p.finish(1)
    out = capsys.readouterr().out
    assert "fold 0 epoch 1: accuracy 0.5\n" in out and "== [compete 1/2] train a | elapsed" in out
    bar = stream.getvalue()
    assert "[compete 1/2] train a 50% | elapsed" in bar and "[compete 2/2] done" in bar


@pytest.fixture
def two_models(tmp_path, monkeypatch):
    """configs/tiny/compete.yaml with two models; training, voting and the report replaced by fakes that record."""
    comp = make_competition(tmp_path / "comp", n_per_class=2, n_test=2)
    cfg = write_configs(tmp_path / "configs" / "tiny", comp, tmp_path / "runs")
    (cfg.parent / "compete.yaml").write_text(
        "budgets:\n  quick:\n    models: [model.yaml, {cfg: model.yaml, name: other}]\n    dups: false\n"
        "    shift: off\n    set: [output.progress=true]\n    vote: {methods: 'mean,hillclimb'}\n")
    seen = {"progress": [], "vote": None, "submit": None}

    def fake_train(cfg, resume=False, on_epoch=None, **kw):
        seen["progress"].append(cfg.output.progress)
        for e in range(2):
            print(f"{cfg.run_name}: epoch {e + 1}")
            on_epoch(0, e, 0.5)

    class FakeVote:
        def summary(self):
            return "the vote's table"

    def fake_vote(run_dirs, options):
        seen["vote"] = ([Path(r).name for r in run_dirs], options)
        return FakeVote()

    def fake_submit(result, slug, message):
        seen["submit"] = (slug, message)
        return SubmitResult(True, {}, "submitted to Kaggle (tiny): ok")

    monkeypatch.setattr("ensemble.train.run.train", fake_train)
    monkeypatch.setattr("ensemble.vote.voter.vote_runs", fake_vote)
    monkeypatch.setattr("ensemble.vote.kaggle.submit_chosen", fake_submit)
    monkeypatch.setattr("ensemble.report.page.build_report", lambda *a: tmp_path / "index.html")
    return tmp_path, seen


def test_compete_shows_one_line_for_the_whole_budget(two_models, capsys, monkeypatch):
    tmp, seen = two_models
    monkeypatch.setattr("ensemble.compete.progress._is_terminal", lambda stream: True)  # as in a terminal
    assert compete_main(["--competition", "tiny", "--budget", "quick", "--configs-dir", str(tmp / "configs"),
                   "--submit", "-m", "hi"]) == 0
    cap = capsys.readouterr()
    steps = re.findall(r"== \[compete (\d)/4\] (\S+(?: \S+)*?) \| elapsed \S+ \| ETA", cap.out)
    assert steps == [("1", "train model-quick"), ("2", "train other-quick"), ("3", "vote"), ("4", "report")]
    assert "[compete 1/4] train model-quick 25% | elapsed" in cap.err  # the live line, per epoch
    assert "model-quick: epoch 2" in cap.out and "the vote's table\n" in cap.out
    assert "submitted to Kaggle (tiny): ok" in cap.out
    runs, options = seen["vote"]
    assert runs == ["model-quick", "other-quick"]
    assert options == VoteOptions(methods="mean,hillclimb", kaggle="tiny", message="hi")  # compete.yaml + flags
    assert seen["submit"] == ("tiny", "hi")
    assert seen["progress"] == [True, True]  # the per-epoch bars stay on


def test_a_redirected_stderr_gets_the_step_lines_and_no_redrawn_line(two_models, capsys):
    """`compete ... > log 2>&1`: the log had the live line redrawn before every line it held."""
    tmp, _ = two_models
    assert compete_main(["--competition", "tiny", "--budget", "quick", "--configs-dir", str(tmp / "configs")]) == 0
    cap = capsys.readouterr()  # capsys's stderr is no terminal, as a file is not
    assert "[compete" not in cap.err and "\r" not in cap.err
    assert len(re.findall(r"== \[compete \d/4\]", cap.out)) == 4 and "model-quick: epoch 2" in cap.out


def test_quiet_silences_the_bars(two_models, capsys):
    tmp, seen = two_models
    assert compete_main(["--competition", "tiny", "--budget", "quick", "--configs-dir", str(tmp / "configs"), "-q"]) == 0
    cap = capsys.readouterr()
    # -q is the shared "warnings only" of every command: no live line, no bars, no info lines
    assert "[compete" not in cap.err and "== [compete " not in cap.out
    assert seen["progress"] == [False, False]  # -q: output.progress=false for every model


def test_top_up_steps_go_before_vote(capsys):
    """compete --time's top-up: more train steps are inserted before the last one (vote + report)."""
    p = PlanProgress([("train a", 10.0), ("vote + report", 0.0)], bar=False, log=print)
    p.start(0)
    p.finish(0)
    p.add([("train b", 10.0)])
    p.start(1)
    p.finish(1)
    p.start(p.n - 1)
    out = capsys.readouterr().out
    assert "[compete 2/3] train b" in out and "[compete 3/3] vote + report" in out
