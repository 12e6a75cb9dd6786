"""distill(): train one student on a submission's ensemble (its held-out probabilities as soft targets).

    result = distill("ham10000", student="configs/ham10000/resnet18.yaml", alpha=0.5)
    result.report()  # the student beside the ensemble: CV and predict cost

The student is a normal run, runs/<competition>/<student>-distill/, K-fold on the competition's
folds.csv like every run (vote can use it): its training rows learn
alpha * the ensemble's out-of-fold probabilities + (1 - alpha) * their label (train.soft_targets,
written to runs/<competition>/distill/teacher-<submission>.csv), plus the pseudo-labelled test rows
of runs/<competition>/pseudo.csv when that file exists (train.extra_rows); its CV is on the
competition's own rows with their labels.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ensemble.artifacts import CompetitionPaths, atomic_write_csv, file_hash
from ensemble.config import Config, ConfigError, load_config
from ensemble.distill.costs import PredictCost, format_costs, predict_cost
from ensemble.distill.teacher import DistillError, Teacher, load_teacher, newest_submission
from ensemble.train.run import RunResult, train_run

logger = logging.getLogger(__name__)
SUFFIX = "-distill"


@dataclass
class DistillResult:
    teacher: Teacher
    student_cfg: Config
    teacher_file: Path
    pseudo: Path | None
    run: RunResult
    costs: list[PredictCost] = field(default_factory=list)  # the student first, then the ensemble's runs

    def report(self) -> str:
        t, m = self.teacher, self.run.metrics or {}
        metric = t.runs.metric
        lines = [f"teacher: {t.name} of {len(t.runs.runs)} run(s) ({', '.join(t.runs.names)}) from {t.manifest}",
                 f"  ensemble CV {metric} {t.cv:.4f} (folds {' '.join(f'{v:.4f}' for v in t.cv_folds)})"]
        if self.run.complete:
            gap = m["cv"] - t.cv
            lines.append(f"student: {self.run.run_dir} CV {metric} {m['cv']:.4f} ({gap:+.4f} vs the ensemble; "
                         f"alpha {self.student_cfg.train.soft_targets.alpha:g}"
                         + (f", {m['extra_rows']['rows']} pseudo-labelled rows from {self.pseudo}" if self.pseudo else "")
                         + ")")
        else:
            lines.append(f"student: {self.run.run_dir}: folds still to train (another process?); CV when all are done")
        if self.costs:
            from ensemble.train.engine import resolve_device
            lines.append(format_costs(self.costs[0], self.costs[1:], str(resolve_device(self.student_cfg.train.device))))
        lines.append("note: each teacher row was predicted by models trained on the other folds, whose labels include "
                     "the student's validation fold: the student's CV is slightly optimistic")
        return "\n".join(lines)


def _student_config(teacher: Teacher, student: str | Path | None, overrides: Sequence[str]) -> tuple[Path, Config]:
    """--student CFG, or the ensemble run that is cheapest to predict with (GFLOPs x folds x TTA views,
    from its metrics.json and config.yaml), trained again as the student."""
    if student is not None:
        return Path(student), load_config(student, overrides)

    def cost(run) -> float:
        cfg = load_config(run.paths.config)
        return float(run.metrics.get("gflops") or np.inf) * cfg.folds.n * len(cfg.predict.tta)

    run = min(teacher.runs.runs, key=cost)
    return run.paths.config, load_config(run.paths.config, overrides)


def _write_teacher(teacher: Teacher, path: Path) -> None:
    df = pd.DataFrame(teacher.oof, columns=teacher.runs.classes)
    df.insert(0, "fold", teacher.runs.folds)
    df.insert(0, "id", teacher.runs.oof_ids)
    if path.is_file() and pd.read_csv(path, dtype={"id": str}).round(6).equals(df.round(6)):
        return  # unchanged: keep the file (and its hash) a resumed student was started with
    atomic_write_csv(path, df, float_format="%.7g")


def distill(competition: str, *, submission: str | Path | None = None, student: str | Path | None = None,
            alpha: float = 0.5, overrides: Sequence[str] = (), submissions_dir: str | Path = "submissions",
            pseudo: str | Path | None = "auto", resume: bool = False, fresh: bool = False,
            measure: bool = True) -> DistillResult:
    """Train the student of `competition`'s ensemble (the newest submission manifest, or `submission`).

    student: a model config (default: the cheapest ensemble run's config.yaml); alpha: the teacher's
    share of each training row's target; overrides: --set for the student; pseudo: a file of
    pseudo-labelled test rows, "auto" (runs/<competition>/pseudo.csv if present) or None;
    measure: also measure the predict cost of the student and every ensemble run.
    """
    path = Path(submission) if submission else newest_submission(Path(submissions_dir) / competition)
    teacher = load_teacher(path)
    if teacher.runs.competition != competition:
        raise DistillError(f"{path}: a submission of '{teacher.runs.competition}', not of '{competition}'")
    if student is None:  # the run's config.yaml holds the per-fold time limit its --time plan set for that
        overrides = ["train.time_limit=null", *overrides]  # run's rows at that machine's speed (--set wins)
    source, base = _student_config(teacher, student, overrides)
    comp_dir = base.competition_dir
    if base.competition.name != competition:
        raise DistillError(f"{source}: the student config is for '{base.competition.name}', not '{competition}'")
    folds = CompetitionPaths(comp_dir).folds
    if not folds.is_file() or file_hash(folds) != teacher.runs.folds_hash:
        raise DistillError(f"{folds}: not the folds the ensemble's runs were trained on (folds_hash "
                           f"{teacher.runs.folds_hash[:12]}); the student must use the same folds.csv")
    pseudo_file = CompetitionPaths(comp_dir).pseudo if pseudo == "auto" else pseudo
    pseudo_file = Path(pseudo_file) if pseudo_file and Path(pseudo_file).is_file() else None
    if pseudo not in ("auto", None) and pseudo_file is None:
        raise DistillError(f"--pseudo: {pseudo} not found")
    teacher_file = comp_dir / "distill" / f"teacher-{path.stem}.csv"
    name = base.run_name if base.run_name.endswith(SUFFIX) else base.run_name + SUFFIX
    extra = [f"name={name}", f"train.soft_targets={{file: {json.dumps(str(teacher_file))}, alpha: {alpha}}}"]
    if pseudo_file is not None:
        extra.append(f"train.extra_rows={json.dumps(str(pseudo_file))}")
    cfg = load_config(source, [*overrides, *extra])  # checks alpha and every key before anything is written
    if cfg.competition.task == "ordinal":
        raise ConfigError(f"{source}: the student regresses a grade (competition.task: ordinal); distillation needs "
                          f"a classification head")
    if pseudo_file is not None:  # the pseudo rows' checks too, before the teacher file is written
        from ensemble.data.competition import load_competition
        from ensemble.train.targets import read_extra_rows
        comp = load_competition(cfg.competition)
        try:
            read_extra_rows(pseudo_file, comp.classes, comp.train["id"].tolist(), comp.train["path"].tolist())
        except (ValueError, FileNotFoundError) as e:
            raise DistillError(str(e)) from None
    _write_teacher(teacher, teacher_file)
    logger.info(f"distill: {cfg.run_name} learns {teacher.name} ({len(teacher.runs.runs)} runs, CV {teacher.cv:.4f}) "
                f"from {teacher_file} (alpha {alpha:g})" + (f" + pseudo-labelled rows of {pseudo_file}" if pseudo_file else ""))
    run = train_run(cfg, resume=resume, fresh=fresh)
    result = DistillResult(teacher, cfg, teacher_file, pseudo_file, run)
    if measure:
        n = len(teacher.runs.classes)
        result.costs = [predict_cost(cfg, n, name=cfg.run_name)] + [
            predict_cost(load_config(r.paths.config), n, name=r.name) for r in teacher.runs.runs]
    return result
