"""Benchmark `python -m ensemble.predict` on a bundle: img/s against the models alone, and peak memory.

    python scripts/bench_predict.py --bundle bundles/demo/NAME --images data/demo/test --threads 1
    python scripts/bench_predict.py --bundle bundles/ham10000/NAME --images ../shared/datasets/ham10000/test \
        --sample ../shared/datasets/ham10000/sample_submission.csv --threads 2

model-only: every fold model of every bundle model on ready uint8 batches (random pixels) at the
bundle's input sizes and --batch-size, with the same TTA views and softmax: the forward passes
predict cannot avoid. predict: Predictor.iter_predict over the image files, written as the CLI
writes them (decode, resize, eval augmentation, forward passes, vote, CSV), models already loaded.
The goal is predict >= 0.85 x model-only; on a shared machine the images per CPU second (every
thread of the process) compare the two without the other jobs' noise. Peak RSS: `python -m ensemble.predict` in a fresh process
(os.wait4) on the images once and on a list naming each image 10 times (other ids): streaming keeps
the two alike.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ensemble.predict import Predictor, read_bundle  # noqa: E402
from ensemble.predict.sources import list_images  # noqa: E402
from ensemble.predict.writer import output_format, write_predictions  # noqa: E402
from ensemble.train import engine  # noqa: E402


def model_only(p: Predictor, n: int, batch_size: int) -> tuple[float, float]:
    """(img/s, img per CPU second) of the forward passes alone (all models, folds, TTA views) on n images."""
    g = torch.Generator().manual_seed(0)
    batches = {m.spec.input_size: torch.randint(0, 256, (batch_size, 3, m.spec.input_size, m.spec.input_size),
                                                dtype=torch.uint8, generator=g) for m in p.models}
    models = [m for m in p.models if m.nets]  # a model the vote gives weight 0 is not run by predict either
    for m in models:  # warm-up
        engine.predict(m.nets[0][1], [(batches[m.spec.input_size], None)], p.prec, tta=m.spec.tta,
                        activation=m.spec.activation)
    t0, c0, done = time.perf_counter(), time.process_time(), 0
    while done < n:
        k = min(batch_size, n - done)
        for m in models:
            x = batches[m.spec.input_size][:k]
            for _, net in m.nets:
                engine.predict(net, [(x, None)], p.prec, tta=m.spec.tta, activation=m.spec.activation)
        done += k
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def predict_rate(p: Predictor, ids: pd.Series, paths: list[str], fmt, batch_size: int, out: Path
                 ) -> tuple[float, float]:
    """(img/s, img per CPU second, decoding threads included) of predict with the models loaded."""
    t0, c0 = time.perf_counter(), time.process_time()
    write_predictions(out, p.iter_predict(paths, batch_size=batch_size, on_bad_image="prior"), ids, fmt)
    return len(paths) / (time.perf_counter() - t0), len(paths) / (time.process_time() - c0)


def peak_rss(bundle: str, images: Path, out: Path, batch_size: int, threads: int) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of `python -m ensemble.predict` in a fresh process."""
    cmd = [sys.executable, "-m", "ensemble.predict", "--bundle", bundle, "--images", str(images), "--out", str(out),
           "--batch-size", str(batch_size), "--threads", str(threads), "--on-bad-image", "prior", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C or a kill of the benchmark: no predict left running on its own
        proc.kill()
        proc.wait()
        raise
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--images", required=True, help="folder of images (or a CSV list)")
    ap.add_argument("--sample", help="sample submission naming the images (as predict --sample)")
    ap.add_argument("--n", type=int, help="use only the first N images")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=10, help="the second memory run names every image this often")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the best of each is kept)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`/kill: stop the predict child too
    torch.set_num_threads(args.threads)
    bundle = read_bundle(args.bundle)
    ids, paths, sample = list_images(args.images, args.sample, bundle.meta.get("image_ext", ""), bundle.meta["id_col"])
    if args.n:
        ids, paths = ids.iloc[:args.n].reset_index(drop=True), paths[:args.n]
    t0 = time.perf_counter()
    p = Predictor.load(bundle, device="cpu", threads=args.threads)
    load_s = time.perf_counter() - t0
    nets = sum(len(m.nets) for m in p.models)
    views = sum(len(m.nets) * len(m.spec.tta) for m in p.models)
    print(f"bundle {bundle.root.name}: {len(p.models)} models ({sum(1 for m in p.models if m.nets)} with a vote "
          f"weight), {nets} fold models run, {views} forward passes per image "
          f"(TTA), sizes {sorted({m.spec.input_size for m in p.models})}, adapt "
          f"{sorted({m.adapt.method for m in p.models})}; {len(paths)} images; batch {args.batch_size}, "
          f"{args.threads} thread(s); load {load_s:.1f}s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fmt = output_format(bundle, sample)
        k = min(len(paths), args.batch_size)  # warm-up: first calls allocate
        predict_rate(p, ids.iloc[:k].reset_index(drop=True), paths[:k], fmt, args.batch_size, tmp / "warm.csv")
        rates_m, rates_p = [], []
        for _ in range(args.rounds):  # interleaved, best of each: a shared machine's load comes and goes
            rates_m.append(model_only(p, len(paths), args.batch_size))
            rates_p.append(predict_rate(p, ids, paths, fmt, args.batch_size, tmp / "out.csv"))
        (wall_m, cpu_m), (wall_p, cpu_p) = (tuple(max(r[i] for r in rates) for i in (0, 1))
                                            for rates in (rates_m, rates_p))
        print(f"model-only {wall_m:.1f} img/s, predict {wall_p:.1f} img/s (best of {args.rounds}; all: "
              f"{', '.join(f'{a[0]:.1f}/{b[0]:.1f}' for a, b in zip(rates_m, rates_p))}): predict = "
              f"{wall_p / wall_m:.2f} x model-only (goal >= 0.85)")
        print(f"per CPU second (all threads; robust to other load): model-only {cpu_m:.1f} img, predict "
              f"{cpu_p:.1f} img: {cpu_p / cpu_m:.2f} x")
        one = tmp / "one.csv"
        pd.DataFrame({"id": ids, "path": [str(Path(x).resolve()) for x in paths]}).to_csv(one, index=False)
        many = tmp / "many.csv"
        pd.DataFrame({"id": [f"{i}-{r}" for r in range(args.repeat) for i in ids],
                      "path": [str(Path(x).resolve()) for _ in range(args.repeat) for x in paths]}).to_csv(many, index=False)
        rss1, s1 = peak_rss(str(bundle.root), one, tmp / "o1.csv", args.batch_size, args.threads)
        rssn, sn = peak_rss(str(bundle.root), many, tmp / "on.csv", args.batch_size, args.threads)
        print(f"peak RSS (fresh process, whole CLI): {len(paths)} images {rss1:.0f} MiB ({s1:.0f}s), "
              f"{args.repeat * len(paths)} images {rssn:.0f} MiB ({sn:.0f}s): {rssn / rss1:.2f} x (goal: the same)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
