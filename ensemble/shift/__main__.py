"""`python -m ensemble.shift --competition NAME`: adversarial validation of train vs test images."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..cli import Parser, add_verbosity, int_at_least, positive_number, run_command
from .adversarial import CLASSIFIERS


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m ensemble.shift", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--competition", help="NAME: read configs/NAME/base.yaml")
    src.add_argument("--cfg", help="the competition's base config YAML")
    p.add_argument("--size", type=int_at_least(1), help="image size of the cache and the embedding (default: the config's input.size)")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="pretrained backbone for embeddings, or 'none' for image statistics only (default efficientnet_lite0)")
    p.add_argument("--classifier", default="logreg", choices=CLASSIFIERS, help="train-vs-test classifier (default logreg)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds of the classifier (default 5)")
    p.add_argument("--clip", type=positive_number, default=10.0, help="clip importance weights at this multiple of the mean (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the PCA, the classifier's folds and the bootstrap (default 0)")
    p.add_argument("--device", default="cpu", help="torch device of the embedding pass (default cpu)")
    p.add_argument("--runs-dir", help="default: the config's output.runs_dir (runs)")
    p.add_argument("--workers", type=int_at_least(1), default=2, help="decoding threads for the image cache")
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, (ValueError, OSError, RuntimeError))


def _run(args: argparse.Namespace) -> None:
    from ..data.competition import load_competition
    from ..config import competition_config
    from .run import run_shift, runs_table
    cfg = competition_config(args.competition, args.cfg)
    if args.folds < 2:
        raise ValueError(f"--folds must be >= 2, got {args.folds}")
    comp = load_competition(cfg.competition)
    runs_dir = Path(args.runs_dir or cfg.output.runs_dir)
    comp_dir = runs_dir / cfg.competition.name
    run_shift(comp, comp_dir, size=args.size or cfg.input.size, backbone=args.backbone,
              classifier=args.classifier, folds=args.folds, clip=args.clip, seed=args.seed, device=args.device,
              workers=args.workers, progress=sys.stderr.isatty())
    for line in runs_table(comp, comp_dir):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
