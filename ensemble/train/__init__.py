"""K-fold training of one model: losses, optimizers, the epoch engine, the fold plan and trainer, the run.

Never imports tune, vote, report or compete.
"""
from ensemble.train.fold import FoldInputs, FoldTrainer
from ensemble.train.plan import FoldPlan, Stage, build_fold_plan
from ensemble.train.run import RunResult, train, train_run

__all__ = ["FoldInputs", "FoldPlan", "FoldTrainer", "RunResult", "Stage", "build_fold_plan", "train", "train_run"]
