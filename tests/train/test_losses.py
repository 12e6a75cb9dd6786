import math

import numpy as np
import pytest
import torch

from ensemble.train.losses import LOSSES, build_loss, register_loss, resolve_class_weights

LN3 = math.log(3.0)
# sample 0: logits (0, 0)   -> p = (1/2, 1/2), target 0 -> nll = ln 2      = 0.6931472
# sample 1: logits (0, ln3) -> p = (1/4, 3/4), target 1 -> nll = ln (4/3)  = 0.2876821
LOGITS2 = torch.tensor([[0.0, 0.0], [0.0, LN3]])
TARGETS2 = torch.tensor([0, 1])


def _random_case(n=16, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 3, torch.randint(0, c, (n,), generator=g)


def test_registry_names():
    assert list(LOSSES) == ["ce", "focal", "smooth_l1", "mse"]
    with pytest.raises(ValueError, match="loss 'ce' is already registered"):
        register_loss("ce")(lambda *a: None)


def test_ce_plain_hand_computed():
    loss = build_loss("ce", class_counts=[5, 5])
    assert loss(LOGITS2, TARGETS2).item() == pytest.approx((0.6931472 + 0.2876821) / 2, abs=1e-6)


def test_ce_class_weights_hand_computed():
    # w = (1, 3): (1 * 0.6931472 + 3 * 0.2876821) / (1 + 3) = 0.3890483
    loss = build_loss("ce", class_counts=[5, 5], class_weights=[1.0, 3.0])
    assert loss(LOGITS2, TARGETS2).item() == pytest.approx(0.3890483, abs=1e-6)


def test_ce_label_smoothing_hand_computed():
    # eps = 0.2, C = 2, sample 1 only: 0.8 * ln(4/3) + 0.1 * (ln 4 + ln(4/3)) = 0.3975433
    loss = build_loss("ce", class_counts=[5, 5], label_smoothing=0.2)
    assert loss(LOGITS2[1:], TARGETS2[1:]).item() == pytest.approx(0.3975433, abs=1e-6)


def test_auto_class_weights_inverse_frequency():
    # N = 8, C = 2: w = 8 / (2 * 6), 8 / (2 * 2)
    w = resolve_class_weights("auto", [6, 2])
    assert w.tolist() == pytest.approx([0.6666667, 2.0])
    counts = np.array([6, 2])
    assert float((w.numpy() * counts).sum() / counts.sum()) == pytest.approx(1.0)
    assert resolve_class_weights(None, [6, 2]) is None


@pytest.mark.parametrize("class_weights", [None, "auto", [0.5, 2.0, 1.0, 3.0]])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_focal_gamma0_equals_ce(class_weights, label_smoothing):
    logits, targets = _random_case()
    kw = dict(class_counts=[3, 5, 2, 6], class_weights=class_weights, label_smoothing=label_smoothing)
    ce = build_loss("ce", **kw)(logits, targets)
    focal = build_loss("focal", gamma=0.0, **kw)(logits, targets)
    torch.testing.assert_close(focal, ce, rtol=1e-6, atol=1e-7)


def test_focal_hand_computed():
    # sample 1: (1 - 3/4)^2 * ln(4/3) = 0.0625 * 0.2876821 = 0.0179801
    loss = build_loss("focal", class_counts=[5, 5], gamma=2.0)
    assert loss(LOGITS2[1:], TARGETS2[1:]).item() == pytest.approx(0.0179801, abs=1e-6)
    # binary float alpha 0.25 weights class 1 by 0.25: 0.0044950
    loss = build_loss("focal", class_counts=[5, 5], gamma=2.0, alpha=0.25)
    assert loss(LOGITS2[1:], TARGETS2[1:]).item() == pytest.approx(0.0044950, abs=1e-6)
    # per-class alpha list, both samples: (0.5 * 0.25 * ln2 + 2 * 0.0179801) / 2
    loss = build_loss("focal", class_counts=[5, 5], gamma=2.0, alpha=[0.5, 2.0])
    assert loss(LOGITS2, TARGETS2).item() == pytest.approx((0.5 * 0.25 * 0.6931472 + 2 * 0.0179801) / 2, abs=1e-6)


def test_focal_gradient_finite_when_saturated():
    logits = torch.tensor([[60.0, -60.0], [0.0, 1.0]], requires_grad=True)
    loss = build_loss("focal", class_counts=[1, 1], gamma=0.5)(logits, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_regression_losses_hand_computed():
    out = torch.tensor([[0.5], [2.0]])
    tgt = torch.tensor([0, 3])
    counts = [1, 1, 1, 1]
    assert build_loss("mse", class_counts=counts)(out, tgt).item() == pytest.approx(0.625)  # (0.25 + 1) / 2
    assert build_loss("smooth_l1", class_counts=counts)(out, tgt).item() == pytest.approx(0.3125)  # (0.125 + 0.5) / 2
    weighted = build_loss("mse", class_counts=counts, class_weights=[1, 1, 1, 3])
    assert weighted(out, tgt).item() == pytest.approx(0.8125)  # (1 * 0.25 + 3 * 1) / 4
    with pytest.raises(ValueError, match=r"mse loss needs outputs of shape \(N, 1\) matching targets \(N,\) or \(N, C\), got \(2, 4\) and \(2,\)"):
        build_loss("mse", class_counts=counts)(torch.zeros(2, 4), tgt)


def test_loss_is_differentiable_and_moves_with_module():
    logits, targets = _random_case()
    logits.requires_grad_(True)
    loss = build_loss("focal", class_counts=[3, 5, 2, 6], class_weights="auto", alpha=[1, 1, 2, 2])
    assert {n for n, _ in loss.named_buffers()} == {"weight", "alpha"}
    loss(logits, targets).backward()
    assert logits.grad.shape == (16, 4)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("hinge", {}, "unknown loss 'hinge'; available: ce, focal, smooth_l1, mse"),
        ("focal", {"gamma": -1}, "focal gamma must be >= 0, got -1.0"),
        ("ce", {"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\), got 1.0"),
        ("ce", {"label_smoothing": -0.1}, r"label_smoothing must be in \[0, 1\), got -0.1"),
        ("ce", {"class_weights": [1.0, 2.0]}, r"class_weights has 2 values; expected 3 \(one per class\)"),
        ("ce", {"class_weights": "balanced"}, "class_weights must be None, 'auto' or a list of 3 floats, got 'balanced'"),
        ("ce", {"class_weights": [1.0, -1.0, 1.0]}, r"class_weights must be finite and >= 0"),
        ("focal", {"alpha": 0.25}, "focal alpha as a single float needs 2 classes"),
        ("focal", {"alpha": [1.0, 2.0]}, r"focal alpha has 2 values; expected 3 \(one per class\)"),
        ("mse", {"label_smoothing": 0.1}, "label_smoothing is not supported by loss 'mse', got 0.1"),
    ],
)
def test_bad_input_messages(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_loss(name, class_counts=[4, 3, 2], **kwargs)


def test_auto_weights_zero_count_class():
    with pytest.raises(ValueError, match=r"class_weights='auto' needs at least one sample per class; class index\(es\) 1 have 0 samples"):
        build_loss("ce", class_counts=[4, 0, 2], class_weights="auto")


def test_bad_class_counts_and_logit_shape():
    with pytest.raises(ValueError, match="class_counts must be >= 2 non-negative counts"):
        build_loss("ce", class_counts=[4])
    loss = build_loss("ce", class_counts=[4, 3, 2])
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 3\), got \(2, 2\)"):
        loss(LOGITS2, TARGETS2)


# ---------------------------------------------------------------- soft targets (N, C)
@pytest.mark.parametrize("name, extra", [("ce", {}), ("focal", {"gamma": 2.0}), ("focal", {"gamma": 0.5, "alpha": [1, 2, 0.5, 3]})])
@pytest.mark.parametrize("class_weights", [None, "auto", [0.5, 2.0, 1.0, 3.0]])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_one_hot_soft_targets_equal_the_hard_label_loss(name, extra, class_weights, label_smoothing):
    logits, targets = _random_case()
    loss = build_loss(name, class_counts=[3, 5, 2, 6], class_weights=class_weights,
                      label_smoothing=label_smoothing, **extra)
    one_hot = torch.nn.functional.one_hot(targets, 4).float()
    torch.testing.assert_close(loss(logits, one_hot), loss(logits, targets), rtol=1e-6, atol=1e-7)
    if name == "ce":  # and both equal torch's own hard-label cross-entropy
        w = resolve_class_weights(class_weights, [3, 5, 2, 6])
        ref = torch.nn.functional.cross_entropy(logits, targets, weight=w, label_smoothing=label_smoothing)
        torch.testing.assert_close(loss(logits, one_hot), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["mse", "smooth_l1"])
def test_one_hot_soft_targets_equal_the_hard_grade_loss(name):
    out, tgt = torch.tensor([[0.5], [2.0], [1.2]]), torch.tensor([0, 3, 1])
    loss = build_loss(name, class_counts=[1, 1, 1, 1], class_weights=[1, 2, 1, 3])
    one_hot = torch.nn.functional.one_hot(tgt, 4).float()
    torch.testing.assert_close(loss(out, one_hot), loss(out, tgt))
    # a soft row's grade is its expected class index: (0.5, 0, 0, 0.5) -> grade 1.5 like a hard 1.5
    mse = build_loss("mse", class_counts=[1, 1, 1, 1])
    assert mse(torch.tensor([[1.0]]), torch.tensor([[0.5, 0, 0, 0.5]])).item() == pytest.approx(0.25)


def test_soft_ce_and_focal_hand_computed():
    # p = (1/4, 3/4); t = (1/2, 1/2): 0.5 ln 4 + 0.5 ln(4/3) = 0.8369882
    soft = torch.tensor([[0.5, 0.5]])
    assert build_loss("ce", class_counts=[5, 5])(LOGITS2[1:], soft).item() == pytest.approx(0.8369882, abs=1e-6)
    # class weights per class: (0.5 * 1 * ln 4 + 0.5 * 3 * ln(4/3)) / (0.5 * 1 + 0.5 * 3) = 0.5623351
    weighted = build_loss("ce", class_counts=[5, 5], class_weights=[1.0, 3.0])
    assert weighted(LOGITS2[1:], soft).item() == pytest.approx(0.5623351, abs=1e-6)
    # focal per class, t = (1/4, 3/4), gamma 2: 0.25 (3/4)^2 ln 4 + 0.75 (1/4)^2 ln(4/3) = 0.2084330
    focal = build_loss("focal", class_counts=[5, 5], gamma=2.0)
    assert focal(LOGITS2[1:], torch.tensor([[0.25, 0.75]])).item() == pytest.approx(0.2084330, abs=1e-6)


def test_a_soft_rows_sum_is_its_weight():
    logits, targets = _random_case(n=3, c=4)
    one_hot = torch.nn.functional.one_hot(targets, 4).float()
    for name in ("ce", "focal"):
        loss = build_loss(name, class_counts=[1, 1, 1, 1], label_smoothing=0.1)
        per = [loss(logits[i:i + 1], one_hot[i:i + 1]) for i in range(3)]
        doubled = one_hot.clone()
        doubled[0] *= 2.0  # row 0 counts twice
        torch.testing.assert_close(loss(logits, doubled), (2 * per[0] + per[1] + per[2]) / 4)


def test_soft_target_shape_is_checked():
    loss = build_loss("ce", class_counts=[4, 3, 2])
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\) \(class indices\) or \(2, 3\) \(soft targets\), got \(2, 2\)"):
        loss(torch.zeros(2, 3), torch.zeros(2, 2))
