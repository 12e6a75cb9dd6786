"""`python -m ensemble.compete --competition NAME --budget smoke|cpu|gpu`: Kaggle folder -> submission.

A budget of configs/<NAME>/compete.yaml (ensemble.compete.spec) names the models and their recipes.
Steps (ensemble.compete.steps; each resumes where it stopped when the command runs again):
duplicates -> train/test shift -> (tune +) train every model on all folds -> vote with every method,
keep the best by nested CV -> (with `pseudo:` a second round on pseudo-labelled test rows, voted again;
ensemble.compete.pseudo) -> report. Runs are named `<model>-<budget>` (second round: `<model>-<budget>-pseudo`)
so budgets never overwrite each other.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from ensemble.compete.spec import BUILDERS, Budget, ModelEntry, load_budget
from ensemble.compete.steps import CompeteResult, Job, job_steps, job_vote, run_steps
from ensemble.config import load_config

logger = logging.getLogger(__name__)


def model_overrides(entry: ModelEntry, b: Budget, budget: str, extra: Sequence[str]) -> list[str]:
    return [*b.set, *entry.set, *extra, f"name={entry.label}-{budget}"]


def compete(competition: str, budget: str, *, configs_dir: str = "configs", extra: Sequence[str] = (),
            quiet: bool = False, submit: bool = False, kaggle: str | None = None,
            message: str | None = None) -> CompeteResult:
    """Every step of one budget (see the module docstring). quiet: no progress bars (output.progress=false
    and no live overall line); submit: send the best submission with the Kaggle CLI (kaggle: its slug,
    default the competition's name; message: the Kaggle message). Raises on bad input or a failed step."""
    t0 = time.perf_counter()
    extra = [*extra, *(["output.progress=false"] if quiet else [])]
    folder, b, builder = load_budget(competition, budget, configs_dir)
    entries = b.entries()
    vote = job_vote(b.vote, competition, submit=submit, kaggle=kaggle, message=message)
    if builder:
        BUILDERS[builder](Path(load_config(folder / entries[0].cfg, list(extra)).competition.root))
    cfgs = {e.label: load_config(folder / e.cfg, model_overrides(e, b, budget, extra)) for e in entries}
    by_name = {e.label: e for e in entries}

    def tune(name: str, cfg):
        return _tuned(folder / by_name[name].cfg, cfg, b, model_overrides(by_name[name], b, budget, extra))

    job = Job(competition, cfgs, next(iter(cfgs.values())), b.dups, b.shift, vote, submit,
              tune if b.tune is not None else None, pseudo=b.pseudo)
    run_steps(job_steps(job), bar=not quiet, started=t0)  # one line for the whole budget (compete/progress.py)
    logger.info(f"compete {competition} --budget {budget}: done in {time.perf_counter() - t0:.0f}s")
    return job.result


def _tuned(cfg_path: Path, cfg, b: Budget, overrides: list[str]):
    """Tune the model (the study resumes if it exists), then -> the config of its best trial."""
    from ensemble.train.run import parse_folds
    from ensemble.tune.tuner import tune_model
    logger.info(f"== tune {cfg.run_name} ({b.tune.trials} trials)")
    sets = [o for o in overrides if not o.startswith("name=")]
    result = tune_model(cfg_path, overrides=sets, trials=b.tune.trials, timeout=b.tune.timeout or None,
                        folds=parse_folds(b.tune.folds, cfg.folds.n) if b.tune.folds else None)
    return load_config(result.best_path, [f"name={cfg.run_name}-tuned"])
