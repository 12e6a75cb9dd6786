"""Training and inference loops. Plain arguments only: no Config, no files.

Batches are (uint8 images (B, 3, H, W), labels (B,)) from the loaders in ensemble.data;
the model normalises on the device, so only uint8 crosses the host->device copy.
"""
from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

TTA_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}


def register_tta_view(name: str):
    """Decorator: ``@register_tta_view("hflip")`` on a function (N, C, H, W) -> (N, C, H', W')."""
    def deco(fn):
        if name in TTA_VIEWS:
            raise ValueError(f"TTA view {name!r} is already registered")
        TTA_VIEWS[name] = fn
        return fn
    return deco


# The dihedral group D4: the 8 rotations and reflections of a square (no "up" in skin, fundus or
# microscopy images, so every one is a valid view).
for _name, _fn in {
    "none": lambda x: x,
    "hflip": lambda x: torch.flip(x, dims=[3]),
    "vflip": lambda x: torch.flip(x, dims=[2]),
    "rot90": lambda x: torch.rot90(x, 1, dims=[2, 3]),
    "rot180": lambda x: torch.rot90(x, 2, dims=[2, 3]),
    "rot270": lambda x: torch.rot90(x, 3, dims=[2, 3]),
    "transpose": lambda x: x.transpose(2, 3),
    "antitranspose": lambda x: torch.rot90(x, 2, dims=[2, 3]).transpose(2, 3),
}.items():
    register_tta_view(_name)(_fn)

TTA_GROUPS = {"d4": ["none", "hflip", "vflip", "rot90", "rot180", "rot270", "transpose", "antitranspose"],
              "flips": ["none", "hflip", "vflip", "rot180"]}
_SCALE = re.compile(r"scale(\d+(?:\.\d+)?)")


def _scaled(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Multi-size view: resize the batch by ``factor`` (bilinear, antialiased when shrinking)."""
    def view(x: torch.Tensor) -> torch.Tensor:
        size = max(8, int(round(x.shape[-1] * factor)))
        y = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=factor < 1)
        return y.clamp_(0, 255)
    return view


def expand_tta(names: Sequence[str]) -> list[str]:
    """Expand groups (d4, flips) and check every view. ``scaleF`` (e.g. scale1.25) is a multi-size
    view; a name may combine a geometric view with a scale: ``hflip+scale1.25``."""
    out: list[str] = []
    for name in names:
        for view in TTA_GROUPS.get(name, [name]):
            for part in view.split("+"):
                if part not in TTA_VIEWS and not (_SCALE.fullmatch(part) and 0.25 <= float(part[5:]) <= 4):
                    raise ValueError(f"unknown TTA view {part!r}; available: {', '.join(TTA_VIEWS)}, "
                                     f"groups {', '.join(TTA_GROUPS)}, scaleF (0.25..4, e.g. scale1.25), "
                                     f"or views joined with +")
            out.append(view)
    return list(dict.fromkeys(out))


def tta_view(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function (N, C, H, W) -> (N, C, H', W') of one checked view name (see expand_tta)."""
    fns = [_scaled(float(p[5:])) if _SCALE.fullmatch(p) else TTA_VIEWS[p] for p in name.split("+")]
    if len(fns) == 1:
        return fns[0]

    def composed(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x
    return composed


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the fold is stopped instead of writing garbage."""


@dataclass
class Precision:
    """How the forward pass runs: autocast dtype (None = fp32) and a GradScaler for fp16."""

    device: torch.device
    dtype: torch.dtype | None = None
    channels_last: bool = False

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 (None otherwise); keep one per training run, it carries the scale."""
        return torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def resolve_precision(device: torch.device, amp: str = "auto", channels_last: bool = True) -> Precision:
    """amp: auto (bf16 on CUDA when supported, else fp16; fp32 on CPU) | bf16 | fp16 | off."""
    choices = ("auto", "bf16", "fp16", "off")
    if amp not in choices:
        raise ValueError(f"unknown amp mode {amp!r}; available: {', '.join(choices)}")
    dtype = None
    if amp == "auto" and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif amp == "bf16":
        dtype = torch.bfloat16
    elif amp == "fp16":
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return Precision(device, dtype, channels_last)


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss.item()} at step {step}; the fold is stopped "
                                 f"(lower the learning rate, set train.clip_grad, or train.amp=off)")


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def train_one_epoch(model: nn.Module, loader, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    prec: Precision, *, schedule=None, scaler=None, accum_steps: int = 1,
                    clip_grad: float | None = None, forward: Callable | None = None,
                    progress: bool = False, desc: str = "train") -> dict[str, float]:
    """One pass over `loader`. -> {"loss": mean loss, "img_s": images per second}.

    forward: optional callable(x) -> logits replacing model(x) (e.g. the head on cached features).
    """
    forward = forward or model
    model.train()
    total, seen, t0 = 0.0, 0, time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    n_batches = len(loader)
    bar = _progress(loader, n_batches, desc, progress)
    for step, (x, y) in enumerate(bar):
        x, y = prec.to_device(x), y.to(prec.device, non_blocking=True)
        with prec.autocast():
            loss = loss_fn(forward(x).float(), y)
        _check_finite(loss, step)
        (scaler.scale(loss / accum_steps) if scaler else loss / accum_steps).backward()
        if (step + 1) % accum_steps == 0 or step + 1 == n_batches:
            if scaler:
                scaler.unscale_(optimizer)
            if clip_grad:
                nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if schedule is not None:
                schedule.step_batch()
        total += loss.item() * len(y)
        seen += len(y)
        if progress:
            bar.set_postfix(loss=f"{total / seen:.4f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}")
    if prec.device.type == "cuda":
        torch.cuda.synchronize(prec.device)
    dt = time.perf_counter() - t0
    return {"loss": total / max(seen, 1), "img_s": seen / dt if dt > 0 else math.inf}


@torch.no_grad()
def predict(model: nn.Module, loader, prec: Precision, *, tta: Sequence[str] = ("none",),
            activation: str = "softmax", forward: Callable | None = None,
            progress: bool = False, desc: str = "predict") -> np.ndarray:
    """-> (N, C) float32 probabilities (softmax averaged over TTA views), or (N, 1) raw
    outputs with activation='identity' (ordinal regression heads)."""
    views = [tta_view(v) for v in expand_tta(tta)]
    forward = forward or model
    model.eval()
    out = []
    for x, _ in _progress(loader, len(loader), desc, progress):
        x = prec.to_device(x)
        acc = None
        for view in views:
            with prec.autocast():
                z = forward(view(x) if x.ndim == 4 else x).float()
            z = torch.softmax(z, dim=1) if activation == "softmax" else z
            acc = z if acc is None else acc + z
        out.append((acc / len(views)).cpu())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def extract_features(model: nn.Module, loader, prec: Precision, progress: bool = False) -> torch.Tensor:
    """Backbone features of every image in `loader`, in order. -> (N, F) float32 on the device."""
    model.eval()
    feats = []
    for x, _ in _progress(loader, len(loader), "features", progress):
        with prec.autocast():
            feats.append(model.forward_features(prec.to_device(x)).float())
    return torch.cat(feats)


class FeatureLoader:
    """Batches of cached features (N, F) and labels (N,), reshuffled by a seeded generator."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 shuffle: bool, seed: int = 0):
        self.feats, self.labels, self.batch_size, self.shuffle = feats, labels, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size].to(self.feats.device)
            yield self.feats[idx], self.labels[idx.to(self.labels.device)]
