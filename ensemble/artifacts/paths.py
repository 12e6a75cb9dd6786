"""Every path of the artifact contract, and run discovery (the only module that spells them).

    runs/<competition>/folds.csv, labels.csv, dups.csv, dups.json, cache/, tune/<model>/
    runs/<competition>/<run>/config.yaml, run.json, oof.<ext>, test.<ext>, metrics.json, *.png
    runs/<competition>/<run>/fold<k>/best.pt, last.pt, history.csv, preds.npz, result.json

A run is a directory with metrics.json (a finished run: oof + test + metrics).
"""
from __future__ import annotations

import fnmatch
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

PROB_FORMATS = ("csv", "parquet")

# competition level (runs/<competition>/)
FOLDS_CSV = "folds.csv"
DUPS_CSV = "dups.csv"
DUPS_JSON = "dups.json"
LABELS_CSV = "labels.csv"  # id, label (class name) of every train row: vote reads labels here
PSEUDO_CSV = "pseudo.csv"  # pseudo-labelled test rows (train.extra_rows format): the compete pseudo round, distill
CACHE_DIR = "cache"
TUNE_DIR = "tune"
# run level (runs/<competition>/<run>/)
CONFIG_YAML = "config.yaml"
RUN_STATE = "run.json"
METRICS_JSON = "metrics.json"
CONFUSION_PNG = "confusion.png"
CURVES_PNG = "curves.png"
# fold level (runs/<competition>/<run>/fold<k>/)
FOLD_PREFIX = "fold"
BEST_PT = "best.pt"
LAST_PT = "last.pt"
HISTORY_CSV = "history.csv"
PREDS_NPZ = "preds.npz"
RESULT_JSON = "result.json"


class RunsError(ValueError):
    """Runs that cannot be found (or voted together)."""


class PathEscapeError(ValueError):
    """A path the project would write or delete that resolves outside the folder it belongs in."""


def inside(root: str | Path, *parts: str | Path) -> Path:
    """root/parts..., refused unless it resolves (symbolic links and '..' followed) strictly inside
    root: every path the project writes or deletes under runs/, submissions/ or bundles/ goes
    through here, so no name or link makes it touch anything else. -> the joined (unresolved) path."""
    path = Path(root).joinpath(*map(str, parts))
    base, real = Path(root).resolve(), path.resolve()
    if real == base or base not in real.parents:
        raise PathEscapeError(f"{path}: it resolves to {real}, not inside {root}; refusing to write or delete it")
    return path


def fold_name(k: int) -> str:
    """fold<k>: the directory of fold k inside a run (also used in messages)."""
    return f"fold{k}"


