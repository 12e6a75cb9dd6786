"""Distillation: the teacher replays a submission's recipe on OOF files; the student trains on its soft labels."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_competition, write_configs
from ensemble.artifacts import RunPaths, atomic_write_json, file_hash, write_probs
from ensemble.artifacts.io import probs_frame
from ensemble.config import dump_config, load_config
from ensemble.data.competition import load_competition
from ensemble.distill import DistillError, load_teacher
from ensemble.distill.__main__ import main
from ensemble.distill.teacher import newest_submission, recipe
from ensemble.train import fold as fold_mod
from ensemble.train.setup import competition_folds, write_labels
from ensemble.vote.cv import Spec
from ensemble.vote.options import VoteOptions
from ensemble.vote.voter import vote_runs

CLASSES = ["cat", "dog", "fox"]


def _fake_run(cfg_path, name: str, strength: float, seed: int):
    """A finished run of the tiny competition without training: the real resolved config, OOF
    probabilities on the competition's folds that know the label by `strength`, random test rows."""
    cfg = load_config(cfg_path, [f"name={name}", "train.time_limit=300"])  # as a --time plan sets it
    comp = load_competition(cfg.competition)
    folds, folds_hash = competition_folds(comp, cfg.competition_dir, cfg.folds.n, cfg.folds.seed)
    write_labels(comp, cfg.competition_dir)
    rng = np.random.default_rng(seed)
    y = comp.train["y"].to_numpy()
    logits = rng.normal(size=(len(y), 3))
    logits[np.arange(len(y)), y] += strength
    oof = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    paths = RunPaths(cfg.run_dir)
    cfg.run_dir.mkdir(parents=True)
    write_probs(paths.oof, probs_frame(comp.train["id"].to_numpy(), oof, CLASSES, folds))
    write_probs(paths.test, probs_frame(comp.test["id"].to_numpy(), rng.dirichlet(np.ones(3), len(comp.test)), CLASSES))
    paths.config.write_text(dump_config(cfg))
    acc = [float((oof[folds == k].argmax(1) == y[folds == k]).mean()) for k in (0, 1)]
    atomic_write_json(paths.metrics, {"run": name, "competition": "tiny", "metric": "accuracy", "cv": float(np.mean(acc)),
                                      "classes": CLASSES, "task": "classification", "folds_hash": folds_hash,
                                      "gflops": 0.05 if name.endswith("a") else 0.1})
    return cfg.run_dir


@pytest.fixture
def ensemble_of_two(tiny, tmp_path):
    cfg_path, comp, runs = tiny
    dirs = [_fake_run(cfg_path, "resnet18-a", 1.5, 0), _fake_run(cfg_path, "resnet18-b", 2.0, 1)]
    vote = vote_runs(dirs, VoteOptions(methods="hillclimb", bias="on", out_dir=str(tmp_path / "subs"), write="all"))
    best = next(e for e in vote.ensembles if e.name == "hillclimb+bias")  # the recipe that fits the most
    manifest = next(p for p, _ in vote.written if p.name.startswith("hillclimb+bias")).with_suffix(".json")
    return cfg_path, comp, runs, dirs, (best, manifest)


def test_recipe_of_a_manifest():
    assert recipe({"method": "hillclimb+bias", "options": {"max_iter": 100}}, ["a"]) == Spec(
        "hillclimb", {"max_iter": 100}, tune=True)
    assert recipe({"method": "majority+grade+thr", "options": {}}, ["a"]) == Spec("majority", {}, True, True)
    w = recipe({"method": "weighted", "options": {}, "weights": {"b": 0.25, "a": 0.75}}, ["a", "b"])
    assert w.method == "weighted" and not w.tune and w.options["weights"].tolist() == [0.75, 0.25]


def test_teacher_replays_the_vote_and_refuses_changed_runs(ensemble_of_two):
    _, _, _, dirs, (best, manifest) = ensemble_of_two
    teacher = load_teacher(manifest)
    assert teacher.name == "hillclimb+bias"
    assert teacher.cv == pytest.approx(best.cv.score, abs=1e-9)  # the nested CV of the submission
    assert teacher.cv_folds == pytest.approx(best.cv.folds, abs=1e-9)
    np.testing.assert_allclose(teacher.oof.sum(1), 1.0, atol=1e-5)
    assert teacher.oof.shape == (24, 3) and list(teacher.runs.oof_ids) == pd.read_csv(
        RunPaths(dirs[0]).oof, dtype={"id": str})["id"].tolist()
    oof = RunPaths(dirs[1]).oof
    oof.write_text(oof.read_text().replace("0.", "0.0", 1))
    with pytest.raises(DistillError, match=r"run 'resnet18-b': .*oof.csv changed since the submission was made"):
        load_teacher(manifest)


