"""compete/steps.py: the one step loop (order, inserted steps, saved state) and the step list of a job."""
from __future__ import annotations

import json
import logging
import os

import pytest

from conftest import make_competition, write_configs
from ensemble.compete.steps import SKIPPED, Costing, Job, RunState, Step, job_steps, job_vote, run_steps
from ensemble.compete.plandata import Entry, Plan
from ensemble.config import load_config
from ensemble.vote.options import VoteOptions

PLAN = Plan(600.0, 400.0, [Entry("a", "a.yaml", [], 32, 0, 2, 100.0, 40, 3)],
            {"a": {"size": 32, "train": 1.0, "eval": 2.0}}, {"duplicates": 5.0}, {"vote": 10.0})


def test_run_steps_runs_in_order_inserts_more_and_saves_the_state(tmp_path, capsys):
    done, file = [], tmp_path / "state.json"
    state = RunState("10m", 600.0, PLAN, elapsed_s=30.0)

    def step(name, more=()):
        def run(progress):
            saved = json.loads(file.read_text()) if file.exists() else {"actual_s": {}}
            done.append((name, sorted(saved["actual_s"])))  # the steps before it are saved already
            return list(more)
        return Step(name, 1.0, run, f"do {name}")

    run_steps([step("a", [step("a2")]), step("b")], bar=False, state=state, state_file=file)
    assert done == [("a", []), ("a2", ["a"]), ("b", ["a", "a2"])]  # a2 (returned by a) runs right after it
    out = capsys.readouterr().out
    assert [line.split(" | ")[0] for line in out.splitlines()] == ["== [compete 1/2] do a", "== [compete 2/3] do a2",
                                                                   "== [compete 3/3] do b"]
    again = RunState.load(file)
    assert again == state and set(again.actual_s) == {"a", "a2", "b"} and again.elapsed_s >= 30.0
    assert again.plan == PLAN  # the typed plan round-trips through JSON


def test_a_failed_step_keeps_what_finished_and_the_time_spent(tmp_path):
    file = tmp_path / "state.json"
    state = RunState("10m", 600.0, PLAN)

    def boom(progress):
        raise ValueError("disk on fire")
    with pytest.raises(ValueError, match="disk on fire"):
        run_steps([Step("a", 1.0, lambda p: None), Step("b", 1.0, boom)], bar=False, state=state, state_file=file)
    assert set(RunState.load(file).actual_s) == {"a"} and RunState.load(file).elapsed_s > 0


def test_a_skipped_step_records_no_time(tmp_path):
    """A model left out (the job ran behind) must not look trained: top_up and the plan-vs-actual
    ratio read a name in actual_s as a model that trained in that many seconds."""
    state = RunState("10m", 600.0, PLAN)
    run_steps([Step("measure", 1.0, lambda p: None), Step("a", 100.0, lambda p: SKIPPED)], bar=False, state=state)
    assert set(state.actual_s) == {"measure"} and state.elapsed_s > 0


@pytest.fixture
def job(tmp_path):
    comp = make_competition(tmp_path / "comp")
    cfg = load_config(write_configs(tmp_path / "configs", comp, tmp_path / "runs"))
    return Job("tiny", {"m1": cfg, "m2": cfg}, cfg, dups=True, shift="stats", vote=VoteOptions())


def test_job_steps_setup_models_vote_report(job, caplog):
    assert [s.name for s in job_steps(job)] == ["duplicates", "train/test shift", "m1", "m2", "vote", "report"]
    assert [s.label for s in job_steps(job)][2] == "train tinyrun"
    assert all(s.estimate is None for s in job_steps(job))  # --budget: nothing is planned
    job.tune = lambda name, cfg: cfg
    assert job_steps(job)[2].label == "tune + train tinyrun"
    job.shift = "off"
    job.paths.root.mkdir(parents=True)
    job.paths.folds.write_text("id,fold\n")
    with caplog.at_level(logging.INFO, logger="ensemble.compete.steps"):
        assert [s.name for s in job_steps(job)] == ["m1", "m2", "vote", "report"]  # folds exist: no duplicates
    assert "exists without dups.csv; duplicates are not searched" in caplog.text
    job.paths.dups.write_text("id\n")
    assert [s.name for s in job_steps(job)][0] == "m1"


