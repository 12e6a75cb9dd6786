"""ensemble: K-fold image classification with timm backbones, Optuna tuning and honest voting.

The library under the commands (each `python -m ensemble.<cmd>` only parses, calls one of these
and prints):

    from ensemble import VoteOptions, load_config, train_run, vote_runs
    cfg = load_config("configs/demo/resnet18.yaml", ["folds.n=3"])
    run = train_run(cfg)                           # -> RunResult(run_dir, folds, metrics)
    vote = vote_runs([run.run_dir, other.run_dir], VoteOptions(methods="mean,hillclimb", write="none"))
    vote.best_ensemble.cv.score

Names are imported on first use, so `import ensemble` stays cheap (vote needs no torch).
"""
from __future__ import annotations

import importlib

_API = {
    # config
    "load_config": "ensemble.config", "Config": "ensemble.config", "ConfigError": "ensemble.config",
    # data
    "load_competition": "ensemble.data.competition", "build_transforms": "ensemble.data.augment",
    "build_cache": "ensemble.data.images",
    # models
    "build_model": "ensemble.models", "set_trainable": "ensemble.models",
    # train
    "train_run": "ensemble.train.run", "RunResult": "ensemble.train.run", "FoldPlan": "ensemble.train.plan",
    "Stage": "ensemble.train.plan", "build_fold_plan": "ensemble.train.plan", "FoldTrainer": "ensemble.train.fold",
    "FoldInputs": "ensemble.train.fold", "resolve_device": "ensemble.train.engine",
    "resolve_precision": "ensemble.train.engine",
    "lr_find": "ensemble.train.lr_find", "distill": "ensemble.distill.run", "load_teacher": "ensemble.distill.teacher",
    # tune
    "tune_model": "ensemble.tune.tuner", "TuneResult": "ensemble.tune.tuner", "TuneError": "ensemble.tune.tuner",
    # vote
    "vote_runs": "ensemble.vote.voter", "VoteResult": "ensemble.vote.voter", "VoteOptions": "ensemble.vote.options",
    "find_runs": "ensemble.artifacts",
    # predict: bundles
    "Predictor": "ensemble.predict", "export_bundle": "ensemble.predict", "read_bundle": "ensemble.predict",
    # artifacts, registries
    "RunPaths": "ensemble.artifacts", "CompetitionPaths": "ensemble.artifacts", "Registry": "ensemble.registry",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
