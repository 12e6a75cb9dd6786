"""The report's "every ensemble" table: all methods the latest vote scored (not only the one whose
submission was written), the chosen one marked, the single models beside them (manifest fields
written by ensemble/vote/scoreboard.py)."""
from __future__ import annotations

from pathlib import Path

from ensemble.report import html

MAX_WEIGHTS = 4  # runs named in a row's weights cell


def latest_scoreboard(manifests: list[tuple[Path, dict]]) -> tuple[Path, dict] | None:
    """The newest manifest that holds every method's score (vote manifests record every method's score)."""
    have = [(f, m) for f, m in manifests if isinstance(m.get("ensembles"), list) and m["ensembles"]]
    return max(have, key=lambda fm: html._created(*fm)) if have else None


def _weights_text(w) -> str:
    if not isinstance(w, dict) or not w:
        return "equal" if w is None else "-"
    top = sorted(((str(k), html.number(v) or 0.0) for k, v in w.items()), key=lambda kv: -kv[1])
    shown = [f"{k} {v:.2f}" for k, v in top[:MAX_WEIGHTS] if v > 0]
    rest = sum(1 for _, v in top[MAX_WEIGHTS:] if v > 0)
    return ", ".join(shown) + (f", +{rest} more" if rest else "") if shown else "-"


def ensembles(manifests: list[tuple[Path, dict]], higher: bool = True) -> str:
    """Every ensemble method and single model of the latest vote, best CV first."""
    found = latest_scoreboard(manifests)
    if found is None:
        return ""
    f, m = found
    rows = [("ensemble", e.get("method"), e.get("score"), e.get("std"), e.get("cv_is"), e.get("in_sample"),
             bool(e.get("chosen")), _weights_text(e.get("weights")))
            for e in m["ensembles"] if isinstance(e, dict)]
    rows += [("single model", s.get("run"), s.get("score"), s.get("std"), "fold mean", None, False, "-")
             for s in m.get("singles") or [] if isinstance(s, dict)]

    def key(r):
        cv = html.number(r[2])
        return (cv is None, 0.0 if cv is None else (-cv if higher else cv))

    rows.sort(key=key)
    body = [[k, name, html.fmt(html.number(cv)), html.fmt(html.number(std)), kind or "-", html.fmt(html.number(ins)),
             "chosen (written)" if chosen else "", w] for k, name, cv, std, kind, ins, chosen, w in rows]
    n_ens = sum(r[0] == "ensemble" for r in rows)
    n_single = len(rows) - n_ens
    metric = m.get("metric", "")
    head = (f"<h3>Every ensemble of the latest vote ({n_ens} methods, {n_single} single models)</h3>"
            + html.note(f"From {f.name} ({html._created(f, m)}): every method vote scored, best first; nested = fitted "
                     f"on K-1 folds and scored on the held-out fold (honest), fold mean = nothing fitted; "
                     f"in-sample is optimistic. The chosen one (best by that CV) is the submission written. "
                     f"Single models are scored the same way on the same folds."))
    return head + html.table(["", "method / run", f"CV {metric}".strip(), "std", "CV kind", "in-sample", "chosen",
                           "weights"], body, num=[2, 3, 5], table_id="ensembles",
                          row_class=lambda r: "best" if rows[r][6] else ("single" if rows[r][0] != "ensemble" else None)
                          ) + alone_note(m) + provenance_note(m)


def alone_note(m: dict) -> str:
    """One line when the chosen ensemble is one model (a vote over one run, or a method that kept one)."""
    alone, n = m.get("single_model"), len(m.get("singles") or m.get("runs") or [])
    if not alone:
        return ""
    if n <= 1:
        return html.note(f"One run was voted: the submission is {alone} alone (an ensemble of one).", "alone")
    return html.note(f"The chosen ensemble ({m.get('method')}) equals one model: {alone} alone; its "
                  f"{n - 1} other run(s) add nothing to its out-of-fold predictions.", "alone")


def provenance_note(m: dict) -> str:
    """One line: the git commit (dirty or not) and the main package versions the vote ran with."""
    git, v = m.get("git") if isinstance(m.get("git"), dict) else {}, m.get("versions") or {}
    if not git and not v:
        return ""
    commit = git.get("commit")
    where = ("not a git checkout" if not commit else
             f"commit {commit[:12]}" + (f" with {git.get('n_changed', len(git.get('changed') or []))} uncommitted "
                                        f"change(s)" if git.get("dirty") else " (clean tree)"))
    pkgs = ", ".join(f"{k} {v[k]}" for k in ("torch", "timm", "albumentations", "numpy", "scikit-learn", "optuna")
                     if isinstance(v, dict) and v.get(k))
    return html.note(f"Built from {where}; {pkgs}. The manifest also holds the sha256 of every run's config.yaml.")
