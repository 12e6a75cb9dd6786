"""Does `compete --time` keep its budget? Plan vs actual, and the CV each budget buys.

    python scripts/bench_time.py                                      # ham10000: --time 3m, 5m, 10m
    python scripts/bench_time.py --competition demo --times 1m,2m --runs-dir /tmp/bench-time --threads 1

Each budget runs `python -m ensemble.compete --competition NAME --time T` as a fresh job in its own
folder under --runs-dir (runs/, submissions/ and the log; `--shared`: one runs folder, so the later
budgets reuse the duplicates, shift check and image caches of the first), with run names carrying the
budget (`<model>-t3m`). Printed per budget: the plan's total (setup, models, vote and report), the
job's own elapsed time and the process's wall time (imports included) as a share of the budget (goal:
<= 110%), the models, and the CV of each model and of the written ensemble.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.compete.spec import time_spec  # noqa: E402
from ensemble.compete.steps import RunState  # noqa: E402
from ensemble.compete.timed import time_label  # noqa: E402
from ensemble.compete.plandata import parse_duration  # noqa: E402
from ensemble.compete.timeplan import format_plan  # noqa: E402
from ensemble.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_budget(args, text: str, root: Path, out: Path) -> dict:
    """One `compete --time` job in `out` (its cwd). -> the figures of one table row."""
    out.mkdir(parents=True, exist_ok=True)
    runs = out.parent / "runs" if args.shared else out / "runs"
    cmd = [sys.executable, "-m", "ensemble.compete", "--competition", args.competition, "--time", text,
           "--configs-dir", str(Path(args.configs_dir).resolve()), "--set", f"competition.root={root}",
           "--set", f"output.runs_dir={runs}", "-q", *(["--threads", str(args.threads)] if args.threads else []),
           *(["--plan-only"] if args.plan_only else []), *[x for s in args.set for x in ("--set", s)]]
    t0 = time.perf_counter()
    with open(out / "compete.log", "w") as log:
        rc = subprocess.run(cmd, cwd=out, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)}).returncode
    wall = time.perf_counter() - t0
    row = {"budget": text, "budget_s": parse_duration(text), "rc": rc, "wall_s": wall}
    state_file = runs / args.competition / f"compete-{time_label(text)}.json"
    if not state_file.exists():
        row["note"] = (out / "compete.log").read_text().strip().splitlines()[-1:] or ["no output"]
        return row
    state = RunState.load(state_file)
    print(format_plan(state.plan))
    print("actual s: " + ", ".join(f"{k} {v:.1f}" for k, v in state.actual_s.items()), flush=True)
    row.update(plan_s=state.planned_s or state.plan.total_seconds, elapsed_s=state.elapsed_s, models=[],
               topped=state.plan.total_seconds - (state.planned_s or state.plan.total_seconds))
    for e in state.plan.entries:
        metrics = runs / args.competition / f"{e.name}-{time_label(text)}" / "metrics.json"
        cv = json.loads(metrics.read_text())["cv"] if metrics.exists() else None
        row["models"].append(f"{e.name}@{e.size}px x{e.epochs}" + (f" {cv:.4f}" if cv is not None else " -"))
    manifests = sorted((out / "submissions" / args.competition).glob("*.json"), key=lambda p: p.stat().st_mtime)
    if manifests:
        m = json.loads(manifests[-1].read_text())
        row["ensemble"] = f"{m['method']} {m['cv']['score']:.4f}"
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--competition", default="ham10000")
    p.add_argument("--times", default="3m,5m,10m", help="comma-separated budgets (default 3m,5m,10m)")
    p.add_argument("--runs-dir", default="runs-bench-time",
                   help="everything the jobs write goes under this folder (default runs-bench-time)")
    p.add_argument("--shared", action="store_true", help="one runs folder for every budget (setup reused)")
    p.add_argument("--configs-dir", default=str(REPO / "configs"))
    p.add_argument("--threads", type=int, help="torch CPU threads of each job")
    p.add_argument("--plan-only", action="store_true", help="print the plans only (nothing trains)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides for every model")
    args = p.parse_args(argv)
    folder, ts, _ = time_spec(args.competition, args.configs_dir)
    root = Path(load_config(folder / ts.candidates[0].cfg, ts.set).competition.root).resolve()
    base = Path(args.runs_dir).resolve()
    rows = []
    for text in [t.strip() for t in args.times.split(",") if t.strip()]:
        print(f"--time {text} ... ({base / time_label(text) / 'compete.log'})", flush=True)
        rows.append(run_budget(args, text, root, base / time_label(text)))
    print(f"\n{args.competition}: plan vs actual (minutes; plan = the total printed before training, + models added "
          f"when ahead; actual = the job's elapsed time from its start; wall = the process as timed here)")
    head = ["budget", "plan", "actual", "wall", "actual/budget", "wall/budget", "ensemble CV", "models (CV)"]
    table = [head]
    for r in rows:
        if "plan_s" not in r:
            table.append([r["budget"], "-", "-", f"{r['wall_s'] / 60:.1f}", "-", "-", f"exit {r['rc']}",
                          " ".join(r.get("note", []))])
            continue
        b = r["budget_s"]
        plan = f"{r['plan_s'] / 60:.1f}" + (f" +{r['topped'] / 60:.1f}" if r["topped"] > 0 else "")
        table.append([r["budget"], plan, f"{r['elapsed_s'] / 60:.1f}", f"{r['wall_s'] / 60:.1f}",
                      f"{100 * r['elapsed_s'] / b:.0f}%", f"{100 * r['wall_s'] / b:.0f}%", r.get("ensemble", "-"),
                      ", ".join(r["models"])])
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
