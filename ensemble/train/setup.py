"""What a run sets up before its folds train, with plain arguments, in two phases:

checks (nothing written): the device, a pretrained weights file (pickles, shapes), the checkpoints
`--resume` continues, the run folder (config, fold folders, folds file), free disk space;
then writes: the image caches (content-addressed, so a failing image leaves nothing else), the
competition's folds.csv and labels.csv, and the run folder (config.yaml, run.json). A corrected
rerun after any refusal therefore never meets a run "made with another config".
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import yaml

from ensemble.artifacts import (CompetitionPaths, FoldPaths, RunPaths, atomic_path, atomic_write_csv, atomic_write_json,
                                atomic_write_text, file_hash, inside)
from ensemble.artifacts.io import check_space
from ensemble.config import ConfigError
from ensemble.data.competition import Competition
from ensemble.data.folds import frame_bytes, merge_groups, plan_folds
from ensemble.data.images import build_cache, cache_paths, check_present

# settings that do not change a run's results: a run continued (another fold, --resume) with other
# values is the same run (one --device per process in docs/scaling.md's folds-in-parallel recipe)
NOT_IDENTITY = ("tune", "train.device", "train.num_workers", "input.cache", "output.runs_dir", "output.progress",
                "output.tensorboard", "output.plots")


@dataclass
class FoldsPlan:
    """runs/<competition>/folds.csv as read back, or as it will be written (frame) by write()."""
    path: Path
    fold: np.ndarray  # (N,) fold of every train row
    frame: pd.DataFrame | None  # None: the file exists

    @property
    def hash(self) -> str:
        """sha256 of the file, or of the bytes it will get."""
        return file_hash(self.path) if self.frame is None else hashlib.sha256(frame_bytes(self.frame)).hexdigest()

    def write(self) -> str:
        """Write the file when it is new (another process may have written the same folds since). -> sha256."""
        if self.frame is not None and not self.path.exists():
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(frame_bytes(self.frame))
        return file_hash(self.path)


def plan_competition_folds(comp: Competition, comp_dir: Path, n: int, seed: int, *, grouped: bool = False,
                           use_dups: bool = True, strategy: str = "stratified") -> FoldsPlan:
    """The folds of runs/<competition>/folds.csv (written once, reused by every model), computed but not
    written. grouped: keep comp.train's `group` column in one fold; use_dups: also the groups of
    dups.csv; strategy test_like: fold 0 = the most test-like rows (ensemble.shift's weights.csv)."""
    paths = CompetitionPaths(comp_dir)
    groups = comp.train["group"].to_numpy() if grouped else None
    extra = {}
    if use_dups and paths.dups.exists():
        from ensemble.data.dups import dup_groups  # duplicate-aware folds when `ensemble.dups` has been run
        dup = dup_groups(paths.dups, comp.train["id"].to_numpy())
        extra["dup_group"] = dup
        groups = merge_groups(groups, dup)
    ids, y = comp.train["id"].to_numpy(), comp.train["y"].to_numpy()
    if strategy == "test_like":  # fold 0 = the most test-like rows (ensemble.shift)
        from ensemble.shift.folds import plan_test_like_folds
        return FoldsPlan(paths.folds, *plan_test_like_folds(comp_dir, ids, y, n, seed, groups, extra, comp.classes))
    return FoldsPlan(paths.folds, *plan_folds(paths.folds, ids, y, n, seed, groups, extra, comp.classes))


def competition_folds(comp: Competition, comp_dir: Path, n: int, seed: int, **kw) -> tuple[np.ndarray, str]:
    """plan_competition_folds, written at once. -> ((N,) folds, sha256)."""
    plan = plan_competition_folds(comp, comp_dir, n, seed, **kw)
    return plan.fold, plan.write()


def write_labels(comp: Competition, comp_dir: Path) -> Path:
    """runs/<competition>/labels.csv: id and class name of every train row (vote reads labels here)."""
    path = CompetitionPaths(comp_dir).labels
    frame = pd.DataFrame({"id": comp.train["id"].astype(str),
                          "label": np.asarray(comp.classes, dtype=object)[comp.train["y"].to_numpy()]})
    if not path.exists() or not pd.read_csv(path, dtype=str, keep_default_na=False).equals(frame):
        atomic_write_csv(path, frame)
    return path


# ---------------------------------------------------------------- checks (nothing written)
def check_device(name: str) -> torch.device:
    """train.device as a torch.device that exists on this machine; ValueError naming the key otherwise."""
    from ensemble.train.engine import resolve_device
    dev = resolve_device(name)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ValueError(f"train.device={name!r}, but this machine has {n} CUDA device{'s' if n != 1 else ''} "
                         f"(cuda:0..cuda:{n - 1}); use one of them, 'cuda' or 'auto'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"train.device={name!r} but MPS is not available; use 'cpu' or 'auto'")
    return dev


def check_weights(backbone: str, pretrained, weights_map: str) -> int:
    """The backbone's parameter count; a `model.pretrained` file is read (pickled code refused) and
    fitted to the backbone's shapes, all on the meta device (no memory), so a bad file fails before
    anything is written."""
    import timm
    from ensemble.models import resolve_backbone
    from ensemble.models.backbones import load_backbone_weights
    try:
        with torch.device("meta"):
            net = timm.create_model(resolve_backbone(backbone), pretrained=False, num_classes=0)
    except (RuntimeError, NotImplementedError):  # a model that computes with its tensors while it is built
        net = timm.create_model(resolve_backbone(backbone), pretrained=False, num_classes=0)
    if isinstance(pretrained, str):  # a file the user chose (true: the hub or packaged weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "copying ... to a meta parameter is a no-op": only shapes matter
            load_backbone_weights(net, pretrained, weights_map)
    return sum(p.numel() for p in net.parameters())


def check_resumable(run_dir: Path, folds: Sequence[int]) -> None:
    """Every last.pt that --resume would continue is a complete checkpoint (torch's zip archive with
    its central directory: a copy cut short lacks it)."""
    for k in folds:
        fp = FoldPaths(RunPaths(run_dir).fold_dir(k))
        if not fp.last.exists() or fp.preds.exists():
            continue
        try:
            with zipfile.ZipFile(fp.last) as z:
                z.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise ConfigError(f"{fp.last}: not a complete checkpoint ({e}); delete it to restart fold {k} from "
                              f"its first epoch, or use --fresh to start the run over") from None


def _first_difference(a, b, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else f"{prefix[:-1]}: {a!r} -> {b!r}"


def _identity(raw: dict) -> dict:
    """The parts of a resolved config that decide a run's results (NOT_IDENTITY left out)."""
    out = json.loads(json.dumps(raw, default=str))
    for key in NOT_IDENTITY:
        *path, last = key.split(".")
        node = out
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def run_folder(runs_dir: Path, run_dir: Path) -> Path:
    """run_dir, refused (PathEscapeError) unless it resolves inside runs_dir (output.runs_dir)."""
    return inside(runs_dir, Path(run_dir).relative_to(runs_dir))


def check_run_dir(run_dir: Path, config: dict, folds_file: Path, folds_hash: str, train_folds: Sequence[int],
                  resume: bool, fresh: bool) -> None:
    """Refuse a run folder made with another config (config: the resolved config as a dict) or
    folds file, or holding the folds to train (without resume). fresh: it will be deleted."""
    paths = RunPaths(run_dir)
    if fresh or not paths.root.exists():
        return
    if paths.config.exists():
        diff = _first_difference(_identity(yaml.safe_load(paths.config.read_text())), _identity(config))
        if diff:
            raise ConfigError(f"{run_dir} was made with another config ({diff}); use --set name=<new run> "
                              f"or --fresh to overwrite it")
    if paths.state.exists():
        old = json.loads(paths.state.read_text())["folds_hash"]
        if old != folds_hash:
            raise ConfigError(f"{folds_file} changed since {run_dir} started "
                              f"(sha256 {old[:12]} -> {folds_hash[:12]}); use --fresh to retrain on the new folds")
    if not resume:
        started = [k for k in train_folds if paths.fold_dir(k).exists()]
        if started:
            raise ConfigError(f"{run_dir}: fold(s) {', '.join(map(str, started))} already exist; "
                              f"pass --resume to continue them or --fresh to start over")


def check_disk(run_dir: Path, comp: Competition, comp_dir: Path, size: int, keep: bool, params: int,
               n_folds: int) -> None:
    """Free space for the image caches still to build, then also for the folds' checkpoints (best.pt +
    last.pt with an optimizer's two moments: ~4 copies of the weights each), before the first file is
    written. NoSpaceError names the cache file, or the run folder."""
    need = 0
    for paths in (comp.train["path"].tolist(), comp.test["path"].tolist()):
        npy = cache_paths(paths, size, CompetitionPaths(comp_dir).cache)[0]
        if not keep or not npy.exists():
            need += len(paths) * size * size * 3
            check_space(npy, need)
    check_space(run_dir, need + n_folds * params * 4 * 4)


# ---------------------------------------------------------------- writes
@contextlib.contextmanager
def _no_new_dirs(path: Path) -> Iterator[None]:
    """The folders on the way to `path` created inside the block are removed again when it fails."""
    new, p = [], Path(path)
    while not p.exists() and p != p.parent:
        new.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for d in new:  # deepest first; a folder something else wrote into stays
            try:
                d.rmdir()
            except OSError:
                break
        raise


def open_run_dir(run_dir: Path, runs_dir: Path, config_text: str, folds_hash: str, fresh: bool) -> Path:
    """Create (fresh: first delete) the run folder, which must resolve inside runs_dir
    (output.runs_dir), and write config.yaml and run.json."""
    run_dir = run_folder(runs_dir, run_dir)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RunPaths(run_dir).config, config_text)
    atomic_write_json(RunPaths(run_dir).state, {"folds_hash": folds_hash})
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
                workers: int = 2, progress: bool = True, max_pixels: int | None = None) -> tuple:
    """Decoded, resized uint8 caches of train and test images. keep (input.cache): in
    runs/<competition>/cache/, shared by all models and folds; else in a temporary folder removed
    when the process exits (every run decodes again). Unreadable images leave no new folder behind."""
    cache_dir = image_cache_dir(comp_dir, keep)
    kw = dict(policy=policy, workers=workers, progress=progress, max_pixels=max_pixels)
    # a missing test image is found before the train cache is built (train's own bad images are listed
    # together, missing or undecodable, by build_cache, which writes nothing when it refuses)
    check_present(comp.test["path"].tolist(), policy, test=True)
    with _no_new_dirs(cache_dir):
        return (build_cache(comp.train["path"].tolist(), size, cache_dir, **kw),
                build_cache(comp.test["path"].tolist(), size, cache_dir, test=True, **kw))
