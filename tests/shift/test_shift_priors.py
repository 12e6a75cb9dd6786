"""Class-prior shift: EM (Saerens et al. 2002) recovers a validation fold resampled to other class
mixes, and the prior-adjusted predictions score no worse than the unadjusted ones."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from ensemble.shift.priors import (adjust, calibrate, em_priors, estimate_priors, fit_calibration, fit_temperature,
                                   mle_priors, parse_priors, temper)
from test_vote_cli import setup, vote  # noqa: F401  (the fixture)


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


@pytest.mark.parametrize("text, expected", [("0.2,0.8", [0.2, 0.8]), ("b=3,a=1", [0.25, 0.75]), ("a=1,b=0", [1.0, 0.0])])
def test_parse_priors(text, expected):
    assert np.allclose(parse_priors(text, ["a", "b"]), expected)


@pytest.mark.parametrize("text, message", [
    ("0.2", "--priors: got 1 numbers for 2 classes (a, b)"),
    ("c=1", "--priors: unknown class 'c'; classes: a, b"),
    ("x,y", "--priors: expected 'train', 'estimated' or one number per class (a, b), got 'x,y'"),
    ("0,0", "--priors: priors must be >= 0 and not all 0, got '0,0'"),
    # a class left out used to get prior 0 silently: the submission never predicted it
    ("a=0.5", "--priors: no prior for class 'b'; name every class (a=..., b=...) or none ('0.3,0.7' in class order)"),
])
def test_parse_priors_errors(text, message):
    with pytest.raises(ValueError) as e:
        parse_priors(text, ["a", "b"])
    assert str(e.value) == message


def test_priors_cli_must_name_every_class_of_three(setup, capsys):
    """vote --priors naming 2 of 3 classes: refused in one line, nothing written (it used to give the
    third class prior 0, so the submission never predicted it)."""
    tmp, _, _ = setup
    assert vote("--method", "mean", "--priors", "akiec=0.5,bcc=0.5") == 2
    assert capsys.readouterr().err == ("error: --priors: no prior for class 'mel'; name every class (akiec=..., "
                                       "bcc=..., mel=...) or none ('0.3,0.7' in class order)\n")
    assert not (tmp / "subs").exists()


def _weak_three_class_case(seed: int = 24):
    """A weak classifier (logit margin 0.1) whose test rows are nearly all class 0: EM crawls (its
    1000-step estimate of the prior is 0.989 while the likelihood peaks at 1.0)."""
    rng = np.random.default_rng(seed)
    train = np.array([0.2, 0.3, 0.5])

    def make(n, priors):
        y = rng.choice(3, n, p=priors)
        logits = rng.normal(0, 1, (n, 3))
        logits[np.arange(n), y] += 0.1
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True), y
    oof, y = make(2000, train)
    test, _ = make(400, rng.dirichlet(np.ones(3) * 0.3))
    return test, train, oof, y


def test_prior_interval_holds_the_estimate_where_halfway_bootstraps_did_not():
    test, train, oof, y = _weak_three_class_case()
    est = estimate_priors(test, ["a", "b", "c"], train, oof, y)
    assert np.all(est.lo <= est.estimated) and np.all(est.estimated <= est.hi), (est.lo, est.estimated, est.hi)
    assert est.estimated[0] == pytest.approx(1.0, abs=1e-6) and est.unconverged <= 2
    # what the interval was before: EM stopped at 200 steps (tol 1e-6) from the training priors
    p = calibrate(test, est.temperature, est.bias)
    rng = np.random.default_rng(0)
    old = np.array([em_priors(p[rng.integers(0, len(p), len(p))], train, 200, 1e-6)[0] for _ in range(100)])
    assert np.percentile(old[:, 0], 97.5) < em_priors(p, train)[0][0] - 0.05  # excluded its own estimate


def test_mle_priors_is_em_fixed_point_and_converges_at_the_boundary():
    test, train, oof, y = _weak_three_class_case()
    t, b = fit_calibration(oof, y)
    p = calibrate(test, t, b)
    w, ok = mle_priors(p, train)
    em, steps = em_priors(p, train, 300_000, 1e-12)
    assert ok and steps > 1000 and np.abs(w - em).max() < 1e-6  # EM needed thousands of steps to get there
    rng = np.random.default_rng(1)
    x, yy = gaussian_classes(400, 3, rng)
    q = LogisticRegression(max_iter=1000).fit(x, yy).predict_proba(x)
    w2, ok2 = mle_priors(q, np.array([1 / 3] * 3))
    assert ok2 and np.allclose(adjust(q, [1 / 3] * 3, w2).mean(0), w2, atol=1e-7)  # EM's fixed point
