"""`python -m ensemble.export --competition NAME`: a submission's ensemble as one self-contained bundle.

    python -m ensemble.export --competition ham10000                      # the newest submission
    python -m ensemble.export --competition ham10000 --submission submissions/ham10000/X.json --zip --half

Writes bundles/<competition>/<submission name>/ (or --out): bundle.json (classes, submission format,
every model and how to build it, the vote recipe, provenance), one safetensors file per fold per
model and a README; `python -m ensemble.predict --bundle` needs nothing else.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ensemble.cli import add_verbosity, run_command
from ensemble.plugins import add_plugin_argument, load_plugins


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.export", description=__doc__.splitlines()[0])
    p.add_argument("--competition", required=True, help="competition name (submissions/<name>/, runs/<name>/)")
    p.add_argument("--submission", help="a submission's manifest (.json) or CSV (default: the newest)")
    p.add_argument("--out", help="bundle folder (default bundles/<competition>/<submission name>)")
    p.add_argument("--zip", action="store_true", help="also pack the bundle into <out>.zip")
    p.add_argument("--half", action="store_true", help="store the weights in fp16 (half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--submissions-dir", default="submissions", help="where vote wrote submissions (default submissions)")
    add_plugin_argument(p)
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run)


def _run(args: argparse.Namespace) -> None:
    from ensemble.predict.export import export_bundle
    load_plugins(args.plugin)  # the registries the runs' configs name (backbones, TTA views, ...)
    res = export_bundle(args.competition, args.submission, args.out, make_zip=args.zip, half=args.half,
                        submissions_dir=args.submissions_dir, overwrite=args.overwrite)
    print(f"wrote {res.path} from {res.manifest} ({res.nbytes / 2**20:.1f} MB of weights)"
          + (f"; zip: {res.zip_path}" if res.zip_path else ""))
    print(f"predict: python -m ensemble.predict --bundle {res.path} --images <folder> --sample <sample_submission.csv> "
          f"--out submission.csv")


if __name__ == "__main__":
    sys.exit(main())
