"""Value ranges of the config's numbers and choices, checked when the config loads (before anything
is written), so a bad value fails as `<file>: key 'folds.n' expected an integer >= 2, got int 1`.

RANGES maps a dotted key (`*` = every item of a list) to (check, what is expected); a None value
of an optional key is never checked.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from ensemble.config.schema import ConfigError


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(n: int):
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n), f"an integer >= {n}"


POSITIVE_INT = _int_at_least(1)
NON_NEGATIVE_INT = _int_at_least(0)
NON_NEGATIVE = (lambda v: _num(v) and v >= 0), "a number >= 0"
POSITIVE = (lambda v: _num(v) and v > 0), "a number > 0"
UNIT_OPEN = (lambda v: _num(v) and 0 <= v < 1), "a number in [0, 1)"
UNIT_CLOSED = (lambda v: _num(v) and 0 <= v <= 1), "a number in [0, 1]"


def _stage_train(v) -> bool:
    """`train:` of a stage: all, head, or the last k >= 0 backbone stage groups (k <= the backbone's
    stage count: _check_stage_k)."""
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    return v in ("all", "head") or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def _class_weights(v) -> bool:
    return v == "auto" or (isinstance(v, list) and all(_num(w) and w >= 0 for w in v))


def _alpha(v) -> bool:
    return UNIT_CLOSED[0](v) or (isinstance(v, list) and all(_num(w) and w >= 0 for w in v))


def _device(v) -> bool:
    import torch
    try:
        return v == "auto" or torch.device(v).type in ("cpu", "cuda", "mps", "xpu")
    except (RuntimeError, ValueError):
        return False


RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "folds.n": (_int_at_least(2)[0], "an integer >= 2 (K-fold cross-validation needs at least 2 folds)"),
    "input.size": POSITIVE_INT,
    "input.max_pixels": POSITIVE_INT,
    "model.drop_rate": UNIT_OPEN,
    "model.drop_path_rate": UNIT_OPEN,
    "model.head.dropout": UNIT_OPEN,
    "model.head.hidden.*": POSITIVE_INT,
    "loss.label_smoothing": UNIT_OPEN,
    "loss.gamma": NON_NEGATIVE,
    "loss.class_weights": (_class_weights, "'auto' or a list of numbers >= 0 (one per class)"),
    "loss.alpha": (_alpha, "a number in [0, 1] or a list of numbers >= 0 (one per class)"),
    "optim.weight_decay": NON_NEGATIVE,
    "optim.momentum": UNIT_OPEN,
    "optim.layer_decay": ((lambda v: _num(v) and 0 < v <= 1), "a number in (0, 1]"),
    "schedule.warmup_epochs": NON_NEGATIVE,
    "schedule.min_lr_ratio": UNIT_CLOSED,
    "schedule.step_size": POSITIVE_INT,
    "schedule.gamma": ((lambda v: _num(v) and 0 < v <= 1), "a number in (0, 1]"),
    "schedule.patience": NON_NEGATIVE_INT,
    "schedule.factor": ((lambda v: _num(v) and 0 < v < 1), "a number in (0, 1)"),
    "stages": ((lambda v: len(v) > 0), "at least one stage"),
    "stages.*.epochs": POSITIVE_INT,
    "stages.*.train": (_stage_train, "'all', 'head' or an integer k >= 0 (the last k backbone stages)"),
    "train.batch_size": POSITIVE_INT,
    "train.eval_batch_size": POSITIVE_INT,
    "train.accum_steps": POSITIVE_INT,
    "train.clip_grad": POSITIVE,
    "train.early_stopping": POSITIVE_INT,
    "train.time_limit": POSITIVE,
    "train.num_workers": NON_NEGATIVE_INT,
    "train.device": (_device, "auto, cpu, cuda, cuda:N or mps"),
    "train.ema.decay": ((lambda v: _num(v) and 0 < v < 1), "a number in (0, 1)"),
    "train.soft_targets.alpha": UNIT_CLOSED,
    "augment.mix.mixup_alpha": NON_NEGATIVE,
    "augment.mix.cutmix_alpha": NON_NEGATIVE,
    "augment.mix.prob": UNIT_CLOSED,
    "augment.mix.switch_prob": UNIT_CLOSED,
    "augment.mix.label_smoothing": UNIT_OPEN,
}


def stage_count(backbone: str) -> int:
    """How many stage groups (timm's coarse ``group_matcher``, as ensemble.models.set_trainable uses)
    `backbone` has, built without weights on the meta device (no memory, ~0.1 s). Raises ValueError."""
    import timm
    import torch
    from timm.models import group_parameters

    from ensemble.registry import lookup
    timm_name = lookup("backbone").get(backbone, backbone)
    with torch.device("meta"):
        net = timm.create_model(timm_name, pretrained=False, num_classes=0)
    try:
        groups = group_parameters(net, net.group_matcher(coarse=True))
    except NotImplementedError:
        raise ValueError(f"backbone {backbone!r} has no timm group_matcher, so it cannot train its last k "
                         "stages; use 'all' or 'head'") from None
    return sum(1 for g in groups.values() if g)


def _check_stage_k(cfg, source: Callable[[str], str]) -> None:
    """`stages[].train: k` must be within the backbone's stage groups."""
    ks = [(i, int(st.train)) for i, st in enumerate(cfg.stages) if str(st.train).isdigit()]
    if not ks:
        return
    try:
        n = stage_count(cfg.model.backbone)
    except ValueError as e:
        raise ConfigError(f"{source(f'stages.{ks[0][0]}.train')}: key 'stages.{ks[0][0]}.train': {e}") from None
    for i, k in ks:
        if k > n:
            key = f"stages.{i}.train"
            raise ConfigError(f"{source(key)}: key '{key}': {k} is out of range for {cfg.model.backbone} "
                              f"(0..{n} stages, 'head' or 'all')")


def _values(node, parts: list[str], key: str):
    """-> [(dotted key, value)] of `parts` under `node` (a dataclass, list or plain value)."""
    if not parts:
        return [(key, node)]
    if node is None:  # an optional section that is not set (e.g. augment.mix)
        return []
    head, rest = parts[0], parts[1:]
    if head == "*":
        return [kv for i, item in enumerate(node or []) for kv in _values(item, rest, f"{key}.{i}")]
    return _values(getattr(node, head), rest, f"{key}.{head}" if key else head)


def check_values(obj, table: dict[str, tuple[Callable[[Any], bool], str]], source: Callable[[str], str]) -> None:
    """Raise ConfigError for the first value of dataclass `obj` outside `table` (dotted key -> (check,
    what is expected)); `source(key)` names the file that set it."""
    for pattern, (ok, expected) in table.items():
        for key, value in _values(obj, pattern.split("."), ""):
            if value is not None and not ok(value):
                got = f"{type(value).__name__} {value!r}"
                raise ConfigError(f"{source(key)}: key '{key}' expected {expected}, got {got}")


def _check_pretrained(cfg, source: Callable[[str], str]) -> None:
    """A `model.pretrained` path must exist now, not after folds.csv and the image cache are written."""
    from pathlib import Path
    p = getattr(getattr(cfg, "model", None), "pretrained", False)
    if isinstance(p, str) and not Path(p).is_file():
        raise ConfigError(f"{source('model.pretrained')}: key 'model.pretrained' expected true, false or the path of "
                          f"an existing weights file (.safetensors, .pt, .pth, .bin), got {p!r} (file not found)")


def _check_names(cfg, source: Callable[[str], str]) -> None:
    """The competition and run names become folders under output.runs_dir: nothing that could leave it."""
    from ensemble.config.names import name_problem
    for key, value, parts in (("competition.name", cfg.competition.name, False), ("name", cfg.name, True)):
        problem = name_problem(value, parts) if value is not None else None
        if problem:
            raise ConfigError(f"{source(key)}: key '{key}' {problem}")


def _check_mix(cfg, source: Callable[[str], str]) -> None:
    """`augment.mix` needs MixUp or CutMix on (timm's Mixup refuses both alphas at 0)."""
    mix = getattr(getattr(cfg, "augment", None), "mix", None)
    if mix is not None and not (mix.mixup_alpha > 0 or mix.cutmix_alpha > 0):
        raise ConfigError(f"{source('augment.mix')}: key 'augment.mix' expected mixup_alpha > 0 or cutmix_alpha > 0 "
                          f"(MixUp or CutMix on), got {mix.mixup_alpha} and {mix.cutmix_alpha}")


def check_ranges(cfg, source: Callable[[str], str]) -> None:
    """Names, RANGES, the stages' `train: k`, augment.mix and the pretrained file of a built Config (see check_values)."""
    _check_names(cfg, source)
    check_values(cfg, RANGES, source)
    _check_stage_k(cfg, source)
    _check_mix(cfg, source)
    _check_pretrained(cfg, source)
