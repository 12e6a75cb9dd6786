"""`python -m ensemble.dups --competition NAME`: exact and near-duplicate images in train + test.

Writes runs/NAME/dups.csv and dups.json (ensemble.data.dups does the work); train then keeps each
duplicate group in one fold.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ensemble.cli import add_verbosity, run_command
from ensemble.data.dups import DEFAULT_MIN_CORR, DEFAULT_THRESHOLD, HASHES, run_dups
from ensemble.data.dups_confirm import DEFAULT_MIN_COS, DEFAULT_MIN_DETAIL
from ensemble.data.dups_geometry import DEFAULT_MIN_INLIER_RATIO, DEFAULT_MIN_INLIERS

EMBED_BACKBONE = "efficientnet_lite0"  # the shift report's embedder (ensemble.shift.features)


def embedder(backbone: str = EMBED_BACKBONE):
    """(M, S, S, 3) uint8 -> (M, F) pooled features of a pretrained backbone, built on first use."""
    def embed(images):
        from ensemble.shift.features import embed_images
        try:
            return embed_images(images, backbone, pretrained=True)
        except RuntimeError as e:  # no pretrained weights reachable: say so in one line
            raise ValueError(f"{' '.join(str(e).split())}; or run with --no-embed (detail check only)") from None
    return embed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.dups", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--competition", help="NAME: read configs/NAME/base.yaml")
    src.add_argument("--cfg", help="the competition's base config YAML")
    p.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                   help=f"max Hamming distance (of 64 bits) for a near duplicate (default {DEFAULT_THRESHOLD})")
    p.add_argument("--min-corr", type=float, default=DEFAULT_MIN_CORR,
                   help=f"confirm a near pair when its 32x32 grey thumbnails correlate >= this "
                        f"(default {DEFAULT_MIN_CORR}; -1 with --min-detail -1 --min-inliers 0 "
                        f"--min-inlier-ratio 0 keeps every hash match)")
    p.add_argument("--min-detail", type=float, default=DEFAULT_MIN_DETAIL,
                   help=f"confirm a near pair when its 64x64 colour detail correlates >= this (default "
                        f"{DEFAULT_MIN_DETAIL}, measured by scripts/measure_dups.py; -1 skips)")
    p.add_argument("--min-cos", type=float, default=DEFAULT_MIN_COS,
                   help=f"... and its {EMBED_BACKBONE} embeddings have cosine >= this (default {DEFAULT_MIN_COS})")
    p.add_argument("--min-inliers", type=int, default=DEFAULT_MIN_INLIERS,
                   help=f"... and >= this many of its SIFT keypoints inside the frame agree on one RANSAC homography "
                        f"(default {DEFAULT_MIN_INLIERS}; 0 with --min-inlier-ratio 0 skips the geometry check)")
    p.add_argument("--min-inlier-ratio", type=float, default=DEFAULT_MIN_INLIER_RATIO,
                   help=f"... and those inliers are >= this fraction of the keypoints of the image with fewer "
                        f"(default {DEFAULT_MIN_INLIER_RATIO})")
    p.add_argument("--no-embed", action="store_true", help="skip the embedding check (no pretrained weights needed)")
    p.add_argument("--hash", default="phash", choices=list(HASHES), help="perceptual hash (default phash)")
    p.add_argument("--runs-dir", help="default: the config's output.runs_dir (runs)")
    p.add_argument("--workers", type=int, help="hashing threads (default: CPU count, at most 8)")
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run)


def _run(args: argparse.Namespace) -> None:
    from ensemble.data.competition import load_competition
    from ensemble.config import competition_config
    cfg = competition_config(args.competition, args.cfg)
    comp = load_competition(cfg.competition)
    runs_dir = Path(args.runs_dir or cfg.output.runs_dir)
    run_dups(comp, runs_dir / cfg.competition.name, args.hash, args.threshold, args.min_corr, args.workers,
             min_detail=args.min_detail, min_cos=args.min_cos, embed=None if args.no_embed else embedder(EMBED_BACKBONE),
             min_inliers=args.min_inliers, min_inlier_ratio=args.min_inlier_ratio)


if __name__ == "__main__":
    sys.exit(main())
