"""A Kaggle-layout competition: labelled train rows, test ids (from the sample submission), classes.

Layouts:
  csv      root/train.csv (id, label[, group]) + root/train/<id><ext>
  folders  root/train/<class>/<file>  (id = file stem, label = folder name)
Test ids and their order always come from root/sample_submission.csv; images in root/test/.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ensemble.config import CompetitionCfg
from ensemble.metrics import BoundMetric, bind_metric

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Bad competition data: a missing column, an unknown label, a duplicate id."""


@dataclass
class Competition:
    name: str
    root: Path
    classes: list[str]
    metric: BoundMetric  # bound to `classes` once, here; str(metric) is its text form (logs, metrics.json)
    task: str
    train: pd.DataFrame  # id, label, y (class index), group (or None), path
    test: pd.DataFrame  # id, path (sample-submission order)
    sample: pd.DataFrame  # the sample submission as strings
    sample_path: Path
    id_col: str
    classes_from: str = "competition.classes"  # or "<sample> columns", "<train.csv> labels", "<dir>/ folders"
    image_dirs: tuple[Path, ...] = ()  # root/train_dir, root/test_dir (either may be a link to elsewhere)
    train_file: Path | None = None  # root/train.csv, or root/train/ for the folders layout (for messages)

    @property
    def classes_inferred(self) -> bool:
        """True when the classes are only what the labels happen to contain (printed at every run)."""
        return self.classes_from.endswith((" labels", " folders"))

    def describe_classes(self) -> str:
        return f"classes (from {self.classes_from}): {_listing(self.classes, 20)}"

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.train["y"].to_numpy(), minlength=len(self.classes))


def read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV with every column as string; missing file/column -> DataError."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header line, then one row per image)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        f"save it as UTF-8") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a well-formed CSV ({' '.join(str(e).split())})") from None
    for col in required:
        if col not in df.columns:
            raise DataError(f"{path}: missing column '{col}' (columns: {', '.join(df.columns)})")
    return df


def sort_labels(labels) -> list[str]:
    """Sorted class names; numeric order when every label is an integer ('2' < '10')."""
    labels = sorted(set(labels))
    if all(_is_int(s) for s in labels):
        return sorted(labels, key=int)
    return labels


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()


