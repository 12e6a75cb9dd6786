import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from ensemble.models import backbones
from ensemble.models import (BACKBONES, backbone_frozen, backbone_stages, build_head, build_model,
                             describe_backbones, format_backbone_table, model_flops,
                             resolve_backbone, set_trainable)

torch.set_num_threads(1)


def images(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_registry_names_are_timm_models():
    available = set(timm.list_models())
    assert BACKBONES["vgg16"] == "vgg16_bn"
    assert BACKBONES["mobilenetv3_small"] == "mobilenetv3_small_100"
    assert BACKBONES["efficientnetv2_s"] == "tf_efficientnetv2_s"
    assert set(BACKBONES.values()) <= available
    assert resolve_backbone("resnet18") == "resnet18"
    assert resolve_backbone("convnext_atto") == "convnext_atto"          # timm pass-through
    assert resolve_backbone("resnet18.a1_in1k") == "resnet18.a1_in1k"    # pretrained tag allowed


@pytest.mark.parametrize("name, expected", [
    ("resnet19", "unknown backbone 'resnet19'; available: resnet18, resnet34, resnet50, resnet101, "
                 "vgg16, efficientnetv2_b0, efficientnetv2_s, efficientnetv2_m, mobilenetv3_large, "
                 "mobilenetv3_small, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 "
                 "(or any timm model name; closest timm names: resnet18, "),
    ("zzzz", "efficientnet_lite2 (or any timm model name)"),
])
def test_unknown_backbone_message(name, expected):
    with pytest.raises(ValueError) as e:
        build_model(name, 3)
    assert expected in str(e.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(activation="tanh"), "unknown activation 'tanh'; available: relu, gelu, silu"),
    (dict(dropout=1.0), "head dropout must be in [0, 1), got 1.0"),
    (dict(hidden=[16, 0]), "head hidden widths must be positive ints, got [16, 0]"),
])
def test_build_head_bad_input(kwargs, message):
    with pytest.raises(ValueError) as e:
        build_head(32, 3, **kwargs)
    assert str(e.value) == message


def test_head_shapes_with_batchnorm_and_dropout():
    head = build_head(32, 5, hidden=[16, 8], batchnorm=True, dropout=0.3, activation="gelu")
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "GELU", "Dropout"] * 2 + ["Linear"]
    assert head(torch.randn(6, 32)).shape == (6, 5)
    plain = build_head(32, 5, dropout=0.2)
    assert [type(m).__name__ for m in plain] == ["Dropout", "Linear"]


def test_forward_shapes_and_uint8_equals_float():
    model = build_model("mobilenetv3_small_100", 4, head_hidden=[16, 8], head_batchnorm=True,
                        head_dropout=0.5).eval()
    assert model.num_features == 1024 and model.out_dim == 4
    assert model.mean.shape == (1, 3, 1, 1)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]) * 255)
    x = images()
    with torch.no_grad():
        out_u8, out_f = model(x), model(x.float())
        feats = model.forward_features(x)
    assert out_u8.shape == (4, 4) and feats.shape == (4, 1024)
    assert torch.equal(out_u8, out_f)
    assert torch.allclose(model.forward_head(feats), out_u8)
    with pytest.raises(ValueError, match=r"expected an image batch \(N, 3, H, W\), got shape \(3, 32, 32\)"):
        model(x[0])


def test_head_only_training_keeps_backbone_bn_stats():
    model = build_model("resnet18", 3, head_hidden=[16], head_batchnorm=True)
    n_trainable = set_trainable(model, "head")
    assert backbone_frozen(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("head.")}
    assert n_trainable == sum(p.numel() for p in model.head.parameters())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_bn_before = model.head[1].running_mean.clone()
    model.train()
    assert not model.backbone.bn1.training and model.head[1].training
    model(images())
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(model.head[1].running_mean, head_bn_before)
    set_trainable(model, "all")
    assert not backbone_frozen(model) and model.backbone.bn1.training


