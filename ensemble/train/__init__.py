"""K-fold training of one model: losses, optimizers, the epoch engine, the fold plan and trainer, the run.

Never imports tune, vote, report or compete. Names are imported on first use, so checking a config's
loss or optimizer name (ensemble.registry.lookup) imports only the module that registers it.
"""
from __future__ import annotations

import importlib

_API = {"FoldInputs": "ensemble.train.fold", "FoldTrainer": "ensemble.train.fold", "FoldPlan": "ensemble.train.plan",
        "Stage": "ensemble.train.plan", "build_fold_plan": "ensemble.train.plan", "RunResult": "ensemble.train.run",
        "train": "ensemble.train.run", "train_run": "ensemble.train.run"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'ensemble.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
