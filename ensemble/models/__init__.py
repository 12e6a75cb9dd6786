"""Models: timm backbones (registry), pretrained weights offline, MLP heads, the Classifier."""
from ensemble.models.backbones import (BACKBONES, describe_backbones, format_backbone_table, load_backbone_weights,
                                       model_flops, register_backbone, resolve_backbone, resolve_pretrained)
from ensemble.models.classifier import (Classifier, backbone_frozen, backbone_stages, build_imagenet_classifier,
                                        build_model, set_trainable)
from ensemble.models.heads import ACTIVATIONS, build_head, register_activation

__all__ = ["ACTIVATIONS", "BACKBONES", "Classifier", "backbone_frozen", "backbone_stages", "build_head",
           "build_imagenet_classifier", "build_model", "describe_backbones", "format_backbone_table",
           "load_backbone_weights", "model_flops", "register_activation", "register_backbone", "resolve_backbone",
           "resolve_pretrained", "set_trainable"]
