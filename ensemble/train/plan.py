"""FoldPlan: everything the fold trainer needs to know, built from a Config in one function.

    plan = build_fold_plan(cfg)                      # the only place that reads the training sections
    FoldTrainer(plan, k, model, data, prec, fold_dir).run()

A plan holds plain values and factories (loss, optimizer, schedule), so a notebook can also make
one by hand: FoldPlan(stages=[Stage(epochs=2)], metric="accuracy", ...) (a metric name is bound to
classes 0..C-1).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from torch import nn

from ensemble.metrics import BoundMetric, MetricLike, bind_metric
from ensemble.config import Config
from ensemble.train.adapt import Adaptation
from ensemble.train.ema import WeightEma
from ensemble.train.losses import build_loss
from ensemble.train.mix import MixSpec, mix_spec
from ensemble.train.optim import build_optimizer, build_scheduler, param_groups


@dataclass(frozen=True)
class Stage:
    """One stage of a fold: `epochs` epochs training `train` ("all", "head" or the last k backbone
    stage groups) at `lrs` ({"backbone": lr, "head": lr}), with or without train augmentation, and
    with the plan's MixUp/CutMix when `mix` (never on cached features)."""
    epochs: int
    train: int | str = "all"
    lrs: dict[str, float] = field(default_factory=lambda: {"backbone": 1e-4, "head": 1e-3})
    augment: bool = True
    mix: bool = True


def _default_loss(class_counts: np.ndarray) -> nn.Module:
    return build_loss("ce", class_counts=class_counts)


def _default_optimizer(model: nn.Module, lrs: dict[str, float]):
    return build_optimizer("adamw", param_groups(model, lrs, 1e-4))


def _default_schedule(optimizer, epochs: int, steps_per_epoch: int, greater_is_better: bool):
    return build_scheduler("cosine", optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)


@dataclass(frozen=True)
class FoldPlan:
    """How one fold trains. Factories:
    make_loss(class_counts (C,)) -> loss module; make_optimizer(model, lrs) -> optimizer over the
    model's trainable params (named groups); make_schedule(optimizer, epochs, steps_per_epoch,
    greater_is_better) -> Schedule. Each stage gets a fresh optimizer and schedule.
    mix: MixUp/CutMix of stages with `mix` (None: off); make_ema(model) -> WeightEma (None: no EMA),
    one per fold across its stages."""
    stages: Sequence[Stage]
    metric: BoundMetric | MetricLike = "accuracy"  # the competition's, bound (train_run), or a name
    task: str = "classification"  # or "ordinal": (N, 1) regressed grade
    make_loss: Callable[[np.ndarray], nn.Module] = _default_loss
    make_optimizer: Callable = _default_optimizer
    make_schedule: Callable = _default_schedule
    batch_size: int = 32
    eval_batch_size: int | None = None  # default 2 x batch_size
    accum_steps: int = 1
    clip_grad: float | None = None
    early_stopping: int | None = None  # epochs without improvement, per stage
    time_limit: float | None = None  # seconds of training epochs per fold
    num_workers: int = 2
    seed: int = 0
    tta: Sequence[str] = ("none",)
    adapt: Adaptation = Adaptation()  # test-time adaptation before the test predictions (not the OOF ones)
    keep_last: bool = False  # keep last.pt once the fold is finished (else removed: best.pt and preds remain)
    tensorboard: bool = False
    progress: bool = False
    mix: MixSpec | None = None
    make_ema: Callable[[nn.Module], WeightEma] | None = None

    @property
    def activation(self) -> str:
        return "identity" if self.task == "ordinal" else "softmax"

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def bound_metric(self, n_classes: int) -> BoundMetric:
        """The plan's metric as given (bound when the competition loaded), or a name of a hand-made plan
        bound to classes 0..n_classes-1."""
        if isinstance(self.metric, BoundMetric):
            return self.metric
        return bind_metric(self.metric, [str(c) for c in range(n_classes)])


def build_fold_plan(cfg: Config, metric: BoundMetric | MetricLike | None = None, world_size: int = 1) -> FoldPlan:
    """The FoldPlan of a Config: stages, loss / optimizer / schedule factories, batch and stopping
    settings, TTA views. metric: the competition metric bound to its classes (default: the config's
    text); world_size: DDP ranks (LRs scaled by train.lr_scaling)."""
    t, lc, o, sc = cfg.train, cfg.loss, cfg.optim, cfg.schedule
    scale = {"none": 1.0, "linear": world_size, "sqrt": world_size ** 0.5}[t.lr_scaling]
    stages = [Stage(s.epochs, s.train, {k: v * scale for k, v in dataclasses.asdict(s.lr or o.lr).items()},
                    s.augment, s.mix) for s in cfg.stages]
    ema = (lambda model: WeightEma(model, t.ema.decay, t.ema.warmup)) if t.ema else None

    def make_loss(class_counts: np.ndarray) -> nn.Module:
        return build_loss(lc.name, class_counts=class_counts, class_weights=lc.class_weights,
                          label_smoothing=lc.label_smoothing, gamma=lc.gamma, alpha=lc.alpha)

    def make_optimizer(model: nn.Module, lrs: dict[str, float]):
        return build_optimizer(o.name, param_groups(model, lrs, o.weight_decay, o.layer_decay),
                               momentum=o.momentum, nesterov=o.nesterov)

    def make_schedule(optimizer, epochs: int, steps_per_epoch: int, greater_is_better: bool):
        return build_scheduler(sc.name, optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch,
                               warmup_epochs=min(sc.warmup_epochs, epochs / 2), min_lr_ratio=sc.min_lr_ratio,
                               step_size=sc.step_size, gamma=sc.gamma, patience=sc.patience, factor=sc.factor,
                               mode="max" if greater_is_better else "min")

    return FoldPlan(stages=stages, metric=metric if metric is not None else cfg.competition.metric,
                    task=cfg.competition.task, make_loss=make_loss, make_optimizer=make_optimizer,
                    make_schedule=make_schedule, batch_size=t.batch_size, eval_batch_size=t.eval_batch,
                    accum_steps=t.accum_steps, clip_grad=t.clip_grad, early_stopping=t.early_stopping,
                    time_limit=t.time_limit, num_workers=t.num_workers, seed=t.seed, tta=tuple(cfg.predict.tta),
                    adapt=Adaptation(cfg.predict.adapt, batch_size=t.eval_batch), keep_last=t.keep_last,
                    tensorboard=cfg.output.tensorboard, progress=cfg.output.progress, mix=mix_spec(cfg.augment.mix),
                    make_ema=ema)
