import math

import pytest
import timm
import torch
from torch import nn

from ensemble.train.optim import (OPTIMIZERS, SCHEDULERS, base_name, build_optimizer, build_scheduler, current_lrs,
                            param_groups)

LRS = {"backbone": 1e-3, "head": 1e-2}
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\(\)` before:UserWarning")


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = timm.create_model("resnet18", pretrained=False, num_classes=0)
        self.head = nn.Sequential(nn.LayerNorm(512), nn.Linear(512, 3))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyClassifier()


def _names(groups):
    return [g["name"] for g in groups]


def _one_group_optimizer(lr=0.1, name="adamw"):
    groups = [{"name": "head", "params": list(nn.Linear(2, 2).parameters()), "lr": lr, "weight_decay": 0.0}]
    return build_optimizer(name, groups)


def _run(schedule, optimizer, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        schedule.step_batch()
    return lrs


def test_groups_named_with_lrs_and_no_wd_on_norm_and_bias(model):
    groups = param_groups(model, LRS, weight_decay=0.05)
    assert _names(groups) == ["backbone", "backbone_nowd", "head", "head_nowd"]
    by = {g["name"]: g for g in groups}
    assert [by[n]["lr"] for n in _names(groups)] == [1e-3, 1e-3, 1e-2, 1e-2]
    assert [by[n]["weight_decay"] for n in _names(groups)] == [0.05, 0.0, 0.05, 0.0]
    for g in groups:
        assert all((p.ndim <= 1) == g["name"].endswith("_nowd") for p in g["params"])
    assert "backbone.bn1.weight" in by["backbone_nowd"]["param_names"]
    assert "backbone.layer1.0.conv1.weight" in by["backbone"]["param_names"]
    assert by["head"]["param_names"] == ["head.1.weight"]
    assert by["head_nowd"]["param_names"] == ["head.0.weight", "head.0.bias", "head.1.bias"]
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(model.parameters()))


def test_frozen_params_excluded_and_backbone_lr_not_needed():
    m = TinyClassifier()
    for name, p in m.backbone.named_parameters():
        p.requires_grad_(name.startswith("layer4"))
    groups = param_groups(m, LRS, weight_decay=0.0)
    names = [n for g in groups for n in g["param_names"]]
    assert names and all(n.startswith(("backbone.layer4.", "head.")) for n in names)
    m.backbone.requires_grad_(False)
    groups = param_groups(m, {"head": 1e-2}, weight_decay=0.0)
    assert _names(groups) == ["head", "head_nowd"]
    m.head.requires_grad_(False)
    with pytest.raises(ValueError, match=r"model has no trainable parameters \(all requires_grad=False\)"):
        param_groups(m, LRS, weight_decay=0.0)


def test_layer_decay_lrs_decrease_towards_stem(model):
    groups = param_groups(model, LRS, weight_decay=0.05, layer_decay=0.5)
    bb = [g for g in groups if base_name(g["name"]) == "backbone" and not g["name"].endswith("_nowd")]
    assert _names(bb) == ["backbone.layer4.1", "backbone.layer4.0", "backbone.layer3.1", "backbone.layer3.0",
                          "backbone.layer2.1", "backbone.layer2.0", "backbone.layer1.1", "backbone.layer1.0",
                          "backbone.stem"]
    assert [g["lr"] for g in bb] == pytest.approx([1e-3 * 0.5 ** d for d in range(9)])
    head = [g for g in groups if base_name(g["name"]) == "head"]
    assert [g["lr"] for g in head] == [1e-2, 1e-2]
    assert {g["name"]: g["weight_decay"] for g in groups}["backbone.stem_nowd"] == 0.0
    coarse = param_groups(model, LRS, weight_decay=0.05, layer_decay=0.5, coarse=True)
    assert _names(coarse)[::2][:5] == ["backbone.layer4", "backbone.layer3", "backbone.layer2", "backbone.layer1",
                                       "backbone.stem"]
    assert coarse[8]["lr"] == pytest.approx(1e-3 * 0.5 ** 4)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    opt = build_optimizer("adamw", groups)
    assert current_lrs(opt) == {"backbone": 1e-3, "head": 1e-2}


@pytest.mark.parametrize(
    "lrs, kwargs, message",
    [
        ({"head": 1e-2}, {}, r"no learning rate for trainable group 'backbone'; lrs needs keys: backbone, head \(got: head\)"),
        ({"backbone": 1e-3, "head": 1e-2, "neck": 1.0}, {}, "unknown lrs key\\(s\\) neck; expected: backbone, head"),
        ({"backbone": -1.0, "head": 1e-2}, {}, r"lrs\['backbone'\] must be a finite number >= 0, got -1.0"),
        (LRS, {"layer_decay": 1.5}, r"layer_decay must be in \(0, 1\], got 1.5"),
        (LRS, {"weight_decay": -0.1}, "weight_decay must be >= 0, got -0.1"),
    ],
)
def test_param_group_bad_input(model, lrs, kwargs, message):
    kwargs = {"weight_decay": 0.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        param_groups(model, lrs, **kwargs)


def test_param_groups_needs_backbone_and_head():
    with pytest.raises(ValueError, match="param_groups needs a model with .backbone and .head modules; 'head' is missing"):
        param_groups(_Only(), LRS, 0.0)


class _Only(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)


def test_layer_decay_needs_group_matcher():
    m = _Only()
    m.head = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"layer_decay needs a timm backbone with group_matcher\(\); got Linear"):
        param_groups(m, LRS, 0.0, layer_decay=0.8)
    with pytest.raises(ValueError, match="trainable parameter\\(s\\) outside .backbone and .head: extra"):
        m.extra = nn.Parameter(torch.zeros(2))
        param_groups(m, LRS, 0.0)


def test_optimizers_keep_group_names(model):
    assert list(OPTIMIZERS) == ["adamw", "adam", "sgd"]
    for name in OPTIMIZERS:
        opt = build_optimizer(name, param_groups(model, LRS, weight_decay=0.05), momentum=0.8, nesterov=True)
        assert _names(opt.param_groups) == ["backbone", "backbone_nowd", "head", "head_nowd"]
        assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0, 0.05, 0.0]
    assert opt.param_groups[0]["momentum"] == 0.8 and opt.param_groups[0]["nesterov"] is True
    adam = build_optimizer("adam", param_groups(model, LRS, 0.0), betas=(0.8, 0.99), eps=1e-6)
    assert adam.param_groups[0]["betas"] == (0.8, 0.99) and adam.param_groups[0]["eps"] == 1e-6
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; available: adamw, adam, sgd"):
        build_optimizer("lamb", [])
    with pytest.raises(ValueError, match="sgd nesterov needs momentum > 0, got 0"):
        build_optimizer("sgd", param_groups(model, LRS, 0.0), momentum=0, nesterov=True)
    with pytest.raises(ValueError, match="param group 0 is missing key\\(s\\) name"):
        build_optimizer("adamw", [{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1}])


def test_cosine_warmup_shape():
    opt = _one_group_optimizer(0.1)
    sched = build_scheduler("cosine", opt, epochs=2, steps_per_epoch=5, warmup_epochs=0.6, min_lr_ratio=0.1)
    # W = 3 warmup steps: (s+1)/(W+1); then cosine from 0.1 at s=3 to 0.01 at s=9 over 6 intervals
    expected = [0.025, 0.05, 0.075, 0.1, 0.0939711, 0.0775, 0.055, 0.0325, 0.0160289, 0.01, 0.01, 0.01]
    assert _run(sched, opt, 12) == pytest.approx(expected, abs=1e-7)


def test_cosine_without_warmup_starts_at_base_lr():
    opt = _one_group_optimizer(0.2)
    sched = build_scheduler("cosine", opt, epochs=1, steps_per_epoch=3)
    assert _run(sched, opt, 3) == pytest.approx([0.2, 0.1, 0.0])


def test_constant_step_and_plateau():
    opt = _one_group_optimizer(0.1)
    sched = build_scheduler("constant", opt, epochs=2, steps_per_epoch=2, warmup_epochs=1)
    assert _run(sched, opt, 5) == pytest.approx([1 / 30, 2 / 30, 0.1, 0.1, 0.1])
    opt = _one_group_optimizer(0.1)
    sched = build_scheduler("constant", opt, epochs=2, steps_per_epoch=2)
    sched.step_epoch(None)
    assert _run(sched, opt, 3) == [0.1, 0.1, 0.1] and sched.state_dict() == {"name": "constant", "scheduler": None}

    opt = _one_group_optimizer(1.0, "sgd")
    sched = build_scheduler("step", opt, epochs=6, steps_per_epoch=3, step_size=2, gamma=0.1)
    seen = []
    for _ in range(5):
        _run(sched, opt, 3)  # per-batch calls do not move a per-epoch schedule
        seen.append(opt.param_groups[0]["lr"])
        sched.step_epoch(None)
    assert seen == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])

    opt = _one_group_optimizer(1.0)
    sched = build_scheduler("plateau", opt, epochs=10, steps_per_epoch=1, patience=1, factor=0.5, mode="max",
                            min_lr_ratio=0.3)
    seen = []
    for metric in [0.5, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6]:
        sched.step_epoch(metric)
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3])
    with pytest.raises(ValueError, match="scheduler 'plateau' needs a validation metric in step_epoch\\(\\), got None"):
        sched.step_epoch(None)


def test_onecycle_peaks_at_group_lr_and_stops_at_end():
    opt = _one_group_optimizer(0.1)
    sched = build_scheduler("onecycle", opt, epochs=2, steps_per_epoch=5, warmup_epochs=0.4, min_lr_ratio=0.01)
    lrs = _run(sched, opt, 14)  # 4 extra steps beyond total must neither raise nor wrap
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert lrs[1] == pytest.approx(0.1) and max(lrs) == pytest.approx(0.1)  # torch: peak at pct_start * T - 1
    assert lrs[9:] == pytest.approx([0.001] * 5)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


@pytest.mark.parametrize("name", ["cosine", "onecycle", "plateau", "step"])
def test_state_dict_round_trip(name):
    def make():
        opt = _one_group_optimizer(0.1)
        return opt, build_scheduler(name, opt, epochs=4, steps_per_epoch=3, patience=0, step_size=1)

    opt, sched = make()
    metrics = [0.5, 0.4, 0.3, 0.2]
    for e in range(2):
        _run(sched, opt, 3)
        sched.step_epoch(metrics[e])
    state_opt, state_sched = opt.state_dict(), sched.state_dict()
    opt2, sched2 = make()
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    for e in range(2, 4):
        assert _run(sched2, opt2, 3) == _run(sched, opt, 3)
        sched.step_epoch(metrics[e])
        sched2.step_epoch(metrics[e])
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    other = build_scheduler("constant", _one_group_optimizer(), epochs=1, steps_per_epoch=1)
    with pytest.raises(ValueError, match=f"scheduler state is for '{name}', not 'constant'"):
        other.load_state_dict(state_sched)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("linear", {}, "unknown scheduler 'linear'; available: cosine, constant, step, plateau, onecycle"),
        ("cosine", {"epochs": 0}, "epochs must be >= 1, got 0"),
        ("cosine", {"warmup_epochs": 3}, r"warmup_epochs must be in \[0, epochs=3\), got 3"),
        ("cosine", {"min_lr_ratio": 1.5}, r"min_lr_ratio must be in \[0, 1\], got 1.5"),
        ("step", {"warmup_epochs": 1}, "warmup_epochs is not supported by scheduler 'step'"),
        ("plateau", {"mode": "up"}, "mode must be 'max' or 'min', got 'up'"),
        ("plateau", {"factor": 1.0}, r"factor must be in \(0, 1\), got 1.0"),
    ],
)
def test_scheduler_bad_input(name, kwargs, message):
    kwargs = {"epochs": 3, "steps_per_epoch": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_scheduler(name, _one_group_optimizer(), **kwargs)
    assert list(SCHEDULERS) == ["cosine", "constant", "step", "plateau", "onecycle"]


def test_current_lrs_first_group_of_each_base_name(model):
    opt = build_optimizer("sgd", param_groups(model, LRS, 0.0, layer_decay=0.9))
    sched = build_scheduler("cosine", opt, epochs=1, steps_per_epoch=3)
    sched.step_batch()  # 3 steps, no warmup: multipliers 1, 0.5, 0
    lrs = current_lrs(opt)
    assert list(lrs) == ["backbone", "head"]
    assert lrs["backbone"] == pytest.approx(1e-3 * 0.5) and lrs["head"] == pytest.approx(1e-2 * 0.5)
    assert math.isclose(opt.param_groups[-1]["lr"], 1e-2 * 0.5)
