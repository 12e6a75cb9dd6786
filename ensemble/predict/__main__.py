"""`python -m ensemble.predict --bundle B --images DIR|LIST.csv`: a bundle's ensemble applied to images.

    python -m ensemble.predict --bundle bundles/ham10000/NAME --images test/ --sample sample_submission.csv \
        --out submission.csv

Writes the competition's submission format with --sample (its ids, order and columns), else the ids
and one probability column per class. Rows are written as they are predicted (memory stays flat)
into a temporary file that takes the --out name when complete; bad input is one `error:` line and
exit code 2, with nothing written.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ensemble.cli import add_verbosity, run_command
from ensemble.plugins import add_plugin_argument, load_plugins
from ensemble.predict.reader import BAD_IMAGE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.predict", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="bundle folder (or its .zip) made by python -m ensemble.export")
    p.add_argument("--images", required=True, help="folder of images, or a CSV list with a 'path' column")
    p.add_argument("--sample", help="sample_submission.csv: its ids (in order) name the images and its header "
                                    "gives the output format")
    p.add_argument("--out", default="predictions.csv", help="output CSV (default predictions.csv)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1")
    p.add_argument("--on-bad-image", choices=BAD_IMAGE, default="error",
                   help="an image that does not decode: stop (error, default) or give its row the class priors")
    p.add_argument("--adapt", help="override the bundle's test-time adaptation: none, bn, tent")
    add_plugin_argument(p)
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run)


def _run(args: argparse.Namespace) -> None:
    from ensemble.predict.bundle import read_bundle
    from ensemble.predict.predictor import Predictor
    from ensemble.predict.sources import list_images
    from ensemble.predict.writer import output_format, write_predictions
    t0 = time.perf_counter()
    load_plugins(args.plugin)  # what the bundle's models were trained with (custom TTA views, vote methods)
    bundle = read_bundle(args.bundle)
    ids, paths, sample = list_images(args.images, args.sample, bundle.meta.get("image_ext", ""),
                                     bundle.meta["id_col"])
    fmt = output_format(bundle, sample, args.sample or "")
    predictor = Predictor.load(bundle, device=args.device, threads=args.threads, adapt=args.adapt)
    bad: dict[int, str] = {}

    def parts():
        for p in predictor.iter_predict(paths, batch_size=args.batch_size, on_bad_image=args.on_bad_image,
                                        workers=args.workers, progress=args.quiet == 0):
            bad.update(p.bad)
            yield p
    rows = write_predictions(args.out, parts(), ids, fmt)
    if bad:
        shown = ", ".join(f"{ids.iat[i]} ({r})" for i, r in list(sorted(bad.items()))[:5])
        print(f"warning: {len(bad)} unreadable image(s) got the class priors: {shown}"
              + (" ..." if len(bad) > 5 else ""), file=sys.stderr)
    dt = time.perf_counter() - t0
    print(f"wrote {args.out}: {rows} rows ({fmt.kind}) from {len(bundle.models)} model(s) in {dt:.1f}s "
          f"({rows / max(dt, 1e-9):.1f} img/s)")


if __name__ == "__main__":
    sys.exit(main())
