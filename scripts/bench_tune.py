"""Benchmark pruning: the same small study with the median pruner, hyperband and without pruning.

    python scripts/bench_tune.py                                        # demo mobilenetv3, 10 trials, fold 0
    python scripts/bench_tune.py --cfg configs/demo/resnet18.yaml --trials 12 --pruners median,none

Each study runs `python -m ensemble.tune` end to end in a fresh process on a copy of the runs
directory (so the competition's folds.csv and image cache are reused, the real study is not touched),
with the random sampler and one seed: every study proposes the same parameters in the same order, so
the studies differ only in what the pruner stops. Prints trials, pruned, total epochs trained, wall
time and best score per pruner.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402

from ensemble.config import load_config  # noqa: E402


def run_study(cfg: Path, pruner: str, args, work: Path) -> dict:
    """One study in a fresh process on a private runs dir -> its figures."""
    runs, base = work / pruner / "runs", load_config(cfg)
    src, comp = REPO / base.competition_dir, base.competition.name
    runs.mkdir(parents=True)
    if src.exists():  # reuse folds.csv and the decoded image cache
        (runs / comp).mkdir()
        for name in ("folds.csv", "cache"):
            if (src / name).exists():
                os.symlink((src / name).resolve(), runs / comp / name)
    cmd = [sys.executable, "-m", "ensemble.tune", "--cfg", str(cfg), "--trials", str(args.trials),
           "--pruner", pruner, "--sampler", "random", "--seed", str(args.seed), "--best-dir", str(work / pruner),
           "--set", f"output.runs_dir={runs}"] + (["--folds", args.folds] if args.folds else [])
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"{pruner}: ensemble.tune failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    journal = optuna.storages.journal.JournalFileBackend(str(runs / comp / "tune" / "optuna.journal"))
    study = optuna.load_study(study_name=f"{comp}/{base.run_name}",
                              storage=optuna.storages.JournalStorage(journal))
    trials = study.trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"pruner": pruner, "trials": len(trials), "complete": len(done),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            "epochs": sum(int(t.user_attrs.get("epochs_trained", 0)) for t in trials),
            "wall_s": wall, "best": study.best_value if done else float("nan"),
            "best_trial": study.best_trial.number if done else -1}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="configs/demo/mobilenetv3.yaml")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--folds", help="folds per trial (default: the config's tune.folds)")
    p.add_argument("--pruners", default="median,hyperband,none")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = Path(args.cfg).resolve()
    os.chdir(REPO)  # configs name the competition root relative to the repository
    base = load_config(cfg)
    if base.competition.name == "demo" and not (REPO / base.competition.root).exists():
        subprocess.run([sys.executable, "-m", "ensemble.demo", "--build-only"], cwd=REPO, check=True)
    work = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    try:
        rows = []
        for pruner in args.pruners.split(","):
            rows.append(run_study(cfg, pruner, args, work))
            r = rows[-1]
            print(f"{r['pruner']:>9}: {r['trials']} trials ({r['pruned']} pruned), {r['epochs']} epochs, "
                  f"{r['wall_s']:.0f}s, best {r['best']:.4f} (#{r['best_trial']})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    metric = base.competition.metric
    print(f"\n{cfg} · {args.trials} trials · random sampler seed {args.seed} · {metric}")
    print(f"{'pruner':>9} {'trials':>6} {'pruned':>6} {'epochs':>6} {'wall_s':>7} {'best':>7} {'epochs/trial':>12}")
    for r in rows:
        print(f"{r['pruner']:>9} {r['trials']:>6} {r['pruned']:>6} {r['epochs']:>6} {r['wall_s']:>7.0f} "
              f"{r['best']:>7.4f} {r['epochs'] / max(r['trials'], 1):>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
