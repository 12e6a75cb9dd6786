"""compete's pseudo-label round (compete.yaml `pseudo:`), the steps right after the first vote:

    pseudo-labels     per class, the lowest confidence threshold whose OOF precision is >= pseudo.precision
                      (ensemble.vote.pseudo); the test rows that pass -> runs/<competition>/pseudo.csv
    <model>-pseudo    each of pseudo.models trained again with train.extra_rows: pseudo.csv (the rows join
                      every fold's training part, never a validation part; CV stays on the labelled rows)
    vote again        every run of both rounds voted; --submit sends this vote

When no class reaches the precision, one line says so and the round stops (the first vote stands).
Every step resumes: pseudo.csv is rewritten only when its rows change, and a second-round run that
finished on other rows than the file's now is trained again.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ensemble.compete.progress import PlanProgress, epochs_of
from ensemble.compete.spec import PSEUDO_SUFFIX
from ensemble.compete.steps import Costing, Job, Step, submit_vote, vote_cost, vote_job

logger = logging.getLogger(__name__)

LABEL_STEP, VOTE_STEP = "pseudo-labels", "vote again"
ROUND_STEPS = (LABEL_STEP, VOTE_STEP)  # the round's steps besides its models (--time prices them apart)


def pseudo_steps(job: Job) -> list[Step]:
    """The round's steps (none when compete.yaml has no `pseudo:`)."""
    if job.pseudo is None:
        return []
    names = job.reruns if job.reruns is not None else job.pseudo.chosen(list(job.cfgs))
    return [label_step(job), *(rerun_step(job, n) for n in names), vote_again_step(job)]


def write_pseudo(job: Job, result) -> Path | None:
    """The first vote's pseudo-labelled test rows -> runs/<competition>/pseudo.csv (train.extra_rows'
    columns); logs one line per class. -> the file, or None when no row passes (or the ensemble submits
    labels, not probabilities)."""
    import pandas as pd

    from ensemble.artifacts import atomic_write_csv
    from ensemble.data.competition import load_competition
    from ensemble.vote.pseudo import chosen_predictions, pseudo_labels
    spec = job.pseudo
    preds = chosen_predictions(result)
    if preds is None:
        logger.info(f"{LABEL_STEP}: skipped: the chosen ensemble ({result.best_ensemble.name}) submits labels or "
                    f"grades, not class probabilities; the first vote stands")
        return None
    data = result.runs
    pl = job.result.pseudo = pseudo_labels(preds[0], data.y, preds[1], data.classes, precision=spec.precision,
                                           max_fraction=spec.max_fraction)
    for line in pl.lines():
        logger.info(line)
    if pl.n == 0:
        why = ("no class reaches OOF precision" if all(t.threshold is None for t in pl.thresholds) else
               "no test row reaches its class's threshold of OOF precision")
        logger.info(f"{LABEL_STEP}: no pseudo-labels ({why} {spec.precision:g}); the second round is skipped and "
                    f"the first vote stands")
        return None
    test = load_competition(job.setup_cfg.competition).test
    where = dict(zip(test["id"].astype(str), test["path"].astype(str)))
    ids = data.sample[data.id_col].astype(str).tolist()
    frame = pl.frame(ids, [where[i] for i in ids], spec.weight, spec.labels == "hard")
    path = job.paths.pseudo
    same = path.is_file() and _same_rows(pd.read_csv(path, dtype={"id": str, "path": str}), frame)
    if not same:  # unchanged: the file (and its hash) the second round may have started with stays
        atomic_write_csv(path, frame, float_format="%.7g")
    logger.info(f"{LABEL_STEP}: {pl.n} of {len(ids)} test rows ({spec.labels} labels, weight {spec.weight:g}) "
                f"{'unchanged in' if same else '->'} {path}")
    return path


def _same_rows(old, new) -> bool:
    """The same ids, paths and (to the CSV's 7 digits) numbers."""
    import numpy as np
    if list(old.columns) != list(new.columns) or len(old) != len(new):
        return False
    text = ["id", "path"]
    numbers = [old.drop(columns=text).to_numpy(np.float64), new.drop(columns=text).to_numpy(np.float64)]
    return old[text].equals(new[text]) and np.allclose(*numbers, rtol=1e-6, atol=1e-7)


