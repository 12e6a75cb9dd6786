"""Class-prior shift: EM (Saerens et al. 2002) recovers a validation fold resampled to other class
mixes, and the prior-adjusted predictions score no worse than the unadjusted ones."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from ensemble.shift.priors import (adjust, calibrate, em_priors, estimate_priors, fit_calibration, fit_temperature,
                                   parse_priors, temper)


def gaussian_classes(n_per_class: int, n_classes: int, rng) -> tuple[np.ndarray, np.ndarray]:
    means = np.array([[0, 0], [2.2, 0.6], [0.4, 2.4]])[:n_classes]
    y = np.repeat(np.arange(n_classes), n_per_class)
    return means[y] + rng.normal(size=(len(y), 2)), y


def resample(y: np.ndarray, mix, n: int, rng) -> np.ndarray:
    """Row indices drawing n rows with class shares `mix`."""
    counts = np.round(np.asarray(mix) * n).astype(int)
    return np.concatenate([rng.choice(np.flatnonzero(y == k), c, replace=True) for k, c in enumerate(counts)])


@pytest.mark.parametrize("n_classes, mix", [(2, [0.8, 0.2]), (2, [0.25, 0.75]), (3, [0.6, 0.3, 0.1]),
                                            (3, [1 / 3, 1 / 3, 1 / 3])])
def test_em_recovers_the_resampled_mix_and_adjusting_does_not_hurt(n_classes, mix):
    rng = np.random.default_rng(n_classes)
    x, y = gaussian_classes(1500, n_classes, rng)
    val = rng.permutation(len(y))[: len(y) // 3]  # the validation fold
    fit = np.setdiff1d(np.arange(len(y)), val)
    model = LogisticRegression(max_iter=1000).fit(x[fit], y[fit])
    train = np.bincount(y[fit], minlength=n_classes) / len(fit)
    oof = model.predict_proba(x[val])
    idx = resample(y[val], mix, 1000, rng)  # the validation fold with another class mix
    est = estimate_priors(oof[idx], [f"c{k}" for k in range(n_classes)], train, oof, y[val], n_boot=100)
    assert np.abs(est.estimated - mix).max() < 0.05, (est.estimated, mix)
    assert np.all(est.lo - 0.01 <= mix) and np.all(mix <= est.hi + 0.01), (est.lo, est.hi, mix)
    plain, adjusted = oof[idx], adjust(oof[idx], train, est.estimated)
    acc = lambda p: float((p.argmax(1) == y[val][idx]).mean())
    assert acc(adjusted) >= acc(plain) - 0.005
    assert log_loss(y[val][idx], adjusted, labels=range(n_classes)) <= log_loss(
        y[val][idx], plain, labels=range(n_classes)) + 0.002
    assert "class priors, train -> estimated test" in est.lines()[0]


def test_em_fixed_point_and_adjust():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    same, it = em_priors(p, np.array([0.5, 0.5]))
    assert np.allclose(adjust(p, [0.5, 0.5], same).mean(0), same, atol=1e-6) and it >= 1
    assert np.allclose(adjust(p, [0.5, 0.5], [0.5, 0.5]), p)


def test_calibration_undoes_overconfidence_and_class_weights():
    rng = np.random.default_rng(0)
    x, y = gaussian_classes(500, 2, rng)
    p = LogisticRegression().fit(x, y).predict_proba(x)
    assert 2.0 < fit_temperature(temper(p, 0.4), y) < 3.0  # made over-confident by T = 0.4: about 1 / 0.4
    skewed = calibrate(p, 1.0, np.array([1.0, -1.0]))  # as if trained with other class weights
    t, b = fit_calibration(skewed, y)
    assert abs(t - 1) < 0.15 and b[0] - b[1] == pytest.approx(-2.0, abs=0.3)


def test_em_needs_calibration_when_the_model_was_class_weighted():
    """A model trained with balanced class weights: its posteriors are not those of the training
    priors, so EM without calibration goes astray; BCTS on OOF puts it right."""
    rng = np.random.default_rng(3)
    x, y = gaussian_classes(1500, 3, rng)
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:300], np.flatnonzero(y == 2)[:150]]
    x, y = x[keep], y[keep]  # imbalanced training set: 1500 / 300 / 150
    val = rng.permutation(len(y))[: len(y) // 2]
    fit = np.setdiff1d(np.arange(len(y)), val)
    model = LogisticRegression(max_iter=1000, class_weight="balanced").fit(x[fit], y[fit])
    train = np.bincount(y[fit], minlength=3) / len(fit)
    oof = model.predict_proba(x[val])
    mix = np.array([0.4, 0.3, 0.3])
    idx = resample(y[val], mix, 1000, rng)
    raw = estimate_priors(oof[idx], ["a", "b", "c"], train, n_boot=0)
    cal = estimate_priors(oof[idx], ["a", "b", "c"], train, oof, y[val], n_boot=0)
    assert np.abs(cal.estimated - mix).max() < 0.06 < np.abs(raw.estimated - mix).max(), (cal.estimated, raw.estimated)


@pytest.mark.parametrize("text, expected", [("0.2,0.8", [0.2, 0.8]), ("b=3,a=1", [0.25, 0.75]), ("a=1", [1.0, 0.0])])
def test_parse_priors(text, expected):
    assert np.allclose(parse_priors(text, ["a", "b"]), expected)


@pytest.mark.parametrize("text, message", [
    ("0.2", "got 1 numbers for 2 classes"), ("c=1", "unknown class 'c'; classes: a, b"),
    ("x,y", "expected 'train', 'estimated' or one number per class"), ("0,0", "must be >= 0 and not all 0")])
def test_parse_priors_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_priors(text, ["a", "b"])
