"""Test-time adaptation (predict.adapt): AdaBN re-estimates BatchNorm statistics and nothing else; Tent
moves only the BatchNorm affine parameters and its guard falls back when the entropy rises."""
import numpy as np
import pytest
import torch

from ensemble.models import build_model
from ensemble.train import adapt
from ensemble.train.engine import Precision

PREC = Precision(torch.device("cpu"))


def _model():
    torch.manual_seed(0)
    return build_model("resnet18", 3, head_hidden=[8], head_batchnorm=True).eval()


def _images(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)


def _bn_buffer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


def test_adabn_changes_batchnorm_buffers_only_and_leaves_the_model_alone():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _images()
    net = adapt.adapt_model(model, lambda: [x[:5], (x[5:], torch.zeros(3))], adapt.Adaptation("bn", batch_size=5), PREC)
    assert net is not model and not net.training
    after = net.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed and all(_bn_buffer(k) for k in changed), [k for k in changed if not _bn_buffer(k)][:3]
    assert {k.rsplit(".", 1)[0] for k in changed if k.endswith("running_mean")} >= {"backbone.bn1", "head.1"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the original is untouched
    # the first BatchNorm sees the stem's outputs of every image: their mean, whatever the batches' sizes
    with torch.no_grad():
        stem = model.backbone.conv1(model.normalize(x))
    np.testing.assert_allclose(net.backbone.bn1.running_mean, stem.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert net.backbone.bn1.momentum == model.backbone.bn1.momentum


def test_adabn_needs_two_images_and_none_is_the_model_itself():
    model = _model()
    assert adapt.adapt_model(model, lambda: [_images(1)], adapt.Adaptation("none"), PREC) is model
    with pytest.raises(ValueError, match=r"^test-time adaptation needs at least 2 images"):
        adapt.adapt_model(model, lambda: [_images(1)], adapt.Adaptation("bn"), PREC)
    with pytest.raises(ValueError, match=r"^unknown adaptation 'adabn'; available: none, bn, tent"):
        adapt.Adaptation("adabn")


def _affine(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()
            if isinstance(dict(net.named_modules())[k.rsplit(".", 1)[0]], torch.nn.modules.batchnorm._BatchNorm)}


def test_tent_moves_only_batchnorm_affine_parameters_and_lowers_entropy():
    model, x = _model(), _images(16)
    batches = lambda: [x[:8], x[8:]]
    bn = adapt.adapt_model(model, batches, adapt.Adaptation("bn", batch_size=8), PREC)
    tent = adapt.adapt_model(model, batches, adapt.Adaptation("tent", batch_size=8, steps=6, lr=1e-2), PREC)
    data = [x[:8], x[8:]] * 3
    assert adapt.mean_entropy(tent, data, PREC) < adapt.mean_entropy(bn, data, PREC)
    p_bn, p_tent = dict(bn.named_parameters()), dict(tent.named_parameters())
    moved = [k for k in p_bn if not torch.equal(p_bn[k], p_tent[k])]
    assert moved and set(moved) <= set(_affine(bn)), moved[:3]
    for k in ("running_mean", "running_var"):  # the AdaBN statistics stay: Tent steps use batch statistics
        assert torch.equal(getattr(bn.backbone.bn1, k), getattr(tent.backbone.bn1, k))
    assert all(p.requires_grad for p in tent.parameters())  # restored as it was


def test_tent_guard_keeps_the_bn_model_when_the_entropy_rises(monkeypatch):
    model, x = _model(), _images(16)
    batches = lambda: [x[:8], x[8:]]
    measured = iter([0.5, 0.9])  # the mean entropy before and after the Tent steps: it rose
    monkeypatch.setattr(adapt, "mean_entropy", lambda *a: next(measured))
    from conftest import log_lines
    with log_lines("ensemble.train.adapt") as lines:
        tent = adapt.adapt_model(model, batches, adapt.Adaptation("tent", batch_size=8, steps=4, lr=5e-2), PREC)
    bn = adapt.adapt_model(model, batches, adapt.Adaptation("bn", batch_size=8), PREC)
    assert lines == ["tent: mean entropy rose (0.5000 -> 0.9000); kept the bn-adapted model"]
    for k, v in bn.state_dict().items():
        assert torch.equal(v, tent.state_dict()[k]), k


def test_tent_refuses_a_score_model():
    model = build_model("resnet18", 1)
    with pytest.raises(ValueError, match="tent minimises the entropy of class probabilities"):
        adapt.adapt_model(model, lambda: [_images(4)], adapt.Adaptation("tent"), PREC, activation="identity")
