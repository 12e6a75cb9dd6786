"""Throughput of the training path: data loader (cached uint8 vs decode-each-time) and train steps.

    python scripts/bench_train.py --backbone resnet18 --size 128 \
        --images ../shared/datasets/ham10000/train --n 512

Prints img/s for: building the decoded cache once, one epoch from the cache, one epoch decoding
every JPEG, and train steps (forward + backward + AdamW) fed from the cache.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.data.augment import build_transforms  # noqa: E402
from ensemble.data.datasets import CachedDataset, DecodeDataset, make_loader  # noqa: E402
from ensemble.train.engine import resolve_device, resolve_precision, train_one_epoch  # noqa: E402
from ensemble.data.images import build_cache  # noqa: E402
from ensemble.train.losses import build_loss  # noqa: E402
from ensemble.models import build_model  # noqa: E402
from ensemble.train.optim import build_optimizer, param_groups  # noqa: E402


def loader_rate(loader, epochs: int = 1) -> float:
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--images", default="../shared/datasets/ham10000/train")
    p.add_argument("--n", type=int, default=512, help="number of images")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-batches", type=int, default=12)
    p.add_argument("--augment", default="medical")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-channels-last", action="store_true")
    args = p.parse_args()

    paths = sorted(str(f) for f in Path(args.images).iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths = paths[: args.n]
    if not paths:
        sys.exit(f"no images in {args.images}")
    tf = build_transforms(args.augment)
    labels = np.zeros(len(paths), dtype=np.int64)
    idx = np.arange(len(paths))
    print(f"{len(paths)} images from {args.images}, size {args.size}, batch {args.batch_size}, "
          f"{args.workers} workers, {torch.get_num_threads()} torch threads")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cache = build_cache(paths, args.size, Path(tmp), workers=max(2, args.workers), progress=False)
        build = len(paths) / (time.perf_counter() - t0)
        kw = dict(shuffle=True, num_workers=args.workers, pin_memory=False, persistent_workers=False)
        cached = loader_rate(make_loader(CachedDataset(cache.array, idx, labels, tf), args.batch_size, **kw))
        decoded = loader_rate(make_loader(DecodeDataset(paths, idx, labels, tf, size=args.size), args.batch_size, **kw))
        print(f"cache build (decode + resize once): {build:8.1f} img/s")
        print(f"loader from cache (+{args.augment}):  {cached:8.1f} img/s")
        print(f"loader decoding each time:         {decoded:8.1f} img/s   (cache is {cached / decoded:.1f}x faster)")

        device = resolve_device(args.device)
        prec = resolve_precision(device, "auto", not args.no_channels_last)
        model = build_model(args.backbone, 7).to(device)
        if prec.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = build_optimizer("adamw", param_groups(model, {"backbone": 1e-4, "head": 1e-3}, 1e-4))
        loss = build_loss("ce", class_counts=[1] * 7).to(device)
        n = args.train_batches * args.batch_size
        sub = CachedDataset(cache.array, idx[np.arange(n) % len(idx)], labels[np.arange(n) % len(idx)], tf)
        warm = CachedDataset(cache.array, idx[: 2 * args.batch_size], labels[: 2 * args.batch_size], tf)
        scaler = prec.make_scaler()
        train_one_epoch(model, make_loader(warm, args.batch_size, **kw), loss, opt, prec, scaler=scaler)
        r = train_one_epoch(model, make_loader(sub, args.batch_size, **kw), loss, opt, prec, scaler=scaler)
        print(f"train {args.backbone} @ {args.size}px on {device} (amp {prec.dtype or 'off'}, channels_last "
              f"{prec.channels_last}): {r['img_s']:8.1f} img/s")


if __name__ == "__main__":
    main()
