"""Checks of a built config, run when it loads (before anything is written): the range declared in
each field's metadata (ensemble.config.ranges), folder-safe names, the stages' `train: k` against the
backbone, augment.mix, and the pretrained weights file.

    check_config(cfg, source)      # source(dotted key) -> the file (or --set) that set it
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from ensemble.config.schema import ConfigError


def check_fields(obj, source: Callable[[str], str], key: str = "") -> None:
    """Raise ConfigError for the first value of dataclass `obj` (its sections, lists and mappings of
    sections included) outside the `range` of its field, or a list item outside its `items` range.
    `source(key)` names the file that set the key."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        sub = f"{key}.{f.name}" if key else f.name
        if value is None:  # an optional key or section that is not set
            continue
        _check(f.metadata.get("range"), sub, value, source)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for i, item in items:
            _check(f.metadata.get("items"), f"{sub}.{i}", item, source)
            if dataclasses.is_dataclass(item):
                check_fields(item, source, f"{sub}.{i}")
        if dataclasses.is_dataclass(value):
            check_fields(value, source, sub)


def _check(rng, key: str, value, source: Callable[[str], str]) -> None:
    if rng is not None and value is not None and not rng.ok(value):
        raise ConfigError(f"{source(key)}: key '{key}' expected {rng.expected}, got {type(value).__name__} {value!r}")


@functools.lru_cache(maxsize=None)
def stage_count(backbone: str) -> int:
    """How many stage groups (timm's coarse ``group_matcher``, as ensemble.models.set_trainable uses)
    `backbone` has, built without weights on the meta device (no memory, ~0.1 s; once per backbone and
    process). Raises ValueError."""
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
    """`stages[].train: k` must be within the backbone's stage groups (the model is built only when a
    stage names a k)."""
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


def check_argument(function: str, name: str, value, rng=None, *, registry=None) -> None:
    """One argument of a library function (train_run, tune_model), checked at its start in the config
    loader's words: `tune_model: argument 'sampler': unknown sampler 'tpee'; available: tpe, random` or
    `train_run: argument 'folds' expected fold numbers 0..4 (folds.n=5), got list [7]`. rng: a Range
    (ensemble.config.ranges); registry: the Registry a name must be in. None is never checked (the
    default). Raises ConfigError."""
    if value is None:
        return
    if registry is not None:
        if not isinstance(value, str) or value not in registry:
            raise ConfigError(f"{function}: argument '{name}': {registry.unknown(value)}")
    elif not rng.ok(value):
        raise ConfigError(f"{function}: argument '{name}' expected {rng.expected}, got {type(value).__name__} {value!r}")


def check_config(cfg, source: Callable[[str], str]) -> None:
    """Names, the fields' ranges, the stages' `train: k`, augment.mix and the pretrained file of a built
    Config (see check_fields)."""
    _check_names(cfg, source)
    check_fields(cfg, source)
    _check_stage_k(cfg, source)
    _check_mix(cfg, source)
    _check_pretrained(cfg, source)
