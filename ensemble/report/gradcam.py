"""Grad-CAM (Selvaraju et al. 2017) over the last feature stage of a run's backbone, from its fold
checkpoints: where the model looked when it made a mistake. Torch hooks on timm's last
``feature_info`` module; computed only for the few images the report's gallery shows.

    cams = run_cams(run_dir, rows)   # rows: [(fold, image path, class index)] -> [(S, S) in 0..1 or None]
    overlay(image (S, S, 3) uint8, cam (S, S)) -> (S, S, 3) uint8 heat map blended on the image
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional

from ensemble.artifacts.paths import RunPaths
from ensemble.models import Classifier, build_model

logger = logging.getLogger(__name__)
MEMO_SIZE = 256  # heat maps kept in memory (keyed by run, checkpoint times, fold, image, class)
_MEMO: dict[tuple, np.ndarray] = {}


def last_stage(model: Classifier) -> torch.nn.Module:
    """The backbone's last feature stage (timm feature_info: layer4, blocks.6, ...)."""
    info = getattr(model.backbone, "feature_info", None)
    if not info:
        raise ValueError(f"backbone {model.timm_name!r} has no timm feature_info: no stage for Grad-CAM")
    name = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
    return model.backbone.get_submodule(name)


def gradcam(model: Classifier, images: np.ndarray, targets: Sequence[int]) -> tuple[np.ndarray, tuple[int, int]]:
    """images (N, S, S, 3) uint8 RGB, targets (N,) class indices -> ((N, S, S) float32 maps in [0, 1], the
    last stage's grid (h, w)): ReLU(sum_k mean(d logit_target / d A_k) * A_k) over its activations A, upsampled."""
    store: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, out):
        store["a"] = out
        out.register_hook(lambda g: store.__setitem__("g", g))

    handle = last_stage(model).register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
            logits = model(x.to(next(model.parameters()).device))
            model.zero_grad(set_to_none=True)
            logits[torch.arange(len(targets)), torch.as_tensor(list(targets))].sum().backward()
        a, g = store["a"].detach(), store["g"].detach()
    finally:
        handle.remove()
        model.train(was_training)
    cam = functional.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    cam = functional.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
    return (cam / peak).cpu().numpy().astype(np.float32), (int(a.shape[2]), int(a.shape[3]))


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A JET heat map of cam (S, S) in [0, 1] blended on image (S, S, 3) uint8 RGB."""
    import cv2
    heat = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    return np.uint8(np.clip((1 - alpha) * image + alpha * heat, 0, 255))


def load_run_model(run_dir: Path, fold: int) -> tuple[Classifier, int]:
    """The run's model (its resolved config.yaml) with fold `fold`'s best.pt weights, on the CPU.
    -> (model, input size). Raises FileNotFoundError without the checkpoint, ValueError for an ordinal run."""
    from ensemble.artifacts import read_metrics
    from ensemble.config import load_config
    from ensemble.models.weights import load_torch
    paths = RunPaths(run_dir)
    cfg = load_config(paths.config)
    if cfg.competition.task == "ordinal":
        raise ValueError(f"{run_dir}: an ordinal run regresses a grade: no class to explain")
    ckpt = paths.fold_dir(fold) / "best.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found (Grad-CAM reads each fold's best checkpoint)")
    h = cfg.model.head
    model = build_model(cfg.model.backbone, len(read_metrics(run_dir)["classes"]), pretrained=False,
                        head_hidden=h.hidden, head_batchnorm=h.batchnorm, head_dropout=h.dropout,
                        head_activation=h.activation)
    model.load_state_dict(load_torch(ckpt)["model"])
    return model, cfg.input.size


def checkpoint_stamp(run_dir: Path, folds: Sequence[int]) -> str:
    """Changes when any of these folds' best.pt changes (cached heat maps are redrawn)."""
    stamps = []
    for k in sorted(set(folds)):
        f = RunPaths(run_dir).fold_dir(k) / "best.pt"
        stamps.append(f"{k}:{f.stat().st_mtime_ns if f.is_file() else 0}")
    return ",".join(stamps)


def run_cams(run_dir: Path, rows: Sequence[tuple[int, str, int]], size: int | None = None
             ) -> tuple[list[np.ndarray | None], str | None]:
    """rows: (fold, image path, target class) -> ([(S, S) map or None per row], a note or None).
    One checkpoint load per fold; S = size (default: the run's input size)."""
    from ensemble.data.images import decode, resize
    out: list[np.ndarray | None] = [None] * len(rows)
    notes = []
    stamp = checkpoint_stamp(run_dir, [r[0] for r in rows])
    keys = [(str(run_dir), stamp, *r) for r in rows]
    for i, key in enumerate(keys):  # an ensemble's gallery and its runs' share most images
        if key in _MEMO:
            out[i] = _MEMO[key] if size in (None, _MEMO[key].shape[0]) else _resized(_MEMO[key], size)
    for k in sorted({r[0] for i, r in enumerate(rows) if out[i] is None}):
        idx = [i for i, r in enumerate(rows) if r[0] == k and out[i] is None]
        try:
            model, run_size = load_run_model(run_dir, k)
        except (FileNotFoundError, ValueError) as e:
            notes.append(str(e))
            continue
        images = np.stack([resize(decode(rows[i][1])[0], run_size) for i in idx])
        cams, (h, w) = gradcam(model, images, [rows[i][2] for i in idx])
        if min(h, w) < 3 and not any("cannot localise" in n for n in notes):
            notes.append(f"{Path(run_dir).name}: the last backbone stage is {h}x{w} at {run_size} px, so its Grad-CAM "
                         f"cannot localise (a larger input.size gives it a finer grid)")
        for i, cam in zip(idx, cams):
            if len(_MEMO) >= MEMO_SIZE:
                _MEMO.pop(next(iter(_MEMO)))
            _MEMO[keys[i]] = cam
            out[i] = cam if size in (None, run_size) else _resized(cam, size)
    return out, ("; ".join(notes) or None)


def _resized(cam: np.ndarray, size: int) -> np.ndarray:
    import cv2
    return cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
