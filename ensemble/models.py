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


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load a local weights file into a timm backbone; returns the ignored (unexpected) keys.

    Accepts .safetensors or .pt/.pth/.bin (torch.load weights_only=True), a raw state dict or one
    wrapped in {"state_dict" | "model": ...}; "module." / "backbone." key prefixes are stripped and
    the original classifier keys are dropped. Every backbone key must be present with its shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        elif suffix in (".pt", ".pth", ".bin"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"{path}: unsupported weights format {suffix!r}; "
                             "expected .safetensors, .pt, .pth or .bin")
    except ValueError:
        raise
    except Exception as e:  # corrupt file, unsafe pickle, ...
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (optionally under 'state_dict' "
                         f"or 'model'), got {type(state).__name__}")
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        while key.startswith(("module.", "backbone.")):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    cleaned = _drop_classifier_keys(cleaned, backbone.pretrained_cfg.get("classifier"))
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
        raise ValueError(f"{path}: weights do not fit backbone "
                         f"'{backbone.pretrained_cfg.get('architecture', '?')}': {'; '.join(parts)}")
    result = backbone.load_state_dict(cleaned, strict=False)
    return list(result.unexpected_keys)


def build_model(backbone: str, out_dim: int, *, pretrained: bool | str | os.PathLike = False,
                head_hidden: Sequence[int] = (), head_batchnorm: bool = False,
                head_dropout: float = 0.0, head_activation: str = "relu",
                drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> Classifier:
    """Build a :class:`Classifier`: ``pretrained`` is False, True (timm hub) or a local weights path."""
    timm_name = resolve_backbone(backbone)
    if not isinstance(pretrained, (bool, str, os.PathLike)):
        raise ValueError(f"pretrained must be true, false or a weights file path, got {pretrained!r}")
    if not isinstance(pretrained, bool) and not Path(pretrained).is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {pretrained}")
    for label, rate in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {rate}")
    kwargs = dict(num_classes=0, drop_rate=drop_rate or None, drop_path_rate=drop_path_rate or None)
    try:
        net = timm.create_model(timm_name, pretrained=pretrained is True, **kwargs)
    except TypeError as e:
        raise ValueError(f"backbone {timm_name!r} does not accept these options "
                         f"(drop_rate={drop_rate}, drop_path_rate={drop_path_rate}): {e}") from e
    except Exception as e:
        if pretrained is not True:
            raise
        detail = " ".join(str(e).split())[:300]
        raise RuntimeError(
            f"could not get pretrained weights for {timm_name!r} ({type(e).__name__}: {detail}); "
            "without network access set pretrained to a local .safetensors/.pth file") from e
    if not isinstance(pretrained, bool):
        load_backbone_weights(net, pretrained)
    cfg = timm.data.resolve_model_data_config(net)
    num_features = int(getattr(net, "head_hidden_size", net.num_features))
    head = build_head(num_features, out_dim, head_hidden, head_batchnorm, head_dropout, head_activation)
    return Classifier(net, head, out_dim, cfg["mean"], cfg["std"], name=backbone, timm_name=timm_name)


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


def describe_backbones(names: Iterable[str] | None = None, size: int = 224) -> list[dict]:
    """Rows {name, timm_name, params_m, gflops, size, mean, std, input_size} for each backbone.

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
        })
    return rows


def format_backbone_table(rows: Sequence[dict]) -> str:
    """Fixed-width text table of :func:`describe_backbones` rows."""
    header = ["name", "timm model", "params (M)", "GFLOPs", "size", "pretrained size", "mean", "std"]
    body = [[r["name"], r["timm_name"], f"{r['params_m']:.2f}", f"{r['gflops']:.2f}", str(r["size"]),
             str(r.get("input_size", "")), ",".join(f"{v:.3f}" for v in r["mean"]),
             ",".join(f"{v:.3f}" for v in r["std"])] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
