"""Submission files shaped exactly like a competition's sample_submission.csv, and their validation.

Formats (detected from the sample's header and the competition's classes):
  probs         id + one probability column per class (any column order; rows sum to 1)
  probs-subset  id + probability columns for some of the classes (e.g. ISIC 2017's two of three)
  label-name    id + one label column holding class names
  label-index   id + one label column holding integer class indices 0..C-1
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ensemble.artifacts import atomic_path

SUM_TOL = 1e-3  # full-class rows must sum to 1 within this (CSV rounding)
NA_TEXT = ["", "NA", "N/A", "NaN", "nan", "-nan", "null", "NULL", "None"]


class SubmissionError(ValueError):
    """A sample submission whose format cannot be told, or a submission that fails validation."""


@dataclass(frozen=True)
class SubmissionFormat:
    kind: str  # probs | probs-subset | label-name | label-index
    id_col: str
    columns: tuple[str, ...]  # value columns, in the sample's order
    classes: tuple[str, ...]  # all classes of the competition, in class-index order
    inferred: bool = False  # classes taken from the sample's columns (none were given)

    @property
    def header(self) -> list[str]:
        return [self.id_col, *self.columns]

    @property
    def is_probs(self) -> bool:
        return self.kind.startswith("probs")

    def labels(self) -> list[str]:
        """The valid values of a label column."""
        return list(self.classes) if self.kind == "label-name" else [str(i) for i in range(len(self.classes))]


def read_sample(path: str | Path, id_col: str | None = None) -> pd.DataFrame:
    """The sample submission: ids (and a single label column) as strings, so '007' and 'NA' survive.

    Several prediction columns (probabilities) are read as categoricals: only the header and ids are
    used, and a 1M-row sample then costs ~50 MB instead of ~300 MB of strings.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"sample submission not found: {path}")
    header = [str(c) for c in pd.read_csv(path, nrows=0, dtype=str).columns]
    if len(header) <= 2:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    id_col = id_col if id_col in header else header[0]
    return pd.read_csv(path, dtype={c: (str if c == id_col else "category") for c in header},
                       keep_default_na=False)


def same_ids(got: pd.Series, want: pd.Series) -> bool:
    """Exactly the same ids in the same order; compared inside Arrow when available (no Python strs)."""
    if len(got) != len(want):
        return False
    try:
        import pyarrow as pa
        a, b = pa.array(got), pa.array(want)
        if a.type != b.type:
            a = a.cast(b.type)
        return a.equals(b)
    except ImportError:
        return bool(np.array_equal(got.to_numpy(object), want.to_numpy(object)))
    except (TypeError, ValueError):  # pa.ArrowInvalid / ArrowTypeError: mixed types
        return bool(np.array_equal(got.astype(str).to_numpy(object), want.astype(str).to_numpy(object)))


def detect_format(sample: pd.DataFrame, classes: Sequence[str] | None = None, id_col: str | None = None,
                  name: str = "sample_submission.csv") -> SubmissionFormat:
    """Tell the format from the sample's header (and label values). classes=None: the probability
    columns are taken as the classes (a label format then cannot be checked)."""
    cols = [str(c) for c in sample.columns]
    id_col = id_col if id_col in cols else cols[0]
    values = [c for c in cols if c != id_col]
    if not values:
        raise SubmissionError(f"{name}: no prediction column besides the id column '{id_col}'")
    inferred = classes is None
    if inferred:
        if len(values) == 1:
            raise SubmissionError(f"{name}: one prediction column '{values[0]}': its classes are unknown "
                                  f"(pass --classes, or have runs for this competition)")
        classes = values
    classes = tuple(str(c) for c in classes)
    if set(values) <= set(classes):
        kind = "probs" if len(values) == len(classes) else "probs-subset"
    elif len(values) == 1:
        found = set(sample[values[0]].astype(str))
        if found <= set(classes):
            kind = "label-name"
        elif found <= {str(i) for i in range(len(classes))}:
            kind = "label-index"
        else:
            raise SubmissionError(f"{name}: label column '{values[0]}' holds {sorted(found)[:3]}: neither "
                                  f"class names ({', '.join(classes)}) nor indices 0..{len(classes) - 1}")
    else:
        bad = [c for c in values if c not in classes]
        raise SubmissionError(f"{name}: {'column' if len(bad) == 1 else 'columns'} {examples(bad, len(bad))} "
                              f"{'is not a class' if len(bad) == 1 else 'are not classes'} of the competition "
                              f"({', '.join(classes)}): expected probability columns named by class, or one "
                              f"label column")
    return SubmissionFormat(kind, id_col, tuple(values), classes, inferred)


