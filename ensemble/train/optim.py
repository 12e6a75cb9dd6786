"""Named parameter groups, optimizer registry and LR schedules.

Groups are plain dicts for ``torch.optim``: ``{"name", "params", "lr", "weight_decay"}``. Names are
"backbone", "head", their no-weight-decay twins "backbone_nowd" / "head_nowd", and with layer decay
one backbone group per timm layer group, e.g. "backbone.layer3.1" / "backbone.layer3.1_nowd".
"""
from __future__ import annotations

import fnmatch
import math
import numbers
from typing import Any, Callable

import torch
from torch import nn
from torch.optim import lr_scheduler

from ensemble.registry import Registry

PARTS = ("backbone", "head")
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULERS: Registry[Callable[..., "Schedule"]] = Registry("scheduler")


# ----------------------------------------------------------------------------- param groups
def _no_wd(name: str, p: torch.Tensor, patterns: set[str]) -> bool:
    """timm's rule: 1-d params (norm weights, biases) and the model's ``no_weight_decay()`` names."""
    return p.ndim <= 1 or name.endswith(".bias") or any(fnmatch.fnmatch(name, pat) for pat in patterns)


def _nowd_patterns(module: nn.Module) -> set[str]:
    fn = getattr(module, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()


def _layer_labels(backbone: nn.Module, coarse: bool) -> tuple[dict[str, int], dict[int, str]]:
    """Param name -> timm layer id (0 = stem), and layer id -> readable label ("layer3.1")."""
    matcher = getattr(backbone, "group_matcher", None)
    if not callable(matcher):
        raise ValueError(f"layer_decay needs a timm backbone with group_matcher(); got {type(backbone).__name__}")
    from timm.models import group_parameters  # here, so checking an optimizer name needs no timm
    groups = group_parameters(backbone, matcher(coarse=coarse))  # id -> [param names]
    layer_of, labels = {}, {}
    for lid, names in groups.items():
        parts = [n.split(".")[:-1] for n in names]
        prefix = []
        for tokens in zip(*parts):
            if len(set(tokens)) != 1:
                break
            prefix.append(tokens[0])
        label = ".".join(prefix) or ("stem" if lid == 0 else f"group{lid}")
        labels[lid] = label if label not in labels.values() else f"{label}_{lid}"
        layer_of.update({n: lid for n in names})
    return layer_of, labels


# Why not timm.optim.param_groups_weight_decay / param_groups_layer_decay: they return unnamed
# groups for one model, with one base LR. Ours applies the same no-decay rule (_no_wd: 1-d params,
# biases, no_weight_decay()) and timm's own group_matcher for layer decay, but over two parts with
# their own LRs (backbone, head) and names every group, so logs and history.csv show each group's LR
# and a stage can freeze the backbone without rebuilding the rule.
def param_groups(model: nn.Module, lrs: dict[str, float], weight_decay: float,
                 layer_decay: float | None = None, *, coarse: bool = False) -> list[dict]:
    """Named optimizer groups for a model with ``.backbone`` (timm) and ``.head``.

    Only ``requires_grad`` params are included. With ``layer_decay`` the backbone is split by its timm
    ``group_matcher(coarse)`` and a layer ``d`` groups below the top gets ``lrs["backbone"] * layer_decay**d``.
    Backbone groups are ordered top (full LR) to stem, then the head groups.
    """
    for part in PARTS:
        if not isinstance(getattr(model, part, None), nn.Module):
            raise ValueError(f"param_groups needs a model with .backbone and .head modules; '{part}' is missing")
    unknown = sorted(set(lrs) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown lrs key(s) {', '.join(unknown)}; expected: backbone, head")
    for k, v in lrs.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"lrs['{k}'] must be a finite number >= 0, got {v!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")

    layer_of, labels, top = {}, {}, 0
    if layer_decay is not None:
        layer_of, labels = _layer_labels(model.backbone, coarse)
        top = max(labels)

    groups: dict[tuple, dict] = {}  # (part, layer id, nowd) -> group
    seen: set[int] = set()
    for part in PARTS:
        module = getattr(model, part)
        patterns = _nowd_patterns(module)
        for name, p in module.named_parameters():
            seen.add(id(p))
            if not p.requires_grad:
                continue
            if part not in lrs:
                raise ValueError(f"no learning rate for trainable group '{part}'; lrs needs keys: "
                                 f"{', '.join(PARTS)} (got: {', '.join(lrs) or 'none'})")
            nowd = _no_wd(name, p, patterns)
            lid = layer_of.get(name, top) if part == "backbone" else top
            key = (part, -lid, nowd)  # sorts backbone top -> stem
            if key not in groups:
                scale = layer_decay ** (top - lid) if (layer_decay is not None and part == "backbone") else 1.0
                gname = f"{part}.{labels[lid]}" if (labels and part == "backbone") else part
                groups[key] = {"name": gname + ("_nowd" if nowd else ""), "params": [], "param_names": [],
                               "lr": lrs[part] * scale, "lr_scale": scale,
                               "weight_decay": 0.0 if nowd else float(weight_decay)}
            groups[key]["params"].append(p)
            groups[key]["param_names"].append(f"{part}.{name}")
    stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if stray:
        raise ValueError(f"trainable parameter(s) outside .backbone and .head: {', '.join(stray[:5])}")
    if not groups:
        raise ValueError("model has no trainable parameters (all requires_grad=False)")
    return [groups[k] for k in sorted(groups, key=lambda k: (PARTS.index(k[0]), k[1], k[2]))]


def base_name(group_name: str) -> str:
    """"backbone.layer3.1_nowd" -> "backbone"."""
    return group_name.split(".")[0].removesuffix("_nowd")


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """LR of the first group of each base name, e.g. {"backbone": 1e-4, "head": 1e-3}."""
    out: dict[str, float] = {}
    for i, g in enumerate(optimizer.param_groups):
        out.setdefault(base_name(g.get("name", f"group{i}")), float(g["lr"]))
    return out


# ----------------------------------------------------------------------------- optimizers
register_optimizer = OPTIMIZERS.register  # @register_optimizer("lamb") def f(groups, *, momentum, nesterov, betas, eps)
register_scheduler = SCHEDULERS.register  # @register_scheduler("x") def f(optimizer, *, total, warmup, ...) -> Schedule


@register_optimizer("adamw")
def _adamw(groups, *, momentum, nesterov, betas, eps):
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], betas=betas, eps=eps, weight_decay=0.0)