def label_step(job: Job) -> Step:
    def run(progress: PlanProgress) -> None:
        job.result.first_vote = job.result.vote
        logger.info(f"== {LABEL_STEP} (OOF precision >= {job.pseudo.precision:g} per class)")
        job.pseudo_file = write_pseudo(job, job.result.vote)

    def cost(c: Costing) -> float:  # the recipe's replay, the competition's ids and a CSV
        return 1.0 + 2e-5 * (c.n_train + c.n_test) * c.n_classes

    return Step(LABEL_STEP, job.estimate(LABEL_STEP, cost), run)


def _stale(run_dir: Path, pseudo_file: Path) -> bool:
    """A finished run trained on other pseudo-labelled rows than pseudo_file holds now."""
    from ensemble.artifacts import RunPaths, file_hash
    metrics = RunPaths(run_dir).metrics
    if not metrics.is_file():
        return False
    used = json.loads(metrics.read_text()).get("extra_rows") or {}
    return used.get("sha256") != file_hash(pseudo_file)


def rerun_step(job: Job, name: str) -> Step:
    """Train model `name` again as <name>-pseudo with the pseudo-labelled rows in every fold's training part."""
    step_name = name + PSEUDO_SUFFIX

    def run(progress: PlanProgress) -> None:
        if job.pseudo_file is None:  # the labelling step said why
            return
        if name not in job.cfgs:
            logger.info(f"{step_name}: skipped: {name} was not trained")
            return
        from ensemble.artifacts import RunPaths
        from ensemble.config import load_config
        from ensemble.train.run import train
        first = job.trained.get(name, job.cfgs[name])
        cfg = load_config(RunPaths(first.run_dir).config, [
            *job.rerun_set.get(step_name, []), f"train.extra_rows={json.dumps(str(job.pseudo_file))}",
            f"name={first.run_name}{PSEUDO_SUFFIX}"])
        fresh = _stale(cfg.run_dir, job.pseudo_file)
        logger.info(f"== train {cfg.run_name} ({name} again, {job.result.pseudo.n} pseudo-labelled test rows in "
                    f"every fold's training part{job.notes.get(step_name, '')})"
                    + ("; its folds were trained on other pseudo-labels: trained again" if fresh else ""))
        job.cfgs[step_name] = cfg
        train(cfg, resume=not fresh, fresh=fresh, on_epoch=progress.epoch_counter(epochs_of(cfg)))
        job.trained[step_name] = cfg

    return Step(step_name, job.estimates.get(step_name), run, f"train {step_name}")


def vote_again_step(job: Job) -> Step:
    """Vote both rounds' runs; the CV line compares it with the first vote. --submit sends the last vote."""
    def run(progress: PlanProgress) -> None:
        first = job.result.first_vote
        second = [n for n in job.trained if n.endswith(PSEUDO_SUFFIX)]
        if job.pseudo_file is None or not second:
            if job.pseudo_file is not None:
                logger.info(f"{VOTE_STEP}: skipped: no second-round model trained; the first vote stands")
            submit_vote(job, first)
            return
        result = vote_job(job, f" again, with {len(second)} pseudo-label run{'s' if len(second) > 1 else ''}")
        a, b = first.best_ensemble, result.best_ensemble
        logger.info(f"{VOTE_STEP}: CV {b.cv.score:.4f} ({b.name} of both rounds) vs {a.cv.score:.4f} ({a.name}, "
                    f"first vote): {b.cv.score - a.cv.score:+.4f}. The pseudo-labels came from models that saw "
                    f"every fold's labels, so the second round's CV is slightly optimistic")
        submit_vote(job, result)

    def cost(c: Costing) -> float:  # at most twice the runs of the first vote
        return vote_cost(job, c, 2 * max(c.n_models, len(job.cfgs)))

    return Step(VOTE_STEP, job.estimate(VOTE_STEP, cost), run)