def test_set_trainable_last_stage_group():
    model = build_model("resnet18", 3)
    stages = backbone_stages(model)
    assert len(stages) == 5 and stages[0] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    set_trainable(model, 1)
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.backbone.named_parameters() if n.startswith("layer4.")}
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert model.backbone.layer4[0].bn1.training and not model.backbone.layer3[0].bn1.training
    set_trainable(model, "2")
    assert {n.split(".")[0] for n, p in model.backbone.named_parameters() if p.requires_grad} == {"layer3", "layer4"}
    with pytest.raises(ValueError, match="train=6 is out of range: backbone 'resnet18' has 5 stage groups"):
        set_trainable(model, 6)
    with pytest.raises(ValueError, match="unknown train setting 'backbone'; available: all, head"):
        set_trainable(model, "backbone")


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_local_weights_round_trip(tmp_path, fmt):
    source = timm.create_model("resnet18", num_classes=10)  # with a classifier ('fc') to be dropped
    state = source.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({f"backbone.{k}": v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "w.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = build_model("resnet18", 3, pretrained=str(path))
    loaded = model.backbone.state_dict()
    for k, v in loaded.items():
        assert torch.equal(v, state[k]), k


def test_weights_file_errors(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(f"pretrained weights file not found: {missing}")):
        build_model("resnet18", 3, pretrained=str(missing))
    state = timm.create_model("resnet18", num_classes=0).state_dict()
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError) as e:
        build_model("resnet18", 3, pretrained=str(bad))
    assert str(e.value) == (f"{bad}: weights do not fit backbone 'resnet18': shape mismatch: "
                            "conv1.weight (8, 3, 7, 7) vs model (64, 3, 7, 7) "
                            "(a file in another naming scheme: set model.weights_map: by_order)")
    del state["conv1.weight"], state["bn1.weight"]
    torch.save(state, bad)
    with pytest.raises(ValueError, match="missing keys: conv1.weight, bn1.weight"):
        build_model("resnet18", 3, pretrained=str(bad))
    other = tmp_path / "w.npz"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported weights format '.npz'"):
        build_model("resnet18", 3, pretrained=str(other))


def test_hub_failure_is_wrapped(monkeypatch):
    def offline(*args, pretrained=False, **kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(backbones, "hub_reachable", lambda: True)
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="could not get pretrained weights for 'resnet18' from the hub .*local"):
        build_model("resnet18", 3, pretrained=True)


def test_describe_backbones_and_flops():
    rows = describe_backbones(["resnet18"], size=64)
    assert rows[0]["timm_name"] == "resnet18"
    assert rows[0]["params_m"] == pytest.approx(11.18, abs=0.01)
    # resnet18: 1.82 GMACs at 224 px -> FLOPs = 2 * MACs, scaled by (64/224)^2
    assert rows[0]["gflops"] == pytest.approx(2 * 1.82 * (64 / 224) ** 2, rel=0.05)
    table = format_backbone_table(rows)
    assert table.splitlines()[0].startswith("name") and "resnet18" in table.splitlines()[2]
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10, bias=False))
    assert model_flops(lin, 4) == pytest.approx(2 * 48 * 10 / 1e9)


@pytest.mark.parametrize("name, features", [("efficientnetv2_b0", 1280), ("mobilenetv3_large", 1280)])
def test_registry_backbones_build_headless(name, features):
    model = build_model(name, 2).eval()
    with torch.no_grad():
        assert model(images(2)).shape == (2, 2)
    assert model.num_features == features and model.timm_name == BACKBONES[name]


def test_backbone_option_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\), got 1.5"):
        build_model("resnet18", 2, drop_path_rate=1.5)

    def no_drop_path(name, pretrained=False, **kwargs):  # like VGG.__init__
        raise TypeError("VGG.__init__() got an unexpected keyword argument 'drop_path_rate'")
    monkeypatch.setattr(timm, "create_model", no_drop_path)
    with pytest.raises(ValueError, match="backbone 'vgg16_bn' does not accept these options "
                                         r"\(drop_rate=0.0, drop_path_rate=0.1\)"):
        build_model("vgg16", 2, drop_path_rate=0.1)
