"""A competition's config folder from what init detected: base.yaml, compete.yaml (its `time:` section
rendered from the one template every competition's comes from) and the model files the candidates name.

    time = time_section("pretrained", tta="[none, hflip]", vote={"bias": "on"})   # a dict, as in compete.yaml
    files = competition_files(detected, "mycomp", root_text="../downloads/mycomp")  # {file name: text}
"""
from __future__ import annotations

import string
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Mapping

import yaml

from ensemble.init.detect import Detected

TEMPLATES = resources.files("ensemble.init") / "templates"
PROFILES = ("small", "pretrained")
DEFAULT_TTA = "[none, hflip]"  # flips up/down too ([flips], [d4]) only where images have no 'up' (skin, cells)


def _render(text: str, **values) -> str:
    return string.Template(text).safe_substitute({k: v for k, v in values.items() if v is not None})


def time_section(profile: str, *, size: int | None = None, tta: str = DEFAULT_TTA,
                 vote: Mapping[str, object] | None = None, pseudo: Mapping[str, object] | None = None) -> dict:
    """The `time:` mapping of compete.yaml for ``profile`` (small: ``size`` px; pretrained: ``tta`` views),
    with ``vote`` options (VoteOptions fields) and a ``pseudo`` round (PseudoSpec fields) when given."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; available: {', '.join(PROFILES)}")
    if profile == "small" and not size:
        raise ValueError("the small profile needs the image size")
    text = _render((TEMPLATES / "compete.yaml").read_text(), size=size, tta=tta)
    section = dict(yaml.safe_load(text)["profiles"][profile])
    if vote:
        section["vote"] = dict(vote)
    if pseudo is not None:
        section["pseudo"] = dict(pseudo)
    return section


def model_files(profile: str, name: str) -> dict[str, str]:
    """{file name: text} of the model configs the profile's candidates name."""
    folder = TEMPLATES / profile
    return {f.name: _render(f.read_text(), name=name) for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def _flow(value) -> str:
    """One value as one line of flow-style YAML (a scalar too: 'on' quoted, '' as '')."""
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return yaml.safe_dump([value], default_flow_style=True, width=10_000).strip()[1:-1]


def compete_text(time: dict, name: str, source: str) -> str:
    """compete.yaml with the time section, candidates one per line."""
    lines = [f"# python -m ensemble.compete --competition {name} --time 60m [--plan-only]: measure, plan, train,",
             f"# vote and report within the time. Written by python -m ensemble.init from {source};",
             "# the time section comes from ensemble/init/templates/compete.yaml (as every competition's).",
             "time:", "  candidates:"]
    lines += [f"    - {_flow(c)}" for c in time["candidates"]]
    lines += [f"  {k}: {_flow(v)}" for k, v in time.items() if k != "candidates"]
    return "\n".join(lines) + "\n"


def profile_of(found: Detected) -> str:
    return "small" if found.small else "pretrained"


def input_size(found: Detected) -> int:
    """Small images: their own size rounded up to a multiple of 32 (backbones stride 32); else 128."""
    return max(32, -(-found.image_px // 32) * 32) if found.small else 128


def vote_options(metric: str) -> dict[str, str]:
    """Per-class bias tuning pays for a class-balanced accuracy (nested CV keeps it honest)."""
    return {"bias": "on"} if metric == "balanced_accuracy" else {}


def base_text(found: Detected, name: str, root_text: str, n_folds: int) -> str:
    """base.yaml: the competition as detected, with defaults suited to its images and metric."""
    comp = {"name": name, "root": root_text}
    if found.layout == "folders":
        comp["layout"] = "folders"
    for key, value, default in (("train_csv", found.train_csv, "train.csv"),
                                ("sample_submission", found.sample_submission, "sample_submission.csv"),
                                ("train_dir", found.train_dir, "train"), ("test_dir", found.test_dir, "test")):
        if value is not None and value != default:
            comp[key] = value
    if found.layout == "csv":
        comp.update(id_col=found.id_col, label_col=found.label_col)
        if found.group_col:
            comp["group_col"] = found.group_col
    comp["ext"] = found.ext
    comp["classes"] = list(found.classes)
    comp["metric"] = found.metric
    balanced = found.metric in ("balanced_accuracy", "macro_f1")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    out = [f"# {name}: written by python -m ensemble.init on {stamp}; every line is yours to edit.",
           f"# metric is a guess ({found.metric_reason}): check the competition's Evaluation page.",
           "competition:"]
    out += [f"  {k}: {_flow(v)}" for k, v in comp.items()]
    out += ["folds:", f"  n: {n_folds}", "  seed: 42", "input:", f"  size: {input_size(found)}"]
    if balanced:
        out += ["loss:", "  name: ce", "  class_weights: auto   # inverse frequency: the metric weighs every class equally"]
    out += ["train:", f"  batch_size: {64 if found.small else 32}", f"  num_workers: {0 if found.small else 2}"]
    if not found.small:
        out += ["  early_stopping: 4"]
    out += ["augment:", f"  train: {'light' if found.small else 'medical'}"]
    if not found.small:
        out += ["predict:", f"  tta: {DEFAULT_TTA}   # [flips] or [d4] where images have no 'up' (skin, cells)"]
    return "\n".join(out) + "\n"


def fold_count(found: Detected) -> int:
    """5 folds (3 below 2,000 rows: a time budget buys more epochs), never more than the smallest class."""
    want = 5 if found.n_train >= 2000 else 3
    return max(2, min(want, min(found.counts)))


def competition_files(found: Detected, name: str, root_text: str) -> dict[str, str]:
    """{file name: text} for configs/<name>/."""
    profile = profile_of(found)
    time = time_section(profile, size=input_size(found), vote=vote_options(found.metric))
    files = {"base.yaml": base_text(found, name, root_text, fold_count(found)),
             "compete.yaml": compete_text(time, name, Path(root_text).as_posix())}
    files.update(model_files(profile, name))
    return files