def _listing(items: Sequence[str], k: int = 5, total: int | None = None) -> str:
    """The first k items joined by ', ', then '...' when there are more (total: of how many)."""
    items = [str(x) for x in items[:k]]
    return ", ".join(items + (["..."] if (len(items) if total is None else total) > k else []))


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def csv_lines(path: Path) -> list[int]:
    """The line number (header = line 1) where each data row of a CSV starts, counted as pandas
    counts rows: blank lines skipped, a quoted cell may span lines. Only for error messages."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader, lines, seen_header, prev = csv.reader(f), [], False, 0
        for row in reader:
            if row and seen_header:
                lines.append(prev + 1)
            seen_header = seen_header or bool(row)
            prev = reader.line_num
    return lines


def image_paths(folder: Path, ids: pd.Series, ext: str) -> pd.Series:
    """folder/<id><ext> for every id, as strings (vectorised: samples can have 1M rows)."""
    return (str(folder) + os.sep) + ids.astype(str) + ext


def _check_ids(df: pd.DataFrame, col: str, path: Path, folder: Path | None = None) -> None:
    def where(i: int) -> str:
        return f"line {csv_lines(path)[i]}" if path.is_file() else f"row {i + 1}"
    empty = np.flatnonzero(df[col].str.strip().str.len().to_numpy() == 0)
    if len(empty):
        raise DataError(f"{path}: {where(empty[0])}: empty '{col}'")
    # an id names a file inside the image folder: '..' parts or an absolute path would leave it
    escape = np.flatnonzero((df[col].str.startswith("/") | df[col].str.contains(r"(?:^|/)\.\.(?:/|$)")).to_numpy())
    if len(escape) and folder is not None:
        i = escape[0]
        raise DataError(f"{path}: {where(i)}: id '{df[col].iat[i]}' leaves the image folder {folder} (a '..' part or "
                        f"an absolute path); ids name files inside it")
    dup = df[col].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{path}: row {i + 1}: duplicate id '{df[col].iat[i]}'")


NA_LABELS = frozenset({"NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "<NA>"})  # pandas' markers


def _read_train_csv(cfg: CompetitionCfg, root: Path, named: Sequence[str] = ()) -> pd.DataFrame:
    """named: the classes named by config or sample columns (a missing-value marker among them is a class)."""
    path = root / cfg.train_csv
    cols = [cfg.id_col, cfg.label_col] + ([cfg.group_col] if cfg.group_col else [])
    df = read_csv(path, cols)
    if df.empty:
        raise DataError(f"{path}: no data rows (expected a header line and one row per training image)")
    _check_ids(df, cfg.id_col, path, root / cfg.train_dir)
    out = pd.DataFrame({"id": df[cfg.id_col], "label": df[cfg.label_col].str.strip()})
    # read as text (keep_default_na=False), then a blank cell or a missing-value marker ('NA', 'nan', ...) is
    # an error, unless competition.classes or the sample's columns name that marker as a real class
    missing = out["label"].str.len().eq(0) | (out["label"].isin(NA_LABELS) & ~out["label"].isin(named))
    empty = np.flatnonzero(missing.to_numpy())
    if len(empty):
        line = csv_lines(path)
        marked = out["label"].iloc[empty].str.len().gt(0).any()
        rows = [f"line {line[i]} (id '{out['id'].iat[i]}')" + (f" '{out['label'].iat[i]}'" if marked else "")
                for i in empty[:5]]
        what = ("an empty or missing-value label" if marked else "an empty label")
        hint = (f" ({', '.join(sorted(NA_LABELS))} mean a missing value; list it under competition.classes if it "
                f"is a real class)" if marked else "")
        raise DataError(f"{path}: {_plural(len(empty), 'row')} {'has' if len(empty) == 1 else 'have'} "
                        f"{what}: {_listing(rows, 5, len(empty))}{hint}")
    out["group"] = df[cfg.group_col] if cfg.group_col else None
    out["path"] = image_paths(root / cfg.train_dir, out["id"], cfg.ext)
    return out


def _read_train_folders(cfg: CompetitionCfg, root: Path) -> pd.DataFrame:
    base = root / cfg.train_dir
    if not base.is_dir():
        raise DataError(f"train folder not found: {base}")
    rows = [(f.stem, d.name, str(f)) for d in sorted(base.iterdir()) if d.is_dir()
            for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_EXTS]
    if not rows:
        raise DataError(f"{base}: no images in class sub-folders (expected {base}/<class>/<image>)")
    df = pd.DataFrame(rows, columns=["id", "label", "path"])
    _check_ids(df, "id", base)
    df["group"] = None
    return df[["id", "label", "group", "path"]]


def _probability_columns(sample: pd.DataFrame) -> list[str]:
    """The class columns of a probability-per-class sample (>= 2 prediction columns); [] for one label column."""
    cols = [str(c) for c in sample.columns[1:]]
    return cols if len(cols) >= 2 else []


def _classes(cfg: CompetitionCfg, labels: pd.Series, sample: pd.DataFrame, sample_path: Path
             ) -> tuple[list[str], str]:
    """-> (classes, where they come from). Known classes: config `classes`, or a probability-per-class
    sample's columns, in its order; else the sorted labels."""
    cols = _probability_columns(sample)
    if cfg.classes:
        classes = [str(c) for c in cfg.classes]
        extra = [c for c in cols if c not in classes]
        if extra:  # a probability sample scores a subset of the classes at most
            raise DataError(f"{sample_path}: {_plural(len(extra), 'column')} not among the "
                            f"{_plural(len(classes), 'class', 'classes')} of competition.classes: "
                            f"{_listing([repr(c) for c in extra])}; expected probability columns named after "
                            f"classes ({_listing(classes, 20)})")
        return classes, "competition.classes"
    if cols:
        empty = [c for c in cols if c not in set(labels)]
        if empty:  # most often a typo or a stray column; a class truly without examples must be declared
            raise DataError(f"{sample_path}: {_plural(len(empty), 'column')} {_listing([repr(c) for c in empty])} "
                            f"{'has' if len(empty) == 1 else 'have'} no training rows in the labels; expected "
                            f"probability columns named after the labels ({_listing(sort_labels(labels), 20)}); "
                            f"list every class under competition.classes if some truly have no examples")
        return cols, f"{sample_path.name} columns"
    source = f"{cfg.train_dir}/ folders" if cfg.layout == "folders" else f"{cfg.train_csv} labels"
    return sort_labels(labels), source


def _check_labels(cfg: CompetitionCfg, root: Path, train: pd.DataFrame, classes: list[str], source: str) -> None:
    """Every label is one of the known classes; else one line listing the rows (CSV line numbers)."""
    unknown = np.flatnonzero(~train["label"].isin(classes).to_numpy())
    if not len(unknown):
        return
    if cfg.layout == "csv":
        where, noun = root / cfg.train_csv, "row"
        line = csv_lines(where)
        rows = [f"line {line[i]} '{train['label'].iat[i]}'" for i in unknown[:5]]
    else:
        where, noun = root / cfg.train_dir, "image"
        rows = [str(train["path"].iat[i]) for i in unknown[:5]]
    hint = (f"expected one of: {_listing(classes, 20)} ({source})" if source == "competition.classes" else
            f"expected one of: {_listing(classes, 20)} (the {source}); list every class under "
            f"competition.classes if the sample scores only some of them")
    raise DataError(f"{where}: {_plural(len(unknown), noun)} {'has a label' if len(unknown) == 1 else 'have labels'} "
                    f"not in the {_plural(len(classes), 'class', 'classes')}: {_listing(rows, 5, len(unknown))}; {hint}")


