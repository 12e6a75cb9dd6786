"""`python -m ensemble.report --competition NAME`: one static HTML page to read instead of logs.

Writes <out>/index.html (default runs/NAME/report/) with its PNGs in <out>/img/, relative links
only: leaderboard of runs (metrics.json), confusion matrices and learning curves, the duplicate
report (dups.csv / dups.json), each vote method's nested CV score and weights and the
submissions written so far (submissions/NAME/*.json manifests from `ensemble.vote`).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ensemble.report import html
from ensemble.report.ensembles import ensembles, latest_scoreboard
from ensemble.report.failures import failures_section
from ensemble.artifacts import atomic_path, atomic_write_text, file_hash
from ensemble.artifacts.paths import METRICS_JSON, CompetitionPaths, RunPaths
from ensemble.report.shift import shift_section

MAX_GROUPS = 40   # duplicate groups listed per table
MAX_THUMBS = 8    # thumbnails per duplicate group


class Assets:
    """PNG files beside index.html (out/img/): copied or generated, stale ones removed at the end."""

    def __init__(self, out: Path):
        self.dir = out / "img"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names: set[str] = set()

    def _name(self, stem: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60]
        name = f"{safe}-{hashlib.sha1(stem.encode()).hexdigest()[:8]}.png"
        self.names.add(name)
        return name

    def copy(self, src: Path, stem: str) -> str:
        name = self._name(stem)
        with atomic_path(self.dir / name) as tmp:
            shutil.copyfile(src, tmp)
        return f"img/{name}"

    def make(self, stem: str, write: Callable[[Path], None]) -> str | None:
        """write(path) draws a PNG; None when it fails (the page then says so)."""
        name = self._name(stem)
        try:
            write(self.dir / name)
        except Exception:  # a bad figure must not cost the whole report
            self.names.discard(name)
            return None
        return f"img/{name}"

    def cached(self, stem: str) -> str | None:
        """An image drawn by an earlier build under the same stem (a stem names everything it depends
        on, e.g. checkpoint times), kept instead of drawn again; None when there is none."""
        name = self._name(stem)
        if (self.dir / name).is_file():
            return f"img/{name}"
        self.names.discard(name)
        return None

    def prune(self) -> None:
        for p in self.dir.glob("*.png"):
            if p.name not in self.names:
                p.unlink()


# ---------------------------------------------------------------- runs
def read_json_objects(files, what: str) -> tuple[list[tuple[Path, dict]], list[str]]:
    """-> ([(file, parsed JSON object)], notes naming the files that could not be read)."""
    out, notes = [], []
    for f in sorted(files):
        try:
            m = json.loads(f.read_text())
            if not isinstance(m, dict):
                raise ValueError("not a JSON object")
            out.append((f, m))
        except (OSError, ValueError) as e:
            notes.append(f"{f}: unreadable{what} ({str(e).splitlines()[0]}), left out")
    return out, notes


def load_runs(comp_dir: Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Every comp_dir/<run>/metrics.json. -> ([(run dir, metrics)], notes about unreadable ones)."""
    found, notes = read_json_objects(comp_dir.glob(f"*/{METRICS_JSON}"), "")
    return [(f.parent, m) for f, m in found], notes


def run_figures(runs: list[tuple[Path, dict]], assets: Assets) -> str:
    if not runs:
        return html.note("No runs yet.")
    parts = []
    for d, m in runs:
        figs = []
        for kind, title in (("confusion", "confusion matrix (rows = true class, row-normalised)"),
                            ("curves", "learning curves (loss and validation metric per fold)")):
            path = d / f"{kind}.png"
            rel = assets.copy(path, f"{d.name}-{kind}") if path.exists() else _regenerate(kind, d, m, assets)
            figs.append(html.figure(rel, title, f"{d.name} {kind}") if rel else html.note(f"no {kind}.png in {d}"))
        parts.append(f'<h3 id="run-{html.esc(d.name)}">{html.esc(d.name)}</h3>{"".join(figs)}')
    return "".join(parts)


