"""`python -m ensemble.compete --competition NAME --budget smoke|cpu|gpu` (or `--time 60m`): a whole competition."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

STARTED = time.perf_counter()  # python -m ensemble.compete: --time counts importing the library against the budget

from ensemble.cli import add_verbosity, run_command  # noqa: E402
from ensemble.compete.run import compete  # noqa: E402
from ensemble.plugins import add_plugin_argument, load_plugins  # noqa: E402
from ensemble.vote.kaggle import add_submit_arguments  # noqa: E402

DESCRIPTION = '`python -m ensemble.compete --competition NAME --budget smoke|cpu|gpu`: Kaggle folder -> submission.'  # --help's first line, as before the package split


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.compete", description=DESCRIPTION)
    p.add_argument("--competition", required=True, help="a folder under configs/ with compete.yaml")
    p.add_argument("--budget", default="cpu", help="a budget from compete.yaml (smoke, cpu, gpu)")
    p.add_argument("--time", help="plan the whole job to fit this wall time (e.g. 60m, 1.5h) from "
                                  "compete.yaml's time: candidates, instead of a fixed --budget")
    p.add_argument("--plan-only", action="store_true",
                   help="with --time: measure and print the plan with its estimated times, train nothing")
    p.add_argument("--threads", type=int, help="torch CPU threads (e.g. 1 each for two jobs at once)")
    p.add_argument("--configs-dir", default="configs", help="where competition folders live (default: configs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every model")
    add_plugin_argument(p)
    add_submit_arguments(p)
    p.add_argument("--kaggle", metavar="SLUG", help="Kaggle competition slug for --submit and the printed "
                                                    "command (default: NAME)")
    add_verbosity(p)  # -q also silences the progress bars
    return p


def main(argv: Sequence[str] | None = None) -> int:
    started = STARTED if __name__ == "__main__" else time.perf_counter()  # imported: the clock starts now
    parser = build_parser()
    return run_command(parser, argv, lambda args: _run(parser, args, started), (ValueError, OSError, RuntimeError))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, started: float) -> None:
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch
        torch.set_num_threads(args.threads)
    load_plugins(args.plugin)
    kw = dict(configs_dir=args.configs_dir, extra=args.overrides, quiet=args.quiet > 0, submit=args.submit,
              kaggle=args.kaggle, message=args.message)
    if args.time:
        from ensemble.compete.timed import compete_time
        compete_time(args.competition, args.time, plan_only=args.plan_only, started=started, **kw)
    else:
        compete(args.competition, args.budget, **kw)


if __name__ == "__main__":
    sys.exit(main())
