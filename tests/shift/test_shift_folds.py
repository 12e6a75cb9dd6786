"""folds.strategy: test_like — fold 0 holds the most test-like training rows (ensemble.shift)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ensemble.artifacts import atomic_write_csv
from ensemble.config import ConfigError, load_config
from ensemble.data.folds import FoldsError
import ensemble.shift.folds


def weights_csv(comp_dir, ids, p):
    atomic_write_csv(comp_dir / "shift" / "weights.csv", pd.DataFrame(
        {"id": ids, "split": "train", "label": "", "p_test": p, "weight": 1.0, "test_like": False, "path": ""}))


def test_fold_zero_is_the_most_test_like_fifth(tmp_path):
    ids = np.array([f"r{i:02d}" for i in range(50)])
    y = np.arange(50) % 2
    p = np.linspace(0, 1, 50)
    weights_csv(tmp_path, ids, p)
    fold, h = ensemble.shift.folds.test_like_folds(tmp_path, ids, y, 5, 0)
    assert set(np.flatnonzero(fold == 0)) == set(range(40, 50)) and sorted(np.unique(fold)) == [0, 1, 2, 3, 4]
    df = pd.read_csv(tmp_path / "folds.csv")
    assert df["test_like_fold"].sum() == 10
    again, h2 = ensemble.shift.folds.test_like_folds(tmp_path, ids, y, 5, 0)  # written once, then read back
    assert (again == fold).all() and h2 == h


def test_groups_stay_together():
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.4])
    groups = np.array(["a", "a", "b", "c", "d", "e"])
    assert ensemble.shift.folds.test_like_fold(p, 3, groups).tolist() == [True, True, False, False, False, False]


def test_needs_weights_and_three_folds(tmp_path):
    ids, y = np.array(["a", "b", "c"]), np.array([0, 1, 0])
    with pytest.raises(FoldsError, match="folds.strategy test_like needs .*shift/weights.csv: run python -m ensemble.shift"):
        ensemble.shift.folds.test_like_folds(tmp_path, ids, y, 3, 0)
    weights_csv(tmp_path, ids, [0.1, 0.2, 0.3])
    with pytest.raises(FoldsError, match="needs folds.n >= 3"):
        ensemble.shift.folds.test_like_folds(tmp_path, ids, y, 2, 0)


def test_config_strategy(tiny):
    cfg_path, _, _ = tiny
    assert load_config(cfg_path, ["folds.strategy=test_like"]).folds.strategy == "test_like"
    with pytest.raises(ConfigError, match="folds.strategy"):
        load_config(cfg_path, ["folds.strategy=random"])


def test_train_with_test_like_folds_writes_shift_metrics(tiny):
    from ensemble.data.competition import load_competition
    from ensemble.shift.run import run_shift
    from ensemble.train import train
    cfg_path, _, runs = tiny
    cfg = load_config(cfg_path, ["folds.strategy=test_like", "folds.n=3", "stages=[{epochs: 1, train: all}]"])
    run_shift(load_competition(cfg.competition), runs / "tiny", size=24, backbone="none", folds=3, n_boot=10)
    m = train(cfg)
    folds = pd.read_csv(runs / "tiny" / "folds.csv")
    like = pd.read_csv(runs / "tiny" / "shift" / "weights.csv").query("split == 'train'")
    top = like.sort_values("p_test", ascending=False)["id"].head(8)
    assert set(folds.loc[folds["fold"] == 0, "id"]) == set(top)
    assert set(m["shift"]) >= {"weighted_cv", "test_like_cv", "ess", "shift_auc"}
    assert json.loads((runs / "tiny" / "tinyrun" / "metrics.json").read_text())["shift"]["n_test_like"] >= 1
    from ensemble.shift.run import runs_table
    lines = runs_table(load_competition(cfg.competition), runs / "tiny")
    assert "plain vs importance-weighted vs test-like CV" in lines[0]
    assert lines[1].split()[:3] == ["tinyrun", "cv", f"{m['cv']:.4f}"]
    assert f"weighted {m['shift']['weighted_cv']:.4f}" in lines[1]


def test_too_few_rows_left_after_the_test_like_fold_names_the_class(tmp_path):
    ids = np.array([f"r{i:02d}" for i in range(50)])
    y = np.zeros(50, np.int64)
    y[38:46] = 1  # 8 'MEL' rows: enough for 5 folds, but 6 of them are among the 10 most test-like
    weights_csv(tmp_path, ids, np.linspace(0, 1, 50))
    with pytest.raises(FoldsError) as e:
        ensemble.shift.folds.test_like_folds(tmp_path, ids, y, 5, 0, classes=["NV", "MEL"])
    assert str(e.value) == ("folds.strategy test_like: after fold 0 took the most test-like rows, the rest must split "
                            "into folds 1..4, but class 'MEL' has only 2 rows (stratified folds need >= 4 rows per "
                            "class): use folds.n <= 3, or merge class 'MEL' into another class or drop its rows")
    y[:3] = 2
    with pytest.raises(FoldsError, match="^folds.n=5 but class 'BCC' has only 3 rows"):  # too few in the first place
        ensemble.shift.folds.test_like_folds(tmp_path, ids, y, 5, 0, classes=["NV", "MEL", "BCC"])
    assert not (tmp_path / "folds.csv").exists()
