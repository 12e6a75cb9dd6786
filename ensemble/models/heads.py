"""MLP heads on pooled backbone features, and the activation registry they use."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ensemble.registry import Registry

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")  # name -> zero-argument module factory


def register_activation(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: ``@register_activation("relu")`` on a zero-argument module factory."""
    return ACTIVATIONS.register(name)


@register_activation("relu")
def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


@register_activation("gelu")
def _gelu() -> nn.Module:
    return nn.GELU()


@register_activation("silu")
def _silu() -> nn.Module:
    return nn.SiLU(inplace=True)


def build_head(in_features: int, out_dim: int, hidden: Sequence[int] = (), batchnorm: bool = False,
               dropout: float = 0.0, activation: str = "relu") -> nn.Sequential:
    """MLP head (N, in_features) -> (N, out_dim).

    Each hidden width h adds Linear(h) [-> BatchNorm1d] -> activation [-> Dropout]; a final Linear
    gives the logits. With no hidden layers, dropout (if > 0) precedes the final Linear.
    """
    make_activation = ACTIVATIONS.get(activation)
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
        layers.append(make_activation())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = h
    if not widths and dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)
