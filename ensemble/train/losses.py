"""Loss registry: cross-entropy, focal and ordinal-regression losses, for hard or soft targets.

Every loss takes outputs and either hard targets (N,) long class indices or soft targets (N, C)
float >= 0 (MixUp/CutMix, distillation, pseudo-labels). A soft row's sum is its weight: 1 for a
labelled row, an extra row's weight otherwise. Classification losses take logits (N, C);
regression losses ("smooth_l1", "mse") a single output column (N, 1) compared with the grade
(the class index; for a soft row its expected grade).

With class weights w (C,), label smoothing s and soft targets t (N, C), m_i = sum_c t_ic and
t~_ic = (1 - s) t_ic + s m_i / C, every classification loss is

    L = sum_i sum_c w_c a_c t~_ic (1 - p_ic)^gamma (-log p_ic)  /  sum_i sum_c w_c t_ic

(CE: a = 1, gamma = 0; focal: per-class alpha a and focusing gamma). A hard target is its one-hot
row, so the formula is torch's ``cross_entropy`` with weights and smoothing
(``sum_i w[y_i] l_i / sum_i w[y_i]``) and a one-hot soft target gives exactly the hard-label loss.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional
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
    if targets.shape != logits.shape[:1] and targets.shape != logits.shape:
        raise ValueError(f"targets must have shape ({logits.shape[0]},) (class indices) or "
                         f"({logits.shape[0]}, {n_classes}) (soft targets), got {tuple(targets.shape)}")


def is_soft(targets: torch.Tensor) -> bool:
    """True for soft targets (N, C) float, False for class indices (N,)."""
    return targets.ndim == 2


def soft_targets(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class indices (N,) -> one-hot float rows (N, C); soft targets (N, C) pass through as float."""
    return targets.float() if is_soft(targets) else functional.one_hot(targets.long(), n_classes).float()


def soft_focal_loss(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None,
                    label_smoothing: float = 0.0, gamma: float = 0.0, alpha: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """The module docstring's L for logits (N, C) and soft targets (N, C) (row sums = row weights).
    gamma = 0 and alpha None is soft-target cross-entropy. -> scalar."""
    logits, t = logits.float(), targets.float()
    logp = torch.log_softmax(logits, dim=1)
    mass = t.sum(1, keepdim=True)
    smoothed = t * (1.0 - label_smoothing) + mass * (label_smoothing / logits.shape[1])
    per = -smoothed * logp  # (N, C)
    if gamma != 0.0:
        # clamp keeps d/dp of (1 - p)^gamma finite when p rounds to 1 (gamma < 1)
        per = per * (1.0 - logp.exp()).clamp(min=1e-6) ** gamma
    if alpha is not None:
        per = per * alpha
    if weight is not None:
        return (per * weight).sum() / (t * weight).sum()
    return per.sum() / t.sum()


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """torch CE (weighted mean, label smoothing) with shape checks; logits (N, C), targets (N,) or
    soft (N, C) (then soft_focal_loss with gamma 0: torch's probability-target CE averages over N,
    not over the class weights of the rows, so a one-hot row would not match its hard label)."""

    def __init__(self, n_classes: int, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__(weight=weight, label_smoothing=label_smoothing)
        self.n_classes = n_classes

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_cls_input(logits, targets, self.n_classes)
        if is_soft(targets):
            return soft_focal_loss(logits, targets, self.weight, self.label_smoothing)
        return super().forward(logits.float(), targets)


class FocalLoss(nn.Module):
    """Focal loss: the module docstring's L, with the focusing factor (1 - p_ic)^gamma and alpha
    applied per class; a hard target is its one-hot row. gamma=0 with no alpha equals
    :class:`CrossEntropyLoss` with the same weights and smoothing."""

    def __init__(self, n_classes: int, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 gamma: float = 2.0, alpha: torch.Tensor | None = None):
        super().__init__()
        self.n_classes, self.gamma, self.label_smoothing = n_classes, float(gamma), float(label_smoothing)
        self.register_buffer("weight", weight)
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_cls_input(logits, targets, self.n_classes)
        return soft_focal_loss(logits, soft_targets(targets, self.n_classes), self.weight, self.label_smoothing,
                               self.gamma, self.alpha)


class OrdinalRegressionLoss(nn.Module):
    """Regression on grades: outputs (N, 1) or (N,); targets (N,) class indices or soft (N, C), whose
    grade is the expected class index sum_c c t_ic / m_i and whose row weight is sum_c w_c t_ic
    (m_i without class weights), so a one-hot row equals its hard label. -> weighted mean."""

    def __init__(self, kind: str, weight: torch.Tensor | None = None):
        super().__init__()
        self.kind = kind
        self.register_buffer("weight", weight)

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.ndim != 1 or outputs.shape != targets.shape[:1] or targets.ndim > 2:
            raise ValueError(f"{self.kind} loss needs outputs of shape (N, 1) matching targets (N,) or (N, C), "
                             f"got {tuple(outputs.shape)} and {tuple(targets.shape)}")
        fn = functional.smooth_l1_loss if self.kind == "smooth_l1" else functional.mse_loss
        if is_soft(targets):
            t = targets.float()
            mass = t.sum(1)
            grade = (t @ torch.arange(t.shape[1], device=t.device, dtype=t.dtype)) / mass
            w = mass if self.weight is None else t @ self.weight
        else:
            grade, w = targets.float(), (None if self.weight is None else self.weight[targets])
        per = fn(outputs.float(), grade, reduction="none")
        if w is None:
            return per.mean()
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
