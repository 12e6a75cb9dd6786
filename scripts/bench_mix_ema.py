"""Step-time overhead of MixUp/CutMix (augment.mix) and the weight EMA (train.ema).

    python scripts/bench_mix_ema.py                       # resnet18 @ 64px, batch 32, 1 thread
    python scripts/bench_mix_ema.py --backbone efficientnet_lite0 --size 128 --threads 2

Every variant runs the project's training step (ensemble.train.engine.train_one_epoch with the
soft-target table, the project's CE loss, AdamW, and the trainer's BatchMixer / WeightEma) on the
same synthetic uint8 batches; rounds alternate between variants so load on the machine hits them
alike, and the best round of each is reported as CPU time of this process per step (with one
thread, what a step costs, little disturbed by other processes on a shared machine) and wall time,
with the overhead vs plain. The planner's own measurement (ensemble.compete.measure.measure_speed,
wall clock, which --time uses) is printed beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.compete.measure import measure_speed  # noqa: E402
from ensemble.models import build_model  # noqa: E402
from ensemble.train.ema import WeightEma  # noqa: E402
from ensemble.train.engine import Precision, train_one_epoch  # noqa: E402
from ensemble.train.losses import build_loss  # noqa: E402
from ensemble.train.mix import BatchMixer, MixSpec  # noqa: E402
from ensemble.train.optim import build_optimizer, param_groups  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--steps", type=int, default=6, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    prec = Precision(torch.device("cpu"))
    model = build_model(a.backbone, a.classes).to(memory_format=torch.channels_last)
    opt = build_optimizer("adamw", param_groups(model, {"backbone": 1e-4, "head": 1e-3}, 1e-4))
    loss_fn = build_loss("ce", class_counts=[1] * a.classes)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (a.batch, 3, a.size, a.size), generator=g, dtype=torch.uint8),
                torch.randint(0, a.classes, (a.batch,), generator=g)) for _ in range(a.steps)]
    table = torch.eye(a.classes)  # labels index the one-hot soft-target table, as in the fold trainer
    mixer = BatchMixer(MixSpec(mixup_alpha=0.2, cutmix_alpha=1.0), a.classes)
    ema = WeightEma(model, 0.999)
    variants = {"plain": {}, "+ema": {"ema": ema}, "+mix": {"mix": mixer}, "+ema+mix": {"ema": ema, "mix": mixer}}
    best = {k: float("inf") for k in variants}
    wall = {k: float("inf") for k in variants}
    train_one_epoch(model, batches[:2], loss_fn, opt, prec, targets=table, mix=mixer, ema=ema)  # warm-up
    for _ in range(a.rounds):
        for name, kw in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            train_one_epoch(model, batches, loss_fn, opt, prec, targets=table, **kw)
            best[name] = min(best[name], (time.process_time() - c0) / a.steps)
            wall[name] = min(wall[name], (time.perf_counter() - t0) / a.steps)
    params = sum(q.numel() for q in model.parameters()) / 1e6
    print(f"{a.backbone} @ {a.size}px, batch {a.batch}, {params:.1f}M params, {a.threads} thread(s), "
          f"best of {a.rounds} rounds x {a.steps} steps")
    for name, sec in best.items():
        print(f"  train_one_epoch {name:9s} CPU {sec * 1000:7.1f} ms/step {100 * (sec / best['plain'] - 1):+6.1f}%   "
              f"wall {wall[name] * 1000:7.1f} ms/step {100 * (wall[name] / wall['plain'] - 1):+6.1f}%")
    for name, kw in {"plain": {}, "+ema": {"ema": True}, "+mix": {"mix": MixSpec()},
                     "+ema+mix": {"ema": True, "mix": MixSpec()}}.items():
        sp = measure_speed(build_model(a.backbone, a.classes), a.size, a.batch, device=torch.device("cpu"),
                           steps=a.steps, **kw)
        print(f"  measure_speed   {name:9s} {sp.train:8.1f} img/s train ({a.batch / sp.train * 1000:.1f} ms/step)")


if __name__ == "__main__":
    main()
