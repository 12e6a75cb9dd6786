"""`python -m ensemble.train --cfg configs/<competition>/<model>.yaml`: K-fold training of one model.

Writes runs/<competition>/<run>/ (see docs/artifacts.md): config.yaml, fold<k>/,
oof + test probabilities, metrics.json, confusion.png, curves.png.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ensemble.cli import Parser, add_verbosity, int_at_least, run_command
from ensemble.config import load_config
from ensemble.models import describe_backbones, format_backbone_table
from ensemble.models.backbones import format_weight_packages
from ensemble.plugins import add_plugin_argument, load_plugins
from ensemble.train.assemble import AssembleError
from ensemble.train.distributed import init_distributed, shutdown
from ensemble.train.engine import NonFiniteLossError
from ensemble.train.run import parse_folds, train_run


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m ensemble.train", description=__doc__.splitlines()[0])
    p.add_argument("--cfg", help="model config YAML (with a `base:` competition file)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set input.size=64 --set 'stages=[{epochs: 1}]'")
    p.add_argument("--folds", help="train only these folds, e.g. 0,1 (others may run in another process)")
    p.add_argument("--resume", action="store_true", help="continue interrupted folds from fold<k>/last.pt")
    p.add_argument("--fresh", action="store_true", help="delete the run directory and start over")
    p.add_argument("--assemble", action="store_true", help="only assemble oof/test/metrics from finished folds")
    p.add_argument("--device", help="override train.device (cpu, cuda, cuda:1)")
    p.add_argument("--lr-find", action="store_true",
                   help="LR range test on fold 0 (head, then backbone): prints suggested optim.lr values, writes "
                        "lr_find.csv and lr_find.png into the run folder; trains no run")
    p.add_argument("--lr-steps", type=int_at_least(2), default=100, metavar="N",
                   help="steps of each --lr-find sweep (default 100)")
    p.add_argument("--list-backbones", action="store_true",
                   help="print registered backbones, params, GFLOPs and where `pretrained: true` takes each one's "
                        "weights; then the weight packages with their source and licence")
    p.add_argument("--size", type=int_at_least(1), default=224, help="image size for --list-backbones GFLOPs")
    add_plugin_argument(p)
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_command(parser, argv, lambda args: _run(parser, args),
                       (ValueError, FileNotFoundError, NonFiniteLossError, AssembleError))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.list_backbones:
        print(format_backbone_table(describe_backbones(size=args.size)))
        print("\n" + format_weight_packages())
        return
    if not args.cfg:
        parser.error("--cfg is required (or --list-backbones)")
    load_plugins(args.plugin)
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    cfg = load_config(args.cfg, overrides)
    if args.lr_find:
        from ensemble.train.lr_find import format_lr_find, lr_find
        if args.lr_steps < 10:
            parser.error(f"--lr-steps expected an integer >= 10, got {args.lr_steps}")
        print(format_lr_find(lr_find(cfg, steps=args.lr_steps)))
        return
    dist = init_distributed(cfg.train.device)
    try:
        train_run(cfg, folds=parse_folds(args.folds, cfg.folds.n), resume=args.resume, fresh=args.fresh,
                  assemble_only=args.assemble, dist=dist)
    finally:
        shutdown(dist)


if __name__ == "__main__":
    sys.exit(main())
