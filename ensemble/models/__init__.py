"""Models: timm backbones (registry), pretrained weights offline, MLP heads, the Classifier."""
