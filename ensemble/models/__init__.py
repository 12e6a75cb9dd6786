"""Models: timm backbones (registry), pretrained weights offline, MLP heads, the Classifier.

Names are imported on first use, so checking a config's activation name imports the heads only.
"""
from __future__ import annotations

import importlib

_BACKBONES = ("BACKBONES", "describe_backbones", "format_backbone_table", "load_backbone_weights", "model_flops",
              "register_backbone", "resolve_backbone", "resolve_pretrained")
_CLASSIFIER = ("Classifier", "backbone_frozen", "backbone_stages", "build_imagenet_classifier", "build_model",
               "set_trainable")
_API = {**dict.fromkeys(_BACKBONES, "ensemble.models.backbones"), **dict.fromkeys(_CLASSIFIER, "ensemble.models.classifier"),
        "ACTIVATIONS": "ensemble.models.heads", "build_head": "ensemble.models.heads",
        "register_activation": "ensemble.models.heads"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'ensemble.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
