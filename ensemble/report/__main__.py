"""`python -m ensemble.report --competition NAME`: one HTML page of runs, duplicates and submissions."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ensemble.cli import add_verbosity, run_command
from ensemble.report.page import build_report

DESCRIPTION = '`python -m ensemble.report --competition NAME`: one static HTML page to read instead of logs.'  # --help's first line, as before the package split


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.report", description=DESCRIPTION)
    p.add_argument("--competition", required=True, metavar="NAME", help="the competition: RUNS_DIR/NAME/")
    p.add_argument("--runs-dir", default="runs", help="default: runs")
    p.add_argument("--submissions-dir", default="submissions", help="where vote wrote submissions (default: submissions)")
    p.add_argument("--out", help="output directory (default RUNS_DIR/NAME/report)")
    p.add_argument("--no-thumbs", action="store_true", help="no pictures: thumbnails of duplicate images, of the mistakes gallery and its Grad-CAM heat maps")
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run)


def _run(args: argparse.Namespace) -> None:
    index = build_report(args.competition, args.runs_dir, args.submissions_dir, args.out, not args.no_thumbs)
    print(f"wrote {index} ({len(list(index.parent.glob('img/*.png')))} images); open it in a browser")


if __name__ == "__main__":
    sys.exit(main())