@dataclass(frozen=True)
class CompetitionPaths:
    """runs/<competition>/: the files shared by every run of a competition."""

    root: Path

    @property
    def folds(self) -> Path:
        return self.root / FOLDS_CSV

    @property
    def dups(self) -> Path:
        return self.root / DUPS_CSV

    @property
    def dups_json(self) -> Path:
        return self.root / DUPS_JSON

    @property
    def labels(self) -> Path:
        return self.root / LABELS_CSV

    @property
    def pseudo(self) -> Path:
        return self.root / PSEUDO_CSV

    @property
    def cache(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def tune(self) -> Path:
        return self.root / TUNE_DIR

    def vote_oof(self, submission_stem: str) -> Path:
        """votes/<submission stem>.oof.csv: the chosen ensemble's held-out OOF probabilities of one vote."""
        return self.root / "votes" / f"{submission_stem}.oof.csv"

    def runs(self) -> list[Path]:
        """Finished runs (directories with metrics.json), sorted by name."""
        return sorted(p for p in self.root.glob("*") if is_run(p)) if self.root.is_dir() else []


@dataclass(frozen=True)
class RunPaths:
    """Where one run's artifacts live: runs/<competition>/<run>/."""

    root: Path
    fmt: str = "csv"

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_YAML

    @property
    def state(self) -> Path:
        return self.root / RUN_STATE

    @property
    def oof(self) -> Path:
        return self.root / f"oof.{self.fmt}"

    @property
    def test(self) -> Path:
        return self.root / f"test.{self.fmt}"

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_JSON

    @property
    def confusion_png(self) -> Path:
        return self.root / CONFUSION_PNG

    @property
    def curves_png(self) -> Path:
        return self.root / CURVES_PNG

    @property
    def competition(self) -> CompetitionPaths:
        return CompetitionPaths(self.root.parent)

    def fold_dir(self, k: int) -> Path:
        return self.root / fold_name(k)

    def preds(self, k: int) -> Path:
        return self.fold_dir(k) / PREDS_NPZ

    def result(self, k: int) -> Path:
        return self.fold_dir(k) / RESULT_JSON

    def histories(self) -> list[Path]:
        """fold*/history.csv of the folds that have one, sorted."""
        return sorted(self.root.glob(f"{FOLD_PREFIX}*/{HISTORY_CSV}"))

    def checkpoints(self) -> list[Path]:
        """fold*/*.pt (best and last) of every fold."""
        return sorted(self.root.glob(f"{FOLD_PREFIX}*/*.pt"))

    def missing_folds(self, n_folds: int) -> list[int]:
        """Folds among 0..n_folds-1 without predictions (fold<k>/preds.npz)."""
        return [k for k in range(n_folds) if not self.preds(k).exists()]

    @staticmethod
    def find(root: str | Path) -> "RunPaths":
        """Open an existing run directory, detecting the probability format."""
        root = Path(root)
        for fmt in PROB_FORMATS:
            if (root / f"oof.{fmt}").exists():
                return RunPaths(root, fmt)
        raise FileNotFoundError(f"{root}: not a finished run (no oof.csv or oof.parquet)")


@dataclass(frozen=True)
class FoldPaths:
    """runs/<competition>/<run>/fold<k>/: checkpoints, history and predictions of one fold."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def best(self) -> Path:
        return self.root / BEST_PT

    @property
    def last(self) -> Path:
        return self.root / LAST_PT

    @property
    def history(self) -> Path:
        return self.root / HISTORY_CSV

    @property
    def preds(self) -> Path:
        return self.root / PREDS_NPZ

    @property
    def result(self) -> Path:
        return self.root / RESULT_JSON


def is_run(p: Path) -> bool:
    return (Path(p) / METRICS_JSON).is_file()


def find_runs(runs_dir: str | Path, competition: str | None, patterns: Sequence[str] | None = None,
              exclude: Sequence[str] = ()) -> list[Path]:
    """Run directories: all under runs_dir/competition, or those matching `patterns` (run names
    or paths, globs allowed), minus those matching `exclude` (name or path globs)."""
    base = Path(runs_dir) / competition if competition else None
    if not patterns:
        if base is None:
            raise RunsError("give --competition NAME or --runs")
        found = CompetitionPaths(base).runs()
        if not found:
            raise RunsError(f"no runs under {base} (a run is a directory with {METRICS_JSON})")
    else:
        found = []
        for pat in patterns:
            if "/" in pat or Path(pat).is_dir():
                hits = [Path(h) for h in sorted(glob.glob(pat))]
            elif base is not None:
                hits = sorted(base.glob(pat))
            else:
                raise RunsError(f"--runs '{pat}': a run name needs --competition (or give its path)")
            hits = [h for h in hits if is_run(h)]
            if not hits:
                raise RunsError(f"--runs '{pat}' matched no run (a directory with {METRICS_JSON})"
                                + (f" in {base}" if base is not None and "/" not in pat else ""))
            found += [h for h in hits if h not in found]
    kept = [p for p in found if not any(fnmatch.fnmatch(p.name, x) or fnmatch.fnmatch(str(p), x)
                                         for x in exclude)]
    if not kept:
        raise RunsError(f"--exclude {' '.join(exclude)} left no runs")
    return kept
