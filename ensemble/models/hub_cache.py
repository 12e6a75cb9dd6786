"""timm weights already in the Hugging Face hub cache, found without the network.

Kaggle notebooks run offline; their users attach timm's own hub cache as a dataset and point
``HF_HOME`` (or ``HF_HUB_CACHE``) at it. timm stores ``timm/<model>.<tag>`` there in the hub's
layout::

    <cache>/models--timm--tf_efficientnet_lite0.in1k/refs/main            -> <revision>
    <cache>/models--timm--tf_efficientnet_lite0.in1k/snapshots/<revision>/model.safetensors, config.json

The weights are in timm's own naming (classifier included), so they load with the identity mapping.
"""
from __future__ import annotations

import os
from pathlib import Path

FILES = ("model.safetensors", "pytorch_model.bin")  # what timm downloads, in its order of preference
PREFIX = "models--"


def cache_dir() -> Path:
    """The hub cache folder as huggingface_hub finds it: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE,
    $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub (read at every call:
    a notebook may set HF_HOME after importing this package)."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def repo_folder(repo_id: str) -> str:
    """'timm/resnet18.a1_in1k' -> 'models--timm--resnet18.a1_in1k' (the hub's folder name)."""
    return PREFIX + repo_id.replace("/", "--")


def hub_repos(timm_name: str, cache: Path) -> list[str]:
    """The hub repos that may hold ``timm_name``'s weights: timm's own choice (its default or the
    given tag) first, then every other tag of the same architecture found in ``cache``."""
    from timm.models import get_pretrained_cfg, split_model_name_tag
    arch, _ = split_model_name_tag(timm_name)
    cfg = get_pretrained_cfg(timm_name)
    first = [cfg.hf_hub_id] if cfg is not None and cfg.hf_hub_id else []
    others = sorted(p.name[len(PREFIX):].replace("--", "/", 1)
                    for p in cache.glob(f"{PREFIX}timm--{arch}*") if p.is_dir())
    others = [r for r in others if r.split("/", 1)[1].split(".")[0] == arch]  # not resnet18d for resnet18
    return list(dict.fromkeys(first + others))


def cached_weights(timm_name: str) -> Path | None:
    """The cached weights file of ``timm_name`` (refs/main's snapshot), or None."""
    from huggingface_hub import try_to_load_from_cache
    cache = cache_dir()
    if not cache.is_dir():
        return None
    for repo in hub_repos(timm_name, cache):
        for name in FILES:
            hit = try_to_load_from_cache(repo, name, cache_dir=str(cache))
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    return None
