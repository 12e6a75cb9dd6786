"""What a run sets up before its folds train, with plain arguments: the competition's folds.csv and
labels.csv, the image caches, and the run directory (refusing a changed config or folds file)."""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from ensemble.artifacts import CompetitionPaths, RunPaths, atomic_write_csv, atomic_write_json, atomic_write_text
from ensemble.config import ConfigError
from ensemble.data.competition import Competition
from ensemble.data.folds import ensure_folds, merge_groups
from ensemble.data.images import build_cache


def competition_folds(comp: Competition, comp_dir: Path, n: int, seed: int, *, grouped: bool = False,
                      use_dups: bool = True, strategy: str = "stratified") -> tuple[np.ndarray, str]:
    """runs/<competition>/folds.csv (written once, reused by every model). -> (N,) folds, sha256.
    grouped: keep comp.train's `group` column in one fold; use_dups: also the groups of dups.csv;
    strategy test_like: fold 0 = the most test-like rows (ensemble.shift's weights.csv)."""
    paths = CompetitionPaths(comp_dir)
    groups = comp.train["group"].to_numpy() if grouped else None
    extra = {}
    if use_dups and paths.dups.exists():
        from ensemble.data.dups import dup_groups  # duplicate-aware folds when `ensemble.dups` has been run
        dup = dup_groups(paths.dups, comp.train["id"].to_numpy())
        extra["dup_group"] = dup
        groups = merge_groups(groups, dup)
    if strategy == "test_like":  # issue 12: fold 0 = the most test-like rows (ensemble.shift)
        from ensemble.shift.folds import test_like_folds
        return test_like_folds(comp_dir, comp.train["id"].to_numpy(), comp.train["y"].to_numpy(), n, seed, groups, extra,
                               comp.classes)
    return ensure_folds(paths.folds, comp.train["id"].to_numpy(), comp.train["y"].to_numpy(), n, seed, groups, extra,
                        comp.classes)


def write_labels(comp: Competition, comp_dir: Path) -> Path:
    """runs/<competition>/labels.csv: id and class name of every train row (vote reads labels here)."""
    path = CompetitionPaths(comp_dir).labels
    frame = pd.DataFrame({"id": comp.train["id"].astype(str),
                          "label": np.asarray(comp.classes, dtype=object)[comp.train["y"].to_numpy()]})
    if not path.exists() or not pd.read_csv(path, dtype=str, keep_default_na=False).equals(frame):
        atomic_write_csv(path, frame)
    return path


def _first_difference(a, b, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else f"{prefix[:-1]}: {a!r} -> {b!r}"


def _identity(raw: dict) -> dict:
    """The parts of a resolved config that decide a run's results (tuning spaces and the
    progress bar do not)."""
    out = {k: v for k, v in raw.items() if k != "tune"}
    out["output"] = {k: v for k, v in raw.get("output", {}).items() if k != "progress"}
    return out


def prepare_run_dir(run_dir: Path, config: dict, config_text: str, folds_file: Path, folds_hash: str,
                    train_folds: Sequence[int], resume: bool, fresh: bool) -> Path:
    """Create or reopen the run directory; refuse a changed config (config: the resolved config as a
    dict, config_text: as YAML) or folds file; write config.yaml and run.json."""
    run_dir = Path(run_dir)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_file, state_file = RunPaths(run_dir).config, RunPaths(run_dir).state
    if cfg_file.exists():
        diff = _first_difference(_identity(yaml.safe_load(cfg_file.read_text())), _identity(config))
        if diff:
            raise ConfigError(f"{run_dir} was made with another config ({diff}); use --set name=<new run> "
                              f"or --fresh to overwrite it")
    if state_file.exists():
        old = json.loads(state_file.read_text())["folds_hash"]
        if old != folds_hash:
            raise ConfigError(f"{folds_file} changed since {run_dir} started "
                              f"(sha256 {old[:12]} -> {folds_hash[:12]}); use --fresh to retrain on the new folds")
    if not resume:
        started = [k for k in train_folds if RunPaths(run_dir).fold_dir(k).exists()]
        if started:
            raise ConfigError(f"{run_dir}: fold(s) {', '.join(map(str, started))} already exist; "
                              f"pass --resume to continue them or --fresh to start over")
    atomic_write_text(cfg_file, config_text)
    atomic_write_json(state_file, {"folds_hash": folds_hash})
    return run_dir


def model_kwargs(cfg) -> dict:
    """build_model's keyword arguments from a Config's `model:` section (backbone and out_dim aside)."""
    m = cfg.model
    return dict(pretrained=m.pretrained, weights_map=m.weights_map, head_hidden=m.head.hidden,
                head_batchnorm=m.head.batchnorm, head_dropout=m.head.dropout, head_activation=m.head.activation,
                drop_rate=m.drop_rate, drop_path_rate=m.drop_path_rate)


def image_cache_dir(comp_dir: Path, keep: bool = True) -> Path:
    """runs/<competition>/cache/ (input.cache), or a temporary folder removed when the process exits."""
    if keep:
        return CompetitionPaths(comp_dir).cache
    cache_dir = Path(tempfile.mkdtemp(prefix="ensemble-cache-"))
    atexit.register(shutil.rmtree, cache_dir, True)
    return cache_dir


def load_images(comp: Competition, comp_dir: Path, size: int, *, keep: bool = True, policy: str = "fail",
                workers: int = 2, progress: bool = True) -> tuple:
    """Decoded, resized uint8 caches of train and test images. keep (input.cache): in
    runs/<competition>/cache/, shared by all models and folds; else in a temporary folder removed
    when the process exits (every run decodes again)."""
    cache_dir = image_cache_dir(comp_dir, keep)
    kw = dict(policy=policy, workers=workers, progress=progress)
    return (build_cache(comp.train["path"].tolist(), size, cache_dir, **kw),
            build_cache(comp.test["path"].tolist(), size, cache_dir, **kw))
