"""What `python -m ensemble.dups` prints about duplicate groups with conflicting labels: the counts and
the 10 largest groups, each with a few of its ids; every group is in dups.csv / dups.json and the
report (aptos-like data has hundreds of such groups and thousands of ids)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

MAX_GROUPS = 10  # conflicting groups printed
MAX_IDS = 5      # ids printed per group


def conflict_lines(df: pd.DataFrame, out_dir: str | Path | None = None, max_groups: int = MAX_GROUPS,
                   max_ids: int = MAX_IDS) -> list[str]:
    """df: the dups.csv frame. -> console lines: a count, then the largest conflicting groups."""
    conf = df[df["conflict"].astype(str).str.lower() == "true"] if len(df) else df
    if conf.empty:
        return []
    sizes = conf.groupby("dup_group").size()
    order = sorted(sizes.index, key=lambda g: (-sizes[g], g))
    train = conf[conf["split"] == "train"]
    n_ids = int((conf["split"] == "train").sum())
    where = f"{Path(out_dir) / 'dups.csv'} (conflict=True)" if out_dir else "dups.csv (conflict=True)"
    out = [f"  {len(order)} group{'s' if len(order) > 1 else ''} with conflicting labels ({n_ids} train images); the "
           f"{min(max_groups, len(order))} largest (all in {where}, dups.json and the report):"]
    for g in order[:max_groups]:
        rows = conf[conf["dup_group"] == g]
        labels = sorted(set(train.loc[train["dup_group"] == g, "label"].astype(str)))
        shown = ", ".join(f"{r.id}={r.label or 'test'}" for r in rows.head(max_ids).itertuples())
        more = f", ... {len(rows) - max_ids} more" if len(rows) > max_ids else ""
        out.append(f"    {g}: {len(rows)} images, labels {'|'.join(labels)}, min distance "
                   f"{rows['distance'].min()}: {shown}{more}")
    if len(order) > max_groups:
        out.append(f"    ... and {len(order) - max_groups} smaller conflicting groups")
    return out
