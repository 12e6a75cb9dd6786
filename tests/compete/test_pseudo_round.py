"""compete's pseudo-label round (compete/pseudo.py): thresholds, pseudo.csv, the second round, resume."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import log_lines, make_competition, write_configs
from ensemble.artifacts import atomic_write_json, file_hash, probs_frame, read_probs, write_probs
from ensemble.compete.spec import PseudoSpec
from ensemble.compete.steps import Job, final_steps, run_steps
from ensemble.config import dump_config, load_config
from ensemble.data.competition import load_competition
from ensemble.train.targets import read_extra_rows
from ensemble.vote.options import VoteOptions

CLASSES = ["cat", "dog", "fox"]


def _fake_run(cfg_path, name: str, oof: np.ndarray, test: np.ndarray):
    """A finished run of the tiny competition with the given OOF (24, 3) and test (6, 3) probabilities."""
    cfg = load_config(cfg_path, [f"name={name}"])
    comp = load_competition(cfg.competition)
    cfg.competition_dir.mkdir(parents=True, exist_ok=True)
    folds = cfg.competition_dir / "folds.csv"
    ids = comp.train["id"].astype(str).to_numpy()
    if not folds.exists():
        pd.DataFrame({"id": ids, "fold": np.arange(len(ids)) % 2}).to_csv(folds, index=False)
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "config.yaml").write_text(dump_config(cfg))
    write_probs(cfg.run_dir / "oof.csv", probs_frame(ids, oof, CLASSES, np.arange(len(ids)) % 2))
    write_probs(cfg.run_dir / "test.csv", probs_frame(comp.test["id"].astype(str).to_numpy(), test, CLASSES))
    atomic_write_json(cfg.run_dir / "metrics.json", {"run": name, "competition": "tiny", "metric": "accuracy",
                                                     "cv": 0.5, "classes": CLASSES, "folds_hash": file_hash(folds)})
    return cfg


@pytest.fixture
def tiny_job(tmp_path, monkeypatch):
    """(cfg path, a job factory) in a tiny competition: 8 rows per class, test t000..t005 (t000, t003: cat-like)."""
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "comp")
    cfg_path = write_configs(tmp_path / "configs", comp, tmp_path / "runs")

    def job(cfg, pseudo: PseudoSpec | None = PseudoSpec()) -> Job:
        return Job("tiny", {"m": cfg}, cfg, dups=False, shift="off", vote=VoteOptions(methods="mean"), pseudo=pseudo)
    return cfg_path, job


def _predictions(rng, cat_right: bool):
    """OOF: every cat row predicted cat at 0.9 (right) or, with cat_right False, 3 of 8 of them called dog;
    dog and fox rows split between dog and fox at 0.6. Test: t000/t003 cat at 0.92, the rest dog/fox at 0.7."""
    y = np.repeat(np.arange(3), 8)
    oof = np.full((24, 3), 0.05)
    oof[:8] = [0.9, 0.05, 0.05]
    for i in range(8, 24):
        oof[i] = [0.1, 0.6, 0.3] if rng.random() < 0.5 else [0.1, 0.3, 0.6]
    if not cat_right:
        oof[[0, 2, 4]] = [0.3, 0.6, 0.1]
        oof[8:11] = [0.9, 0.05, 0.05]  # dogs called cat as confidently as the cats
    test = np.array([[0.92, 0.04, 0.04], [0.15, 0.7, 0.15], [0.15, 0.15, 0.7]] * 2)
    return y, oof, test


def test_thresholds_meet_the_oof_precision_and_pseudo_csv_is_extra_rows(tiny_job, tmp_path):
    cfg_path, make_job = tiny_job
    y, oof, test = _predictions(np.random.default_rng(0), cat_right=True)
    job = make_job(_fake_run(cfg_path, "m", oof, test), PseudoSpec(labels="soft", weight=0.25))
    steps = final_steps(job)
    assert [s.name for s in steps] == ["vote", "pseudo-labels", "m-pseudo", "vote again", "report"]
    with log_lines() as lines:
        run_steps(steps[:2], bar=False)
    assert "pseudo-labels: cat: threshold 0.900, OOF precision 1.000 (8 OOF rows), 2 test rows" in lines
    assert any(re.fullmatch(r"pseudo-labels: dog: OOF precision never reaches 0.95 \(best 0\.\d+ at threshold "
                            r"0\.600\); no test rows", line) for line in lines), lines
    path = tmp_path / "runs" / "tiny" / "pseudo.csv"
    assert f"pseudo-labels: 2 of 6 test rows (soft labels, weight 0.25) -> {path}" in lines
    rows = pd.read_csv(path, dtype={"id": str})
    assert rows["id"].tolist() == ["t000", "t003"] and rows["weight"].tolist() == [0.25, 0.25]
    np.testing.assert_allclose(rows[CLASSES].to_numpy(), [[0.92, 0.04, 0.04]] * 2, rtol=1e-6)
    comp = load_competition(job.setup_cfg.competition)
    extra = read_extra_rows(path, CLASSES, comp.train["id"].tolist(), comp.train["path"].tolist())  # train's check
    assert extra.paths == [str(p) for p in comp.test["path"][:4:3]]
    # the thresholds hold on the chosen ensemble's held-out OOF rows as the vote wrote them
    held = read_probs(job.paths.vote_oof(job.result.vote.chosen[0].stem))
    for t in job.result.pseudo.thresholds:
        if t.threshold is not None:
            p = held[CLASSES].to_numpy()
            c = CLASSES.index(t.name)
            kept = (p.argmax(1) == c) & (p[:, c] >= t.threshold)
            assert kept.sum() == t.oof_rows and (y[kept] == c).mean() >= 0.95
    before = path.stat().st_mtime_ns
    with log_lines() as lines:  # the same vote again: the file is kept as it is (a second round may have begun)
        run_steps(final_steps(job)[:2], bar=False)
    assert f"pseudo-labels: 2 of 6 test rows (soft labels, weight 0.25) unchanged in {path}" in lines
    assert path.stat().st_mtime_ns == before
    job.pseudo = PseudoSpec(labels="hard", weight=2.0)
    run_steps(final_steps(job)[:2], bar=False)
    hard = pd.read_csv(path, dtype={"id": str})
    assert hard[CLASSES].to_numpy().tolist() == [[1.0, 0.0, 0.0]] * 2 and hard["weight"].tolist() == [2.0, 2.0]


def test_when_nothing_passes_the_round_is_skipped_with_one_line(tiny_job, tmp_path):
    cfg_path, make_job = tiny_job
    _, oof, test = _predictions(np.random.default_rng(1), cat_right=False)
    job = make_job(_fake_run(cfg_path, "m", oof, test))
    with log_lines() as lines:
        run_steps(final_steps(job)[:-1], bar=False)  # vote, pseudo-labels, m-pseudo, vote again
    assert [line for line in lines if "stands" in line] == [
        "pseudo-labels: no pseudo-labels (no class reaches OOF precision 0.95); the second round is skipped and the "
        "first vote stands"]
    assert sum(line.startswith("== vote") for line in lines) == 1  # no second vote
    comp_dir = tmp_path / "runs" / "tiny"
    assert not (comp_dir / "pseudo.csv").exists() and not (comp_dir / "m-pseudo").exists()
    assert job.result.vote is job.result.first_vote and list(job.cfgs) == ["m"]


def _record_folds(monkeypatch):
    """Every FoldTrainer's run folder, fold, inputs, and the images each validation prediction read."""
    from ensemble.train.fold import FoldTrainer
    seen, real_init, real_predict = [], FoldTrainer.__init__, FoldTrainer._predict

    def init(self, plan, k, model, data, prec, fold_dir, *a, **kw):
        seen.append({"run": fold_dir.parent.name, "k": k, "data": data, "predicted": []})
        real_init(self, plan, k, model, data, prec, fold_dir, *a, **kw)

    def predict(self, net, images, idx, tf, **kw):
        seen[-1]["predicted"].append((images is self.data.train_images, images is self.data.extra_images))
        return real_predict(self, net, images, idx, tf, **kw)
    monkeypatch.setattr(FoldTrainer, "__init__", init)
    monkeypatch.setattr(FoldTrainer, "_predict", predict)
    return seen


