"""`python -m ensemble.distill --competition X`: one student trained on the chosen ensemble's soft labels.

The ensemble is the newest submission manifest of the competition (or --submission FILE.json): its
runs and vote recipe are replayed on their out-of-fold files; the student (--student CFG, default
the cheapest of the ensemble's runs) trains K-fold on the same folds.csv as runs/<X>/<student>-distill/
with alpha x the ensemble's probabilities + (1 - alpha) x the label as targets, plus the
pseudo-labelled test rows of runs/<X>/pseudo.csv when it exists. Prints the student's CV beside
the ensemble's, and both predict costs.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ensemble.cli import add_verbosity, run_command
from ensemble.plugins import add_plugin_argument, load_plugins


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.distill", description=__doc__.splitlines()[0])
    p.add_argument("--competition", required=True, help="competition name (submissions/<name>/, runs/<name>/)")
    p.add_argument("--submission", help="the ensemble's manifest (submissions/<name>/*.json; default the newest)")
    p.add_argument("--student", help="the student's model config (default: the cheapest run of the ensemble)")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="share of the ensemble's probabilities in each training row's target (default 0.5; "
                        "1 = soft labels only, 0 = the labels only)")
    p.add_argument("--pseudo", default="auto",
                   help="pseudo-labelled test rows (train.extra_rows format); default runs/<name>/pseudo.csv if present; "
                        "'none' for none")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the student's config, e.g. --set input.size=96")
    p.add_argument("--submissions-dir", default="submissions", help="where vote wrote the manifests (default submissions)")
    p.add_argument("--resume", action="store_true", help="continue the student's interrupted folds")
    p.add_argument("--fresh", action="store_true", help="delete the student's run folder and start over")
    p.add_argument("--no-costs", action="store_true", help="do not measure the predict costs")
    add_plugin_argument(p)
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # DistillError, RunsError, ConfigError, ImageError are ValueErrors; a NaN loss or a failed assembly RuntimeErrors
    return run_command(build_parser(), argv, _run, (ValueError, OSError, RuntimeError))


def _run(args: argparse.Namespace) -> None:
    from ensemble.distill import distill
    load_plugins(args.plugin)
    result = distill(args.competition, submission=args.submission, student=args.student, alpha=args.alpha,
                     overrides=args.overrides, submissions_dir=args.submissions_dir,
                     pseudo=None if args.pseudo == "none" else args.pseudo, resume=args.resume,
                     fresh=args.fresh, measure=not args.no_costs)
    print(result.report())


if __name__ == "__main__":
    sys.exit(main())
