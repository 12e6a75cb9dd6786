"""Vote methods on hand-computed examples, honest (nested) scores, bias and thresholds."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from ensemble.vote import (Objective, Spec, apply_bias, cross_validate, error_correlation, fit, fit_bias,
                           fit_hillclimb, fit_stacking, fit_thresholds, get_method, hillclimb, model_scores,
                           ordinal_labels, stacking)
from ensemble.metrics import bind_metric

# 3 models x 4 rows x 3 classes
A = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.45, 0.35, 0.2]]
B = [[0.5, 0.4, 0.1], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.2, 0.6, 0.2]]
C = [[0.2, 0.7, 0.1], [0.45, 0.25, 0.3], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]]
STACK = np.array([A, B, C], dtype=np.float32)


def objective(metric, n_classes):
    return Objective(bind_metric(metric, [f"c{i}" for i in range(n_classes)]))


def acc_objective(n_classes=3):
    return objective("accuracy", n_classes)


def bal_objective(n_classes=3):
    return objective("balanced_accuracy", n_classes)


def qwk_objective(n_classes):
    return objective("qwk", n_classes)


def combine(name, stack=STACK, **state):
    return get_method(name).combine(stack, state)


def test_mean_weighted_geometric_by_hand():
    np.testing.assert_allclose(combine("mean")[0], [1.3 / 3, 1.4 / 3, 0.3 / 3], rtol=1e-6)
    np.testing.assert_allclose(combine("mean")[1], [0.75 / 3, 0.95 / 3, 1.3 / 3], rtol=1e-6)
    np.testing.assert_allclose(combine("weighted", weights=[2, 1, 1])[0], [0.475, 0.425, 0.1], rtol=1e-6)
    g = np.cbrt([0.6 * 0.5 * 0.2, 0.3 * 0.4 * 0.7, 0.1 * 0.1 * 0.1])
    np.testing.assert_allclose(combine("geometric")[0], g / g.sum(), rtol=1e-5)
    np.testing.assert_allclose(combine("geometric").sum(1), 1, rtol=1e-6)


def test_rank_average_by_hand_with_ties():
    # class 0: A ranks 4,2,1,3; B 4,1,3,2; C (0.2 twice -> 1.5) 1.5,3,1.5,4
    expected = np.array([[9.5, 9, 3], [6, 8, 9], [5.5, 5, 11], [9, 8, 7]]) / 12
    np.testing.assert_allclose(combine("rank"), expected, rtol=1e-6)


def test_majority_vote_ties_broken_by_mean_probability():
    out = combine("majority")
    # argmaxes A: 0 1 2 0, B: 0 2 2 1, C: 1 0 2 0; row 1 is a 1-1-1 tie, class 2 has the top mean (1.3/3)
    assert out.argmax(1).tolist() == [0, 2, 2, 0]
    np.testing.assert_allclose(out[1], (np.array([1, 1, 1]) + [0.75 / 3, 0.95 / 3, 1.3 / 3]) / 4, rtol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1, rtol=1e-6)


def test_hillclimb_by_hand():
    # 2 classes, p(class 1): A acc .5, B acc .75 (start), B+C mean is perfect -> weights 0, .5, .5
    p1 = np.array([[0.4, 0.6, 0.9, 0.45], [0.1, 0.45, 0.3, 0.9], [0.85, 0.2, 0.8, 0.2]], dtype=np.float32)
    stack = np.stack([1 - p1, p1], axis=2)
    y = np.array([0, 0, 1, 1])
    state = fit_hillclimb(stack, y, acc_objective(2))
    assert state["counts"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(hillclimb(stack, state)[:, 1], (p1[1] + p1[2]) / 2, rtol=1e-6)


def test_stacking_is_logistic_regression_on_log_probs():
    y = np.array([0, 2, 2, 0])
    state = fit_stacking(STACK, y, acc_objective(), C=1.0)
    feats = np.log(STACK).transpose(1, 0, 2).reshape(4, 9)
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(feats, y).predict_proba(feats)
    out = stacking(STACK, state)
    np.testing.assert_allclose(out[:, [0, 2]], ref, rtol=1e-4)
    assert np.all(out[:, 1] == 0)  # class 1 never seen in y: probability 0
    assert state["weights"].shape == (3,) and abs(state["weights"].sum() - 1) < 1e-9


def test_unknown_method_and_bad_weights():
    with pytest.raises(ValueError, match=r"^unknown vote method 'avg'; available: mean, weighted, geometric, "
                                         r"rank, majority, hillclimb, stacking$"):
        get_method("avg")
    with pytest.raises(ValueError, match=r"^expected 3 weights \(one per run\), got 2$"):
        combine("weighted", weights=[1, 2])
    with pytest.raises(ValueError, match="must be finite, >= 0"):
        combine("weighted", weights=[1, -1, 1])
    with pytest.raises(ValueError, match="does not support ordinal"):
        fit(Spec("rank"), STACK[:, :, :1], np.zeros(4, int), acc_objective())


def _peaked(rng, y, n_classes, strength):
    logits = rng.normal(size=(len(y), n_classes))
    logits[np.arange(len(y)), y] += strength
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def test_hillclimb_ignores_pure_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    good = _peaked(rng, y, 3, 2.0)
    noise = rng.dirichlet(np.ones(3), 400).astype(np.float32)
    state = fit_hillclimb(np.stack([noise, good, noise[::-1]]), y, acc_objective())
    assert state["counts"].tolist() == [0, 1, 0]
    assert state["weights"].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("spec", [Spec("hillclimb", {"max_iter": 30}), Spec("stacking", {"C": 10.0}),
                                  Spec("mean", tune=True)])
def test_nested_score_not_above_in_sample_on_overfitting_case(spec):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    folds = np.arange(90) % 3
    oof = rng.dirichlet(np.ones(3), (12, 90)).astype(np.float32)  # 12 pure-noise models
    cv, full = cross_validate(spec, oof, y, folds, bal_objective())
    assert spec.fits and cv.in_sample is not None
    assert cv.score <= cv.in_sample
    assert cv.in_sample > 0.4  # chance is 1/3: fitted on the rows it is scored on, optimistic
    assert len(cv.folds) == 3


def test_plain_methods_are_not_nested_and_single_model_scores():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 60)
    folds = np.arange(60) % 2
    oof = np.stack([_peaked(rng, y, 3, 1.0) for _ in range(3)])
    cv, _ = cross_validate(Spec("mean"), oof, y, folds, acc_objective())
    pred = oof.mean(0).argmax(1)
    assert cv.in_sample is None
    assert cv.score == pytest.approx(np.mean([accuracy_score(y[folds == k], pred[folds == k]) for k in (0, 1)]))
    singles = model_scores(oof, y, folds, acc_objective())
    assert singles[0].score == pytest.approx(
        np.mean([accuracy_score(y[folds == k], oof[0][folds == k].argmax(1)) for k in (0, 1)]))


def test_bias_tuning_helps_a_minority_class():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(270, int), np.ones(30, int)]
    p1 = np.clip(0.15 + 0.15 * y + rng.normal(0, 0.04, 300), 0.01, 0.49).astype(np.float32)  # never argmax 1
    probs = np.stack([1 - p1, p1], 1)
    obj = bal_objective(2)
    bias = fit_bias(probs, y, obj)
    assert obj(y, probs) == 0.5 and obj(y, probs, bias) > 0.8
    np.testing.assert_allclose(apply_bias(probs, bias).sum(1), 1, rtol=1e-6)


def test_ordinal_thresholds_and_ordinal_methods():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 500)
    scores = (0.6 * y + 0.3 + rng.normal(0, 0.2, 500)).astype(np.float32)[:, None]  # compressed scale
    obj = qwk_objective(5)
    assert ordinal_labels(np.array([0.49, 0.5, 3.7, 9.0]), None, 5).tolist() == [0, 1, 4, 4]
    thr = fit_thresholds(scores, y, obj)
    assert np.all(np.diff(thr) > 0)
    assert obj(y, scores, thr) > obj(y, scores) + 0.05
    oof = np.stack([scores, scores + rng.normal(0, 0.2, (500, 1)).astype(np.float32)])
    folds = np.arange(500) % 5
    cv, fitted = cross_validate(Spec("hillclimb", tune=True), oof, y, folds, obj)
    assert fitted.finish(fitted.predict(oof), 5).shape == (500,)
    assert cv.score <= cv.in_sample and Spec("mean", tune=True).name(ordinal=True) == "mean+thr"


def test_error_correlation():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 200)
    a = _peaked(rng, y, 3, 1.0)
    corr = error_correlation(np.stack([a, a, rng.dirichlet(np.ones(3), 200).astype(np.float32)]), y)
    assert corr.shape == (3, 3) and corr[0, 1] == pytest.approx(1.0) and corr[0, 2] < 0.9
    assert error_correlation(a[None], y).tolist() == [[1.0]]  # a single run (vote prints its table)


def test_rank_col_matches_scipy_with_ties_and_signed_zeros():
    from scipy.stats import rankdata
    rng = np.random.default_rng(6)
    x = np.round(rng.standard_normal(5000), 2).astype(np.float32)  # many ties, negatives
    x[:3] = [-0.0, 0.0, 0.0]
    from ensemble.vote.methods import _rank_col
    np.testing.assert_array_equal(_rank_col(x), rankdata(x).astype(np.float32))


def test_rank_splits_two_classes_in_half_so_all_leaves_it_out_for_label_metrics():
    from ensemble.vote.voter import build_specs
    p1 = np.random.default_rng(0).beta(4.0, 1.0, 100)  # most rows say class 1 (mean 0.8)
    stack = np.stack([1 - p1, p1], axis=-1)[None].astype(np.float32)
    labels = get_method("rank").combine(stack, {}).argmax(1)
    assert (stack[0].argmax(1) == 0).sum() < 15 and (labels == 0).sum() == 50  # a median split, whatever p says
    names = lambda *a, **k: [s.name() for s in build_specs(*a, **k)[0]]  # noqa: E731
    assert "rank" in names("all", None, "off", False, 10, 1.0)
    specs, notes = build_specs("all", None, "off", False, 10, 1.0, two_class_labels=True)
    assert not any(s.method == "rank" for s in specs) and "mean" in [s.name() for s in specs]
    assert notes[-1:] == ["'rank' skipped: with two classes and a metric on labels its argmax splits the rows in half "
                          "(--bias on fits a threshold to it)"]
    assert [n for n in names("all", None, "on", False, 10, 1.0, two_class_labels=True) if "rank" in n] == ["rank+bias"]
    assert names("rank", None, "off", False, 10, 1.0, two_class_labels=True) == ["rank"]  # asked for by name
