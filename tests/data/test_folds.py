import numpy as np
import pandas as pd
import pytest

from ensemble.data.folds import FoldsError, assign_folds, ensure_folds, merge_groups, read_folds


def test_stratified_folds_balance_classes():
    y = np.repeat([0, 1, 2], [30, 12, 6])
    f = assign_folds(y, 3, seed=0)
    for k in range(3):
        assert np.bincount(y[f == k]).tolist() == [10, 4, 2]
    assert np.array_equal(f, assign_folds(y, 3, seed=0))


def test_group_folds_keep_groups_together():
    y = np.tile([0, 1], 30)
    groups = np.repeat(np.arange(20), 3)
    f = assign_folds(y, 4, seed=1, groups=groups)
    assert all(len(set(f[groups == g])) == 1 for g in range(20))


def test_merge_groups_is_transitive_union():
    patient = ["a", "a", "b", "c", "d", "e"]
    dups = [None, None, "x", "x", "y", None]   # b~c through a duplicate; a's rows stay together
    g = merge_groups(patient, dups)
    assert g[0] == g[1] and g[2] == g[3] and len(set(g)) == 4
    g = merge_groups(["p1", "p2", "p3"], ["d1", "d1", "d2"], ["q", "r", "r"])
    assert len(set(g)) == 1
    assert merge_groups(None) is None


def test_ensure_folds_writes_once_and_detects_mismatch(tmp_path):
    ids = np.array([f"i{k}" for k in range(12)], dtype=object)
    y = np.tile([0, 1], 6)
    path = tmp_path / "folds.csv"
    f1, h1 = ensure_folds(path, ids, y, 3, 0)
    f2, h2 = ensure_folds(path, ids[::-1], y[::-1], 3, 99)  # reused as written, aligned by id
    assert h1 == h2 and np.array_equal(f2, f1[::-1])
    with pytest.raises(FoldsError, match=r"has 3 folds but folds.n=4; set folds.n=3 or delete"):
        read_folds(path, ids, 4)
    with pytest.raises(FoldsError, match=r"ids do not match train.csv \(1 train ids missing, 12 rows vs 13\)"):
        read_folds(path, np.append(ids, "new"), 3)


def test_too_many_folds_for_rare_class():
    with pytest.raises(FoldsError, match=r"^folds.n=5 but class '1' has only 3 rows \(stratified folds need >= 5 rows per class\): "
                       r"use folds.n <= 3, or merge class '1' into another class or drop its rows$"):
        assign_folds(np.array([0] * 10 + [1] * 3), 5, 0)
