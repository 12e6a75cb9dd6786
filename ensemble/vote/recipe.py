"""A chosen vote as plain numbers (the manifest's "recipe"), and its replay on new predictions.

    recipe = make_recipe(fitted, names, classes, ordinal, fold_weights, prior, target)   # JSON-able
    values = replay(recipe, stack)      # (M, N, C) per-model predictions -> submission values

The recipe holds everything the vote decided: the method and its fitted state (hill-climb weights,
the stacker's coefficients), the per-class bias or grade thresholds, the class-prior adjustment
(calibration temperature and bias, train and target priors) and each model's fold weights.
`write_submission` makes the submission's values with `replay`, so a bundle that replays the recipe
on the same per-model predictions gives the same submission. Every method but `rank` works row by
row (`row_wise`): predictions can then be made and written in chunks.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ensemble.shift.priors import adjust, calibrate
from ensemble.vote.calibrate import scale
from ensemble.vote.cv import Fitted, Spec
from ensemble.vote.methods import get_method

RECIPE_VERSION = 1
WHOLE_SET_METHODS = frozenset({"rank"})  # ranks rows against each other: needs every row at once


class RecipeError(ValueError):
    """A recipe that cannot be replayed (unknown version or method, wrong sizes)."""


def _plain(value):
    """numpy arrays and scalars -> lists and Python numbers (float64 round-trips JSON exactly)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def make_recipe(fitted: Fitted, names: Sequence[str], classes: Sequence[str], ordinal: bool,
                fold_weights: Mapping[str, Mapping[str, float] | None] | None = None,
                prior=None, target: np.ndarray | None = None, temperature: float | None = None) -> dict:
    """The vote `fitted` (a Spec fitted on OOF) as a JSON-able dict.

    names: the M runs in stack order; fold_weights: run -> {fold: weight} of the fold predictions
    averaged into its test predictions (None: unknown); prior: the PriorEstimate (shift.priors) and
    target (C,) the priors the submission is adjusted to (None: no adjustment); temperature: scales the
    finished probabilities (vote --calibrate; None: not scaled).
    """
    spec = fitted.spec
    priors = None
    if prior is not None and target is not None:
        priors = {"train": _plain(np.asarray(prior.train, np.float64)), "target": _plain(np.asarray(target, np.float64)),
                  "temperature": float(prior.temperature), "bias": _plain(np.asarray(prior.bias, np.float64))}
    return {"version": RECIPE_VERSION, "method": spec.method, "options": _plain(spec.options), "tune": spec.tune,
            "grade": spec.grade, "state": _plain(fitted.state), "post": _plain(fitted.post),
            "post_kind": None if fitted.post is None else ("thresholds" if ordinal or spec.grade else "bias"),
            "priors": priors, "models": list(names), "classes": [str(c) for c in classes], "ordinal": bool(ordinal),
            "fold_weights": _plain(dict(fold_weights)) if fold_weights else None,
            "row_wise": spec.method not in WHOLE_SET_METHODS,
            "temperature": None if temperature is None else float(temperature)}


def fitted_from_recipe(recipe: dict) -> Fitted:
    """The Fitted spec a recipe describes (arrays back from lists). Raises RecipeError."""
    version = recipe.get("version")
    if version != RECIPE_VERSION:
        raise RecipeError(f"vote recipe version {version!r} is not supported (this ensemble reads "
                          f"version {RECIPE_VERSION}); update ensemble")
    try:
        get_method(recipe["method"])
    except ValueError as e:
        raise RecipeError(f"vote recipe: {e}") from None
    state = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in (recipe.get("state") or {}).items()}
    post = None if recipe.get("post") is None else np.asarray(recipe["post"], np.float64)
    spec = Spec(recipe["method"], dict(recipe.get("options") or {}), bool(recipe.get("tune")), bool(recipe.get("grade")))
    return Fitted(spec, state, post)


def combined(recipe: dict, stack: np.ndarray) -> np.ndarray:
    """(M, N, C) per-model predictions -> the vote's combined (N, C) probabilities (after the prior
    adjustment), or (N, 1) scores / expected grades before their thresholds."""
    n_models, n_classes = len(recipe["models"]), len(recipe["classes"])
    width = 1 if recipe["ordinal"] else n_classes
    if stack.ndim != 3 or stack.shape[0] != n_models or stack.shape[2] != width:
        raise RecipeError(f"vote recipe: expected predictions of shape ({n_models}, N, {width}), got {stack.shape}")
    pred = fitted_from_recipe(recipe).predict(stack)
    pri = recipe.get("priors")
    if pri is not None and pred.shape[1] > 1:  # as PriorEstimate.adjusted: calibrate, then re-weight
        pred = adjust(calibrate(pred, pri["temperature"], np.asarray(pri["bias"])), np.asarray(pri["train"]),
                      np.asarray(pri["target"])).astype(np.float32)
    return pred


def finish(recipe: dict, pred: np.ndarray) -> np.ndarray:
    """combined() output -> submission values: (N, C) probabilities (bias applied, then the calibration
    temperature) or (N,) class indices."""
    values = fitted_from_recipe(recipe).finish(pred, len(recipe["classes"]))
    if recipe.get("temperature") is not None and values.ndim == 2:
        values = scale(values, recipe["temperature"])
    return values


def replay(recipe: dict, stack: np.ndarray) -> np.ndarray:
    """(M, N, C) per-model predictions -> the submission's values, exactly as the vote made them."""
    return finish(recipe, combined(recipe, stack))


def unused_models(recipe: dict) -> set[int]:
    """Models a weighted-mean vote gives weight 0 (hill-climbing often drops some): their predictions
    are multiplied by 0, so they need not be made (zeros in their place give the same result)."""
    if recipe["method"] not in ("weighted", "hillclimb"):
        return set()
    return {i for i, w in enumerate((recipe.get("state") or {}).get("weights", [])) if w == 0}


def outputs_labels(recipe: dict) -> bool:
    """True when the vote ends in class indices (ordinal scores or expected grades cut by thresholds)."""
    return bool(recipe["ordinal"] or recipe.get("grade"))
