"""The report's "Where it fails" section, for the chosen ensemble of the latest vote and for every run:
the most confident out-of-fold mistakes as a gallery (per true -> predicted class pair, each image
beside its Grad-CAM), a reliability diagram with ECE and the temperature that fixes it, and
one-vs-rest ROC and precision-recall curves per class.

Reads runs/<competition>/labels.csv, each run's oof file, config.yaml and fold<k>/best.pt, and the
chosen ensemble's held-out OOF probabilities (runs/<competition>/votes/<submission>.oof.csv).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.artifacts import read_probs, split_probs
from ensemble.artifacts.paths import CompetitionPaths, RunPaths
from ensemble.report import html

MAX_PAIRS = 6  # class pairs in a gallery
PER_PAIR = 4  # images per class pair
MAX_CAM_RUNS = 3  # an ensemble's heat map: the weighted mean over its (at most) 3 heaviest runs
CAM_SIZE = 128  # px of an ensemble's combined heat maps


@dataclass
class Subject:
    """OOF probabilities of one run or of the chosen ensemble, aligned with the true classes."""
    key: str
    title: str
    ids: np.ndarray  # (N,) str
    y: np.ndarray  # (N,) int
    p: np.ndarray  # (N, C) float32
    folds: np.ndarray  # (N,) int
    classes: list[str]
    cam_runs: list[tuple[Path, float]] = field(default_factory=list)  # (run dir, weight) for Grad-CAM
    probabilities: bool = True  # False: scores (rank, majority votes) normalised for ranking mistakes only


def worst_mistakes(p: np.ndarray, y: np.ndarray, max_pairs: int = MAX_PAIRS, per_pair: int = PER_PAIR
                   ) -> list[tuple[int, int, int, list[int]]]:
    """-> [(true class, predicted class, errors of that pair, rows most confident first)], the pairs
    ordered by their most confident mistake."""
    pred = p.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    conf = p[wrong, pred[wrong]]
    order = wrong[np.argsort(-conf, kind="stable")]
    pairs: dict[tuple[int, int], list[int]] = {}
    for i in order:
        pairs.setdefault((int(y[i]), int(pred[i])), []).append(int(i))
    return [(t, q, len(rows), rows[:per_pair]) for (t, q), rows in list(pairs.items())[:max_pairs]]


def _labels(comp_dir: Path) -> pd.Series | None:
    f = CompetitionPaths(comp_dir).labels
    if not f.is_file():
        return None
    df = pd.read_csv(f, dtype=str, keep_default_na=False)
    return df.set_index("id")["label"]


def _subject(key: str, title: str, oof: Path, labels: pd.Series, classes: list[str], cam_runs) -> Subject | str:
    """A Subject, or a note saying why there is none."""
    if not oof.is_file():
        return f"{title}: no {oof.name} (nothing to show)"
    ids, cols, p, folds = split_probs(read_probs(oof))
    if cols != classes or folds is None:
        return f"{title}: {oof.name} holds {', '.join(cols[:3])}... (an ordinal score or other classes): skipped"
    lab = labels.reindex(ids.astype(str))
    known = lab.notna().to_numpy()
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(v, -1) for v in lab.fillna("")], dtype=np.int64)
    keep = known & (y >= 0)
    if not keep.any():
        return f"{title}: no OOF row has a known label in labels.csv"
    p = p[keep]
    probs = bool(np.allclose(p.sum(axis=1), 1.0, atol=1e-3))
    if not probs:  # rank averages and vote counts order the rows but are no probabilities
        p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    return Subject(key, title, ids[keep].astype(str), y[keep], p, folds[keep], classes, cam_runs, probs)


def subjects(comp_dir: Path, runs: list[tuple[Path, dict]], scoreboard: tuple[Path, dict] | None
             ) -> tuple[list[Subject], list[str]]:
    """The chosen ensemble (from the latest vote) first, then every run with class probabilities."""
    labels = _labels(comp_dir)
    if labels is None or not runs:
        return [], [f"No {CompetitionPaths(comp_dir).labels}: train a run first."] if runs else []
    classes = [str(c) for c in runs[0][1].get("classes", [])]
    found, notes = [], []
    if scoreboard is not None:
        f, m = scoreboard
        w = {str(k): float(v) for k, v in (m.get("weights") or {}).items() if isinstance(v, (int, float)) and v > 0}
        heavy = sorted(w.items(), key=lambda kv: -kv[1])[:MAX_CAM_RUNS]
        cam = [(comp_dir / n, v) for n, v in heavy if (comp_dir / n).is_dir()]
        s = _subject("ensemble", f"chosen ensemble: {m.get('method')} ({f.stem})",
                     CompetitionPaths(comp_dir).vote_oof(f.stem), labels, classes, cam)
        (found if isinstance(s, Subject) else notes).append(s)
    for d, m in runs:
        s = _subject(f"run-{d.name}", f"run {m.get('run', d.name)}", RunPaths(d).oof, labels,
                     [str(c) for c in m.get("classes", [])], [(d, 1.0)])
        (found if isinstance(s, Subject) else notes).append(s)
    return found, notes


def image_paths(comp_dir: Path, run_dir: Path) -> dict[str, str]:
    """id -> training image path, from a run's competition config."""
    from ensemble.artifacts import competition_cfg
    from ensemble.data.competition import load_competition
    train = load_competition(competition_cfg(run_dir)).train
    return dict(zip(train["id"].astype(str), train["path"].astype(str)))


