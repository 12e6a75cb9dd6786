"""GPU training throughput: model-only ceiling vs the real loader path (cache -> augment -> loader).

    python scripts/bench_gpu.py                                   # resnet50 @ 224, batch 128, AMP
    python scripts/bench_gpu.py --backbone resnet18 --size 64 --batch 8 --steps 3 --workers 1  # CPU smoke

Both training figures go through ensemble.engine.train_one_epoch with the project's model, loss,
optimizer and precision settings; only the source of the batches differs:
  (a) model only: synthetic uint8 batches already on the device (forward + backward + step ceiling);
  (b) real path: a synthetic (N, S, S, 3) uint8 image cache (a memmapped .npy like the project's)
      -> CachedDataset + the train augmentation -> make_loader(workers, pinned memory) -> train_one_epoch;
  loader only: the same loader iterated with no model;
  (c) GPU busy = (b) / (a).
Timed windows start after --warmup steps (at least 2 x workers for the loader paths, so the
start-up burst of the workers' first batches is left out); (b) reuses the model warmed up by (a).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.data.augment import build_transforms  # noqa: E402
from ensemble.data.datasets import CachedDataset, make_loader  # noqa: E402
from ensemble.train.engine import resolve_device, resolve_precision, train_one_epoch  # noqa: E402
from ensemble.train.losses import build_loss  # noqa: E402
from ensemble.models import build_model, resolve_backbone  # noqa: E402
from ensemble.train.optim import build_optimizer, param_groups  # noqa: E402


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class TimedBatches:
    """Wraps an iterable of batches; times the batches from index `skip` to the end.

    The clock starts just before batch `skip` is fetched (after a CUDA synchronize, so the warm-up
    steps' GPU work is not counted); the caller stops it after its own synchronize.
    """

    def __init__(self, batches, skip: int, device: torch.device):
        self.batches, self.skip, self.device = batches, skip, device
        self.t0: float | None = None
        self.timed_images = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        it = iter(self.batches)
        i = 0
        while True:
            if i == self.skip:
                _sync(self.device)
                self.t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                return
            if i >= self.skip:
                self.timed_images += len(y)
            i += 1
            yield x, y

    def rate(self, t1: float) -> float:
        if self.t0 is None or self.timed_images == 0:
            raise RuntimeError(f"no timed batches: only {len(self)} batches for {self.skip} warm-up steps")
        return self.timed_images / (t1 - self.t0)


class DeviceBatches:
    """`n` batches of synthetic uint8 images (B, 3, S, S) and labels, made once on the device."""

    def __init__(self, n: int, batch: int, size: int, n_classes: int, device: torch.device, distinct: int = 4):
        g = torch.Generator(device=device).manual_seed(0)
        self.n = n
        self.data = [(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device, generator=g),
                      torch.randint(0, n_classes, (batch,), device=device, generator=g))
                     for _ in range(min(distinct, n))]

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield self.data[i % len(self.data)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_cache(folder: Path, n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 noise written to a .npy and reopened read-only with mmap, like
    ensemble.images.build_cache's cache."""
    path = folder / f"images_{size}_synthetic.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(seed)
    for i in range(0, n, 256):
        arr[i:i + 256] = rng.integers(0, 256, size=arr[i:i + 256].shape, dtype=np.uint8)
    arr.flush()
    del arr
    return np.load(path, mmap_mode="r")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=50, help="timed train steps after the warm-up")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (loader paths: at least 2 x workers)")
    p.add_argument("--workers", type=int, default=min(8, _cpu_count()))
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="auto: bf16 on CUDA when supported, else fp16 with GradScaler; fp32 on CPU")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--augment", default="medical", help="train augmentation preset (ensemble.data.PRESETS)")
    p.add_argument("--n", type=int, default=1024, help="distinct images in the synthetic cache (rows are reused)")
    p.add_argument("--classes", type=int, default=7)
    args = p.parse_args(argv)
    for name, low in (("size", 32), ("batch", 1), ("steps", 1), ("warmup", 0), ("workers", 0), ("n", 1),
                      ("classes", 2)):
        if getattr(args, name) < low:
            p.error(f"--{name} must be >= {low}, got {getattr(args, name)}")
    try:
        args.device = resolve_device(args.device)
        resolve_backbone(args.backbone)
        build_transforms(args.augment)
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = args.device
    prec = resolve_precision(device, args.amp, not args.no_channels_last)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        name = torch.cuda.get_device_name(device)
        cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
        dev_line = f"{device}: {name} (sm {cap})"
    else:
        dev_line = f"cpu: {_cpu_name()}"
    print(f"device      {dev_line}")
    print(f"versions    torch {torch.__version__}, cuda {torch.version.cuda or 'none'}, "
          f"cudnn {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'none'}, "
          f"timm {timm.__version__}, python {platform.python_version()}")
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"host        {_cpu_count()} CPUs, {torch.get_num_threads()} torch threads{load}")
    loader_skip = max(args.warmup, 2 * args.workers)
    print(f"setup       {args.backbone} ({resolve_backbone(args.backbone)}) @ {args.size}px, batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup} (model) / {loader_skip} (loader) warm-up steps, "
          f"amp {str(prec.dtype).replace('torch.', '') if prec.dtype else 'off'}"
          f"{' + GradScaler' if prec.make_scaler() else ''}, channels_last {prec.channels_last}, "
          f"{args.workers} workers, pin_memory {device.type == 'cuda'}, augment {args.augment!r}, "
          f"{args.n} distinct cached images")

    model = build_model(args.backbone, args.classes).to(device)
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer("adamw", param_groups(model, {"backbone": 1e-4, "head": 1e-3}, 1e-4))
    loss_fn = build_loss("ce", class_counts=[1] * args.classes).to(device)
    scaler = prec.make_scaler()
    rows: list[tuple[str, float | None, str]] = []

    # (a) model only: batches already on the device
    batches = TimedBatches(DeviceBatches(args.warmup + args.steps, args.batch, args.size, args.classes, device),
                           args.warmup, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_one_epoch(model, batches, loss_fn, optimizer, prec, scaler=scaler)
    model_only = batches.rate(time.perf_counter())
    mem = (f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB allocated"
           if device.type == "cuda" else "")
    rows.append(("(a) model only (uint8 already on device)", model_only, f"fwd + bwd + AdamW step{mem}"))

    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        images = synthetic_cache(Path(tmp), args.n, args.size)
        n_rows = (loader_skip + args.steps) * args.batch
        rng = np.random.default_rng(0)
        idx = np.arange(n_rows) % args.n
        labels = rng.integers(0, args.classes, size=n_rows)
        tf = build_transforms(args.augment)

        def loader(seed: int):  # as FoldTrainer builds a train loader for one epoch
            return make_loader(CachedDataset(images, idx, labels, tf), args.batch, shuffle=True,
                               num_workers=args.workers, pin_memory=device.type == "cuda", seed=seed,
                               persistent_workers=False)

        # (b) the real path into train_one_epoch; the model is warm from (a)
        batches = TimedBatches(loader(1), loader_skip, device)
        epoch = train_one_epoch(model, batches, loss_fn, optimizer, prec, scaler=scaler)
        train = batches.rate(time.perf_counter())
        pinned = "pinned " if device.type == "cuda" else ""
        rows.append((f"(b) train from loader ({args.workers} workers)", train,
                     f"cache -> {args.augment} -> {pinned}loader -> train_one_epoch"))
        rows.append(("    same epoch as train_one_epoch reports", epoch["img_s"],
                     "incl. worker start-up and warm-up steps"))

        # loader only: the same loader, no model
        batches = TimedBatches(loader(2), loader_skip, torch.device("cpu"))
        for _ in batches:
            pass
        loader_only = batches.rate(time.perf_counter())
        rows.append((f"loader only ({args.workers} workers)", loader_only, "iterate the loader, no model"))

    busy = train / model_only
    rows.append(("(c) GPU busy = (b) / (a)", None, f"{100 * busy:.0f}%"))
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'':{width}}  {'img/s':>9}  {'ms/step':>8}  note")
    for label, rate, note in rows:
        if rate is None:
            print(f"{label:{width}}  {'':>9}  {'':>8}  {note}")
        else:
            print(f"{label:{width}}  {rate:9.1f}  {1000 * args.batch / rate:8.1f}  {note}")
    if busy > 1.05:
        print("note: (b) > (a) is timing noise (too few --steps, or other work on the host); raise --steps")
    if device.type == "cpu":
        print("note: CPU run: loader workers and the model share the same cores; a smoke check, not a GPU figure")
    elif loader_only < model_only:
        print(f"note: the loader alone ({loader_only:.0f} img/s) is slower than the model ({model_only:.0f} img/s): "
              f"more workers or a lighter augmentation would raise (b)")
    print(f"loader keeps the GPU busy {100 * busy:.0f}% of the time "
          f"(train {train:.0f} img/s vs model-only {model_only:.0f} img/s)")


if __name__ == "__main__":
    main()
