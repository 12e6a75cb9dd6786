"""Vote the runs of a competition into a validated submission, with honest CV scores.

    python -m ensemble.vote --competition ham10000                       # every method, best written
    python -m ensemble.vote --competition ham10000 --method hillclimb --bias on
    python -m ensemble.vote --runs 'runs/ham10000/resnet*' --exclude '*debug*' --method weighted --weights 2,1
    python -m ensemble.vote --check submissions/ham10000/x.csv --competition ham10000
    python -m ensemble.vote --competition aptos --plugin my_metric.py     # a metric registered by a plugin
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

from ensemble.artifacts.paths import find_runs
from ensemble.cli import Parser, add_verbosity, int_at_least, positive_number, run_command
from ensemble.plugins import add_plugin_argument, load_plugins
from ensemble.vote.methods import METHODS
from ensemble.vote.options import VoteOptionError, VoteOptions
from ensemble.vote.runs import RunsError
from ensemble.vote.submission import SubmissionError
from ensemble.vote.kaggle import add_submit_arguments, submit_chosen
from ensemble.vote.voter import check_submission, vote_runs


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m ensemble.vote", description=__doc__.split("\n")[0])
    p.add_argument("--competition", metavar="NAME", help="vote every run under RUNS_DIR/NAME")
    p.add_argument("--runs-dir", default="runs", help="default: runs")
    p.add_argument("--runs", nargs="+", metavar="RUN", help="run names or paths (globs allowed)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="RUN", help="run names or paths to drop (globs)")
    p.add_argument("--method", default="all", help=f"'all' or comma-separated: {', '.join(METHODS)}")
    p.add_argument("--weights", help="for 'weighted': '2,1,1' in run order or 'runA=2,runB=1'")
    p.add_argument("--bias", choices=["auto", "on", "off"], default="auto",
                   help="also fit per-class bias (ordinal runs and QWK's expected grade: thresholds) on OOF; "
                        "auto = thresholds only")
    p.add_argument("--max-iter", type=int_at_least(1), default=100, help="hill-climbing steps")
    p.add_argument("--stack-c", type=positive_number, default=1.0, help="stacking: inverse L2 strength (> 0)")
    p.add_argument("--select", choices=["cv", "weighted", "test_like"], default="cv",
                   help="choose the ensemble by CV, importance-weighted CV or the test-like fifth's CV "
                        "(the last two need python -m ensemble.shift)")
    p.add_argument("--priors", default="train",
                   help="class priors of the submission: train (unchanged), estimated (EM on the test "
                        "probabilities) or one number per class ('0.3,0.7' or 'NORMAL=0.3,PNEUMONIA=0.7')")
    p.add_argument("--calibrate", action="store_true",
                   help="temperature-scale the chosen ensemble's probabilities (metrics scored on probabilities, "
                        "e.g. log loss): fitted on its held-out OOF rows, applied when the nested CV does not worsen")
    p.add_argument("--write", choices=["best", "all", "none"], default="best",
                   help="which ensembles get a submission file")
    p.add_argument("--out-dir", default="submissions", help="default: submissions (+ /NAME/)")
    p.add_argument("--kaggle", metavar="SLUG", help="Kaggle competition slug for the printed command (default: NAME)")
    p.add_argument("--check", metavar="FILE", help="validate FILE against the sample submission and exit")
    p.add_argument("--sample", metavar="PATH", help="sample_submission.csv for --check (default: from the runs' config)")
    p.add_argument("--classes", help="comma-separated classes for --check when there are no runs")
    add_plugin_argument(p)
    add_verbosity(p)
    add_submit_arguments(p)
    return p


def vote_options(args: argparse.Namespace) -> VoteOptions:
    """The parsed flags -> the VoteOptions they give (checked by vote_runs)."""
    return VoteOptions(methods=args.method, weights=args.weights, bias=args.bias, max_iter=args.max_iter,
                       stack_c=args.stack_c, select=args.select, priors=args.priors, write=args.write,
                       out_dir=args.out_dir, kaggle=args.kaggle, message=args.message,
                       calibrate=args.calibrate)


def run_vote(args, argv: Sequence[str]) -> int:
    result = vote_runs(find_runs(args.runs_dir, args.competition, args.runs, args.exclude), vote_options(args),
                       command="python -m ensemble.vote " + shlex.join(argv))
    print(result.summary())
    t = result.timings
    print(f"timings: load {t['load']:.1f} s, scores {t['scores']:.1f} s, submission {t['submission']:.1f} s")
    if not args.submit:
        return 0
    sent = submit_chosen(result, args.kaggle or result.runs.competition, args.message)
    print("\n".join(sent.lines()), file=sys.stdout if sent.command else sys.stderr)  # stderr: nothing written
    return 0 if sent.done else 1


def run_check(args) -> int:
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    found, sample_path, kind, rows = check_submission(args.check, sample=args.sample, classes=classes,
                                                       competition=args.competition, runs_dir=args.runs_dir)
    if found:
        print(f"{args.check}: INVALID against {sample_path} ({len(found)} problem{'' if len(found) == 1 else 's'})")
        for s in found:
            print(f"  - {s}")
        return 1
    print(f"{args.check}: OK ({rows} rows, format {kind}, matches {sample_path})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    return run_command(parser, argv, lambda args: _run(parser, args, argv),
                       (RunsError, SubmissionError, ValueError, FileNotFoundError))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.submit and (args.check or args.write == "none"):
        parser.error("--submit sends the written best submission: it needs --write best or all (not --check)")
    load_plugins(args.plugin)
    try:
        return run_check(args) if args.check else run_vote(args, argv)
    except VoteOptionError as e:  # names the command-line flag, not the VoteOptions field
        raise ValueError(e.detail or e.where(e.flag)) from None


if __name__ == "__main__":
    sys.exit(main())
