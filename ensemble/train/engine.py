"""Training and inference loops. Plain arguments only: no Config, no files.

Batches are (uint8 images (B, 3, H, W), labels (B,)) from the loaders in ensemble.data;
the model normalises on the device, so only uint8 crosses the host->device copy.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ensemble.data.datasets import batch_bounds
from ensemble.train.tta import expand_tta, tta_view


class NonFiniteLossError(RuntimeError):
    """The loss, the weights or the validation outputs became NaN or inf; the fold is stopped
    instead of writing garbage (FoldTrainer adds the fold, epoch and what to change)."""


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
        raise NonFiniteLossError(f"the train loss became {loss.item()} at step {step}")


def check_diverged(model: nn.Module, out: np.ndarray | None = None) -> None:
    """Raise NonFiniteLossError when a parameter of `model` or the outputs `out` hold NaN/inf
    (a diverged optimizer step leaves a finite loss behind and NaN weights for the next epoch)."""
    bad = next((n for n, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:
        raise NonFiniteLossError(f"the weights became NaN/inf (diverged; first: {bad})")
    if out is not None and not np.isfinite(out).all():
        raise NonFiniteLossError("the model's outputs on the validation rows became NaN/inf (weights diverged)")


def divergence_hint(lrs: dict[str, float], clip_grad: float | None, amp: bool) -> str:
    """What to change after a divergence, citing the config keys that exist."""
    now = ", ".join(f"{g} {v:.3g}" for g, v in lrs.items())
    clip = f"lower train.clip_grad (now {clip_grad:g})" if clip_grad else "set train.clip_grad (e.g. 1.0)"
    return f"lower optim.lr (now {now}) or {clip}" + (" or set train.amp=off" if amp else "")


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None)


def train_one_epoch(model: nn.Module, loader, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    prec: Precision, *, schedule=None, scaler=None, accum_steps: int = 1,
                    clip_grad: float | None = None, forward: Callable | None = None,
                    targets: torch.Tensor | None = None, mix: Callable | None = None, ema=None,
                    progress: bool = False, desc: str = "train") -> dict[str, float]:
    """One pass over `loader`. -> {"loss": mean loss, "img_s": images per second}.

    forward: optional callable(x) -> logits replacing model(x) (e.g. the head on cached features).
    targets: (R, C) soft targets on the device; the loader's labels are then rows of it, and the
    loss gets targets[labels] (B, C) (None: the labels are the loss targets). mix: callable(x,
    targets (B, C)) -> (x, targets), e.g. a BatchMixer. ema: a WeightEma, updated after every
    optimizer step.
    """
    forward = forward or model
    model.train()
    total, seen, t0 = 0.0, 0, time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    n_batches = len(loader)
    bar = _progress(loader, n_batches, desc, progress)
    for step, (x, y) in enumerate(bar):
        x, y = prec.to_device(x), y.to(prec.device, non_blocking=True)
        if targets is not None:
            y = targets[y]
        if mix is not None:
            x, y = mix(x, y)
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
            if ema is not None:
                ema.update()
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
    """Batches of cached features (N, F) and labels (N,), reshuffled by a seeded generator; a last
    batch of one row joins the one before it when shuffling (training; see batch_bounds)."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 shuffle: bool, seed: int = 0):
        self.feats, self.labels, self.batch_size, self.shuffle = feats, labels, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def _bounds(self) -> list[tuple[int, int]]:
        n = len(self.labels)
        if self.shuffle:
            return batch_bounds(n, self.batch_size)
        return [(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]

    def __len__(self) -> int:
        return len(self._bounds())

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start, end in self._bounds():
            idx = order[start:end].to(self.feats.device)
            yield self.feats[idx], self.labels[idx.to(self.labels.device)]
