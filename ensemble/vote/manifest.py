"""What a vote writes and prints: the score report (text), and each submission CSV with its manifest."""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from ensemble.artifacts import atomic_write_json, file_hash, inside
from ensemble.artifacts.provenance import portable, root_relative
from ensemble.vote.cv import CVScore, Fitted, Spec, error_correlation
from ensemble.vote.objective import Objective
from ensemble.vote.recipe import make_recipe, replay
from ensemble.vote.runs import Runs
from ensemble.vote.submission import SubmissionError, build_frame, detect_format, problems, write_frame
from ensemble.vote.submit import default_message, kaggle_command, runs_text


def _fmt_table(rows: list[list[str]], header: list[str]) -> str:
    width = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, width)))
    return "\n".join([line(header)] + [line(r) for r in rows])


def single_model(fitted: Fitted, oof: np.ndarray, names: list[str]) -> str | None:
    """The run an ensemble equals, or None: with one run, that run; else the run whose OOF predictions
    the ensemble's combined OOF predictions (before bias/thresholds) reproduce, e.g. hill climbing that
    kept one model. oof: (M, N, C)."""
    if len(names) == 1:
        return names[0]
    pred = fitted.predict(oof)
    if pred.shape != oof.shape[1:]:
        return None
    for name, p in zip(names, oof):
        if np.allclose(pred, p, rtol=1e-5, atol=1e-6):
            return name
    return None


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def report(data: Runs, objective: Objective, singles, results, best: int) -> str:
    """Scores of single models and ensembles, error correlations and the chosen weights."""
    names, ordinal = data.names, data.ordinal
    rows = [[n, f"{s.score:.4f}", f"{s.std:.4f}", "fold mean", "", _num(r.metrics.get("cv"))]
            for n, s, r in zip(names, singles, data.runs)]
    for i, (spec, cv, _) in enumerate(results):
        rows.append([("* " if i == best else "  ") + spec.name(ordinal), f"{cv.score:.4f}", f"{cv.std:.4f}",
                     "nested" if spec.fits else "fold mean", "" if cv.in_sample is None else f"{cv.in_sample:.4f}", ""])
    direction = "higher" if objective.higher_is_better else "lower"
    out = [f"{data.competition}: {runs_text(len(names))}, {len(np.unique(data.folds))} folds, OOF {len(data.y)} rows, "
           f"test {data.test.shape[1]} rows; {data.metric} ({direction} is better)",
           "cv = mean of per-fold scores; nested = fitted on K-1 folds, scored on the held-out fold; "
           "in-sample = fitted on all OOF (optimistic)",
           _fmt_table(rows, ["run / ensemble (* best)", "cv", "std", "cv is", "in-sample", "metrics.json cv"])]
    if len(names) > 1:  # one run has nothing to correlate with
        corr = error_correlation(data.oof, data.y)
        short = [n[:14] for n in names]
        out += ["", "OOF error correlation",
                _fmt_table([[s] + [f"{v:.2f}" for v in row] for s, row in zip(short, corr)], ["run"] + short)]
    wcols = [(spec, fitted) for spec, _, fitted in results if "weights" in fitted.state]
    if wcols:
        rows = [[n] + [f"{f.state['weights'][i]:.3f}" for _, f in wcols] for i, n in enumerate(names)]
        out += ["", "weights (methods not listed: equal; stacking: share of |coef|)",
                _fmt_table(rows, ["run"] + [s.name(ordinal) for s, _ in wcols])]
    for spec, _, fitted in results:
        if fitted.post is not None:
            labels = [f"t{k}" for k in range(len(fitted.post))] if ordinal or spec.grade else data.classes
            out.append(f"{spec.name(ordinal)}: " + " ".join(f"{c}={v:+.2f}" for c, v in zip(labels, fitted.post)))
    return "\n".join(out)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "scikit-learn", "pyarrow", "ensemble"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def fold_weights(run) -> dict[str, float] | None:
    """{fold: weight} of the fold predictions a run averaged into its test predictions (training's
    rule: the plain mean over its folds); None when metrics.json does not list the folds."""
    folds = sorted((run.metrics.get("cv_folds") or {}), key=int)
    return {k: 1.0 / len(folds) for k in folds} or None