def test_the_second_round_trains_pseudo_rows_in_training_parts_only_and_resumes(tmp_path, monkeypatch, capsys):
    """compete --budget with `pseudo:` on a tiny competition: the first round, pseudo.csv, <model>-pseudo with the
    rows in every fold's training part and never in a validation part, a second vote; run again: nothing retrained."""
    from ensemble.compete.__main__ import main
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "comp", n_per_class=8, n_test=9)
    cfg = write_configs(tmp_path / "configs" / "tiny", comp, tmp_path / "runs", backbone="mobilenetv3_small_050")
    (cfg.parent / "compete.yaml").write_text(
        "budgets:\n  b:\n    models: [model.yaml]\n    set: ['stages=[{epochs: 2, train: all}]', output.plots=false]\n"
        "    dups: false\n    shift: off\n    vote: {methods: mean}\n"
        "    pseudo: {precision: 0.01, weight: 0.5}\n")  # any class the model predicts at all: rows to train on
    seen = _record_folds(monkeypatch)
    args = ["--competition", "tiny", "--budget", "b", "--configs-dir", "configs"]
    assert main(args) == 0
    out = capsys.readouterr().out
    pseudo = pd.read_csv(tmp_path / "runs" / "tiny" / "pseudo.csv", dtype={"id": str})
    assert len(pseudo) > 0 and set(pseudo["id"]) <= {f"t{i:03d}" for i in range(9)}
    assert [(s["run"], s["k"]) for s in seen] == [("model-b", 0), ("model-b", 1), ("model-b-pseudo", 0),
                                                  ("model-b-pseudo", 1)]
    folds = pd.read_csv(tmp_path / "runs" / "tiny" / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    ids = load_competition(load_config(cfg).competition).train["id"].astype(str).to_numpy()
    test_ids = load_competition(load_config(cfg).competition).test["id"].astype(str).tolist()
    for s in seen:
        d, k = s["data"], s["k"]
        assert (folds.loc[ids[d.val_idx]] == k).all() and (folds.loc[ids[d.train_idx]] != k).all()
        assert len(d.val_idx) + len(d.train_idx) == len(ids)  # the validation part: the fold's own rows, all of them
        assert not any(extra for _, extra in s["predicted"])  # no validation prediction reads an extra row
        if s["run"] == "model-b":
            assert d.extra_images is None
            continue
        # the pseudo rows: the test images themselves, in the training part's extra rows and nowhere else
        at = [test_ids.index(i) for i in pseudo["id"]]
        assert np.array_equal(d.extra_images, d.test_images[at])
        np.testing.assert_allclose(d.extra_targets, pseudo[CLASSES].to_numpy() * 0.5, atol=1e-6)
        train_targets = d.train_targets()
        assert len(train_targets) == len(d.train_idx) + len(pseudo)
        assert not any((d.train_images[d.val_idx] == img).all((1, 2, 3)).any() for img in d.extra_images)
    oof = read_probs(tmp_path / "runs" / "tiny" / "model-b-pseudo" / "oof.csv")
    assert sorted(oof["id"]) == sorted(ids)  # CV on the labelled rows only
    metrics = json.loads((tmp_path / "runs" / "tiny" / "model-b-pseudo" / "metrics.json").read_text())
    assert metrics["extra_rows"]["rows"] == len(pseudo)
    assert metrics["extra_rows"]["sha256"] == file_hash(tmp_path / "runs" / "tiny" / "pseudo.csv")
    assert re.search(r"vote again: CV \d\.\d{4} \(mean of both rounds\) vs \d\.\d{4} \(mean, first vote\)", out), out
    subs = sorted((tmp_path / "submissions" / "tiny").glob("*.json"))
    assert len(subs) == 2 and sorted(r["name"] for r in json.loads(subs[-1].read_text())["runs"]) == [
        "model-b", "model-b-pseudo"]

    seen.clear()
    assert main(args) == 0  # run again: both rounds resume, nothing is trained
    out = capsys.readouterr().out
    assert out.count("already finished, skipped") == 4 and "stage 1 epoch" not in out and seen == []
    assert f"unchanged in {tmp_path / 'runs' / 'tiny' / 'pseudo.csv'}" in out


def test_time_plans_the_second_round_into_the_budget_or_says_it_does_not_fit(tmp_path, monkeypatch, capsys):
    """compete --time with `pseudo:` (and twins: required): the plan prices <model>-pseudo, the labelling and the
    second vote; a budget without room for them plans the first round alone and says so in one line."""
    from ensemble.compete import timed
    from ensemble.compete.__main__ import main
    from ensemble.compete.measure import ImageRates
    from ensemble.compete.plandata import Speed
    comp = make_competition(tmp_path / "comp", n_per_class=20, n_test=30)
    cfg = write_configs(tmp_path / "configs" / "tiny", comp, tmp_path / "runs")
    (cfg.parent / "compete.yaml").write_text(
        "time:\n  candidates: [{cfg: model.yaml, sizes: [24]}, {cfg: model.yaml, name: twin, twin: model}]\n"
        "  shift: off\n  dups: false\n  min_epochs: 2\n  target_epochs: 3\n  max_models: 1\n  twins: required\n"
        "  pseudo: {models: [model], max_fraction: 0.5}\n")
    monkeypatch.setattr(timed, "measure_candidates", lambda cands, cfgs, n, quick=False:
                        ({c.label: Speed(24, 4.0, 20.0) for c in cands}, 0.1))
    monkeypatch.setattr(timed, "measure_images", lambda paths, size: ImageRates(0.001, 0.001, 0.001))
    args = ["--competition", "tiny", "--configs-dir", str(tmp_path / "configs"), "--plan-only"]
    assert main([*args, "--time", "20m"]) == 0
    out = capsys.readouterr().out
    rows = {r[0]: r for r in (re.split(r" {2,}", line) for line in out.split("== plan for 20m")[1].splitlines()[2:])}
    assert {"model", "twin", "model-pseudo", "pseudo-labels", "vote", "vote again"} <= set(rows), out
    assert rows["model-pseudo"][1:4] == rows["model"][1:4]  # same size, folds and epochs ...
    assert float(rows["model-pseudo"][-1]) > float(rows["model"][-1])  # ... on 15 more rows per fold
    assert "does not fit" not in out
    assert main([*args, "--time", "150s"]) == 0
    out = capsys.readouterr().out
    assert ("pseudo-labels: the second round (retraining model on pseudo-labelled test rows, then a second vote) "
            "does not fit in 150s beside the first; it is skipped") in out
    assert "model-pseudo" not in out.split("== plan for 150s")[1] and "twin" in out  # twins are kept first
    assert not (tmp_path / "runs").exists()


def test_a_second_round_model_that_would_end_past_the_budget_is_left_out(tiny_job, caplog):
    from ensemble.compete.steps import RunState, Step
    from ensemble.compete.timed import _on_time
    from ensemble.compete.plandata import Entry, Plan
    cfg_path, make_job = tiny_job
    job = make_job(load_config(cfg_path))
    job.pseudo_file = cfg_path  # rows were written
    entries = [Entry("m", "a.yaml", [], 24, 0, 2, 100.0, 40, 2)]
    plan = Plan(600.0, 400.0, entries, {}, {}, {"vote": 50.0, "report": 10.0},
                rerun=[Entry("m-pseudo", "a.yaml", [], 24, 0, 2, 120.0, 50, 2)], rerun_steps={"vote again": 60.0})
    state = RunState("10m", 600.0, plan, actual_s={"m": 150.0}, elapsed_s=300.0)  # 1.5x slower than planned
    ran = []
    step = _on_time(Step("m-pseudo", 120.0, lambda p: ran.append("m-pseudo")), job, state, rerun=True)
    with caplog.at_level("WARNING", logger="ensemble.compete.timed"):
        step.run(None)  # 300 s + 1.5 x 120 s + the second vote and the report: 550 s < 600 s
        state.elapsed_s = 400.0
        step.run(None)  # 650 s > 600 s
    assert ran == ["m-pseudo"] and list(job.cfgs) == ["m"]
    assert "warning: m-pseudo is left out: the job runs behind its plan and would end at 10.8 min of 10.0" \
        in caplog.text
