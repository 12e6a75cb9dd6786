"""Train/test shift: adversarial validation, importance-weighted CV, class-prior shift.

    python -m ensemble.shift --competition ham10000    # -> runs/ham10000/shift/{shift.json,weights.csv}

features     image statistics + pretrained embeddings (cached beside the image cache)
adversarial  train-vs-test classifier (cross-validated), AUC with CI, importance weights, ESS
scores       importance-weighted and test-like scores of OOF predictions (train's metrics.json)
priors       test class priors by EM (Saerens et al. 2002) with a bootstrap CI; prior adjustment
(vote's hooks, --select/--priors, live in ensemble/vote/shift.py; the report's "Train vs test" section in
ensemble/report/shift.py)
run          run_shift (the command), one_line / shift_check (compete)
"""
from .adversarial import Adversarial, adversarial_cv, density_weights, effective_sample_size, verdict
from .priors import PriorEstimate, adjust, em_priors, estimate_priors
from .scores import load_weights, shift_cv, weighted_score

__all__ = ["Adversarial", "adversarial_cv", "density_weights", "effective_sample_size", "verdict",
           "PriorEstimate", "adjust", "em_priors", "estimate_priors", "load_weights", "shift_cv", "weighted_score"]