def build_frame(fmt: SubmissionFormat, ids: pd.Series | np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """ids (N,) in sample order (the sample's id column); values (N, C) scores in class order or (N,) class indices.

    Full-class probability rows are renormalised to sum to 1 (rank-average scores become
    distributions with the same argmax); subset scores whose rows exceed 1 are divided by one
    constant (each column's ranking, hence its AUC, is kept); label formats take the argmax.
    """
    values = np.asarray(values)
    n_cls = len(fmt.classes)
    out = {fmt.id_col: ids.reset_index(drop=True) if isinstance(ids, pd.Series) else ids}  # Arrow strs stay
    if fmt.is_probs:
        probs = np.eye(n_cls, dtype=np.float32)[values] if values.ndim == 1 else values.astype(np.float32)
        if fmt.kind == "probs":
            probs = probs / probs.sum(axis=1, keepdims=True)
        else:  # scores, not distributions (rank average): one scale for all keeps each column's ranking
            top = float(probs[:, [fmt.classes.index(c) for c in fmt.columns]].sum(axis=1).max(initial=0.0))
            if top > 1.0:
                probs = probs / np.float32(top)
        index = {c: i for i, c in enumerate(fmt.classes)}
        for c in fmt.columns:
            out[c] = probs[:, index[c]]
    else:
        labels = values if values.ndim == 1 else values.argmax(axis=1)
        out[fmt.columns[0]] = np.asarray(fmt.labels(), dtype=object)[labels]
    return pd.DataFrame(out, copy=False)


def write_csv_rows(f, df: pd.DataFrame, header: bool = True) -> None:
    """Append `df` as CSV to the binary file `f` (floats in shortest round-trip form, header unquoted).

    Uses pyarrow's multi-threaded CSV writer when installed (~10x faster than pandas on 1M rows);
    falls back to pandas when it is missing or a value needs quoting (rewriting from where it began).
    """
    start = f.tell()
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
        table = pa.Table.from_pandas(df, preserve_index=False)
        if header:
            line = io.StringIO()
            csv.writer(line, lineterminator="\n").writerow([str(c) for c in df.columns])
            f.write(line.getvalue().encode())
        pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    except (ImportError, ValueError, TypeError):  # ArrowInvalid (a value needs quoting), mixed types
        f.seek(start)
        f.truncate()
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        df.to_csv(text, index=False, header=header)
        text.detach()


def write_frame(path: str | Path, df: pd.DataFrame) -> None:
    """Atomically write a submission CSV (see write_csv_rows)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write_csv_rows(f, df)


def examples(values, k: int = 3) -> str:
    return ", ".join(repr(str(v)) for v in list(values)[:k])


def id_differences(got: np.ndarray, want: np.ndarray) -> tuple[pd.Index, pd.Index, pd.Index]:
    """-> (duplicated, missing, extra) ids of `got` compared with `want` as sets."""
    g, w = pd.Index(got), pd.Index(want)
    return g[g.duplicated()], w.difference(g, sort=False), g.difference(w, sort=False)


def id_problems(got: np.ndarray, want: np.ndarray, name: str) -> list[str]:
    """Ids must equal the sample's as a set, without duplicates, in the same order."""
    if len(got) == len(want) and np.array_equal(got, want):
        return []
    out = []
    dup, missing, extra = id_differences(got, want)
    if len(dup):
        out.append(f"{len(dup)} duplicate ids (e.g. {examples(dup)})")
    if len(missing):
        out.append(f"{len(missing)} ids of {name} are missing (e.g. {examples(missing)})")
    if len(extra):
        out.append(f"{len(extra)} ids are not in {name} (e.g. {examples(extra)})")
    if not out:
        i = int(np.flatnonzero(got != want)[0])
        out.append(f"ids are not in the order of {name}: line {i + 2} has {got[i]!r}, expected {want[i]!r}")
    return out


def _at(rows: np.ndarray, ids: pd.Series, text: str) -> str:
    """The first offending row as 'line L (id X): text', and how many more there are."""
    i = int(rows[0])
    n = len(rows) - 1
    more = f" ({n} more {'row' if n == 1 else 'rows'} like this)" if n else ""
    return f"line {i + 2} (id {str(ids.iat[i])!r}): {text}{more}"  # header is line 1


def value_problems(df: pd.DataFrame, fmt: SubmissionFormat) -> list[str]:
    """No NaN/inf or text in probabilities, all in [0, 1], full-class rows sum to 1 and subset
    rows to at most 1, labels known. Each problem names its first row (CSV line and id)."""
    out = []
    ids = df[fmt.id_col] if fmt.id_col in df.columns else pd.Series(np.arange(len(df)))
    if not fmt.is_probs:
        col = fmt.columns[0]
        allowed = fmt.labels()
        bad = np.flatnonzero(~df[col].astype(str).isin(allowed).to_numpy())
        if len(bad):
            out.append(_at(bad, ids, f"column '{col}' is {str(df[col].iat[bad[0]])!r}, expected one of: "
                                     f"{', '.join(allowed)}"))
        return out
    sums = np.zeros(len(df), np.float64)
    for col in fmt.columns:
        raw = df[col]
        vals = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        is_text = np.isnan(vals) & raw.notna().to_numpy()
        text = np.flatnonzero(is_text)
        if len(text):
            out.append(_at(text, ids, f"column '{col}' is {str(raw.iat[text[0]])!r}, expected a probability in [0, 1]"))
        nonfinite = np.flatnonzero(~np.isfinite(vals) & ~is_text)
        if len(nonfinite):
            out.append(_at(nonfinite, ids, f"column '{col}' is empty, NaN or inf, expected a probability in [0, 1]"))
        outside = np.flatnonzero(np.isfinite(vals) & ((vals < 0) | (vals > 1)))
        if len(outside):
            out.append(_at(outside, ids, f"column '{col}' is {vals[outside[0]]:g}, expected a probability in [0, 1]"))
        sums += vals
    if fmt.kind == "probs":  # NaN rows were reported above
        off = np.flatnonzero(np.isfinite(sums) & (np.abs(sums - 1.0) > SUM_TOL))
        hint = "; if these columns are only some of the classes, pass --classes" if fmt.inferred else ""
        if len(off):
            out.append(_at(off, ids, f"probabilities sum to {sums[off[0]]:.6g}, expected 1 (+-{SUM_TOL:g}){hint}"))
    else:
        off = np.flatnonzero(np.isfinite(sums) & (sums > 1.0 + SUM_TOL))
        if len(off):
            out.append(_at(off, ids, f"probabilities sum to {sums[off[0]]:.6g}, expected at most 1 (+{SUM_TOL:g}): "
                                     f"the columns are {len(fmt.columns)} of the {len(fmt.classes)} classes"))
    return out


def problems(df: pd.DataFrame, sample: pd.DataFrame, fmt: SubmissionFormat,
             name: str = "sample_submission.csv") -> list[str]:
    """Every reason `df` is not a valid submission for `sample` (empty list: valid)."""
    header = [str(c) for c in df.columns]
    out = []
    if header != fmt.header:
        index = header[1:] == fmt.header and header[0] in ("", "Unnamed: 0")  # pandas to_csv(index=True)
        out.append(f"header differs from {name}: expected {','.join(fmt.header)}, got {','.join(header)}"
                   + (" (a DataFrame index was written: use to_csv(..., index=False))" if index else ""))
    if fmt.id_col not in header:
        return out
    got, want = df[fmt.id_col].astype(str), sample[fmt.id_col].astype(str)
    if not same_ids(got, want):
        out += id_problems(got.to_numpy(object), want.to_numpy(object), name)
    present = SubmissionFormat(fmt.kind, fmt.id_col, tuple(c for c in fmt.columns if c in header), fmt.classes,
                               fmt.inferred)
    if len(present.columns) == len(fmt.columns):
        out += value_problems(df, present)
    return out


def read_submission(path: str | Path, fmt: SubmissionFormat) -> pd.DataFrame:
    """Read a submission CSV: ids and labels as text; probabilities parsed as numbers where possible."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"submission file not found: {path}")
    if not fmt.is_probs:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    header = pd.read_csv(path, nrows=0).columns
    na = {c: NA_TEXT for c in header if c != fmt.id_col}
    return pd.read_csv(path, dtype={fmt.id_col: str}, keep_default_na=False, na_values=na)


def check_file(path: str | Path, sample: pd.DataFrame, fmt: SubmissionFormat,
               name: str = "sample_submission.csv") -> list[str]:
    """Validate a CSV file against the sample submission: the list of problems (empty: valid)."""
    try:
        df = read_submission(path, fmt)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        return [f"{path}: not a readable CSV ({str(e).splitlines()[0]})"]
    return problems(df, sample, fmt, name)
