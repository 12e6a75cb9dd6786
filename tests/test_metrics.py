import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ensemble.metrics import (METRICS, Metric, confusion, get_metric, is_better, per_class_recall, score,
                              score_labels)

# 8 samples, 3 classes; pred = argmax of PROBS8
Y8 = np.array([0, 0, 0, 0, 1, 1, 2, 2])
PRED8 = np.array([0, 0, 0, 0, 1, 0, 2, 1])
PROBS8 = np.eye(3)[PRED8] * 0.7 + 0.1


def test_registry():
    assert list(METRICS) == ["accuracy", "balanced_accuracy", "macro_f1", "qwk", "roc_auc", "log_loss"]
    m = get_metric("log_loss")
    assert isinstance(m, Metric) and m.greater_is_better is False and m.needs == "proba"
    assert get_metric("qwk").needs == "label" and get_metric("qwk").greater_is_better
    with pytest.raises(ValueError, match="unknown metric 'f2'; available: accuracy, balanced_accuracy, macro_f1, "
                                         "qwk, roc_auc, log_loss"):
        get_metric("f2")


def test_label_metrics_hand_computed():
    # accuracy 6/8; recalls (4/4, 1/2, 1/2) -> 2/3
    assert score("accuracy", Y8, PROBS8) == pytest.approx(0.75)
    assert score("balanced_accuracy", Y8, PROBS8) == pytest.approx(0.6666667)
    # F1 = 2tp / (2tp + fp + fn): c0 8/9, c1 2/4, c2 2/3 -> 0.6851852
    assert score("macro_f1", Y8, PROBS8) == pytest.approx(0.6851852)
    assert score_labels("macro_f1", Y8, PRED8) == pytest.approx(0.6851852)
    assert get_metric("accuracy")(Y8, PROBS8) == pytest.approx(0.75)


def test_qwk_hand_computed():
    # O: (0,0) (1,2) (2,2); E = outer((1,1,1), (1,0,2)) / 3; sum wO = 1, sum wE = 5 -> 1 - 1/5
    assert score_labels("qwk", [0, 1, 2], [0, 2, 2]) == pytest.approx(0.8)
    assert score("qwk", [0, 1, 2], np.eye(3)[[0, 2, 2]]) == pytest.approx(0.8)
    # grade 2 absent: distances must be 0..3, not label positions (0, 1, 2)
    # O: (0,0) (1,3) (3,3), sum wO = 4; t = (1,1,0,1), p = (1,0,0,2): sum wE = (10 * 1 + 13 * 2) / 3 = 12
    assert score_labels("qwk", [0, 1, 3], [0, 3, 3]) == pytest.approx(1 - 4 / 12)  # positional would give 0.8
    assert score_labels("qwk", [0, 1, 3], [0, 3, 3], n_classes=6) == pytest.approx(1 - 4 / 12)


def test_roc_auc_binary_and_multiclass_hand_computed():
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    assert score("roc_auc", [0, 0, 1, 1], np.stack([1 - p1, p1], 1)) == pytest.approx(0.75)
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7]])
    y = np.array([0, 1, 2, 2])
    # one-vs-rest: class 0 -> 1, class 1 -> 2/3, class 2 -> 3/4; macro 0.8055556
    assert score("roc_auc", y, probs) == pytest.approx(0.8055556)
    assert score("roc_auc", y, probs) == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))


def test_log_loss_hand_computed():
    # -(ln 0.5 + ln 0.8) / 2
    assert score("log_loss", [0, 1], [[0.5, 0.5], [0.2, 0.8]]) == pytest.approx(0.4581454)
    # float32 rows summing to 1 within rounding are accepted (renormalised)
    p = np.array([[0.3, 0.3, 0.4000001], [0.1, 0.8, 0.1]], dtype=np.float32)
    assert score("log_loss", [2, 1], p) == pytest.approx(-(math.log(0.4) + math.log(0.8)) / 2, abs=1e-6)


