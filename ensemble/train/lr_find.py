"""The LR range test (Smith, "Cyclical Learning Rates", 2017): `python -m ensemble.train --cfg X --lr-find`.

On fold 0's training rows, the learning rate grows exponentially from `start` to `end`, one
optimizer step per batch, while the (bias-corrected, exponentially smoothed) training loss is
recorded; the sweep stops once the loss diverges (4x its minimum after the first tenth of the
sweep, where the smoothing settles). Two sweeps, each from the
config's initial weights:

    head       backbone frozen, the head's LR swept                           -> optim.lr.head
    backbone   the head first trained for `steps` batches at the head's        -> optim.lr.backbone
               suggestion, then frozen; the backbone groups' LR swept (layer
               decay keeps its ratios)

A random head would dominate the backbone's curve (its loss falls at any backbone LR), so the
backbone is swept under a trained, fixed head, as a fine-tuning stage after the head epochs sees it.
Suggestions per sweep: the LR of the steepest descent of the smoothed loss (between the first
tenth of the sweep, where the smoothing is still settling, and the minimum) and the LR of the
minimum / 10. Writes lr_find.csv and lr_find.png into the run folder and nothing
else there: no checkpoint, no metrics.json (it is not a run).
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble.artifacts import atomic_write_csv
from ensemble.config import Config
from ensemble.data.augment import build_transforms
from ensemble.data.competition import load_competition
from ensemble.data.datasets import CachedDataset, make_loader
from ensemble.models import build_model, set_trainable
from ensemble.train.engine import Precision, resolve_device, resolve_precision
from ensemble.train.plan import build_fold_plan
from ensemble.train.setup import competition_folds, load_images, model_kwargs

logger = logging.getLogger(__name__)


@dataclass
class Sweep:
    """One sweep: the LR (S,) of every step, its loss and smoothed loss, and whether it diverged.
    settle: the first steps, where the smoothed loss averages only a few batches, which neither
    stop the sweep nor count for the minimum."""
    group: str
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    diverged: bool
    settle: int = 0

    def minimum(self) -> int:
        """The step of the smallest smoothed loss after settling."""
        skip = min(self.settle, len(self.lrs) - 1)
        return skip + int(np.nanargmin(self.smoothed[skip:]))

    def suggestions(self) -> dict[str, float]:
        """{"steepest": LR of the steepest descent before the minimum, "min_div10": LR at the
        minimum / 10}, both within the swept range."""
        skip, i_min, lo = min(self.settle, len(self.lrs) - 1), self.minimum(), float(self.lrs[0])
        if i_min - skip < 2:
            steep = float(self.lrs[i_min])
        else:
            grad = np.gradient(self.smoothed[skip:i_min + 1], np.log(self.lrs[skip:i_min + 1]))
            steep = float(self.lrs[skip + int(np.argmin(grad))])
        return {"steepest": steep, "min_div10": max(float(self.lrs[i_min]) / 10.0, lo)}


@dataclass
class LRFindResult:
    sweeps: dict[str, Sweep] = field(default_factory=dict)
    csv: Path | None = None
    png: Path | None = None

    def frame(self) -> pd.DataFrame:
        return pd.concat([pd.DataFrame({"group": s.group, "step": np.arange(len(s.lrs)), "lr": s.lrs,
                                        "loss": s.losses, "smoothed": s.smoothed}) for s in self.sweeps.values()],
                         ignore_index=True)


def lr_sweep(model: torch.nn.Module, batches, loss_fn, optimizer: torch.optim.Optimizer, prec: Precision,
             group: str, *, start: float = 1e-7, end: float = 10.0, steps: int = 100, beta: float = 0.98,
             diverge: float = 4.0) -> Sweep:
    """Exponential LR sweep of the optimizer groups named `group*` ("head", "head_nowd", "backbone.layer3",
    ...), the others at their own LR. batches: an endless iterator of (x, y). -> Sweep."""
    if not 0 < start < end:
        raise ValueError(f"lr-find needs 0 < start < end, got {start:g} and {end:g}")
    swept = [g for g in optimizer.param_groups if str(g.get("name", "")).startswith(group)]
    if not swept:
        raise ValueError(f"lr-find: the optimizer has no '{group}' group to sweep")
    ref = max(g["lr"] for g in swept)
    ratio = [g["lr"] / ref if ref > 0 else 1.0 for g in swept]  # layer decay keeps its ratios
    lrs, losses, smoothed = [], [], []
    avg, best, diverged, settle = 0.0, math.inf, False, max(3, steps // 10)
    model.train()
    for i in range(steps):
        lr = start * (end / start) ** (i / max(steps - 1, 1))
        for g, r in zip(swept, ratio):
            g["lr"] = lr * r
        value = _step(model, next(batches), loss_fn, optimizer, prec)
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            smoothed.append(math.inf)
            diverged = True
            break
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        smoothed.append(smooth)
        if i >= settle:
            best = min(best, smooth)
            if smooth > diverge * best:
                diverged = True
                break
    return Sweep(group, np.array(lrs), np.array(losses), np.array(smoothed), diverged, settle)


def train_steps(model: torch.nn.Module, batches, loss_fn, optimizer, prec: Precision, steps: int) -> float:
    """`steps` plain optimizer steps on `batches` at the optimizer's LRs. -> the last loss."""
    model.train()
    value = math.nan
    for _ in range(steps):
        value = _step(model, next(batches), loss_fn, optimizer, prec)
    return value