# ---------------------------------------------------------------- HTML
def _png(dst: Path, rgb: np.ndarray) -> None:
    import cv2

    from ensemble.artifacts import atomic_path
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode {dst.name}")
    with atomic_path(dst) as tmp:
        tmp.write_bytes(buf.tobytes())


def _cams(s: Subject, rows: list[tuple[int, str, int]]) -> tuple[list[np.ndarray | None], int, list[str]]:
    """Heat maps of the gallery rows: the run's own, or the weighted mean of the ensemble's heaviest runs.
    -> (maps, their size, notes)."""
    from ensemble.report.gradcam import run_cams
    size = None if s.key != "ensemble" else CAM_SIZE
    total, weight, notes = [None] * len(rows), np.zeros(len(rows)), []
    for run_dir, w in s.cam_runs:
        cams, note = run_cams(run_dir, rows, size)
        if note:
            notes.append(note)
        for i, c in enumerate(cams):
            if c is not None:
                size = c.shape[0]
                total[i] = w * c if total[i] is None else total[i] + w * c
                weight[i] += w
    return [t / weight[i] if t is not None else None for i, t in enumerate(total)], size or CAM_SIZE, notes


def gallery(s: Subject, paths: dict[str, str], assets, cams: bool) -> tuple[str, list[str]]:
    """The mistakes table of one subject. -> (HTML, notes)."""
    from ensemble.data.images import decode, resize
    from ensemble.report.gradcam import checkpoint_stamp, overlay
    pairs = worst_mistakes(s.p, s.y)
    if not pairs:
        return html.note(f"{s.title}: no out-of-fold mistakes."), []
    shown = [(t, q, i) for t, q, _, rows in pairs for i in rows]
    rows = [(int(s.folds[i]), paths.get(s.ids[i], ""), q) for t, q, i in shown]
    stamp = ";".join(f"{d.name}={w:.4f}@{checkpoint_stamp(d, [r[0] for r in rows])}" for d, w in s.cam_runs)
    stems = [f"cam-{s.key}-{s.ids[i]}-{q}-{stamp}" for _, q, i in shown]
    rels = [assets.cached(st) for st in stems] if cams else [None] * len(stems)
    notes: list[str] = []
    if cams and any(r is None for r in rels) and all(r[1] for r in rows):
        maps, size, notes = _cams(s, rows)
        for k, (m, (_, path, _)) in enumerate(zip(maps, rows)):
            if m is not None and rels[k] is None:
                rels[k] = assets.make(stems[k], lambda dst, m=m, path=path: _png(
                    dst, overlay(resize(decode(path)[0], m.shape[0]), m)))
    items: dict[tuple[int, int], list[str]] = {}
    for (t, q, i), cam in zip(shown, rels):
        conf = float(s.p[i, q])
        title = f"{s.ids[i]}: true {s.classes[t]}, predicted {s.classes[q]} (p={conf:.2f}, fold {s.folds[i]})"
        pic = (assets.make(f"err-{s.ids[i]}", lambda dst, src=paths[s.ids[i]]: _png(dst, resize(decode(src)[0], 96)))
               if cams and s.ids[i] in paths else None)
        parts = [html.thumb(pic, title, "big") if pic else "",
                 html.thumb(cam, f"Grad-CAM for {s.classes[q]}: {title}", "big") if cam else ""]
        caption = f"{html.esc(s.ids[i])}<br>p={conf:.2f}"
        items.setdefault((t, q), []).append(f'<figure class="err">{"".join(parts)}<figcaption>{caption}'
                                            f"</figcaption></figure>")
    body = [[s.classes[t], s.classes[q], n, html.Raw("".join(items[(t, q)]))] for t, q, n, _ in pairs]
    return html.table(["true", "predicted", "errors", "most confident first (image, Grad-CAM of the predicted class)"],
                   body, num=[2], table_id=f"gallery-{s.key}"), notes