def test_distill_trains_a_student_on_the_ensembles_soft_labels(ensemble_of_two, tmp_path, monkeypatch, capsys):
    cfg_path, comp, runs, dirs, (_, manifest) = ensemble_of_two
    pseudo = runs / "tiny" / "pseudo.csv"  # found by default
    pd.DataFrame([{"id": f"t{i:03d}", "path": str(comp / "test" / f"t{i:03d}.jpg"),
                   **dict(zip(CLASSES, np.roll([0.9, 0.05, 0.05], i))), "weight": 0.5} for i in range(3)]).to_csv(
        pseudo, index=False)
    real, tables = fold_mod.train_one_epoch, []

    def record(net, loader, loss_fn, *a, **kw):
        calls = []
        out = real(net, loader, lambda logits, t: (calls.append(t.detach().clone()), loss_fn(logits, t))[1], *a, **kw)
        tables.append((kw["targets"].cpu().numpy(), np.concatenate([c.numpy() for c in calls])))
        return out

    monkeypatch.setattr(fold_mod, "train_one_epoch", record)
    assert main(["--competition", "tiny", "--submission", str(manifest), "--alpha", "0.75",
                 "--set", "output.plots=false"]) == 0
    out = capsys.readouterr().out
    student = runs / "tiny" / "resnet18-a-distill"  # the cheaper run of the two (GFLOPs)
    teacher_file = runs / "tiny" / "distill" / f"teacher-{manifest.stem}.csv"
    teacher = pd.read_csv(teacher_file, dtype={"id": str}).set_index("id")
    m = json.loads((student / "metrics.json").read_text())
    assert load_config(student / "config.yaml").train.time_limit is None  # the teacher's plan does not bind it
    assert m["soft_targets"] == {"path": str(teacher_file), "sha256": file_hash(teacher_file), "alpha": 0.75}
    assert m["extra_rows"]["rows"] == 3 and np.array(m["confusion"]).sum() == 24  # CV on the 24 own rows
    # every epoch's targets: 0.75 x the teacher + 0.25 x one-hot for the fold's 12 rows, then the 3 pseudo rows
    folds = pd.read_csv(runs / "tiny" / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    labels = pd.read_csv(comp / "train.csv", dtype=str).set_index("id")["label"].map(CLASSES.index)
    assert len(tables) == 4  # 2 folds x (head epoch + fine-tuning epoch)
    for k, (table, seen) in zip([0, 0, 1, 1], tables):
        ids = folds.index[folds != k]
        want = 0.75 * teacher.loc[ids, CLASSES].to_numpy() + 0.25 * np.eye(3)[labels.loc[ids].to_numpy()]
        np.testing.assert_allclose(table[:12], want, atol=1e-5)
        np.testing.assert_allclose(table[12:].sum(1), 0.5, atol=1e-6)
        assert len(seen) == 15 and not np.isin(seen, [0.0, 1.0]).all(1).any()  # the loss gets soft rows only
    for line in ("teacher: hillclimb+bias of 2 run(s)", "ensemble CV accuracy", "student: ", "vs the ensemble",
                 "3 pseudo-labelled rows", "predict cost per test image", "student resnet18-a-distill",
                 "ensemble (2 runs)"):
        assert line in out, line
    # a normal run: vote takes it beside the ensemble's runs
    again = vote_runs([*dirs, student], VoteOptions(methods="mean", write="none"))
    assert again.runs.names == ["resnet18-a", "resnet18-b", "resnet18-a-distill"]


def test_the_newest_manifest_teaches_by_default(tmp_path):
    for name, stamp in (("b", "20261202-000000"), ("a", "20261203-000000"), ("c", "20261201-000000")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"created_utc": stamp}))
    (tmp_path / "broken.json").write_text("{")
    assert newest_submission(tmp_path).name == "a.json"
    with pytest.raises(DistillError, match=r"no submission manifest \(\*.json\) in .*empty; run python -m ensemble.vote"):
        newest_submission(tmp_path / "empty")


def test_distill_refuses_a_student_on_other_folds(ensemble_of_two, tmp_path, capsys):
    cfg_path, comp, runs, dirs, _ = ensemble_of_two
    other = write_configs(tmp_path / "other", comp, tmp_path / "runs_other")
    assert main(["--competition", "tiny", "--submissions-dir", str(tmp_path / "subs"), "--student", str(other)]) == 2
    err = capsys.readouterr().err
    assert "runs_other/tiny/folds.csv: not the folds the ensemble's runs were trained on" in err
    assert not (tmp_path / "runs_other").exists()
