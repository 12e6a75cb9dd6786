"""Loss registry: cross-entropy, focal and ordinal-regression losses.

Classification losses take logits (N, C) float and targets (N,) long class indices.
Regression losses ("smooth_l1", "mse") take a single output column (N, 1) and class-index
targets (N,) that are compared as floats (ordinal grades).

Class weights and weighted reduction follow torch's ``cross_entropy`` semantics:
``sum_i w[y_i] * l_i / sum_i w[y_i]``, label smoothing included.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ensemble.registry import Registry

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


def register_loss(name: str) -> Callable:
    """Decorator: register ``factory(n_classes, weight, label_smoothing, gamma, alpha) -> nn.Module``."""

    return LOSSES.register(name)


def resolve_class_weights(class_weights, class_counts: Sequence[int] | np.ndarray) -> torch.Tensor | None:
    """None | "auto" | C floats -> float32 tensor (C,) or None.

    "auto" is inverse frequency ``w_c = N / (C * n_c)`` so that the mean weight over samples is 1.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    n_classes = len(counts)
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        if class_weights != "auto":
            raise ValueError(f"class_weights must be None, 'auto' or a list of {n_classes} floats, got '{class_weights}'")
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(
                "class_weights='auto' needs at least one sample per class; "
                f"class index(es) {', '.join(map(str, empty.tolist()))} have 0 samples"
            )
        w = counts.sum() / (n_classes * counts.astype(np.float64))
    else:
        w = np.asarray(class_weights, dtype=np.float64).reshape(-1)
        if w.size != n_classes:
            raise ValueError(f"class_weights has {w.size} values; expected {n_classes} (one per class)")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"class_weights must be finite and >= 0, got {w.tolist()}")
    return torch.tensor(w, dtype=torch.float32)


def _resolve_alpha(alpha, n_classes: int) -> torch.Tensor | None:
    """Focal alpha: None | float (binary only: [1 - a, a]) | C floats -> tensor (C,) or None."""
    if alpha is None:
        return None
    if np.ndim(alpha) == 0:
        alpha = float(alpha)
        if n_classes != 2:
            raise ValueError(
                f"focal alpha as a single float needs 2 classes (got {n_classes}); give a list of {n_classes} per-class values"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"focal alpha must be in [0, 1], got {alpha}")
        return torch.tensor([1.0 - alpha, alpha], dtype=torch.float32)
    a = np.asarray(alpha, dtype=np.float64).reshape(-1)
    if a.size != n_classes:
        raise ValueError(f"focal alpha has {a.size} values; expected {n_classes} (one per class)")
    if np.any(a < 0):
        raise ValueError(f"focal alpha values must be >= 0, got {a.tolist()}")
    return torch.tensor(a, dtype=torch.float32)


def _check_cls_input(logits: torch.Tensor, targets: torch.Tensor, n_classes: int) -> None:
    if logits.ndim != 2 or logits.shape[1] != n_classes:
        raise ValueError(f"logits must have shape (N, {n_classes}), got {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must have shape ({logits.shape[0]},), got {tuple(targets.shape)}")


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """torch CE (weighted mean, label smoothing) with shape checks; logits (N, C), targets (N,)."""

    def __init__(self, n_classes: int, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__(weight=weight, label_smoothing=label_smoothing)
        self.n_classes = n_classes

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_cls_input(logits, targets, self.n_classes)
        return super().forward(logits.float(), targets)


class FocalLoss(nn.Module):
    """Focal loss ``alpha[y] * (1 - p_y)^gamma * ce_i``, reduced as ``sum / sum_i w[y_i]``.

    ``ce_i`` is torch's per-sample (weighted, label-smoothed) CE, so gamma=0 with no alpha
    equals :class:`CrossEntropyLoss` with the same weights and smoothing.
    """

    def __init__(self, n_classes: int, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 gamma: float = 2.0, alpha: torch.Tensor | None = None):
        super().__init__()
        self.n_classes, self.gamma, self.label_smoothing = n_classes, float(gamma), float(label_smoothing)
        self.register_buffer("weight", weight)
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_cls_input(logits, targets, self.n_classes)
        logits = logits.float()
        per = F.cross_entropy(logits, targets, weight=self.weight,
                              label_smoothing=self.label_smoothing, reduction="none")  # (N,)
        if self.gamma != 0.0:
            p_t = torch.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
            # clamp keeps d/dp of (1 - p)^gamma finite when p_t rounds to 1 (gamma < 1)
            per = per * (1.0 - p_t).clamp(min=1e-6) ** self.gamma
        if self.alpha is not None:
            per = per * self.alpha[targets]
        denom = self.weight[targets].sum() if self.weight is not None else per.new_tensor(float(len(per)))
        return per.sum() / denom


class OrdinalRegressionLoss(nn.Module):
    """Regression on class indices: outputs (N, 1) or (N,), targets (N,) long; optional class weights."""

    def __init__(self, kind: str, weight: torch.Tensor | None = None):
        super().__init__()
        self.kind = kind
        self.register_buffer("weight", weight)

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.ndim != 1 or outputs.shape != targets.shape:
            raise ValueError(f"{self.kind} loss needs outputs of shape (N, 1) matching targets (N,), "
                             f"got {tuple(outputs.shape)} and {tuple(targets.shape)}")
        fn = F.smooth_l1_loss if self.kind == "smooth_l1" else F.mse_loss
        per = fn(outputs.float(), targets.float(), reduction="none")
        if self.weight is None:
            return per.mean()
        w = self.weight[targets]
        return (per * w).sum() / w.sum()


@register_loss("ce")
def _ce(n_classes, weight, label_smoothing, gamma, alpha) -> nn.Module:
    return CrossEntropyLoss(n_classes, weight, label_smoothing)


@register_loss("focal")
def _focal(n_classes, weight, label_smoothing, gamma, alpha) -> nn.Module:
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    return FocalLoss(n_classes, weight, label_smoothing, gamma, _resolve_alpha(alpha, n_classes))


def _regression(kind: str) -> Callable[..., nn.Module]:
    def factory(n_classes, weight, label_smoothing, gamma, alpha) -> nn.Module:
        if label_smoothing:
            raise ValueError(f"label_smoothing is not supported by loss '{kind}', got {label_smoothing}")
        return OrdinalRegressionLoss(kind, weight)

    return factory


register_loss("smooth_l1")(_regression("smooth_l1"))
register_loss("mse")(_regression("mse"))


def build_loss(name: str, *, class_counts: Sequence[int] | np.ndarray, class_weights=None,
               label_smoothing: float = 0.0, gamma: float = 2.0, alpha=None) -> nn.Module:
    """Build a registered loss. ``class_counts`` (C,) gives the number of classes and "auto" weights.

    gamma/alpha are used by "focal" only. Returns an ``nn.Module(logits, targets) -> scalar``.
    """
    factory = LOSSES.get(name)
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size < 2 or np.any(counts < 0):
        raise ValueError(f"class_counts must be >= 2 non-negative counts (one per class), got {counts.tolist()}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    weight = resolve_class_weights(class_weights, counts)
    return factory(int(counts.size), weight, float(label_smoothing), float(gamma), alpha)
