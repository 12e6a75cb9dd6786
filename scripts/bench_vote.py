"""Benchmark `python -m ensemble.vote` on synthetic runs: load time, vote time, peak memory per method.

    python scripts/bench_vote.py                                   # 20 runs x 1,000,000 test rows x 7 classes
    python scripts/bench_vote.py --rows 20000 --runs 5 --format both --methods mean,rank

Each method runs in a fresh `python -m ensemble.vote` process (end to end: imports, load + align,
CV scores, test prediction, validation, CSV + manifest); its peak RSS and CPU time come from
os.wait4. "input" is the size of the stacked float32 arrays (test + OOF) the vote holds; the peak
includes ~180 MiB of interpreter and libraries (numpy, pandas, pyarrow, scikit-learn).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ensemble.artifacts import atomic_write_json, file_hash, probs_frame, write_probs  # noqa: E402


def _ids(prefix: str, n: int) -> np.ndarray:
    return (prefix + pd.Series(np.arange(n)).astype(str).str.zfill(7)).to_numpy(object)


def _probs(rng, y: np.ndarray | None, n: int, c: int, strength: float) -> np.ndarray:
    logits = rng.standard_normal((n, c), dtype=np.float32)
    if y is not None:
        logits[np.arange(n), y] += strength
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def make_data(root: Path, rows: int, runs: int, classes: int, oof_rows: int, folds: int, fmts: list[str],
              shuffled: int, seed: int = 0) -> None:
    """root/data (train.csv, sample_submission.csv) and root/runs-<fmt>/bench/<run>/ for each format."""
    rng = np.random.default_rng(seed)
    names = [f"c{k}" for k in range(classes)]
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    y = rng.integers(0, classes, oof_rows)
    train_ids, test_ids = _ids("tr", oof_rows), _ids("te", rows)
    pd.DataFrame({"id": train_ids, "label": np.array(names)[y]}).to_csv(data / "train.csv", index=False)
    sample = pd.DataFrame({"id": test_ids, **{c: np.float32(1.0 / classes) for c in names}})
    sample.to_csv(data / "sample_submission.csv", index=False)
    fold = rng.permutation(np.arange(oof_rows) % folds)
    for fmt in fmts:
        comp = root / f"runs-{fmt}" / "bench"
        comp.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": train_ids, "fold": fold}).to_csv(comp / "folds.csv", index=False)
        fhash = file_hash(comp / "folds.csv")
        for r in range(runs):
            t = time.perf_counter()
            run_rng = np.random.default_rng(seed + 1 + r)
            strength = 0.5 + 2.0 * r / max(1, runs - 1)
            run_dir = comp / f"model{r:02d}"
            run_dir.mkdir(exist_ok=True)
            write_probs(run_dir / f"oof.{fmt}", probs_frame(train_ids, _probs(run_rng, y, oof_rows, classes, strength),
                                                            names, fold))
            test = probs_frame(test_ids, _probs(run_rng, None, rows, classes, 0.0), names)
            if r < shuffled:
                test = test.sample(frac=1.0, random_state=r)
            write_probs(run_dir / f"test.{fmt}", test)
            cfg = {"name": run_dir.name, "competition": {"name": "bench", "root": str(data), "metric": "balanced_accuracy"}}
            (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
            atomic_write_json(run_dir / "metrics.json", {
                "run": run_dir.name, "competition": "bench", "metric": "balanced_accuracy", "cv": None,
                "classes": names, "folds_hash": fhash, "task": "classification"})
            print(f"  wrote {fmt} run {r + 1}/{runs} in {time.perf_counter() - t:.1f} s", flush=True)


def run_method(root: Path, fmt: str, method: str, extra: list[str]) -> dict:
    """One end-to-end vote in a child process -> timings (s) and its peak RSS (MiB)."""
    cmd = [sys.executable, "-m", "ensemble.vote", "--competition", "bench", "--runs-dir", f"runs-{fmt}",
           "--method", method, "--write", "best", "--out-dir", f"subs-{fmt}", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{method} ({fmt}) failed:\n{out}")
    m = re.search(r"timings: load ([\d.]+) s, scores ([\d.]+) s, submission ([\d.]+) s", out)
    load, scores, write = (float(x) for x in m.groups())
    return {"load": load, "scores": scores, "write": write, "wall": wall, "rss": usage.ru_maxrss / 1024,
            "cpu": usage.ru_utime + usage.ru_stime}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="test rows per run")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--oof-rows", type=int, default=20_000, help="train (OOF) rows per run")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--format", choices=["parquet", "csv", "both"], default=None,
                   help="default: parquet if pyarrow is installed, else csv")
    p.add_argument("--methods", default="mean,geometric,rank,majority,hillclimb,stacking")
    p.add_argument("--shuffled", type=int, default=0, help="runs whose test rows are stored shuffled (realigned by id)")
    p.add_argument("--workdir", help="keep data here (default: a temp dir, removed afterwards)")
    p.add_argument("--reuse", action="store_true", help="reuse data already in --workdir")
    args = p.parse_args(argv)
    try:
        import pyarrow  # noqa: F401
        have_arrow = True
    except ImportError:
        have_arrow = False
    fmt = args.format or ("parquet" if have_arrow else "csv")
    fmts = ["parquet", "csv"] if fmt == "both" else [fmt]
    if "parquet" in fmts and not have_arrow:
        raise SystemExit("parquet needs pyarrow: pip install pyarrow")
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_vote_"))
    input_mib = args.runs * (args.rows + args.oof_rows) * args.classes * 4 / 2**20
    print(f"{args.runs} runs x {args.rows:,} test rows x {args.classes} classes (+ {args.oof_rows:,} OOF rows, "
          f"{args.folds} folds); input arrays {input_mib:.0f} MiB; {os.cpu_count()} CPUs; data in {root}")
    try:
        if not args.reuse:
            t = time.perf_counter()
            make_data(root, args.rows, args.runs, args.classes, args.oof_rows, args.folds, fmts, args.shuffled)
            print(f"generated in {time.perf_counter() - t:.0f} s")
        print(f"{'format':8} {'method':10} {'load s':>7} {'scores s':>8} {'write s':>8} {'total s':>8} "
              f"{'cpu s':>6} {'peak MiB':>9} {'x input':>8}   (total: wall of the whole process; cpu: user+sys)")
        for f in fmts:
            for method in args.methods.split(","):
                r = run_method(root, f, method, [])
                print(f"{f:8} {method:10} {r['load']:7.1f} {r['scores']:8.1f} {r['write']:8.1f} {r['wall']:8.1f} "
                      f"{r['cpu']:6.1f} {r['rss']:9.0f} {r['rss'] / input_mib:8.2f}", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
