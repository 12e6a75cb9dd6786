"""HTML of the static report: escaped tables, figures, sections (inline CSS, no JS), and the
sections drawn from JSON alone: leaderboard (metrics.json), vote methods and submissions (manifests).

Every piece of text that reaches the page goes through `esc` (html.escape); image sources are
relative paths, URL-quoted, inside the report directory.
"""
from __future__ import annotations

import html
import math
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import quote

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1400px;
 padding:16px 24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
 padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
p.meta,p.note{color:#57606a;margin:4px 0}nav a{margin-right:14px}
table{border-collapse:collapse;margin:6px 0 14px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num,th.num{text-align:right}
tr.best td{background:#eef7ee}tr.warn td{background:#fff4e5}
figure{display:inline-block;margin:4px 16px 12px 0;vertical-align:top}
figure img{max-width:min(100%,820px);border:1px solid #d0d7de}figcaption{color:#57606a;font-size:12px}
img.thumb{width:64px;height:64px;border:1px solid #d0d7de;margin:1px}
img.big{width:96px;height:96px;border:1px solid #d0d7de;margin:1px}
figure.err{margin:2px 10px 4px 0}figure.err figcaption{font-size:11px;line-height:1.25}
code{background:#f6f8fa;padding:1px 4px;border-radius:3px}
"""


def esc(value) -> str:
    """Any value as escaped HTML text; None/NaN -> an empty string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


class Raw(str):
    """Already-built HTML that `table` cells must not escape again."""


def src(path: str) -> str:
    """A relative image path as an escaped, URL-quoted attribute value."""
    return esc(quote(path))


def fmt(value, digits: int = 4) -> str:
    """Numbers for tables: floats to `digits` decimals, missing -> '-'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def sig(value, digits: int = 3) -> str:
    """A number to `digits` significant digits (11.24 -> '11.2', 0.00362 -> '0.00362'); missing -> '-'."""
    return "-" if value is None else f"{value:.{digits}g}"


def duration(seconds) -> str:
    """3725 -> '1h 02m', 75 -> '1m 15s', 8.2 -> '8s'; missing -> '-'."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def table(headers: Sequence[str], rows: Iterable[Sequence], *, num: Sequence[int] = (), row_class=None,
          table_id: str | None = None) -> str:
    """A <table> with escaped cells (Raw cells pass through); `num` = right-aligned column indices."""
    num = set(num)
    right = ' class="num"'
    head = "".join(f"<th{right if i in num else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = row_class(r) if row_class else None
        cells = "".join(f"<td{right if i in num else ''}>{c if isinstance(c, Raw) else esc(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f'<tr class="{esc(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(path: str, caption: str, alt: str) -> str:
    return f'<figure><img src="{src(path)}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'


def thumb(path: str, title: str, cls: str = "thumb") -> Raw:
    return Raw(f'<img class="{esc(cls)}" src="{src(path)}" alt="{esc(title)}" title="{esc(title)}">')


def note(text: str, ident: str | None = None) -> str:
    attr = f' id="{esc(ident)}"' if ident else ""
    return f'<p class="note"{attr}>{esc(text)}</p>'


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{"".join(parts)}</section>'


def page(title: str, meta: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """sections: (anchor, title, html body) -> the whole document."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f'<h1>{esc(title)}</h1><p class="meta">{esc(meta)}</p><nav>{nav}</nav>{body}</body></html>\n')


# ---------------------------------------------------------------- sections without images
def number(x) -> float | None:
    """A finite int/float as float, anything else (None, NaN, text, bool) -> None."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _img_s(m: dict) -> float | None:
    """Median over folds of metrics['folds'][k]['train_img_s']."""
    folds = m.get("folds") if isinstance(m.get("folds"), dict) else {}
    vals = [v for f in folds.values() if isinstance(f, dict) and (v := number(f.get("train_img_s"))) is not None]
    return statistics.median(vals) if vals else None


def rank_runs(runs: list[tuple[Path, dict]]) -> list[tuple[Path, dict]]:
    """Best CV first (by the first run's greater_is_better); runs without a CV last."""
    higher = bool(runs) and runs[0][1].get("greater_is_better", True) is not False

    def key(run):
        cv = number(run[1].get("cv"))
        return (cv is None, 0.0 if cv is None else (-cv if higher else cv))

    return sorted(runs, key=key)


def leaderboard(runs: list[tuple[Path, dict]], folds_file: Path, folds_hash: str | None) -> str:
    """runs: [(run dir, metrics.json)]; folds_hash: sha256 of the current folds.csv (None: majority)."""
    if not runs:
        return note("No finished runs yet (no <run>/metrics.json): python -m ensemble.train --cfg CONFIG")
    classes = [str(c) for c in runs[0][1].get("classes", [])]
    higher = runs[0][1].get("greater_is_better", True) is not False
    ref = folds_hash or Counter(m.get("folds_hash") for _, m in runs).most_common(1)[0][0]
    order = rank_runs(runs)
    rows, recalls, stale = [], [], []
    for rank, (d, m) in enumerate(order, 1):
        recall = m.get("per_class_recall") if isinstance(m.get("per_class_recall"), dict) else {}
        folds = m.get("cv_folds") if isinstance(m.get("cv_folds"), dict) else {}
        name = Raw(f'<a href="#run-{esc(d.name)}">{esc(m.get("run", d.name))}</a>')
        stale.append(m.get("folds_hash") != ref)
        rows.append([rank, name, m.get("backbone", "-"), m.get("input_size", "-"), fmt(number(m.get("cv"))),
                     fmt(number(m.get("cv_std"))), ", ".join(fmt(number(v), 3) for v in folds.values()),
                     sig(number(m.get("params_m"))), sig(number(m.get("gflops"))), fmt(_img_s(m), 0),
                     duration(m.get("wall_seconds")), "NO (other folds.csv)" if stale[-1] else "yes"])
        recalls.append([rank, name, *[fmt(number(recall.get(c)), 3) for c in classes]])
    metric = runs[0][1].get("metric", "score")
    heads = ["#", "run", "backbone", "size", f"CV {metric}", "std", "per fold", "params M", "GFLOPs",
             "train img/s", "wall", "current folds"]
    marks = (lambda r: "warn" if stale[r] else ("best" if r == 0 else None))
    out = table(heads, rows, num=[0, 3, 4, 5, 7, 8, 9, 10], table_id="leaderboard", row_class=marks)
    if classes:
        out += "<h3>Per-class recall (out-of-fold)</h3>" + table(
            ["#", "run", *classes], recalls, num=range(2, 2 + len(classes)), table_id="recall", row_class=marks)
    expl = (f"Sorted by out-of-fold CV ({'higher' if higher else 'lower'} is better); std = spread of the per-fold "
            "scores; GFLOPs at the run's input size; train img/s = median over folds.")
    if any(stale):
        expl += f" Rows marked NO were trained on another folds.csv than {folds_file}: vote refuses them."
    return note(expl) + out + twins(order)


def twins(runs: list[tuple[Path, dict]]) -> str:
    """Pretrained vs scratch: runs of one backbone at one input size, with and without ImageNet weights."""
    by_key: dict[tuple, dict[bool, tuple[Path, dict]]] = {}
    for d, m in runs:
        if "weights" in m:
            by_key.setdefault((m.get("backbone"), m.get("input_size")), {}).setdefault(m["weights"] != "none", (d, m))
    rows = []
    for (backbone, size), pair in by_key.items():
        if True in pair and False in pair:
            (_, p), (_, s) = pair[True], pair[False]
            gain = number(p.get("cv")) - number(s.get("cv")) if p.get("cv") is not None and s.get("cv") is not None else None
            rows.append([backbone, size, p.get("run"), fmt(number(p.get("cv"))), duration(p.get("wall_seconds")),
                         s.get("run"), fmt(number(s.get("cv"))), duration(s.get("wall_seconds")),
                         fmt(gain) if gain is not None else "-"])
    if not rows:
        return ""
    return "<h3>Pretrained vs scratch</h3>" + note(
        "Runs of the same backbone and input size with ImageNet weights and without (a compete --time "
        "twin trains both at the same size and epochs).") + table(
        ["backbone", "size", "pretrained run", "CV", "wall", "scratch run", "CV", "wall", "gain"], rows,
        num=[1, 3, 4, 6, 7, 8], table_id="twins")


def _cv(m: dict) -> dict:
    """Manifest 'cv' as {score, std, in_sample, nested}: a dict (ensemble.vote) or a bare number."""
    cv = m.get("cv")
    if isinstance(cv, dict):
        return cv
    return {"score": cv if cv is not None else m.get("cv_score", m.get("score"))}


def _weights(m: dict) -> dict[str, float]:
    w, runs = m.get("weights"), m.get("runs") or []
    names = [r.get("name") if isinstance(r, dict) else str(r) for r in runs]
    if isinstance(w, dict):
        return {str(k): v for k, v in w.items()}
    if isinstance(w, list) and len(w) == len(names):
        return dict(zip(names, w))
    return {}


def _created(f: Path, m: dict) -> str:
    stamp = str(m.get("created_utc") or "")
    try:
        return datetime.strptime(stamp, "%Y%m%d-%H%M%S").strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        mtime = datetime.fromtimestamp(f.stat().st_mtime, timezone.utc)
        return stamp or mtime.strftime("%Y-%m-%d %H:%M:%S UTC")


def votes(manifests: list[tuple[Path, dict]], competition: str, higher: bool = True) -> str:
    """Latest manifest per method, best CV first; then a weights table (runs x methods)."""
    if not manifests:
        return note(f"No vote manifests yet: python -m ensemble.vote --competition {competition}")
    latest: dict[str, tuple[Path, dict]] = {}
    for f, m in sorted(manifests, key=lambda fm: _created(*fm)):
        latest[str(m.get("method", f.stem))] = (f, m)

    def key(item):
        cv = number(_cv(item[1][1]).get("score"))
        return (cv is None, 0.0 if cv is None else (-cv if higher else cv))

    latest = dict(sorted(latest.items(), key=key))
    rows = []
    for method, (f, m) in latest.items():
        cv = _cv(m)
        rows.append([method, fmt(number(cv.get("score"))), fmt(number(cv.get("std"))),
                     "nested" if cv.get("nested") else ("fold mean" if cv.get("nested") is False else "-"),
                     fmt(number(cv.get("in_sample"))), len(m.get("runs") or []), _created(f, m)])
    out = [note("Latest manifest per method. CV = mean of per-fold scores; nested = the method's parameters "
                "were fitted on K-1 folds and scored on the held-out fold; fold mean = nothing fitted; "
                "in-sample = fitted and scored on all OOF rows (optimistic). Best first."),
           table(["method", f"CV {manifests[0][1].get('metric', '')}".strip(), "std", "CV kind", "in-sample",
                  "runs", "created"], rows, num=[1, 2, 4, 5], table_id="votes")]
    weights = {meth: _weights(m) for meth, (_, m) in latest.items()}
    names = list(dict.fromkeys(n for w in weights.values() for n in w))
    if names:
        out += ["<h3>Weights per run</h3>",
                table(["run", *weights], [[n, *[fmt(number(w.get(n)), 3) for w in weights.values()]] for n in names],
                      num=range(1, len(weights) + 1), table_id="weights")]
    return "".join(out)


def submissions(sub_dir: Path, manifests: list[tuple[Path, dict]], competition: str) -> str:
    """Every submissions/NAME/*.csv, newest first, with its manifest's method, CV and creation time."""
    files = sorted(sub_dir.glob("*.csv"))
    if not files:
        return note(f"No submission files in {sub_dir} yet.")
    by_stem = {f.stem: m for f, m in manifests}
    rows = []
    for f in files:
        m = by_stem.get(f.stem, {})
        sub = m.get("submission") if isinstance(m.get("submission"), dict) else {}
        rows.append([f.name, m.get("method", "-"), fmt(number(_cv(m).get("score"))) if m else "-",
                     sub.get("rows", "-"), _created(f, m)])
    rows.sort(key=lambda r: r[-1], reverse=True)
    return (note(f"Newest first; each CSV's .json manifest beside it in {sub_dir} records its inputs. "
                 f"Validate one with python -m ensemble.vote --competition {competition} --check FILE.")
            + table(["file", "method", "CV", "rows", "created"], rows, num=[2, 3], table_id="submissions"))