def failures_section(comp_dir: Path, competition: str, runs: list[tuple[Path, dict]], scoreboard, assets,
            images: bool = True) -> str:
    """HTML of the whole section. images: thumbnails and Grad-CAM (the report's --no-thumbs turns them off)."""
    from ensemble.report.curves import calibration_summary, per_class_curves, plot_reliability, plot_roc_pr
    found, notes = subjects(comp_dir, runs, scoreboard)
    if not found:
        return "".join(html.note(n) for n in notes) or html.note(
            f"No out-of-fold predictions yet: python -m ensemble.train (then ensemble.vote) for {competition}.")
    try:
        paths = image_paths(comp_dir, runs[0][0]) if images else {}
    except (ValueError, FileNotFoundError) as e:
        paths, notes = {}, notes + [f"images not found ({e}): no gallery pictures"]
    out = [html.note("Out-of-fold predictions: each row is predicted by the model that did not train on it. The gallery "
                  "shows the most confident mistakes first, grouped by true -> predicted class; beside each image, "
                  "Grad-CAM over the last backbone stage (from that fold's best checkpoint) shows where the model "
                  "looked for the class it predicted. The reliability diagram compares confidence with accuracy; "
                  "the temperature T rescales log-probabilities (p^(1/T), renormalised) to fix it; python -m "
                  "ensemble.vote --calibrate applies it to the submission when the nested CV agrees.")]
    summary = []
    for s in found:
        cal = calibration_summary(s.p, s.y) if s.probabilities else {}
        n_err = int((s.p.argmax(1) != s.y).sum())
        summary.append([s.title, len(s.y), n_err, *[html.fmt(cal.get(k), d) for k, d in
                        (("ece", 3), ("temperature", 2), ("ece_after", 3), ("nll", 4), ("nll_after", 4))]])
        figs = [assets.make(f"{s.key}-reliability", lambda p, s=s: plot_reliability(s.p, s.y, p))
                if s.probabilities else None,
                assets.make(f"{s.key}-rocpr", lambda p, s=s: plot_roc_pr(s.p, s.y, s.classes, p))]
        if not s.probabilities:
            more_notes = [f"{s.title}: its values are scores, not probabilities (rows do not sum to 1): "
                          "no reliability diagram; mistakes are ranked by the normalised scores."]
        else:
            more_notes = []
        curves = per_class_curves(s.p, s.y)
        table = html.table(["class", "rows", "ROC AUC (one vs rest)", "average precision"],
                        [[c, st["positives"], html.fmt(st["auc"], 3), html.fmt(st["ap"], 3)]
                         for c, st in zip(s.classes, curves)], num=[1, 2, 3], table_id=f"classes-{s.key}")
        gal, more = gallery(s, paths, assets, images and bool(paths))
        out += [f'<h3 id="fail-{html.esc(s.key)}">{html.esc(s.title)}</h3>',
                "".join(html.figure(f, cap, f"{s.title} {cap}") for f, cap in
                        zip(figs, ("reliability (top class)", "one-vs-rest ROC and precision-recall")) if f),
                table, gal, "".join(html.note(n) for n in more_notes + more)]
    head = html.table(["predictions", "rows", "errors", "ECE", "temperature", "ECE after T", "log loss",
                    "log loss after T"], summary, num=[1, 2, 3, 4, 5, 6, 7], table_id="calibration")
    return out[0] + head + "".join(out[1:]) + "".join(html.note(n) for n in notes)
