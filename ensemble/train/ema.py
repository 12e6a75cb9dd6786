"""An exponential moving average of a model's weights, by timm's ``ModelEmaV3``.

    ema = WeightEma(model, decay=0.999, warmup=True)
    ...; optimizer.step(); ema.update()      # after every optimizer step
    predict(ema.module, ...)                 # validation, best.pt and predictions use the average
"""
from __future__ import annotations

import torch
from timm.utils import ModelEmaV3
from torch import nn


class WeightEma:
    """The average of `model`'s parameters and buffers over its optimizer steps.

    decay: the weight of the average per step (0.999 ~ the last 1000 steps); warmup: timm's decay
    warmup 1 - (1 + step)^(-2/3), capped at `decay`, so a short run (a few hundred steps, as on
    small medical sets) averages its recent weights rather than staying near the initial ones.
    The first update copies the model (timm: decay 0 at step 1). The step count is part of the
    state, so a resumed fold continues the same average.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.model, self.step = model, 0
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=warmup)
        self.ema.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged model (always in eval mode)."""
        return self.ema.module

    @property
    def decay(self) -> float:
        """The decay the next update uses."""
        return self.ema.get_decay(self.step + 1)

    @torch.no_grad()
    def update(self) -> None:
        self.step += 1
        self.ema.update(self.model, step=self.step)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.step = int(state["step"])