def _step(model: torch.nn.Module, batch, loss_fn, optimizer, prec: Precision) -> float:
    """One optimizer step on batch (x, y) (none when the loss is not finite). -> the loss."""
    x, y = prec.to_device(batch[0]), batch[1].to(prec.device)
    optimizer.zero_grad(set_to_none=True)
    with prec.autocast():
        loss = loss_fn(model(x).float(), y)
    value = float(loss.item())
    if math.isfinite(value):
        loss.backward()
        optimizer.step()
    return value


def _endless(make_loader_for_epoch):
    epoch = 0
    while True:
        yield from make_loader_for_epoch(epoch)
        epoch += 1


def lr_find(cfg: Config, *, start: float = 1e-7, end: float = 10.0, steps: int = 100) -> LRFindResult:
    """Both sweeps on fold 0 of `cfg` (single process, mix and extra rows off); writes
    <run>/lr_find.csv (group, step, lr, loss, smoothed) and lr_find.png. -> LRFindResult."""
    comp = load_competition(cfg.competition)
    fold_of, _ = competition_folds(comp, cfg.competition_dir, cfg.folds.n, cfg.folds.seed,
                                   grouped=bool(cfg.competition.group_col), use_dups=cfg.folds.dups,
                                   strategy=cfg.folds.strategy)
    tr, _ = load_images(comp, cfg.competition_dir, cfg.input.size, keep=cfg.input.cache, policy=cfg.input.bad_images,
                        workers=max(2, cfg.train.num_workers), progress=cfg.output.progress)
    idx = np.flatnonzero((fold_of != 0) & tr.ok)
    y = comp.train["y"].to_numpy()
    device = resolve_device(cfg.train.device)
    prec = resolve_precision(device, cfg.train.amp, cfg.train.channels_last)
    plan = build_fold_plan(cfg)
    n_classes = len(comp.classes)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model.backbone, 1 if cfg.competition.task == "ordinal" else n_classes,
                        **model_kwargs(cfg)).to(device)
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    initial = copy.deepcopy(model.state_dict())
    loss_fn = plan.make_loss(np.bincount(y[idx], minlength=n_classes)).to(device)
    ds = CachedDataset(tr.array, idx, y[idx], build_transforms(cfg.augment.train))
    batches = lambda: _endless(lambda e: make_loader(ds, cfg.train.batch_size, shuffle=True, num_workers=0,
                                                     pin_memory=False, seed=cfg.train.seed * 1000 + e, no_single=True))
    result = LRFindResult()
    lrs = {"backbone": cfg.optim.lr.backbone, "head": cfg.optim.lr.head}
    set_trainable(model, "head")
    result.sweeps["head"] = lr_sweep(model, batches(), loss_fn, plan.make_optimizer(model, lrs), prec, "head",
                                     start=start, end=end, steps=steps)
    model.load_state_dict(initial)
    head_lr = result.sweeps["head"].suggestions()["min_div10"]
    train_steps(model, batches(), loss_fn, plan.make_optimizer(model, {**lrs, "head": head_lr}), prec, steps)
    set_trainable(model, "all")
    model.head.requires_grad_(False)
    result.sweeps["backbone"] = lr_sweep(model, batches(), loss_fn, plan.make_optimizer(model, lrs), prec, "backbone",
                                         start=start, end=end, steps=steps)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    result.csv, result.png = run_dir / "lr_find.csv", run_dir / "lr_find.png"
    atomic_write_csv(result.csv, result.frame())
    from ensemble.train.plots import plot_lr_find
    plot_lr_find(result.sweeps, result.png, title=f"{cfg.run_name} @ {cfg.input.size}px, fold 0")
    return result


def format_lr_find(result: LRFindResult) -> str:
    """What lr-find prints: each sweep's range, minimum and suggested optim.lr values."""
    lines, sets = [], []
    for group, s in result.sweeps.items():
        sug = s.suggestions()
        i_min = s.minimum()
        stop = f"diverged at {s.lrs[-1]:.1e}" if s.diverged else f"ended at {s.lrs[-1]:.1e}"
        lines.append(f"{group}: swept {s.lrs[0]:.0e}..{s.lrs[-1]:.1e} over {len(s.lrs)} steps ({stop}); "
                     f"min smoothed loss {s.smoothed[i_min]:.4f} at {s.lrs[i_min]:.1e}")
        lines.append(f"  suggested optim.lr.{group}: {sug['min_div10']:.1e} (minimum / 10), "
                     f"{sug['steepest']:.1e} (steepest descent)")
        sets.append(f"--set optim.lr.{group}={sug['min_div10']:.1e}")
    lines.append("try: " + " ".join(sets))
    lines.append(f"wrote {result.csv} and {result.png}")
    return "\n".join(lines)