@register_optimizer("adam")
def _adam(groups, *, momentum, nesterov, betas, eps):
    return torch.optim.Adam(groups, lr=groups[0]["lr"], betas=betas, eps=eps, weight_decay=0.0)


@register_optimizer("sgd")
def _sgd(groups, *, momentum, nesterov, betas, eps):
    if nesterov and momentum <= 0:
        raise ValueError(f"sgd nesterov needs momentum > 0, got {momentum}")
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, nesterov=nesterov, weight_decay=0.0)


def build_optimizer(name: str, groups: list[dict], *, momentum: float = 0.9, nesterov: bool = False,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
    """Optimizer over named groups from :func:`param_groups`; each ``optimizer.param_groups[i]`` keeps its "name"."""
    make = OPTIMIZERS.get(name)
    if not groups:
        raise ValueError("build_optimizer needs at least one param group")
    for i, g in enumerate(groups):
        missing = [k for k in ("name", "params", "lr") if k not in g]
        if missing:
            raise ValueError(f"param group {i} is missing key(s) {', '.join(missing)}")
    return make(groups, momentum=momentum, nesterov=nesterov, betas=tuple(betas), eps=eps)


# ----------------------------------------------------------------------------- schedules
class Schedule:
    """Steps a torch LR scheduler at its cadence: ``per`` is "batch", "epoch", "metric" or "none"."""

    def __init__(self, name: str, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                 per: str = "none", max_steps: int | None = None):
        self.name, self.optimizer, self.scheduler, self.per, self.max_steps = name, optimizer, scheduler, per, max_steps

    def step_batch(self) -> None:
        """Call after every optimizer step."""
        # a schedule of T steps is defined at indices 0..T-1; stepping past the end would wrap OneCycleLR
        if self.per == "batch" and (self.max_steps is None or self.scheduler.last_epoch < self.max_steps - 1):
            self.scheduler.step()

    def step_epoch(self, metric: float | None = None) -> None:
        """Call after each epoch's validation; "plateau" needs the validation metric."""
        if self.per == "epoch":
            self.scheduler.step()
        elif self.per == "metric":
            if metric is None:
                raise ValueError(f"scheduler '{self.name}' needs a validation metric in step_epoch(), got None")
            self.scheduler.step(float(metric))

    def state_dict(self) -> dict:
        return {"name": self.name, "scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"scheduler state is for '{state.get('name')}', not '{self.name}'")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


# Why not timm.scheduler.CosineLRScheduler: it steps per epoch (or per update with its own counter
# protocol) and keeps its state outside torch's LRScheduler; ours is a plain torch LambdaLR per
# optimizer step (linear warmup, then cosine to min_lr_ratio), so it resumes from last.pt through
# state_dict() like every other torch schedule and shares one Schedule wrapper with plateau/step.
def _warmup_cosine(total: int, warmup: int, min_ratio: float, cosine: bool) -> Callable[[int], float]:
    """LR multiplier for the step ``s`` about to run: (s+1)/(W+1) ramp, then 1 -> min_ratio at step T-1."""
    def fn(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        if not cosine:
            return 1.0
        progress = min(1.0, (s - warmup) / max(1, total - warmup - 1))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return fn


@register_scheduler("cosine")
def _cosine(opt, *, total, warmup, min_lr_ratio, **_):
    return Schedule("cosine", opt, lr_scheduler.LambdaLR(opt, _warmup_cosine(total, warmup, min_lr_ratio, True)), "batch")


@register_scheduler("constant")
def _constant(opt, *, total, warmup, **_):
    if warmup == 0:
        return Schedule("constant", opt)
    return Schedule("constant", opt, lr_scheduler.LambdaLR(opt, _warmup_cosine(total, warmup, 1.0, False)), "batch")


@register_scheduler("step")
def _step(opt, *, step_size, gamma, **_):
    return Schedule("step", opt, lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma), "epoch")


@register_scheduler("plateau")
def _plateau(opt, *, patience, factor, mode, min_lr_ratio, **_):
    min_lrs = [g["lr"] * min_lr_ratio for g in opt.param_groups]
    sched = lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=factor, patience=patience, min_lr=min_lrs)
    return Schedule("plateau", opt, sched, "metric")


@register_scheduler("onecycle")
def _onecycle(opt, *, total, warmup, min_lr_ratio, epochs, steps_per_epoch, **_):
    div = 25.0
    cycle_momentum = "betas" in opt.defaults or opt.defaults.get("momentum", 0) > 0
    sched = lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total,
        pct_start=warmup / total if warmup else 0.3, div_factor=div,
        final_div_factor=1.0 / (min_lr_ratio * div) if min_lr_ratio > 0 else 1e4, cycle_momentum=cycle_momentum)
    return Schedule("onecycle", opt, sched, "batch", max_steps=total)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0, min_lr_ratio: float = 0.0, step_size: int = 1, gamma: float = 0.1,
                    patience: int = 2, factor: float = 0.5, mode: str = "max") -> Schedule:
    """LR schedule over ``epochs * steps_per_epoch`` optimizer steps; build it on a fresh optimizer.

    cosine/constant/onecycle step per batch (warmup = ``round(warmup_epochs * steps_per_epoch)`` steps;
    onecycle uses it as its rise phase), step per epoch, plateau per epoch on the validation metric.
    """
    make = SCHEDULERS.get(name)
    checks = [
        (epochs >= 1, f"epochs must be >= 1, got {epochs}"),
        (steps_per_epoch >= 1, f"steps_per_epoch must be >= 1, got {steps_per_epoch}"),
        (0 <= warmup_epochs < epochs, f"warmup_epochs must be in [0, epochs={epochs}), got {warmup_epochs}"),
        (0 <= min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}"),
        (step_size >= 1, f"step_size must be >= 1, got {step_size}"),
        (0 < gamma <= 1, f"gamma must be in (0, 1], got {gamma}"),
        (patience >= 0, f"patience must be >= 0, got {patience}"),
        (0 < factor < 1, f"factor must be in (0, 1), got {factor}"),
        (mode in ("max", "min"), f"mode must be 'max' or 'min', got '{mode}'"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    if warmup_epochs and name in ("step", "plateau"):
        raise ValueError(f"warmup_epochs is not supported by scheduler '{name}' (use cosine, constant or onecycle), "
                         f"got {warmup_epochs}")
    total = int(epochs * steps_per_epoch)
    return make(optimizer, total=total, warmup=int(round(warmup_epochs * steps_per_epoch)),
                            epochs=epochs, steps_per_epoch=steps_per_epoch, min_lr_ratio=min_lr_ratio,
                            step_size=step_size, gamma=gamma, patience=patience, factor=factor, mode=mode)
