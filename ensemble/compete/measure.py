"""What `compete --time` measures before it plans (nothing here writes a file):

    speeds = measure_candidates(cands, cfgs, n_classes, quick=True)   # img/s of each candidate's training
    rates = measure_images(paths, size=128)                           # seconds per image: decode, hash, stats

The quick pass (one timed batch per candidate) prices everything else, the full pass included.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ensemble.compete.spec import Candidate
from ensemble.compete.plandata import Speed

logger = logging.getLogger(__name__)

QUICK = dict(steps=1, rounds=1)  # one timed batch after one warm-up: prices the rest of the plan
FULL = dict(steps=3, rounds=2)  # the better of two rounds of three: less noise from one-off allocations
SAMPLE = 12  # images timed to price decoding, hashing and statistics


def measure_speed(model: torch.nn.Module, size: int, batch_size: int, *, device: torch.device,
                  channels_last: bool = True, steps: int = 3, warmup: int = 1, rounds: int = 2,
                  train: bool = True, ema: bool = False, mix=None) -> Speed:
    """Images/second of AdamW training steps (train=False: none, 0.0) and of inference at ``size`` on
    random uint8 batches; the best of ``rounds`` rounds of ``steps`` timed batches after ``warmup``.
    ema: each step also updates a weight EMA (train.ema); mix: a MixSpec (augment.mix) mixing each
    batch, so a candidate's speed includes what they cost."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch_size, 3, size, size), generator=gen, dtype=torch.uint8).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.out_dim, (batch_size,), generator=gen).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6) if train and params else None
    loss_fn = torch.nn.CrossEntropyLoss()
    from ensemble.train.ema import WeightEma
    from ensemble.train.mix import BatchMixer
    averager = WeightEma(model) if ema and opt is not None else None
    mixer = BatchMixer(mix, model.out_dim) if mix is not None else None
    soft = torch.nn.functional.one_hot(y, model.out_dim).float()

    def timed(fn) -> float:
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return steps * batch_size / (time.perf_counter() - t0)

    def train_step():
        opt.zero_grad(set_to_none=True)
        xb, yb = mixer(x.clone(), soft) if mixer is not None else (x, y)
        loss_fn(model(xb), yb).backward()
        opt.step()
        if averager is not None:
            averager.update()

    @torch.no_grad()
    def eval_step():
        model(x)

    model.train()
    rate = max(timed(train_step) for _ in range(rounds)) if opt is not None else 0.0
    model.eval()
    ev = max(timed(eval_step) for _ in range(rounds))
    return Speed(size, float(rate), float(ev))


def measure_candidates(cands: Sequence[Candidate], cfgs: dict, n_classes: int, *, quick: bool = False
                       ) -> tuple[dict[str, Speed], float]:
    """Each candidate's training and inference speed at its smallest size (cfgs: label -> Config).
    -> ({label: Speed}, seconds spent building the models, which a later pass spends again)."""
    from ensemble.models import build_model, set_trainable
    from ensemble.train.engine import resolve_device
    from ensemble.train.mix import mix_spec
    speeds, build_s = {}, 0.0
    for c in cands:
        cfg = cfgs[c.label]
        t0 = time.perf_counter()
        model = build_model(cfg.model.backbone, n_classes, head_hidden=cfg.model.head.hidden,
                            head_batchnorm=cfg.model.head.batchnorm)
        set_trainable(model, c.train)  # a frozen stem and early stages make each step far cheaper
        build_s += time.perf_counter() - t0
        sp = measure_speed(model, min(c.sizes), cfg.train.batch_size, device=resolve_device(cfg.train.device),
                           channels_last=cfg.train.channels_last, ema=cfg.train.ema is not None,
                           mix=mix_spec(cfg.augment.mix), **(QUICK if quick else FULL))
        trains = "" if c.train == "all" else f" (last {c.train} stages)"
        logger.info(f"measured {c.label} @ {sp.size}px: train{trains} {sp.train:.1f} img/s, predict {sp.eval:.1f} img/s"
                    + (" (quick)" if quick else ""))
        speeds[c.label] = sp
    return speeds, build_s


def full_measure_seconds(cands: Sequence[Candidate], cfgs: dict, quick: dict[str, Speed], build_s: float) -> float:
    """What measure_candidates(quick=False) will cost, from the quick pass's speeds."""
    batches = (FULL["steps"] + 1) * FULL["rounds"]  # one warm-up batch per round
    return build_s + sum(batches * cfgs[c.label].train.batch_size * (1 / quick[c.label].train + 1 / quick[c.label].eval)
                         for c in cands)


def measure_eval(backbone: str, size: int, batch_size: int = 64, device: str = "cpu") -> float:
    """Inference images/second of `backbone` without weights (the shift check's embedding pass)."""
    from ensemble.models import build_model
    from ensemble.train.engine import resolve_device
    model = build_model(backbone, 2, pretrained=False)
    return measure_speed(model, size, batch_size, device=resolve_device(device), train=False, **QUICK).eval


@dataclass(frozen=True)
class ImageRates:
    """Seconds per image on one thread: read + decode + resize (the image cache), a perceptual hash
    (duplicates) and header + pixel statistics of a cached image (the shift check)."""

    decode_s: float
    hash_s: float
    stats_s: float


def measure_images(paths: Sequence[str], size: int, n: int = SAMPLE) -> ImageRates:
    """Time the image work of compete's setup on ``n`` images spread over ``paths``."""
    from ensemble.data.dups import hash_images
    from ensemble.data.images import ImageError, decode, resize
    from ensemble.shift.features import header_stats, pixel_stats
    pick = [str(paths[i]) for i in np.unique(np.linspace(0, len(paths) - 1, min(n, len(paths))).astype(int))]
    t0 = time.perf_counter()
    images = []
    for p in pick:
        try:
            images.append((p, resize(decode(p)[0], size)))
        except (ImageError, OSError):
            pass  # an unreadable image costs less than a readable one
    t1 = time.perf_counter()
    for p, img in images:
        header_stats(p), pixel_stats(img)
    t2 = time.perf_counter()
    hash_images(pick, "phash", workers=1)
    t3 = time.perf_counter()
    return ImageRates((t1 - t0) / max(len(images), 1), (t3 - t2) / max(len(pick), 1), (t2 - t1) / max(len(images), 1))
