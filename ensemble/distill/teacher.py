"""The teacher of a distillation: a submission's ensemble replayed on its runs' out-of-fold files.

    teacher = load_teacher("submissions/ham10000/majority-cv0.7404-20261202-004233.json")
    teacher.oof        # (N, C) the ensemble's held-out probabilities of every training row
    teacher.cv         # its CV, recomputed (equal to the manifest's)

The manifest names the runs (with the sha256 of each OOF file) and the vote recipe (method,
options, weights, bias). vote's own functions replay it: a method that fits anything on OOF rows
(hill-climb weights, stacking, bias) is fitted without each row's fold, exactly as in its nested
CV, so every row's teacher probabilities come from an ensemble that did not fit on that row.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.artifacts import file_hash
from ensemble.artifacts.provenance import from_root
from ensemble.vote.cv import Spec, cross_validate, fold_scores
from ensemble.vote.objective import Objective
from ensemble.vote.runs import Runs, load_runs


class DistillError(ValueError):
    """A submission that cannot teach: missing, changed runs, or no class probabilities."""


@dataclass
class Teacher:
    manifest: Path
    spec: Spec
    runs: Runs
    oof: np.ndarray  # (N, C) float32, rows sum to 1, in runs.oof_ids order
    cv: float  # fold mean of the held-out predictions (the manifest's CV)
    cv_folds: list[float]

    @property
    def name(self) -> str:
        return self.spec.name(self.runs.ordinal)


def newest_submission(folder: Path) -> Path:
    """The newest manifest (by its created_utc stamp, then name) in submissions/<competition>/."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            stamp = json.loads(path.read_text()).get("created_utc", "")
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        found.append((str(stamp), path.name, path))
    if not found:
        raise DistillError(f"no submission manifest (*.json) in {folder}; run python -m ensemble.vote first "
                           f"or pass --submission FILE.json")
    return max(found)[2]


def recipe(manifest: dict, names: list[str]) -> Spec:
    """The vote Spec of a manifest's `method` ('hillclimb+bias', 'majority+grade+thr', ...) with its
    options, and for 'weighted' its weights in run order."""
    method, *flags = str(manifest["method"]).split("+")
    options = dict(manifest.get("options") or {})
    if method == "weighted":
        options["weights"] = np.array([float(manifest["weights"][n]) for n in names])
    return Spec(method, options, tune=bool({"bias", "thr"} & set(flags)), grade="grade" in flags)


def load_teacher(path: str | Path) -> Teacher:
    """Read a submission manifest, check its runs' OOF files are the ones it was made from, and replay
    its recipe on them. Raises DistillError (one line naming the file and what is wrong)."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"--submission: {path} not found")
    try:
        manifest = json.loads(path.read_text())
        runs = manifest["runs"]
        dirs = [from_root(r["dir"]) for r in runs]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise DistillError(f"{path}: not a vote submission manifest ({type(e).__name__}: {e})") from None
    for r in runs:
        oof = from_root(r["oof"]["path"])
        if not oof.is_file():
            raise DistillError(f"{path}: run '{r['name']}': {oof} not found (the teacher's OOF probabilities)")
        if file_hash(oof) != r["oof"]["sha256"]:
            raise DistillError(f"{path}: run '{r['name']}': {oof} changed since the submission was made "
                               f"(sha256 {r['oof']['sha256'][:12]} -> {file_hash(oof)[:12]}); vote again")
    data = load_runs(dirs)
    if data.ordinal:
        raise DistillError(f"{path}: the runs regress a grade (score column); a student needs class probabilities")
    spec = recipe(manifest, data.names)
    if spec.grade:
        raise DistillError(f"{path}: '{manifest['method']}' decodes grades; a student needs class probabilities")
    objective = Objective(data.metric)
    held = cross_validate(spec, data.oof, data.y, data.folds, objective)[0].oof  # each row without its fold
    pred = np.clip(held, 0.0, None).astype(np.float32)
    pred /= pred.sum(1, keepdims=True)  # rank averages are not distributions; the others already are
    folds = fold_scores(pred, data.y, data.folds, objective)
    return Teacher(path, spec, data, pred, float(np.mean(folds)), [float(f) for f in folds])
