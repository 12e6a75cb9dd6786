"""`dups` console output on aptos-like data: counts and the 10 largest conflicting groups, not every id."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.data.dups import summary_lines
from ensemble.data.dups_console import conflict_lines


def aptos_like(n_groups: int = 300, seed: int = 0) -> pd.DataFrame:
    """A dups.csv frame: n_groups conflicting groups of 2..41 train images (+ a test image in some), 50 clean."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups + 50):
        size = 41 if g == 123 else int(rng.integers(2, 30))
        conflict = g < n_groups
        labels = [str(i % 3) if conflict else "2" for i in range(size)]
        for i in range(size):
            rows.append({"id": f"img{g:04d}_{i:02d}", "split": "train", "dup_group": f"d{g:05d}", "kind": "near",
                         "distance": int(rng.integers(0, 5)), "labels": "", "conflict": conflict, "label": labels[i],
                         "path": f"/x/img{g:04d}_{i:02d}.png"})
        if g % 7 == 0:
            rows.append({"id": f"test{g:04d}", "split": "test", "dup_group": f"d{g:05d}", "kind": "near", "distance": 3,
                         "labels": "", "conflict": conflict, "label": "", "path": f"/x/test{g:04d}.png"})
    return pd.DataFrame(rows)


def test_counts_and_ten_largest_conflicting_groups():
    df = aptos_like()
    lines = conflict_lines(df, "runs/aptos")
    n_train = int(((df["split"] == "train") & df["conflict"]).sum())
    assert lines[0] == (f"  300 groups with conflicting labels ({n_train} train images); the 10 largest (all in "
                        f"runs/aptos/dups.csv (conflict=True), dups.json and the report):")
    assert len(lines) == 1 + 10 + 1 and lines[-1] == "    ... and 290 smaller conflicting groups"
    assert lines[1].startswith("    d00123: 41 images, labels 0|1|2, min distance ")
    sizes = df[df["conflict"]].groupby("dup_group").size()
    printed = [int(s.split(": ")[1].split()[0]) for s in lines[1:11]]
    assert printed == sorted(sizes, reverse=True)[:10]
    assert all(s.count("=") <= 5 for s in lines[1:11]) and lines[1].endswith(", ... 36 more")
    assert sum(len(s) for s in lines) < 3000  # not thousands of ids


def test_summary_lines_stay_short_and_small_cases_unchanged():
    df = aptos_like()
    s = {"competition": "aptos", "n_train": 3662, "n_test": 1928, "hash": "phash", "threshold": 4, "min_corr": 0.98,
         "hash_seconds": 9.0, "pair_seconds": 0.5, "exact_train_train": 10, "exact_train_test": 2,
         "exact_test_test": 0, "near_train_train": 900, "near_train_test": 40, "near_test_test": 3,
         "rejected_lookalikes": 12, "groups": 350, "rows": len(df), "largest_group": 41, "conflicting_groups": 300,
         "nearest_hist": {"0": 3, ">12": 5}, "unreadable": []}
    lines = summary_lines(s, df)
    assert len(lines) <= 20 and "img0123_40" not in "\n".join(lines)
    one = df[df["dup_group"] == "d00001"]
    small = conflict_lines(one)
    assert len(small) == 2 and small[0].startswith("  1 group with conflicting labels")
    assert conflict_lines(df[~df["conflict"]]) == []
