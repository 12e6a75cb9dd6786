"""Test-time augmentation views: the TTA_VIEWS registry (D4 rotations and flips), groups, multi-size views.

A view is a function (N, C, H, W) -> (N, C, H', W') on raw 0..255 batches; `predict` averages the
model's outputs over the views of `predict.tta`.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import torch

from ensemble.registry import Registry


TTA_VIEWS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("TTA view")


def register_tta_view(name: str):
    """Decorator: ``@register_tta_view("hflip")`` on a function (N, C, H, W) -> (N, C, H', W')."""
    return TTA_VIEWS.register(name)


# The dihedral group D4: the 8 rotations and reflections of a square (no "up" in skin, fundus or
# microscopy images, so every one is a valid view).
for _name, _fn in {
    "none": lambda x: x,
    "hflip": lambda x: torch.flip(x, dims=[3]),
    "vflip": lambda x: torch.flip(x, dims=[2]),
    "rot90": lambda x: torch.rot90(x, 1, dims=[2, 3]),
    "rot180": lambda x: torch.rot90(x, 2, dims=[2, 3]),
    "rot270": lambda x: torch.rot90(x, 3, dims=[2, 3]),
    "transpose": lambda x: x.transpose(2, 3),
    "antitranspose": lambda x: torch.rot90(x, 2, dims=[2, 3]).transpose(2, 3),
}.items():
    register_tta_view(_name)(_fn)

TTA_GROUPS = {"d4": ["none", "hflip", "vflip", "rot90", "rot180", "rot270", "transpose", "antitranspose"],
              "flips": ["none", "hflip", "vflip", "rot180"]}
_SCALE = re.compile(r"scale(\d+(?:\.\d+)?)")


def _scaled(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Multi-size view: resize the batch by ``factor`` (bilinear, antialiased when shrinking)."""
    def view(x: torch.Tensor) -> torch.Tensor:
        size = max(8, int(round(x.shape[-1] * factor)))
        y = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=factor < 1)
        return y.clamp_(0, 255)
    return view


def expand_tta(names: Sequence[str]) -> list[str]:
    """Expand groups (d4, flips) and check every view. ``scaleF`` (e.g. scale1.25) is a multi-size
    view; a name may combine a geometric view with a scale: ``hflip+scale1.25``."""
    out: list[str] = []
    for name in names:
        for view in TTA_GROUPS.get(name, [name]):
            for part in view.split("+"):
                if part not in TTA_VIEWS and not (_SCALE.fullmatch(part) and 0.25 <= float(part[5:]) <= 4):
                    raise ValueError(f"unknown TTA view {part!r}; available: {', '.join(TTA_VIEWS)}, "
                                     f"groups {', '.join(TTA_GROUPS)}, scaleF (0.25..4, e.g. scale1.25), "
                                     f"or views joined with +")
            out.append(view)
    return list(dict.fromkeys(out))


def tta_view(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function (N, C, H, W) -> (N, C, H', W') of one checked view name (see expand_tta)."""
    fns = [_scaled(float(p[5:])) if _SCALE.fullmatch(p) else TTA_VIEWS[p] for p in name.split("+")]
    if len(fns) == 1:
        return fns[0]

    def composed(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x
    return composed
