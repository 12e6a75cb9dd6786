"""What predicting one image costs a run: its folds x TTA views x one forward pass of its model."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ensemble.config import Config


@dataclass(frozen=True)
class PredictCost:
    """One run's prediction cost. img_s: forward passes per second of one fold model at its size
    (inference, measured on random images); gflops: of one forward pass."""
    name: str
    backbone: str
    size: int
    folds: int
    views: int
    img_s: float
    gflops: float

    @property
    def passes(self) -> int:
        """Forward passes per test image: every fold model on every TTA view."""
        return self.folds * self.views

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.passes / self.img_s

    @property
    def gflops_per_image(self) -> float:
        return self.gflops * self.passes


def predict_cost(cfg: Config, out_dim: int, *, name: str | None = None, batch_size: int = 16,
                 steps: int = 3) -> PredictCost:
    """Measure the inference speed of `cfg`'s model (random weights: the cost does not depend on them)
    at its input size on its device, and count its GFLOPs."""
    from ensemble.compete.measure import measure_speed
    from ensemble.models import build_model, model_flops
    from ensemble.train.engine import resolve_device
    from ensemble.train.setup import model_kwargs
    from ensemble.train.tta import expand_tta
    model = build_model(cfg.model.backbone, out_dim, **{**model_kwargs(cfg), "pretrained": False})
    flops = model_flops(model, cfg.input.size)
    with torch.no_grad():
        sp = measure_speed(model, cfg.input.size, batch_size, device=resolve_device(cfg.train.device),
                           channels_last=cfg.train.channels_last, steps=steps, train=False)
    return PredictCost(name or cfg.run_name, cfg.model.backbone, cfg.input.size, cfg.folds.n,
                       len(expand_tta(cfg.predict.tta)), sp.eval, flops)


def format_costs(student: PredictCost, members: list[PredictCost], device: str) -> str:
    """The student's and every ensemble member's predict cost, and the ensemble's total."""
    rows = [["model", "backbone", "size", "folds x views", "GFLOPs/img", "img/s", "ms/image"]]

    def row(label: str, c: PredictCost) -> list[str]:
        return [label, c.backbone, str(c.size), f"{c.folds} x {c.views}", f"{c.gflops_per_image:.2f}",
                f"{c.img_s:.0f}", f"{c.ms_per_image:.1f}"]

    rows.append(row(f"student {student.name}", student))
    rows += [row(f"  {c.name}", c) for c in members]
    ms, gf = sum(c.ms_per_image for c in members), sum(c.gflops_per_image for c in members)
    rows.append([f"ensemble ({len(members)} run{'s' if len(members) != 1 else ''})", "", "", "", f"{gf:.2f}", "",
                 f"{ms:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    return (f"predict cost per test image (every fold model on every TTA view; speed measured on {device}):\n"
            + "\n".join(lines) + f"\nthe student predicts at {student.ms_per_image / ms:.0%} of the ensemble's time "
            f"({ms / student.ms_per_image:.1f}x faster), {student.gflops_per_image / gf:.0%} of its GFLOPs")
