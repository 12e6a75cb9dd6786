"""`python -m ensemble.demo`: build a small Kaggle-layout competition from scikit-learn's digits,
train two small backbones on 3 folds, vote them into a submission and score it on the hidden test.

It is `python -m ensemble.compete --competition demo --budget smoke` plus the hidden-test score.

data/demo/                 train.csv (id,label), train/*.png, test/*.png, sample_submission.csv
data/demo_solution.csv     the hidden test labels (outside the competition folder)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from ensemble.cli import add_verbosity, run_command
from ensemble.data.digits import build_demo, digit_images  # noqa: F401 (re-exported)


def score_submission(path: Path, solution: Path) -> float:
    """Accuracy of a label submission against the hidden solution."""
    sub = pd.read_csv(path, dtype=str)
    sol = pd.read_csv(solution, dtype=str)
    merged = sol.merge(sub, on="id", suffixes=("_true", "_pred"))
    return float((merged["label_true"] == merged["label_pred"]).mean())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.demo",
                                description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    p.add_argument("--root", default="data/demo", help="the competition folder to build (default: data/demo; "
                                                       "the hidden labels go beside it as <root>_solution.csv)")
    p.add_argument("--build-only", action="store_true", help="only write the competition files")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides for both demo models")
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, (ValueError, FileNotFoundError, RuntimeError))


def _run(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    root = build_demo(args.root)
    print(f"demo competition in {root} ({time.perf_counter() - t0:.1f}s)", flush=True)
    if args.build_only:
        return
    from ensemble.compete.run import compete  # compete builds on everything; demo is only its front door
    result = compete("demo", "smoke", extra=[f"competition.root={root}", *args.overrides])
    if result.vote is not None and result.vote.chosen is not None:
        path = result.vote.chosen[0]
        acc = score_submission(path, root.parent / f"{root.name}_solution.csv")
        print(f"hidden-test accuracy of {path}: {acc:.4f}")
    print(f"demo finished in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