def _regenerate(kind: str, d: Path, m: dict, assets: Assets) -> str | None:
    """Draw a missing confusion.png / curves.png from metrics.json / fold<k>/history.csv."""
    from ensemble.train.plots import plot_confusion, plot_curves
    if kind == "confusion" and m.get("confusion") and m.get("classes"):
        return assets.make(f"{d.name}-confusion", lambda p: plot_confusion(
            np.array(m["confusion"]), [str(c) for c in m["classes"]], p, f"{d.name}: OOF confusion"))
    hist = RunPaths(d).histories()
    if kind == "curves" and hist:
        return assets.make(f"{d.name}-curves", lambda p: plot_curves(
            pd.concat([pd.read_csv(h) for h in hist], ignore_index=True), m.get("metric", "score"), p))
    return None


# ---------------------------------------------------------------- duplicates
def duplicates(comp_dir: Path, competition: str, assets: Assets, thumbs: bool) -> str:
    f = CompetitionPaths(comp_dir).dups
    if not f.exists():
        return html.note(f"No {f}: run python -m ensemble.dups --competition {competition} to find exact and "
                      f"near-duplicate images (folds then keep each group in one fold).")
    df = pd.read_csv(f, dtype=str, keep_default_na=False)
    missing = {"id", "split", "dup_group"} - set(df.columns)
    if missing:
        return html.note(f"{f}: missing columns {', '.join(sorted(missing))}; re-run python -m ensemble.dups")
    try:
        s = json.loads((comp_dir / "dups.json").read_text())
    except (OSError, ValueError):
        s = {}
    conflict = df.get("conflict", pd.Series("False", index=df.index)).str.lower() == "true"
    by_split = df.groupby("dup_group")["split"].agg(set)
    leaks = by_split[by_split.map(lambda x: {"train", "test"} <= x)].index
    items = [("groups", df["dup_group"].nunique()), ("images in a group", len(df)),
             ("train images in a group", int((df["split"] == "train").sum())),
             ("test images in a group", int((df["split"] == "test").sum())),
             ("groups spanning train and test", len(leaks)),
             ("groups with conflicting train labels", df.loc[conflict, "dup_group"].nunique())]
    for k, label in (("largest_group", "largest group"), ("hash", "hash"), ("threshold", "max Hamming distance"),
                     ("min_corr", "min thumbnail corr"),
                     ("exact_train_train", "exact pairs train-train"), ("exact_train_test", "exact pairs train-test"),
                     ("exact_test_test", "exact pairs test-test"), ("near_train_train", "near pairs train-train"),
                     ("near_train_test", "near pairs train-test"), ("near_test_test", "near pairs test-test"),
                     ("rejected_lookalikes", "look-alike candidates rejected")):
        if k in s:
            items.append((label, s[k]))
    out = [html.table(["", "value"], items, num=[1], table_id="dups-summary")]
    shown = (("Groups with conflicting labels", df.loc[conflict, "dup_group"].unique(), "dups-conflicts"),
             ("Groups spanning train and test", leaks, "dups-leaks"))
    for title, groups, ident in shown:
        if len(groups) == 0:
            out.append(html.note(f"{title}: none."))
            continue
        rows = [_group_row(g, df[df["dup_group"] == g], assets, thumbs) for g in list(groups)[:MAX_GROUPS]]
        more = f" (first {MAX_GROUPS} of {len(groups)}; all in {f})" if len(groups) > MAX_GROUPS else ""
        out += [f"<h3>{html.esc(title + more)}</h3>",
                html.table(["group", "kind", "min distance", "train labels", "images", "thumbnails"], rows, num=[2],
                        table_id=ident)]
    return "".join(out)


