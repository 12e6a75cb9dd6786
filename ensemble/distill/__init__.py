"""Distillation: one fast student trained on an ensemble's out-of-fold soft labels (and pseudo-labelled
test rows), K-fold on the same folds.csv as every run (`python -m ensemble.distill`)."""
from ensemble.distill.run import DistillResult, distill
from ensemble.distill.teacher import DistillError, Teacher, load_teacher

__all__ = ["DistillError", "DistillResult", "Teacher", "distill", "load_teacher"]
