"""`python -m ensemble.init --data DIR [--name X]`: configs/X/ for a Kaggle download, then the next command.

Reads DIR (train.csv + sample_submission.csv + image folders, or train/<class>/ folders), prints what
it inferred and why (id, label and group columns, image folders and extension, classes and counts,
the submission format, a metric guess), and writes configs/X/base.yaml, compete.yaml (a `time:`
section from the template every competition uses) and the model files it names. Never overwrites.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from ensemble.artifacts import atomic_write_text
from ensemble.cli import add_verbosity, run_command
from ensemble.init.detect import Detected, InitError, inspect_download
from ensemble.init.template import competition_files, fold_count, input_size, profile_of

FORMATS = {"probs": "one probability column per class", "subset": "probabilities of some classes only",
           "label": "one label column (a class name per test image)"}


def default_name(data: Path) -> str:
    """The download folder's name as a competition name: lower case, letters, digits, '_' and '-'."""
    return re.sub(r"[^a-z0-9_-]+", "_", data.resolve().name.lower()).strip("_") or "competition"


def summary(found: Detected, name: str) -> str:
    """What init inferred and why, one fact per line."""
    r = found.reasons
    where = (f"{found.train_csv} + {found.train_dir}/<id>{found.ext}" if found.layout == "csv"
             else f"{found.train_dir}/<class>/<image>")
    lines = [f"competition '{name}' from {found.root}",
             f"  layout:      {found.layout} ({where}); test images {found.test_dir}/<id>{found.ext}"]
    if found.layout == "csv":
        lines += [f"  id column:   {found.id_col} ({r['id']})", f"  label:       {found.label_col} ({r['label']})"]
    else:
        lines += [f"  label:       the folder name ({r['label']})"]
    lines += [f"  group:       {found.group_col or '-'} ({r['group']})",
              f"  images:      {found.ext or 'extension in the ids'}, about {found.image_px} px (shorter side); "
              f"{found.n_train} train, {found.n_test} test",
              f"  classes ({len(found.classes)}): " + ", ".join(f"{c} {n}" for c, n in zip(found.classes, found.counts)),
              f"  submission:  {FORMATS[found.sample_kind]} ({found.sample_submission}: {found.sample_id_col} + "
              f"{', '.join(found.scored[:8])}{', ...' if len(found.scored) > 8 else ''})",
              f"  metric:      {found.metric} (a guess: {found.metric_reason}); check the competition's Evaluation "
              f"page and edit competition.metric in base.yaml if it differs",
              f"  recipe:      {profile_of(found)} profile at {input_size(found)} px, {fold_count(found)} folds"]
    return "\n".join(lines)


def init(data: str | Path, name: str | None = None, *, configs_dir: str | Path = "configs",
         id_col: str | None = None, label_col: str | None = None) -> tuple[Detected, Path, list[str]]:
    """Infer the competition and write configs_dir/<name>/. -> (detected, folder, written file names).
    Raises InitError (bad download, ambiguous column) or FileExistsError (never overwrites)."""
    data = Path(data)
    name = name or default_name(data)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise InitError(f"--name {name!r}: use letters, digits, '_', '-' and '.' (it names configs/<name>/ and runs/<name>/)")
    folder = Path(configs_dir) / name
    found = inspect_download(data, id_col=id_col, label_col=label_col)
    root_text = os.path.relpath(data.resolve(), Path.cwd()) if not data.is_absolute() else str(data)
    files = competition_files(found, name, root_text)
    clash = [f for f in files if (folder / f).exists()]
    if clash:
        raise FileExistsError(f"{folder}: {', '.join(clash)} already exist(s); init never overwrites: pick another "
                              f"--name or move {folder} away")
    for fname, text in files.items():
        atomic_write_text(folder / fname, text)
    return found, folder, list(files)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ensemble.init", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, metavar="DIR", help="the competition's download (train.csv or "
                   "train/<class>/ folders, sample_submission.csv, image folders)")
    p.add_argument("--name", help="competition name: configs/NAME/, runs/NAME/ (default: DIR's folder name)")
    p.add_argument("--id-col", help="train.csv's id column, when init cannot tell it")
    p.add_argument("--label-col", help="train.csv's label column, when init cannot tell it")
    p.add_argument("--configs-dir", default="configs", help="where competition folders live (default: configs)")
    add_verbosity(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, (InitError, FileExistsError))


def _run(args: argparse.Namespace) -> None:
    found, folder, written = init(args.data, args.name, configs_dir=args.configs_dir, id_col=args.id_col,
                                  label_col=args.label_col)
    name = folder.name
    print(summary(found, name))
    print(f"wrote {folder}/: {', '.join(written)}")
    extra = [] if args.configs_dir == "configs" else ["--configs-dir", str(args.configs_dir)]
    print("next: python -m ensemble.compete " + " ".join(["--competition", name, *extra, "--time", "60m",
                                                           "--plan-only"]))


if __name__ == "__main__":
    sys.exit(main())
