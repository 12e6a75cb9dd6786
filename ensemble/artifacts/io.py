"""Reading and writing artifacts: atomic writes, file hashes, probability frames, metrics.json.

A full disk is one NoSpaceError (a ValueError, so every command prints it as one line):
``no space left on device writing <path> (needs ~N MB, M MB free)``; no temp file is left.

Where each file lives is ensemble.artifacts.paths.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import yaml

from ensemble.artifacts.paths import RunPaths, RunsError
from ensemble.config import CompetitionCfg, build

_UMASK = os.umask(0)
os.umask(_UMASK)


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_MB = 1 << 20  # "MB" in messages: MiB, as df -m


class NoSpaceError(OSError, ValueError):
    """A write ran (or would run) out of disk space. needed/free in bytes (needed is an estimate)."""

    def __init__(self, path: str | Path, needed: int, free: int):
        super().__init__(errno.ENOSPC, "no space left on device", str(path))
        self.needed, self.free = int(needed), int(free)

    def __reduce__(self):  # OSError's pickles (errno, strerror): not this __init__'s arguments
        return type(self), (self.filename, self.needed, self.free)

    def __str__(self) -> str:
        return (f"no space left on device writing {self.filename} "
                f"(needs ~{max(1, round(self.needed / _MB))} MB, {round(self.free / _MB)} MB free)")


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 0


def check_space(path: str | Path, needed: int) -> None:
    """Raise NoSpaceError unless the file system of `path` has `needed` bytes free."""
    free = free_bytes(Path(path).parent)
    if needed > free:
        raise NoSpaceError(path, needed, free)


def no_space(e: BaseException, path: str | Path, needed: int = 0) -> NoSpaceError | None:
    """The NoSpaceError for an ENOSPC/EDQUOT OSError raised while writing `path`, else None."""
    if isinstance(e, NoSpaceError):
        return e
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
        return NoSpaceError(path, needed, free_bytes(Path(path).parent))
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path` atomically.

    size: the bytes about to be written, when known: checked against the free space first.
    A full disk raises NoSpaceError; the temp file is always removed on failure.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if size is not None:
            check_space(path, size)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        written = 0
        if tmp is not None:
            with contextlib.suppress(OSError):
                written = os.path.getsize(tmp)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        full = no_space(e, path, max(size or 0, written))
        if full is not None and full is not e:
            raise full from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_csv(path: str | Path, df: pd.DataFrame, float_format: str | None = None) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)


def file_hash(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def probs_frame(ids: Sequence[str], probs: np.ndarray, classes: Sequence[str],
                folds: np.ndarray | None = None) -> pd.DataFrame:
    """Build the contract frame: id, [fold], one float32 column per class (or `score`).

    probs: (N, C) probabilities with C == len(classes), or (N,) / (N, 1) ordinal scores
    when classes is ["score"].
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim == 1:
        probs = probs[:, None]
    if probs.shape != (len(ids), len(classes)):
        raise ValueError(f"probabilities have shape {probs.shape}, expected ({len(ids)}, {len(classes)})")
    cols = {"id": pd.Series(np.asarray(ids, dtype=object), dtype="string")}
    if folds is not None:
        cols["fold"] = np.asarray(folds, dtype=np.int16)
    for j, c in enumerate(classes):
        cols[str(c)] = probs[:, j]
    return pd.DataFrame(cols)


def write_probs(path: str | Path, df: pd.DataFrame) -> None:
    """Atomically write a probability frame as CSV or Parquet (by suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, float_format="%.7g")


def read_probs(path: str | Path) -> pd.DataFrame:
    """Read a probability file; `id` is always a string column, class columns float32."""
    path = Path(path)
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
        df["id"] = df["id"].astype("string")
    else:
        df = pd.read_csv(path, dtype={"id": "string"}, engine="c")
    if "id" not in df.columns:
        raise ValueError(f"{path}: missing column 'id'")
    value_cols = [c for c in df.columns if c not in ("id", "fold")]
    df[value_cols] = df[value_cols].astype(np.float32)
    return df


def split_probs(df: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray | None]:
    """-> ids (N,) object, class columns, values (N, C) float32, folds (N,) or None."""
    cols = [c for c in df.columns if c not in ("id", "fold")]
    folds = df["fold"].to_numpy(np.int16) if "fold" in df.columns else None
    return df["id"].to_numpy(dtype=object), cols, df[cols].to_numpy(np.float32), folds


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads(RunPaths(run_dir).metrics.read_text())


def competition_cfg(run_dir: str | Path) -> CompetitionCfg:
    """The `competition:` section of a run's resolved config.yaml (where the sample submission is)."""
    path = RunPaths(run_dir).config
    if not path.is_file():
        raise RunsError(f"{run_dir}: no config.yaml (needed to find train.csv and the sample submission)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data.get("competition"), dict):
        raise RunsError(f"{path}: no 'competition' section")
    return build(CompetitionCfg, data["competition"], "competition", lambda key: str(path))
