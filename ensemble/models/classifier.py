"""The Classifier (timm backbone + head, normalising raw 0..255 input itself), and freezing by stages.

Freezing uses timm's ``group_matcher`` stages, never per-architecture branches.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import timm
import torch
from timm.models import group_parameters
from torch import nn

from ensemble.models.backbones import load_backbone_weights, resolve_backbone, resolve_pretrained
from ensemble.models.heads import build_head
from ensemble.models.weights import load_mapped, offline_hint, read_state_dict


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

    # Why not timm.layers.freeze_batch_norm_2d: it swaps BatchNorm2d for FrozenBatchNorm2d for good,
    # so a later stage (train: all) could not unfreeze them; keeping frozen BatchNorms in eval mode
    # here follows requires_grad stage by stage and leaves the state dict (and checkpoints) unchanged.
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