def _label_rows(train_file: Path, train: pd.DataFrame, label: str) -> str:
    """'line 4, line 9, ...' of the rows with `label` (or their image paths, for the folders layout)."""
    idx = np.flatnonzero(train["label"].to_numpy() == label)
    if train_file.is_dir():
        return _listing([str(train["path"].iat[i]) for i in idx], 3)
    line = csv_lines(train_file)
    return _listing([f"line {line[i]}" for i in idx], 3)


def _inferred_fix(classes: list[str], source: str) -> str:
    return (f"the classes come from the {source} ({_listing(classes, 12)}): fix those rows, or list the real "
            f"classes under competition.classes")


def _check_variants(train_file: Path, train: pd.DataFrame, classes: list[str], source: str) -> None:
    """Classes taken from the labels: a label that differs from a more frequent one only in case, spaces
    or punctuation ('Cat' beside 'cat') is a typo until competition.classes says otherwise."""
    counts, by_key = train["label"].value_counts(), {}
    for c in classes:
        by_key.setdefault(re.sub(r"[\W_]+", "", c).casefold() or c, []).append(c)
    for variants in by_key.values():
        if len(variants) > 1:
            common, rare = sorted(variants, key=lambda c: (-counts[c], c))[:2]
            raise DataError(f"{train_file}: label '{rare}' ({_plural(counts[rare], 'row')}: "
                            f"{_label_rows(train_file, train, rare)}) differs from class '{common}' "
                            f"({_plural(counts[common], 'row')}) only in case, spaces or punctuation; "
                            f"{_inferred_fix(classes, source)}")


def check_single_rows(comp: "Competition") -> None:
    """Classes taken from the labels: a label on one row only cannot be split into folds and is most
    often a typo; one line naming the row (training calls this before anything is written)."""
    if not comp.classes_inferred:
        return
    counts = comp.train["label"].value_counts()
    single = [c for c in comp.classes if counts.get(c, 0) == 1]
    if single:
        raise DataError(f"{comp.train_file}: label '{single[0]}' is on 1 row only "
                        f"({_label_rows(comp.train_file, comp.train, single[0])}), too few for a class (its rows "
                        f"must fall into at least 2 folds); {_inferred_fix(comp.classes, comp.classes_from)}")


def load_competition(cfg: CompetitionCfg) -> Competition:
    """Read train rows, test ids and classes. Raises DataError naming the file and row."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"competition '{cfg.name}': root folder not found: {root}")
    sample_path = root / cfg.sample_submission
    sample = read_csv(sample_path, [])
    if sample.shape[1] < 2:
        raise DataError(f"{sample_path}: expected an id column and at least one prediction column")
    with open(sample_path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])  # pandas renames a repeated column ('fox' -> 'fox.1')
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise DataError(f"{sample_path}: column {_listing([repr(c) for c in twice])} appears more than once in the header")
    if sample.empty:
        raise DataError(f"{sample_path}: no data rows (expected a header line, then one row per test image)")
    _check_ids(sample, sample.columns[0], sample_path, root / cfg.test_dir)
    named = [str(c) for c in cfg.classes] if cfg.classes else _probability_columns(sample)
    train = _read_train_folders(cfg, root) if cfg.layout == "folders" else _read_train_csv(cfg, root, named)
    classes, classes_from = _classes(cfg, train["label"], sample, sample_path)
    _check_labels(cfg, root, train, classes, classes_from)
    train_file = root / (cfg.train_csv if cfg.layout == "csv" else cfg.train_dir)
    if classes_from.endswith((" labels", " folders")):
        _check_variants(train_file, train, classes, classes_from)
    train["y"] = train["label"].map({c: i for i, c in enumerate(classes)}).astype(np.int64)
    try:
        metric = bind_metric(cfg.metric, classes, scored=[str(c) for c in sample.columns[1:]])
    except ValueError as e:
        raise DataError(f"competition '{cfg.name}': competition.metric: {e}") from None
    test_ids = sample[sample.columns[0]]
    ext = cfg.ext
    test = pd.DataFrame({"id": test_ids.to_numpy(),
                         "path": image_paths(root / cfg.test_dir, test_ids, ext).to_numpy()})
    return Competition(name=cfg.name, root=root, classes=classes, metric=metric, task=cfg.task,
                       train=train.reset_index(drop=True), test=test, sample=sample,
                       sample_path=sample_path, id_col=str(sample.columns[0]), classes_from=classes_from,
                       image_dirs=(root / cfg.train_dir, root / cfg.test_dir), train_file=train_file)