def _group_row(g: str, rows: pd.DataFrame, assets: Assets, thumbs: bool) -> list:
    members = ", ".join(f"{r['id']} ({r.get('label') or r['split']})" for _, r in rows.iterrows())
    pics = []
    if thumbs and "path" in rows:
        for _, r in rows.head(MAX_THUMBS).iterrows():
            rel = assets.make(f"thumb-{r['split']}-{r['id']}", lambda p, src=r["path"]: _thumbnail(src, p))
            if rel:
                pics.append(html.thumb(rel, f"{r['id']} ({r.get('label') or r['split']})"))
    kinds = sorted(set(rows.get("kind", pd.Series(dtype=str))))
    dist = pd.to_numeric(rows.get("distance", pd.Series(dtype=str)), errors="coerce").min()
    return [g, "/".join(kinds), "-" if pd.isna(dist) else int(dist), rows.get("labels", pd.Series([""])).iat[0],
            members, html.Raw("".join(pics)) if pics else "-"]


def _thumbnail(src: str, dst: Path, size: int = 64) -> None:
    import cv2

    from ensemble.data.images import decode, resize
    img, _ = decode(src)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(resize(img, size), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{src}: cannot encode a thumbnail")
    with atomic_path(dst) as tmp:
        tmp.write_bytes(buf.tobytes())


# ---------------------------------------------------------------- votes and submissions
def load_manifests(sub_dir: Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Every vote manifest sub_dir/*.json. -> ([(file, manifest)], notes about unreadable ones)."""
    return read_json_objects(sub_dir.glob("*.json"), " manifest")


# ---------------------------------------------------------------- page
def build_report(competition: str, runs_dir: str | Path = "runs", submissions_dir: str | Path = "submissions",
                 out: str | Path | None = None, thumbs: bool = True) -> Path:
    """Write <out>/index.html + <out>/img/*.png. -> the index.html path."""
    comp_dir, sub_dir = Path(runs_dir) / competition, Path(submissions_dir) / competition
    if not comp_dir.is_dir() and not sub_dir.is_dir():
        have = sorted(p.name for p in Path(runs_dir).glob("*") if p.is_dir()) if Path(runs_dir).is_dir() else []
        raise ValueError(f"nothing to report: neither {comp_dir} nor {sub_dir} exists"
                         + (f"; competitions in {runs_dir}: {', '.join(have)}" if have else ""))
    out = Path(out) if out else comp_dir / "report"
    assets = Assets(out)
    runs, notes = load_runs(comp_dir)
    runs = html.rank_runs(runs)
    manifests, more = load_manifests(sub_dir)
    higher = not runs or runs[0][1].get("greater_is_better", True) is not False
    metric = runs[0][1].get("metric", "") if runs else (manifests[0][1].get("metric", "") if manifests else "")
    folds = CompetitionPaths(comp_dir).folds
    sections = [("leaderboard", "Leaderboard", html.leaderboard(runs, folds, file_hash(folds) if folds.exists() else None)),
                ("runs", "Confusion matrices and learning curves", run_figures(runs, assets)),
                ("failures", "Where it fails", failures_section(comp_dir, competition, runs, latest_scoreboard(manifests),
                                                                 assets, thumbs)),
                ("duplicates", "Duplicate images", duplicates(comp_dir, competition, assets, thumbs)),
                ("shift", "Train vs test", shift_section(comp_dir, competition, runs, manifests, assets,
                                                         _thumbnail if thumbs else None)),
                ("votes", "Ensembles (vote methods)",  # every method a vote scored (report/ensembles.py)
                 ensembles(manifests, higher) + html.votes(manifests, competition, higher)),
                ("submissions", "Submissions", html.submissions(sub_dir, manifests, competition))]
    if notes or more:
        sections.append(("problems", "Problems", "".join(html.note(n) for n in notes + more)))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"{len(runs)} runs, {len(manifests)} vote manifests; metric {metric or '-'}; "
            f"generated {now} from {comp_dir} and {sub_dir}")
    index = out / "index.html"
    atomic_write_text(index, html.page(f"{competition}: ensemble report", meta, sections))
    assets.prune()
    return index