def write_submission(data: Runs, spec: Spec, cv: CVScore, fitted: Fitted, out_dir: Path,
                     stamp: str, slug: str, command: str, message: str | None = None, prior=None,
                     target: np.ndarray | None = None, extra: dict | None = None, tag: str = "",
                     alone: str | None = None, temperature: float | None = None) -> tuple[Path, str]:
    """Predict test, validate against the sample, write CSV + manifest atomically. -> (path, kaggle cmd).
    message: the Kaggle message (default: method, CV and runs); prior, target: the PriorEstimate and the
    (C,) priors the combined test predictions are adjusted to before bias (class priors); extra: more
    manifest fields (every method's score, provenance, shift); tag: appended to the method in the file name;
    alone: the run this ensemble equals (single_model), recorded as `single_model` and said in the default
    message; temperature: scales the submitted probabilities (vote --calibrate).
    The values are the replay of the manifest's "recipe" (vote.recipe), so a bundle replays them exactly."""
    fmt = detect_format(data.sample, data.classes, data.id_col, data.sample_path.name)
    recipe = make_recipe(fitted, data.names, data.classes, data.ordinal, {r.name: fold_weights(r) for r in data.runs},
                         prior, target, temperature)
    values = replay(recipe, data.test)
    frame = build_frame(fmt, data.sample[fmt.id_col], values)
    issues = problems(frame, data.sample, fmt, data.sample_path.name)
    if issues:
        raise SubmissionError(f"{spec.name(data.ordinal)}: the submission fails validation against "
                              f"{data.sample_path} (not written): " + "; ".join(issues))
    name = spec.name(data.ordinal)
    path = inside(out_dir, data.competition, f"{name}{tag}-cv{cv.score:.4f}-{stamp}.csv")  # a name from a run's files
    write_frame(path, frame)
    weights = fitted.state.get("weights", np.full(len(data.runs), 1 / len(data.runs)))
    manifest = {
        "competition": data.competition, "method": name, "metric": data.metric.text,
        "cv": {"score": cv.score, "std": cv.std, "folds": cv.folds, "in_sample": cv.in_sample, "nested": spec.fits},
        "weights": dict(zip(data.names, np.asarray(weights, float).round(6).tolist())),
        "options": {k: v for k, v in spec.options.items() if k != "weights"},
        ("thresholds" if data.ordinal or spec.grade else "bias"): None if fitted.post is None else fitted.post.tolist(),
        "runs": [{"name": r.name, "dir": root_relative(r.paths.root), "cv": r.metrics.get("cv"),
                  "oof": {"path": root_relative(r.paths.oof), "sha256": file_hash(r.paths.oof)},
                  "test": {"path": root_relative(r.paths.test), "sha256": file_hash(r.paths.test)},
                  "metrics_sha256": file_hash(r.paths.metrics)} for r in data.runs],
        "folds_hash": data.folds_hash,
        "sample_submission": {"path": root_relative(data.sample_path), "sha256": file_hash(data.sample_path)},
        "submission": {"path": root_relative(path), "sha256": file_hash(path), "rows": len(frame), "format": fmt.kind},
        "created_utc": stamp, "command": command, "versions": _versions(), "recipe": recipe, "single_model": alone,
    }
    # issue 13: provenance, every method's score, the kaggle command (artifacts/provenance.py, vote/scoreboard.py,
    # vote/submit.py)
    manifest.update(extra or {})
    for r, run in zip(manifest["runs"], data.runs):
        r["config_sha256"] = file_hash(run.paths.config) if run.paths.config.is_file() else None
    cmd = kaggle_command(slug, path, message or default_message(name, cv.score, len(data.runs), alone))
    manifest["kaggle_command"] = cmd
    atomic_write_json(path.with_suffix(".json"), portable(manifest))  # paths relative to the repository root
    return path, cmd


def write_ensemble_oof(data: Runs, values: np.ndarray, submission: Path) -> Path:
    """The chosen ensemble's held-out OOF probabilities (what the report's gallery and calibration read),
    as runs/<competition>/votes/<submission stem>.oof.csv. -> its path."""
    from ensemble.artifacts import probs_frame, write_probs
    from ensemble.artifacts.paths import CompetitionPaths
    path = CompetitionPaths(data.runs[0].paths.root.parent).vote_oof(submission.stem)
    write_probs(path, probs_frame(data.oof_ids, values, data.classes, data.folds))
    return path
