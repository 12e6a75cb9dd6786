"""`python -m ensemble.vote` end to end on hand-built run directories (no training)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ensemble.artifacts import RunPaths, atomic_write_json, file_hash, probs_frame, write_probs
from ensemble.vote.__main__ import main

CLASSES = ["akiec", "bcc", "mel"]
N_TRAIN, N_TEST, K = 60, 12, 3


def make_competition(root: Path, classes=CLASSES, sample="probs", seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = np.array(classes)[np.arange(N_TRAIN) % len(classes)]
    pd.DataFrame({"image": [f"tr{i:03d}" for i in range(N_TRAIN)], "label": labels}).to_csv(root / "train.csv", index=False)
    ids = [f"te{i:03d}" for i in rng.permutation(N_TEST)]  # sample order is not sorted
    if sample == "probs":
        df = pd.DataFrame({"image": ids, **{c: 1.0 / len(classes) for c in classes}})
    else:
        df = pd.DataFrame({"image": ids, "label": classes[0]})
    df.to_csv(root / "sample_submission.csv", index=False)
    return root


def make_run(runs: Path, comp_root: Path, name: str, strength: float, seed: int, fmt="csv",
             classes=CLASSES, ordinal=False, metric="balanced_accuracy", folds_hash=None, oof_ids=None,
             test_ids=None, shuffle=False):
    rng = np.random.default_rng(seed)
    comp_dir = runs / "tiny"
    comp_dir.mkdir(parents=True, exist_ok=True)
    ids = np.array([f"tr{i:03d}" for i in range(N_TRAIN)])
    folds = (np.arange(N_TRAIN) // 3) % K
    if not (comp_dir / "folds.csv").exists():
        pd.DataFrame({"id": ids, "fold": folds}).to_csv(comp_dir / "folds.csv", index=False)
    y = np.arange(N_TRAIN) % 3
    sample = pd.read_csv(comp_root / "sample_submission.csv", dtype=str)
    tids = sample["image"].to_numpy() if test_ids is None else np.asarray(test_ids)
    if ordinal:
        cols = ["score"]
        oof = (y + rng.normal(0, 1.0 / strength, N_TRAIN))[:, None]
        test = rng.uniform(0, 2, (len(tids), 1))
    else:
        cols = classes
        logits = rng.normal(size=(N_TRAIN, 3))
        logits[np.arange(N_TRAIN), y] += strength
        oof = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        test = rng.dirichlet(np.ones(3), len(tids))
    run_dir = comp_dir / name
    paths = RunPaths(run_dir, fmt)
    oof_frame = probs_frame(ids if oof_ids is None else oof_ids, oof, cols, folds)
    test_frame = probs_frame(tids, test, cols)
    if shuffle:
        oof_frame, test_frame = oof_frame.iloc[::-1], test_frame.iloc[::-1]
    write_probs(paths.oof, oof_frame)
    write_probs(paths.test, test_frame)
    cfg = {"name": name, "competition": {"name": "tiny", "root": str(comp_root), "id_col": "image",
                                         "label_col": "label", "metric": metric,
                                         "task": "ordinal" if ordinal else "classification"}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    atomic_write_json(paths.metrics, {"run": name, "competition": "tiny", "metric": metric, "cv": 0.5,
                                      "classes": list(classes), "task": "ordinal" if ordinal else "classification",
                                      "folds_hash": folds_hash or file_hash(comp_dir / "folds.csv")})
    return run_dir


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    runs = tmp_path / "runs"
    for i, (name, strength) in enumerate([("good", 2.5), ("ok", 1.5), ("weak", 0.5)]):
        make_run(runs, comp, name, strength, seed=i, fmt="parquet" if name == "ok" else "csv")
    return tmp_path, comp, runs


def vote(*args):
    return main(["--competition", "tiny", "--runs-dir", "runs", "--out-dir", "subs", *args])


def test_every_method_writes_a_submission_that_check_accepts(setup, capsys):
    tmp, comp, runs = setup
    assert vote("--weights", "good=2,ok=1", "--bias", "on", "--write", "all") == 0
    out = capsys.readouterr().out
    for name in ["good", "ok", "weak", "mean", "weighted", "geometric", "rank", "majority", "hillclimb",
                 "stacking", "hillclimb+bias", "stacking+bias", "OOF error correlation"]:
        assert name in out
    assert sum(line.startswith("* ") for line in out.splitlines()) == 1 and "nested" in out
    assert "kaggle competitions submit -c tiny -f subs/tiny/" in out
    files = sorted((tmp / "subs" / "tiny").glob("*.csv"))
    assert len(files) == 14
    sample = pd.read_csv(comp / "sample_submission.csv", dtype=str)
    for f in files:
        assert main(["--check", str(f), "--competition", "tiny"]) == 0
        df = pd.read_csv(f, dtype={"image": str})
        assert list(df.columns) == list(sample.columns) and df["image"].tolist() == sample["image"].tolist()
    manifest = json.loads(files[0].with_suffix(".json").read_text())
    assert {r["name"] for r in manifest["runs"]} == {"good", "ok", "weak"}
    assert manifest["runs"][0]["test"]["sha256"] == file_hash(runs / "tiny" / "good" / "test.csv")
    assert set(manifest) >= {"method", "weights", "cv", "versions", "folds_hash", "submission", "created_utc"}
    stem = files[0].stem.split("-cv")
    assert stem[0] == manifest["method"] and stem[1].startswith(f"{manifest['cv']['score']:.4f}-")


def test_default_writes_the_best_and_hillclimb_weights(setup, capsys):
    tmp, _, _ = setup
    assert vote("--method", "hillclimb,mean", "--exclude", "weak") == 0
    out = capsys.readouterr().out
    assert "weights" in out and "weak" not in out.split("OOF error")[0]
    assert len(list((tmp / "subs" / "tiny").glob("*.csv"))) == 1


def test_reordered_rows_are_aligned_by_id(setup, capsys):
    tmp, comp, runs = setup
    make_run(runs, comp, "shuffled", 2.0, seed=9, shuffle=True)
    assert vote("--method", "mean") == 0
    assert "4 runs" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    ({"classes": ["akiec", "mel", "bcc"]},
     "run 'x': classes ['akiec', 'mel', 'bcc'] differ from run 'good' ['akiec', 'bcc', 'mel'] "
     "(same classes, another order)"),
    ({"folds_hash": "f" * 64},
     "run 'x': folds_hash ffffffffffff differs from run 'good' ({h}): trained on another folds.csv"),
    ({"metric": "accuracy"}, "run 'x': metric 'accuracy' differs from run 'good' ('balanced_accuracy')"),
    ({"oof_ids": [f"tr{i:03d}" for i in range(N_TRAIN - 2)] + ["zz1", "zz2"]},
     "run 'x': OOF ids differ from run 'good': 2 missing (e.g. 'tr058', 'tr059'), 2 extra (e.g. 'zz1', 'zz2')"),
    ({"oof_ids": [f"tr{i:03d}" for i in range(N_TRAIN - 1)] + ["tr000"]},
     "run 'x': OOF ids differ from run 'good': 1 duplicated (e.g. 'tr000'), 1 missing (e.g. 'tr059')"),
    ({"test_ids": [f"te{i:03d}" for i in range(N_TEST - 1)]},
     "run 'x': test ids differ from sample_submission.csv: 1 missing (e.g. '{last}')"),
    ({"ordinal": True}, "run 'x' stores ordinal scores but run 'good' stores class probabilities"),
])
def test_mismatches_are_one_clear_error(setup, capsys, change, message):
    tmp, comp, runs = setup
    if "test_ids" in change:
        change = {"test_ids": [i for i in pd.read_csv(comp / "sample_submission.csv")["image"] if i != "te011"]}
    make_run(runs, comp, "x", 1.0, seed=5, **change)
    assert vote("--method", "mean") == 2
    err = capsys.readouterr().err.strip()
    h = file_hash(runs / "tiny" / "folds.csv")[:12]
    assert err == "error: " + message.format(h=h, last="te011")


def test_folds_csv_changed_after_training(setup, capsys):
    tmp, comp, runs = setup
    (runs / "tiny" / "folds.csv").write_text("id,fold\n")
    assert vote() == 2
    assert "does not match the current runs/tiny/folds.csv" in capsys.readouterr().err


def test_bad_arguments(setup, capsys):
    assert vote("--method", "avg") == 2
    assert "unknown vote method 'avg'; available: mean, weighted" in capsys.readouterr().err
    assert vote("--method", "weighted") == 2
    assert capsys.readouterr().err.strip() == "error: method 'weighted' needs --weights"
    assert vote("--method", "weighted", "--weights", "1,2") == 2
    assert "--weights: expected 3 weights (one per run), got 2 (good, ok, weak)" in capsys.readouterr().err
    assert vote("--method", "weighted", "--weights", "good=1,bad=2") == 2
    assert "--weights: unknown run 'bad'; runs: good, ok, weak" in capsys.readouterr().err
    assert vote("--runs", "nope*") == 2
    assert "--runs 'nope*' matched no run" in capsys.readouterr().err


def test_runs_by_name_glob_and_path(setup, capsys):
    assert vote("--runs", "g*", "runs/tiny/weak", "--method", "mean", "--write", "none") == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "good" in out and "weak" in out and " ok " not in out


def test_ordinal_runs_vote_with_thresholds_into_label_submission(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data", classes=["0", "1", "2"], sample="label")
    for i, s in enumerate([2.0, 1.0]):
        make_run(tmp_path / "runs", comp, f"r{i}", s, seed=i, classes=["0", "1", "2"], ordinal=True, metric="qwk")
    assert vote("--write", "all") == 0
    out = capsys.readouterr().out
    assert "mean+thr" in out and "hillclimb+thr" in out and "skipped for ordinal runs: geometric, rank" in out
    files = sorted((tmp_path / "subs" / "tiny").glob("*.csv"))
    assert len(files) == 4  # mean and hillclimb (weighted: no --weights), each plain and +thr
    for f in files:
        assert main(["--check", str(f), "--competition", "tiny"]) == 0
        assert set(pd.read_csv(f, dtype=str)["label"]) <= {"0", "1", "2"}
    assert vote("--method", "rank") == 2
    assert "method 'rank' does not support ordinal (score) runs; use one of: mean, weighted, hillclimb" \
        in capsys.readouterr().err


def test_check_reports_reasons_and_works_with_sample_only(setup, capsys):
    tmp, comp, _ = setup
    bad = pd.read_csv(comp / "sample_submission.csv", dtype={"image": str})
    bad.loc[0, "mel"] = 1.5
    bad = bad.iloc[1:]
    bad.to_csv(tmp / "bad.csv", index=False)
    assert main(["--check", "bad.csv", "--sample", str(comp / "sample_submission.csv")]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "1 ids of sample_submission.csv are missing" in out
    assert main(["--check", str(comp / "sample_submission.csv"), "--sample", str(comp / "sample_submission.csv")]) == 0
    assert main(["--check", "bad.csv", "--competition", "nothere"]) == 2
    assert "--check needs --sample PATH or runs under runs/nothere" in capsys.readouterr().err


def test_module_entry_point(setup):
    tmp, comp, _ = setup
    r = subprocess.run([sys.executable, "-m", "ensemble.vote", "--check", str(comp / "sample_submission.csv"),
                        "--competition", "tiny"], capture_output=True, text=True, cwd=tmp,
                       env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "OK (12 rows, format probs" in r.stdout
