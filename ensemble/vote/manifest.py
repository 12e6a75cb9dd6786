"""What a vote writes: each submission CSV with its manifest (inputs and their hashes, the recipe, every
score, provenance, the kaggle command), and the chosen ensemble's held-out OOF predictions."""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from ensemble.artifacts import atomic_write_json, file_hash, inside
from ensemble.artifacts.provenance import portable, root_relative
from ensemble.vote.cv import CVScore, Fitted, Spec
from ensemble.vote.recipe import make_recipe, replay
from ensemble.vote.runs import Runs
from ensemble.vote.submission import SubmissionError, build_frame, detect_format, problems, write_frame
from ensemble.vote.kaggle import default_message, kaggle_command


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
    found = problems(frame, data.sample, fmt, data.sample_path.name)
    if found:
        raise SubmissionError(f"{spec.name(data.ordinal)}: the submission fails validation against "
                              f"{data.sample_path} (not written): " + "; ".join(found))
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
    # provenance, every method's score, the shift scores (artifacts/provenance.py, vote/scoreboard.py, vote/shift.py)
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
