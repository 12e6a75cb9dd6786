"""Test-time adaptation: fit a trained model's BatchNorms to the images it is about to predict.

    net = adapt_model(model, lambda: batches, Adaptation("bn", batch_size=64), prec)

none  the model as trained.
bn    AdaBN (Li et al. 2016): every BatchNorm's running mean and variance are re-estimated on the
      test images: reset, then forward passes with batch statistics and no gradient, each batch
      weighted by its size (a cumulative average, so a small last batch counts as little as it is).
      Nothing but the BatchNorm buffers changes.
tent  Tent (Wang et al. 2021): bn, then `steps` Adam steps of entropy minimisation on the BatchNorm
      affine parameters only (batch statistics, running statistics frozen). A guard measures the
      mean entropy of the adaptation batches before and after; when it did not go down, the
      bn-adapted parameters are kept.

The same function adapts each fold model before its test predictions in training (predict.adapt)
and in `python -m ensemble.predict`, on the same images in the same batches, so both agree.
"""
from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ensemble.registry import Registry

logger = logging.getLogger(__name__)

Batches = Callable[[], Iterable]  # -> uint8 batches (B, 3, S, S), or (batch, labels) pairs from a loader
ADAPTERS: Registry[Callable] = Registry("adaptation")  # name -> fn(model, batches, prec, adaptation, activation)


@dataclass(frozen=True)
class Adaptation:
    """How to adapt: method (a registered name), the batch size of the adaptation passes, Tent's steps and LR."""
    method: str = "none"
    batch_size: int = 64
    steps: int = 10
    lr: float = 1e-3

    def __post_init__(self):
        ADAPTERS.get(self.method)  # unknown adaptation 'x'; available: none, bn, tent
        if self.batch_size < 2 or self.steps < 1 or not self.lr > 0:
            raise ValueError(f"adaptation needs batch_size >= 2, steps >= 1 and lr > 0, got {self.to_dict()}")

    def to_dict(self) -> dict:
        return {"method": self.method, "batch_size": self.batch_size, "steps": self.steps, "lr": self.lr}


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _images(batches: Batches):
    """The image tensors of `batches()`, batches of one image skipped (no batch statistics)."""
    for item in batches():
        x = item[0] if isinstance(item, (tuple, list)) else item
        if len(x) >= 2:
            yield x


def adapt_model(model: nn.Module, batches: Batches, adaptation: Adaptation, prec, activation: str = "softmax"
                ) -> nn.Module:
    """The model to predict the images of `batches` with: `model` itself for "none", else an adapted
    copy (the original is untouched). prec: an engine.Precision (device, autocast)."""
    fn = ADAPTERS.get(adaptation.method)
    if adaptation.method == "none":
        return model
    net = copy.deepcopy(model)
    fn(net, batches, prec, adaptation, activation)
    return net.eval()


@ADAPTERS.register("none")
def _none(model, batches, prec, adaptation, activation) -> None:
    """No adaptation."""


def _bn_mode(model: nn.Module, bns) -> None:
    """Eval mode (dropout off) except the BatchNorms, which normalise with batch statistics."""
    model.eval()
    for m in bns:
        m.train()


@ADAPTERS.register("bn")
@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Batches, prec, adaptation: Adaptation | None = None,
                  activation: str = "softmax") -> int:
    """AdaBN in place: every BatchNorm's running statistics re-estimated on `batches`. -> images used."""
    bns = _batchnorms(model)
    if not bns:
        logger.warning("test-time adaptation: the model has no BatchNorm layers; nothing to adapt")
        return 0
    momentum = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
    _bn_mode(model, bns)
    seen = 0
    try:
        for x in _images(batches):
            for m in bns:  # running <- running + b / (seen + b) * (batch - running): the mean over all images
                m.momentum = len(x) / (seen + len(x))
            with prec.autocast():
                model(prec.to_device(x))
            seen += len(x)
    finally:
        for m, mom in zip(bns, momentum):
            m.momentum = mom
        model.eval()
    if seen == 0:
        raise ValueError("test-time adaptation needs at least 2 images (batch statistics); got fewer")
    return seen


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """(N, C) logits -> (N,) entropy of their softmax, in nats."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def _tent_loss(logits: torch.Tensor) -> torch.Tensor:
    """What each Tent step minimises: the batch's mean entropy."""
    return entropy(logits).mean()


@torch.no_grad()
def mean_entropy(model: nn.Module, data: list[torch.Tensor], prec) -> float:
    """Mean entropy of the model's (eval mode) predictions on the batches `data`."""
    model.eval()
    total, n = 0.0, 0
    for x in data:
        with prec.autocast():
            total += float(entropy(model(prec.to_device(x))).sum())
        n += len(x)
    return total / max(n, 1)


@ADAPTERS.register("tent")
def tent(model: nn.Module, batches: Batches, prec, adaptation: Adaptation | None = None,
         activation: str = "softmax") -> bool:
    """bn, then Tent's entropy minimisation on the BatchNorm affine parameters (adaptation.steps Adam
    steps at adaptation.lr), kept only when the mean entropy of the adaptation batches went down.
    -> True when the Tent steps were kept."""
    adaptation = adaptation or Adaptation("tent")
    if activation != "softmax":
        raise ValueError("predict.adapt=tent minimises the entropy of class probabilities; a model that "
                         "regresses a score has none (use bn)")
    reestimate_bn(model, batches, prec)
    bns = _batchnorms(model)
    params = [p for m in bns for p in (m.weight, m.bias) if p is not None]
    if not params:
        return False
    data = list(itertools.islice(itertools.cycle(list(itertools.islice(_images(batches), adaptation.steps))),
                                 adaptation.steps))
    before = mean_entropy(model, data, prec)
    saved = [p.detach().clone() for p in params]
    grads = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=adaptation.lr)
    momentum, counts = [m.momentum for m in bns], [m.num_batches_tracked.clone() for m in bns]
    _bn_mode(model, bns)
    try:
        for m in bns:
            m.momentum = 0.0  # batch statistics normalise; the AdaBN running statistics stay as they are
        for x in data:
            with torch.enable_grad(), prec.autocast():
                loss = _tent_loss(model(prec.to_device(x)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        for m, mom, count in zip(bns, momentum, counts):
            m.momentum = mom
            m.num_batches_tracked.copy_(count)
        for p, g in grads.items():
            p.requires_grad_(g)
        model.eval()
    after = mean_entropy(model, data, prec)
    if after < before:
        logger.info(f"tent: mean entropy {before:.4f} -> {after:.4f} over {adaptation.steps} steps")
        return True
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    logger.info(f"tent: mean entropy rose ({before:.4f} -> {after:.4f}); kept the bn-adapted model")
    return False
