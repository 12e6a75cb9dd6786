"""What `python -m ensemble.dups` says: the summary lines, and whether an existing folds.csv fits."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ensemble.artifacts.paths import CompetitionPaths
from ensemble.data.dups_geometry import GEO_MIN_SIDE


def folds_note(folds_file: Path, dups: pd.DataFrame) -> str | None:
    """A line about an existing folds.csv: does it keep every duplicate group in one fold?"""
    if not folds_file.exists():
        return None
    folds = pd.read_csv(folds_file, dtype={"id": str})
    if not {"id", "fold"} <= set(folds.columns):
        return f"warning: {folds_file} has no id/fold columns; delete it to re-split"
    tr = dups[dups["split"] == "train"].merge(folds[["id", "fold"]], on="id", how="left")
    split = int((tr.groupby("dup_group")["fold"].nunique() > 1).sum())
    if split == 0:
        return f"note: {folds_file} predates this dups.csv but already keeps every duplicate group in one fold"
    return (f"warning: {folds_file} predates {CompetitionPaths(folds_file.parent).dups} and splits {split} duplicate "
            f"groups across folds; folds.csv is written once, so delete it (and the runs made from it) "
            f"for duplicate-aware folds to take effect")



def summary_lines(s: dict, df: pd.DataFrame, out_dir: Path | None = None) -> list[str]:
    from ensemble.data.dups_console import conflict_lines
    out = [f"{s['competition']}: {s['n_train']} train + {s['n_test']} test images, {s['hash']} distance <= "
           f"{s['threshold']} and thumbnail corr >= {s['min_corr']}; hashed in {s['hash_seconds']:.1f} s, "
           f"pairs in {s['pair_seconds']:.2f} s",
           f"  exact pairs: train-train {s['exact_train_train']}, train-test {s['exact_train_test']}, "
           f"test-test {s['exact_test_test']}",
           f"  near pairs (distance 1..{s['threshold']}): train-train {s['near_train_train']}, "
           f"train-test {s['near_train_test']}, test-test {s['near_test_test']}; "
           f"{s['rejected_lookalikes']} look-alike candidates rejected (corr < {s['min_corr']})",
           *([f"  {s['rejected_detail']} more rejected by detail corr < {s['min_detail']}"
              + (f" or embedding cosine < {s['min_cos']}" if s.get("embedded") else "")
              + f"; {s['chain_refused']} confirmed pairs not chained (a group's members all confirm each other)"]
             if "rejected_detail" in s else []),
           *([f"  {s['rejected_geometry']} more rejected by geometry (< {s['min_inliers']} keypoints on one RANSAC "
              f"homography or < {s['min_inlier_ratio']:.0%} of them)"
              + (f"; {s['geometry_unjudged']} left to the correlations (images under {GEO_MIN_SIDE} px or with < "
                 f"{s['min_inliers']} keypoints)" if s.get("geometry_unjudged") else "")]
             if s.get("min_inliers") or s.get("min_inlier_ratio") else []),
           f"  {s['groups']} groups ({s['rows']} images, largest {s['largest_group']}), "
           f"{s['conflicting_groups']} with conflicting labels",
           "  nearest-neighbour distance histogram: " + " ".join(f"{k}:{v}" for k, v in s["nearest_hist"].items())]
    if s["rejected_lookalikes"] > s["n_train"] + s["n_test"]:
        out.append(f"  note: {s['hash']} at distance <= {s['threshold']} matched {s['rejected_lookalikes']} pairs of "
                   f"different images: it barely separates these images (try --hash phash or a lower --threshold)")
    if s["unreadable"]:
        out.append(f"  warning: {len(s['unreadable'])} unreadable images (not hashed): "
                   + ", ".join(Path(p).name for p in list(s["unreadable"])[:10]))
    out += conflict_lines(df, out_dir)  # counts + the 10 largest groups (data/dups_console.py)
    return out
