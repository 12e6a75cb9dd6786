"""Vote finished runs into a submission: methods, honest (nested) CV, run loading, submission files.

Imports only ensemble.artifacts, ensemble.metrics (+ registry, plugins) and itself: no torch, no
training code, no config.
"""
from ensemble.vote.cv import CVScore, Fitted, Spec, cross_validate, error_correlation, fit, fold_scores, model_scores
from ensemble.vote.methods import (METHODS, Method, check_weights, fit_hillclimb, fit_stacking, geometric,
                                   get_method, hillclimb, majority, mean, rank, register, stacking, weighted)
from ensemble.vote.objective import Objective, fit_bias, fit_thresholds
from ensemble.vote.postprocess import apply_bias, expected_grade, ordinal_labels
from ensemble.vote.runs import Run, Runs, RunsError, find_runs, load_runs

__all__ = ["CVScore", "Fitted", "METHODS", "Method", "Objective", "Run", "Runs", "RunsError", "Spec", "apply_bias",
           "check_weights", "cross_validate", "error_correlation", "expected_grade", "find_runs", "fit", "fit_bias",
           "fit_hillclimb", "fit_stacking", "fit_thresholds", "fold_scores", "geometric", "get_method", "hillclimb",
           "load_runs", "majority", "mean", "model_scores", "ordinal_labels", "rank", "register", "stacking",
           "weighted"]
