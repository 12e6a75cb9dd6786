"""MixUp / CutMix of a training batch and its soft targets, by timm's ``Mixup``.

    mixer = BatchMixer(MixSpec(mixup_alpha=0.2, cutmix_alpha=1.0), n_classes=7)
    x, t = mixer(x_uint8, targets)      # (B, 3, H, W) float 0..255, (B, C) mixed soft targets

Targets are always soft rows (N, C) here (see ensemble.train.losses: a row's sum is its weight),
so one-hot labels, a teacher's probabilities and weighted pseudo-labels mix alike.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from timm.data import Mixup


@dataclass(frozen=True)
class MixSpec:
    """augment.mix: Beta(alpha, alpha) mixing weights for MixUp and CutMix (0 = that one off), the
    probability that a batch is mixed at all, the share of mixed batches that use CutMix when
    both are on, and label smoothing applied to the targets before mixing."""
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0

    def __post_init__(self):
        if not (self.mixup_alpha > 0 or self.cutmix_alpha > 0):
            raise ValueError(f"augment.mix needs mixup_alpha > 0 or cutmix_alpha > 0, got {self.mixup_alpha} "
                             f"and {self.cutmix_alpha}")


def mix_spec(cfg) -> MixSpec | None:
    """The config's augment.mix section (a MixCfg or None) as a MixSpec (None: no mixing)."""
    return None if cfg is None else MixSpec(**dataclasses.asdict(cfg))


class BatchMixer:
    """Mixes a batch with its reverse (timm's per-batch mode: one lambda per batch, one CutMix box).

    timm's Mixup turns class indices into smoothed one-hot rows; our targets are already soft, so it
    runs in its dense-target mode (multi_label) with smoothing 0, which mixes the rows linearly
    (lam t + (1 - lam) t.flip(0)) and nothing else; label smoothing is applied here first, toward
    each row's own weight (t (1 - s) + s m / C). timm's Mixup needs an even batch: of an odd one
    (a last batch that took in a single row, or an odd batch_size), the last row stays unmixed.
    Its random draws come from numpy's global RNG: `reseed` per epoch keeps a resumed run's mixing
    equal to an uninterrupted one's.
    """

    def __init__(self, spec: MixSpec, n_classes: int):
        self.spec, self.n_classes = spec, int(n_classes)
        self.mixup = Mixup(mixup_alpha=spec.mixup_alpha, cutmix_alpha=spec.cutmix_alpha, prob=spec.prob,
                           switch_prob=spec.switch_prob, mode="batch", label_smoothing=0.0,
                           num_classes=self.n_classes, multi_label=True)

    @staticmethod
    def reseed(seed: int) -> None:
        np.random.seed(seed % 2**32)

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) uint8 or float in 0..255, targets (B, C) soft -> (mixed float x, mixed targets)."""
        if targets.ndim != 2 or targets.shape[1] != self.n_classes:
            raise ValueError(f"mixing needs soft targets of shape (B, {self.n_classes}), got {tuple(targets.shape)}")
        x = x.float()  # mixing blends pixels: 0..255 floats, which the model normalises like uint8
        t = targets.float()
        s = self.spec.label_smoothing
        if s:
            t = t * (1.0 - s) + t.sum(1, keepdim=True) * (s / self.n_classes)
        n = len(x) - len(x) % 2
        if n < 2:
            return x, t
        # timm mixes x[:n] in place (a view of x) and returns new targets for those rows
        _, mixed = self.mixup(x[:n], t[:n])
        return x, torch.cat([mixed.to(t.dtype), t[n:]]) if n < len(t) else mixed.to(t.dtype)