def test_steps_priced_from_what_was_measured(job):
    c = Costing(n_train=1000, n_test=200, n_classes=5, decode_s=0.002, hash_s=0.004, stats_s=0.001, embed_rate=100.0,
                cached=(), n_models=3)
    job.costing = c
    est = {s.name: s.estimate for s in job_steps(job) if s.name not in job.cfgs}
    threads = min(2, os.cpu_count())
    assert est["duplicates"] == pytest.approx(0.5 + 1.2 * 1200 * 0.004 / threads)
    cache = 1.1 * 1200 * 0.002 / threads
    assert est["train/test shift"] == pytest.approx(cache + 1200 * (0.001 + 5e-4) + 1.5)
    # priced for the most models the plan may have: stacking's 2K + 1 fits (K for the shift-weighted
    # scores), then the priors' bootstrap
    assert est["vote"] == pytest.approx(3.0 + 11 * 1.5e-5 * 1000 * 5 * 1.5 + 5.4e-6 * 200 * 5 * 200)
    job.shift = "embeddings"
    embed = {s.name: s.estimate for s in job_steps(job)}["train/test shift"]
    assert embed == pytest.approx(est["train/test shift"] + 2.0 + 1.5 * 1200 / 100.0 + 1e-3 * 1200)
    job.shift, job.vote = "off", VoteOptions(bias="on")  # K + 1 fits, each twice
    assert {s.name: s.estimate for s in job_steps(job)}["vote"] == pytest.approx(
        3.0 + 12 * 1.5e-5 * 1000 * 5 * 1.5 + 5.4e-6 * 200 * 5 * 200)
    assert {s.name: s.estimate for s in job_steps(job)}["report"] == pytest.approx(2.0 + 0.5 * 3 + 0.05 * 5)
    job.costing = Costing(1000, 200, 5, 0.002, 0.004, 0.001, 100.0, cached=(24,), n_models=3)
    job.shift = "stats"
    assert {s.name: s.estimate for s in job_steps(job)}["train/test shift"] == pytest.approx(1200 * 1.5e-3 + 1.5)
    job.estimates = {"vote": 7.0}  # a saved plan's estimates win (a resumed --time job measures nothing)
    assert {s.name: s.estimate for s in job_steps(job)}["vote"] == 7.0


def test_a_model_that_would_end_past_the_budget_is_left_out(job, caplog):
    """compete --time: when the first model took twice its estimate, the second (scaled the same way,
    with vote and report after it) would end past the budget: it is left out; the first always trains."""
    from ensemble.compete.timed import _on_time
    entries = [Entry("m1", "a.yaml", [], 24, 0, 2, 100.0, 40, 2), Entry("m2", "a.yaml", [], 24, 0, 2, 100.0, 40, 2)]
    plan = Plan(600.0, 400.0, entries, {}, {"duplicates": 10.0}, {"vote": 50.0})
    state = RunState("10m", 600.0, plan, actual_s={"m1": 200.0}, elapsed_s=380.0)
    ran = []
    steps = {n: _on_time(Step(n, 100.0, lambda p, n=n: ran.append(n)), job, state) for n in ("m1", "m2")}
    steps["m1"].run(None)  # first: trains whatever the clock says
    with caplog.at_level(logging.WARNING, logger="ensemble.compete.timed"):
        steps["m2"].run(None)  # 380 s + 2 x 100 s + 50 s > 600 s
    assert ran == ["m1"] and list(job.cfgs) == ["m1"]  # the vote step reads job.cfgs: m2 is not voted
    assert "warning: m2 is left out: the job runs behind its plan and would end at 10.5 min of 10.0" in caplog.text
    job.cfgs["m2"] = job.cfgs["m1"]
    state.elapsed_s = 340.0  # 340 + 200 + 50 < 600: it trains
    steps["m2"].run(None)
    assert ran == ["m1", "m2"]


def test_the_command_line_completes_compete_yaml_vote_options():
    assert job_vote(VoteOptions(bias="on"), "demo", message="hi") == VoteOptions(bias="on", kaggle="demo", message="hi")
    assert job_vote(VoteOptions(kaggle="slug"), "demo", kaggle="other").kaggle == "other"
    with pytest.raises(ValueError, match=r"^--submit sends the written best submission: compete.yaml's vote: write "
                                         r"must be best or all, got 'none'$"):
        job_vote(VoteOptions(write="none"), "demo", submit=True)