def test_fold_with_absent_classes_no_crash_no_warnings():
    # class 2 absent from y_true (but predicted once), class 1 never predicted
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.7, 0.1, 0.2], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1], [0.4, 0.35, 0.25]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = {name: score(name, y, probs) for name in METRICS}
    assert values["accuracy"] == pytest.approx(0.25)
    assert values["balanced_accuracy"] == pytest.approx(0.25)  # recalls (1/2, 0/2), class 2 not counted
    assert values["macro_f1"] == pytest.approx(0.4 / 3)  # F1 = 2tp/(2tp+fp+fn): c0 2/5, c1 0, c2 (predicted) 0
    # AUC over classes 0 and 1 only: class 0 (0.7,0.2 vs 0.6,0.4) -> 2/4; class 1 (0.3,0.35 vs 0.1,0.1) -> 1
    assert values["roc_auc"] == pytest.approx(0.75)
    assert values["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.2) + math.log(0.3) + math.log(0.35)) / 4)
    assert math.isfinite(values["qwk"])
    assert math.isnan(score("roc_auc", [1, 1], [[0.2, 0.8], [0.6, 0.4]]))  # one class only: undefined


def test_per_class_recall_and_confusion():
    cm = confusion(Y8, PRED8, 4)
    assert cm.tolist() == [[4, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    rec = per_class_recall(Y8, PRED8, 4)
    assert rec.shape == (4,)
    assert rec[:3].tolist() == [1.0, 0.5, 0.5] and math.isnan(rec[3])


def test_is_better():
    assert is_better("accuracy", 0.8, 0.7) and not is_better("accuracy", 0.7, 0.7)
    assert is_better("log_loss", 0.3, 0.4) and not is_better("log_loss", 0.5, 0.4)
    assert is_better("qwk", 0.1, None) and is_better("qwk", 0.1, float("nan"))
    assert not is_better("qwk", float("nan"), 0.1)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: score_labels("roc_auc", [0, 1], [0, 1]),
         "metric 'roc_auc' needs probabilities; score_labels supports: accuracy, balanced_accuracy, macro_f1, qwk"),
        (lambda: score("accuracy", [0, 1, 1], [[0.5, 0.5], [0.1, 0.9]]), "y_true has 3 rows but probs has 2"),
        (lambda: score("accuracy", [0, 3], [[0.5, 0.5], [0.1, 0.9]]), r"y_true has class indices outside \[0, 2\): \[3\]"),
        (lambda: score("accuracy", [0, 1], [0.5, 0.5]), r"probs must have shape \(N, C\) with C >= 2, got \(2,\)"),
        (lambda: score("log_loss", [0, 1], [[0.5, np.nan], [0.1, 0.9]]), "probs must be finite and >= 0"),
        (lambda: score("accuracy", [0.5, 1], [[0.5, 0.5], [0.1, 0.9]]), "y_true must be integer class indices"),
        (lambda: score_labels("accuracy", [0, 1], [1]), "y_true has 2 rows but y_pred has 1"),
        (lambda: score("accuracy", [], np.zeros((0, 2))), r"cannot score an empty set \(0 rows\)"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bound_metric_scores_like_the_registry_and_binds_once():
    from ensemble.metrics import BoundMetric, bind_metric
    m = bind_metric("balanced_accuracy", ["a", "b", "c"])
    assert isinstance(m, BoundMetric) and str(m) == m.text == "balanced_accuracy" and m.n_classes == 3
    assert m.higher_is_better and m.balanced and not m.grades and m.needs == "label"
    assert m.score(Y8, PROBS8) == pytest.approx(0.6666667) == m.score_labels(Y8, PRED8)
    assert m.score_outputs("classification", Y8, PROBS8) == pytest.approx(0.6666667)
    np.testing.assert_allclose(m.per_class(Y8, PROBS8), [1.0, 0.5, 0.5])  # recall of each class
    assert bind_metric(m, ["a", "b", "c"]) is m  # already bound to these classes: not resolved again
    loss = bind_metric("log_loss", ["a", "b", "c"])
    assert not loss.higher_is_better and loss.is_better(0.2, 0.3) and not loss.is_better(0.3, 0.2)
    assert loss.is_better(0.3, None) and not loss.is_better(float("nan"), 0.3)
    with pytest.raises(ValueError, match="metric 'log_loss' has no per-class scores; metrics that have: "
                                         "balanced_accuracy, macro_f1, roc_auc"):
        loss.per_class(Y8, PROBS8)
    qwk = bind_metric("qwk", ["0", "1", "2"])  # ordinal outputs (N, 1) are cut at k + 0.5
    assert qwk.score_outputs("ordinal", [0, 1, 2], np.array([[0.2], [1.6], [2.4]])) == pytest.approx(0.8)
