"""Albumentations pipelines from config: a preset name (PRESETS registry) or a list of transforms.

A pipeline maps (S, S, 3) uint8 -> (S, S, 3) uint8: no Normalize / ToTensor (the model normalises
on device). Every name and parameter is checked with "did you mean" messages naming the position
in the spec (``augment.train[2]: unknown augmentation 'Flipp'; did you mean ...``).
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Sequence

import albumentations
import cv2

from ensemble.registry import Registry, did_you_mean


# Pipeline steps that break the uint8-in, uint8-out contract (or cannot come from a config file).
_FORBIDDEN = {
    "Normalize": "the model normalises on device; datasets return uint8",
    "ToTensorV2": "datasets already return uint8 CHW tensors",
    "ToTensor3D": "datasets already return uint8 CHW tensors",
    "ToFloat": "datasets return uint8; the model converts on device",
    "FromFloat": "datasets return uint8; the model converts on device",
    "Lambda": "a config cannot hold a Python function",
}


_ABSTRACT = {"BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D"}


# Compositions whose "transforms" key is itself a spec list.
_COMPOSITIONS: dict[str, type] = {"OneOf": albumentations.OneOf, "SomeOf": albumentations.SomeOf,
                                  "Sequential": albumentations.Sequential, "RandomOrder": albumentations.RandomOrder}


def _registry() -> dict[str, type]:
    out = dict(_COMPOSITIONS)
    for name in dir(albumentations):
        obj = getattr(albumentations, name)
        if (inspect.isclass(obj) and issubclass(obj, albumentations.BasicTransform) and name not in _ABSTRACT
                and name not in _FORBIDDEN and not issubclass(obj, albumentations.Transform3D)):
            out[name] = obj
    return dict(sorted(out.items()))


AUGMENTATIONS: dict[str, type] = _registry()  # name -> albumentations class usable in a spec (2D + OneOf/...)


_PRESETS: dict[str, list[dict[str, Any]]] = {
    "medical": [  # orientation-free images (dermoscopy, histology, fundus crops)
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "VerticalFlip", "p": 0.5},
        {"name": "RandomRotate90", "p": 0.5},
        {"name": "Affine", "translate_percent": (-0.05, 0.05), "scale": (0.9, 1.1),
         "rotate": (-15, 15), "border_mode": cv2.BORDER_REFLECT_101, "p": 0.5},
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.5},
        {"name": "GaussianBlur", "blur_limit": (3, 5), "p": 0.1},
    ],
    "dermoscopy": [  # "medical" plus the colour and sharpness that differ between clinics and cameras:
        # ham10000's shift check (python -m ensemble.shift) ranks saturation, colour and sharpness first
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "VerticalFlip", "p": 0.5},
        {"name": "RandomRotate90", "p": 0.5},
        {"name": "Affine", "translate_percent": (-0.05, 0.05), "scale": (0.9, 1.1),
         "rotate": (-15, 15), "border_mode": cv2.BORDER_REFLECT_101, "p": 0.5},
        {"name": "ColorJitter", "brightness": (0.9, 1.1), "contrast": (0.9, 1.1), "saturation": (0.75, 1.25),
         "hue": (-0.03, 0.03), "p": 0.7},
        {"name": "RandomGamma", "gamma_limit": (85, 115), "p": 0.3},
        {"name": "GaussianBlur", "blur_limit": (3, 5), "p": 0.15},
        {"name": "Sharpen", "alpha": (0.1, 0.3), "lightness": (0.9, 1.0), "p": 0.15},
    ],
    "light": [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "Affine", "translate_percent": (-0.03, 0.03), "scale": (0.95, 1.05),
         "rotate": (-5, 5), "border_mode": cv2.BORDER_REFLECT_101, "p": 0.3},
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.3},
    ],
    "none": [],
}
PRESETS: Registry[list[dict[str, Any]]] = Registry("preset")  # name -> transform spec list
for _name, _spec in _PRESETS.items():
    PRESETS.register(_name, _spec)


def _init_params(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n not in ("self", "strict")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _suggest(word: str, choices: Sequence[str], n: int = 1, cutoff: float = 0.6) -> str:
    """"did you mean 'X'?" (case-insensitive difflib), else the full list of choices."""
    close = did_you_mean(word, choices, n=n, cutoff=cutoff, ignore_case=True)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"available: {', '.join(choices)}"


def _albu_message(err: Exception) -> str:
    """One line out of albumentations' (pydantic) validation error."""
    cause = err.__cause__
    if hasattr(cause, "errors"):
        by_field: dict[str, list[str]] = {}
        for e in cause.errors():
            field = str(e["loc"][0]) if e.get("loc") else "value"
            msgs = by_field.setdefault(field, [])
            if e["msg"] not in msgs:
                msgs.append(e["msg"])
        return "; ".join(f"{f}: {' | '.join(m)}" for f, m in by_field.items())
    return " ".join(str(err).split()) or type(err).__name__


def _build_one(item: Any, where: str) -> albumentations.BasicTransform | albumentations.BaseCompose:
    if not isinstance(item, dict) or "name" not in item:
        raise ValueError(f"{where}: expected a mapping with a 'name' key, got {item!r}")
    params = dict(item)
    name = params.pop("name")
    if name in _FORBIDDEN:
        raise ValueError(f"{where}: {name} is not allowed in an augment spec ({_FORBIDDEN[name]})")
    if name not in AUGMENTATIONS:
        raise ValueError(f"{where}: unknown augmentation {name!r}; "
                         f"{_suggest(str(name), list(AUGMENTATIONS), n=2, cutoff=0.4)}")
    cls = AUGMENTATIONS[name]
    accepted = _init_params(cls)
    for key in params:
        if key not in accepted:
            raise ValueError(f"{where}: {name} got unknown parameter {key!r}; {_suggest(key, accepted)}")
    if name in _COMPOSITIONS:
        if not isinstance(params.get("transforms"), list):
            raise ValueError(f"{where}: {name} needs a 'transforms' list, got {params.get('transforms')!r}")
        params["transforms"] = [_build_one(t, f"{where}.transforms[{i}]")
                                for i, t in enumerate(params["transforms"])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = cls(**params)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: bad parameters for {name}: {_albu_message(e)}") from e
    for w in caught:  # re-emit albumentations' warnings (deprecations...) with the spec position
        warnings.warn(f"{where} ({name}): {w.message}", w.category, stacklevel=3)
    return out


def build_transforms(spec: list[dict[str, Any]] | str | None, *, where: str = "augment.train",
                     seed: int | None = None) -> albumentations.Compose:
    """Albumentations pipeline from a spec: a preset name or a list of {"name": Class, "p": ..., **params}.

    ``where`` prefixes error messages (``augment.train[2]: unknown augmentation ...``).
    The pipeline maps (S, S, 3) uint8 -> (S, S, 3) uint8; normalisation happens on device.
    """
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        try:
            spec = PRESETS.get(spec)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    if not isinstance(spec, (list, tuple)):
        raise ValueError(f"{where}: expected a preset name or a list of transforms, got {spec!r}")
    return albumentations.Compose([_build_one(item, f"{where}[{i}]") for i, item in enumerate(spec)], seed=seed)
