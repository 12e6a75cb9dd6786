"""The report's "Train vs test" section: shift AUC with its interval and verdict, the statistics and
classes that differ most, plain vs importance-weighted vs test-like CV of every run and submission,
estimated test priors, and thumbnail strips of the most and least test-like training images."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ensemble.report.html import esc, fmt, note, number, sig, table, thumb
from ensemble.shift.scores import read_summary, shift_dir

N_THUMBS = 8


def _strip(rows: list[dict], assets, thumb_fn: Callable | None, key: str) -> str:
    pics = []
    for r in rows[:N_THUMBS]:
        if thumb_fn is None or not r.get("path"):
            break
        title = f"{r['id']} ({r.get('label', '')}) p(test)={r.get('p_test', 0):.2f} w={r.get('weight', 0):.2f}"
        rel = assets.make(f"shift-{key}-{r['id']}", lambda p, s=r["path"]: thumb_fn(s, p))
        if rel:
            pics.append(thumb(rel, title))
    listed = ", ".join(f"{r['id']} ({r.get('label', '')}, {r.get('p_test', 0):.2f})" for r in rows[:N_THUMBS])
    return (f'<p class="strip" id="shift-{esc(key)}">{"".join(pics)}</p>' if pics else "") + note(listed)


def shift_section(comp_dir: Path, competition: str, runs: list[tuple[Path, dict]], manifests: list[tuple[Path, dict]],
            assets, thumb_fn: Callable | None = None) -> str:
    """HTML for runs/<competition>/shift/shift.json (+ runs' metrics.json "shift" and manifests' "shift")."""
    s = read_summary(comp_dir)
    if not s.get("auc"):
        return note(f"No {shift_dir(comp_dir) / 'shift.json'}: run python -m ensemble.shift --competition "
                      f"{competition} to measure how far the test images are from the training images "
                      f"(adversarial validation) and to get importance-weighted CV beside every CV score.")
    ci, wt = s.get("ci") or [None, None], s.get("weights") or {}
    items = [("train vs test AUC", f"{s['auc']:.3f} (95% CI {fmt(ci[0], 3)}-{fmt(ci[1], 3)})"),
             ("reading", s.get("verdict", "")),
             *[(f"AUC on {k} features ({v.get('n_features')})", f"{fmt(v.get('auc'), 3)}")
               for k, v in (s.get("by_features") or {}).items()],
             ("classifier", f"{s.get('classifier')} ({s.get('folds')}-fold CV), {s.get('backbone')} @ {s.get('size')}px"),
             ("images", f"{s.get('n_train')} train, {s.get('n_test')} test"),
             ("importance weights", f"clipped at {wt.get('clip')} x mean, max {fmt(wt.get('max'), 2)}, effective "
                                    f"sample size {fmt(wt.get('ess'), 0)} ({fmt(100 * (wt.get('ess_frac') or 0), 0)}%)"),
             ("test-like rows", f"{(s.get('test_like') or {}).get('n')} (most test-like fifth of train)")]
    out = [note("A classifier is trained to tell training images from test images (cross-validated). "
                  "AUC near 0.5: the test set looks like the training set and CV can be trusted; near 1: it "
                  "does not, and CV is likely optimistic. Weighted CV counts each validation row by "
                  "p(test|x)/p(train|x); test-like CV scores only the most test-like fifth of the rows."),
           table(["", "value"], items, table_id="shift-summary")]
    stats = [[d["stat"], fmt(d["auc"], 3), sig(d["train_mean"], 4), sig(d["test_mean"], 4), f"{d['smd']:+.2f}"]
             for d in (s.get("stats") or [])[:10]]
    if stats:
        out += ["<h3>Image statistics that differ most</h3>",
                table(["statistic", "AUC alone", "train mean", "test mean", "SMD"], stats, num=[1, 2, 3, 4],
                        table_id="shift-stats")]
    classes = [[c["class"], c["n"], fmt(c["train_share"], 3), fmt(c["weighted_share"], 3),
                fmt(c["mean_p_test"], 3), fmt(c["auc"], 3)] for c in s.get("classes") or []]
    if classes:
        out += ["<h3>Per class</h3>", note("weighted share = the class's share of train after importance "
                                              "weighting (what covariate shift alone predicts for test)."),
                table(["class", "train rows", "train share", "weighted share", "mean p(test)", "AUC vs test"],
                        classes, num=[1, 2, 3, 4, 5], table_id="shift-classes")]
    rows = []
    for d, m in runs:
        sh = m.get("shift") if isinstance(m.get("shift"), dict) else {}
        rows.append([f"run {m.get('run', d.name)}", fmt(number(m.get("cv"))),
                     fmt(number(sh.get("weighted_cv"))), fmt(number(sh.get("test_like_cv"))), "pooled OOF"])
    for f, m in manifests:
        sh = m.get("shift") if isinstance(m.get("shift"), dict) else None
        if sh:
            cv = m.get("cv") if isinstance(m.get("cv"), dict) else {"score": m.get("cv")}
            rows.append([f"submission {f.stem}", fmt(number(cv.get("score"))), fmt(number(sh.get("weighted_cv"))),
                         fmt(number(sh.get("test_like_cv"))), "fold mean"])
    if rows:
        out += ["<h3>Plain vs weighted vs test-like CV</h3>",
                note("Runs trained before the shift check show '-': python -m ensemble.train --cfg ... --assemble "
                       "adds the weighted scores to their metrics.json."),
                table(["run / submission", "CV", "weighted CV", "test-like CV", "over"], rows, num=[1, 2, 3],
                        table_id="shift-cv")]
    pri = [(f, m["priors"]) for f, m in manifests if isinstance(m.get("priors"), dict) and m["priors"].get("estimated")]
    if pri:
        f, p = sorted(pri, key=lambda fm: str(fm[0]))[-1]
        rows = [[c, fmt(t, 3), fmt(e, 3), f"{fmt(lo, 3)}-{fmt(hi, 3)}", fmt(pr, 3)] for c, t, e, lo, hi, pr in
                zip(p["classes"], p["train"], p["estimated"], p["ci_low"], p["ci_high"], p["predicted"])]
        out += [f"<h3>Class priors (latest submission, {esc(f.stem)})</h3>",
                note(f"{p.get('method', 'EM')} on the ensemble's test probabilities; applied: {p.get('applied')}."),
                table(["class", "train", "estimated test", "95% CI", "predicted share"], rows, num=[1, 2, 4],
                        table_id="shift-priors")]
    out += ["<h3>Most test-like training images</h3>", _strip(s.get("most_test_like") or [], assets, thumb_fn, "most"),
            "<h3>Least test-like training images</h3>", _strip(s.get("least_test_like") or [], assets, thumb_fn, "least")]
    return "".join(out)
