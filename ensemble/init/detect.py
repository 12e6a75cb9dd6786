"""Read a Kaggle-style download and infer what a competition config needs: layout, id/label/group
columns, image folders and extension, classes, the submission format and a metric guess.

    found = inspect_download("downloads/my-comp")             # or id_col=/label_col= to settle ambiguity
    found.classes, found.sample_kind, found.metric, found.metric_reason

Two layouts: train.csv (one row per image) + sample_submission.csv + image folders, or
train/<class>/<image> folders + sample_submission.csv. Every choice has a reason that init prints;
a column that cannot be told apart from another is an InitError asking for --id-col / --label-col.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.data.competition import IMAGE_EXTS, DataError, read_csv, sort_labels

GROUP_NAMES = re.compile(r"(patient|lesion|subject|person|individual|study|case|group|family|animal|eye|plant)s?"
                         r"([_ -]?(id|no|nr|number|code))?$", re.I)
GRADE_NAMES = re.compile(r"(grade|level|severity|stage|diagnosis|score)", re.I)
MAX_CLASSES = 1000
IMBALANCED = 2.0  # largest / smallest class count above which plain accuracy is a poor guess
SMALL_IMAGES = 64  # px (shorter side, median): the small profile


class InitError(ValueError):
    """A download init cannot read, or a choice it will not guess (one line, naming the file)."""


@dataclass
class Detected:
    root: Path
    layout: str  # csv | folders
    train_csv: str | None
    sample_submission: str
    train_dir: str
    test_dir: str
    id_col: str  # train.csv's (folders: 'id', the file stem)
    sample_id_col: str
    label_col: str | None
    group_col: str | None
    ext: str
    classes: list[str]
    counts: list[int]
    sample_kind: str  # probs | subset | label
    scored: list[str]  # the sample's prediction columns
    n_test: int
    metric: str
    metric_reason: str
    image_px: int  # median shorter side of a few training images
    reasons: dict[str, str] = field(default_factory=dict)  # what -> why, printed by init

    @property
    def n_train(self) -> int:
        return int(sum(self.counts))

    @property
    def small(self) -> bool:
        return self.image_px <= SMALL_IMAGES


def _find_sample(root: Path) -> Path:
    named = root / "sample_submission.csv"
    if named.is_file():
        return named
    hits = sorted(p for p in root.glob("*.csv") if "sample" in p.name.lower() or "submission" in p.name.lower())
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise InitError(f"{root}: no sample_submission.csv (a Kaggle download has one: the test ids and the "
                        f"columns a submission must have); csv files here: "
                        f"{', '.join(p.name for p in sorted(root.glob('*.csv'))) or 'none'}")
    raise InitError(f"{root}: several sample submissions ({', '.join(p.name for p in hits)}); keep one "
                    f"named sample_submission.csv")


def _image_dirs(root: Path) -> dict[str, dict[str, str]]:
    """{folder relative to root: {file stem: suffix}} for every folder (depth <= 3) holding images."""
    out: dict[str, dict[str, str]] = {}
    for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir() and len(p.relative_to(root).parts) <= 3)]:
        files = {f.stem: f.suffix for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS}
        if files:
            out[d.relative_to(root).as_posix()] = files
    return out


def _folder_of(ids: pd.Series, dirs: dict[str, dict[str, str]], what: str, root: Path) -> tuple[str, str]:
    """-> (the folder holding the most of `ids` as <id><ext> or <id>, its extension)."""
    probe = ids.astype(str).head(200)
    best, hits, ext = None, 0, ""
    for d, files in dirs.items():
        n_stem = sum(s in files for s in probe)
        n_full = sum(Path(s).stem in files and Path(s).suffix == files[Path(s).stem] for s in probe)
        if max(n_stem, n_full) > hits:
            best, hits = d, max(n_stem, n_full)
            ext = "" if n_full > n_stem else next(files[s] for s in probe if s in files)
    if best is None or hits < max(1, len(probe) // 2):
        raise InitError(f"{root}: cannot find the {what} images: no folder holds files named after the ids "
                        f"(e.g. '{probe.iat[0]}' + an image extension); folders with images: "
                        f"{', '.join(sorted(dirs)) or 'none'}")
    return best, ext


def _id_column(train: pd.DataFrame, path: Path, sample_id: str, dirs, given: str | None) -> str:
    if given:
        if given not in train.columns:
            raise InitError(f"{path}: --id-col '{given}' is not a column (columns: {', '.join(train.columns)})")
        return given
    names = set().union(*[set(f) for f in dirs.values()]) if dirs else set()
    full = {f"{s}{e}" for files in dirs.values() for s, e in files.items()}
    cands = [c for c in train.columns if train[c].is_unique
             and train[c].astype(str).head(200).map(lambda v: v in names or v in full).mean() > 0.5]
    if len(cands) == 1:
        return cands[0]
    if sample_id in cands:
        return sample_id
    if not cands:
        raise InitError(f"{path}: no column names the image files (unique values that match file names in the "
                        f"image folders); pass --id-col NAME (columns: {', '.join(train.columns)})")
    raise InitError(f"{path}: cannot tell the id column: {', '.join(cands)} all name image files; pass "
                    f"--id-col NAME")


def _label_column(train: pd.DataFrame, path: Path, skip: set[str], scored: list[str], given: str | None) -> str:
    if given:
        if given not in train.columns:
            raise InitError(f"{path}: --label-col '{given}' is not a column (columns: {', '.join(train.columns)})")
        return given
    rest = [c for c in train.columns if c not in skip]
    if len(scored) == 1 and scored[0] in rest:  # a label sample names the label column
        return scored[0]
    if len(scored) >= 2:
        cover = [c for c in rest if set(scored) <= set(train[c].str.strip())]
        if len(cover) == 1:
            return cover[0]
        onehot = [c for c in scored if c in train.columns and set(train[c].unique()) <= {"0", "1", "0.0", "1.0"}]
        if len(onehot) == len(scored):
            raise InitError(f"{path}: one 0/1 column per class ({', '.join(onehot[:5])}, ...); ensemble reads one "
                            f"label column: add a column with each row's class name and pass --label-col NAME")
        if cover:
            rest = cover
    n = len(train)
    cands = [c for c in rest if 2 <= train[c].nunique() <= min(MAX_CLASSES, max(2, n // 2))]
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise InitError(f"{path}: no column looks like a label (2 or more classes, repeated values); pass "
                        f"--label-col NAME (columns: {', '.join(train.columns)})")
    raise InitError(f"{path}: cannot tell the label column: {', '.join(cands)} could all be labels; pass "
                    f"--label-col NAME")


def _group_column(train: pd.DataFrame, skip: set[str]) -> tuple[str | None, str]:
    unique = []
    for c in train.columns:
        if c in skip or not GROUP_NAMES.match(c.strip()):
            continue
        k = train[c].nunique()
        if 1 < k < len(train):
            return c, (f"'{c}' repeats ({k} values over {len(train)} rows): rows of one {c} stay in one fold, so "
                       f"no fold validates on images whose {c} it trained on")
        unique.append(c)
    if unique:
        return None, f"'{unique[0]}' never repeats (one image each): rows are independent"
    return None, "no patient/lesion/subject-like column: rows are independent"


def _image_px(paths: list[Path]) -> int:
    import cv2
    sides = []
    for p in paths[:24]:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is not None:
            sides.append(min(img.shape[:2]))
    if not sides:
        raise InitError(f"{paths[0].parent if paths else '?'}: none of the first training images could be read")
    return int(np.median(sides))


def guess_metric(kind: str, classes: list[str], counts: list[int], label_col: str | None) -> tuple[str, str]:
    """-> (metric name, why). A guess from the submission format and the class balance."""
    ratio = max(counts) / max(1, min(counts))
    if kind == "subset":
        return "roc_auc", "the sample asks for probabilities of only some classes (ISIC 2017 style): ROC AUC " \
                          "over those columns"
    if kind == "probs" and len(classes) == 2:
        return "roc_auc", "the sample asks for probabilities of 2 classes: binary competitions scored on " \
                          "probabilities use ROC AUC most often"
    if kind == "probs":
        return "log_loss", f"the sample asks for a probability per class ({len(classes)} classes): multi-class " \
                           f"log loss is the usual metric for that format"
    if label_col and GRADE_NAMES.search(label_col) and all(c.lstrip("-").isdigit() for c in classes) \
            and len(classes) >= 3:
        return "qwk", f"integer grades in '{label_col}': quadratic weighted kappa is the usual metric for grades"
    if ratio >= IMBALANCED:
        return "balanced_accuracy", f"one label per image, classes imbalanced (largest / smallest = " \
                                    f"{ratio:.0f}x): plain accuracy would reward predicting the largest class"
    return "accuracy", f"one label per image, classes roughly balanced (largest / smallest = {ratio:.1f}x)"


def _sample(root: Path) -> tuple[Path, pd.DataFrame]:
    path = _find_sample(root)
    try:
        sample = read_csv(path, [])
    except DataError as e:
        raise InitError(str(e)) from None
    if sample.shape[1] < 2 or sample.empty:
        raise InitError(f"{path}: expected an id column, at least one prediction column and one row per test image")
    return path, sample


def inspect_download(root: str | Path, id_col: str | None = None, label_col: str | None = None) -> Detected:
    """Infer a competition from a Kaggle download at ``root``. Raises InitError (one line) when it cannot."""
    root = Path(root)
    if not root.is_dir():
        raise InitError(f"--data {root}: folder not found")
    sample_path, sample = _sample(root)
    sample_id, scored = str(sample.columns[0]), [str(c) for c in sample.columns[1:]]
    dirs = _image_dirs(root)
    reasons: dict[str, str] = {}
    train_csv = root / "train.csv"
    if not train_csv.is_file():
        others = [p for p in sorted(root.glob("*.csv")) if p != sample_path and "train" in p.name.lower()]
        train_csv = others[0] if len(others) == 1 else train_csv
    if train_csv.is_file():
        try:
            train = read_csv(train_csv, [])
        except DataError as e:
            raise InitError(str(e)) from None
        layout = "csv"
        id_c = _id_column(train, train_csv, sample_id, dirs, id_col)
        group, reasons["group"] = _group_column(train, {id_c, label_col or id_c})
        lab = _label_column(train, train_csv, {id_c, group or id_c}, scored, label_col)
        train_dir, ext = _folder_of(train[id_c], dirs, "training", root)
        labels = train[lab].str.strip()
        if (labels == "").any():
            raise InitError(f"{train_csv}: column '{lab}' has empty labels; is it the label column? "
                            f"(pass --label-col NAME)")
        paths = [root / train_dir / f"{i}{ext}" for i in train[id_c].head(24)]
        reasons["id"] = f"'{id_c}' is unique and names the files in {train_dir}/"
        reasons["label"] = f"'{lab}' holds {labels.nunique()} classes"
    else:
        layout, id_c, lab, group = "folders", "id", None, None
        base = root / "train"
        sub = sorted(d for d in base.iterdir() if d.is_dir()) if base.is_dir() else []
        rows = [(d.name, f) for d in sub for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_EXTS]
        if not rows:
            raise InitError(f"{root}: neither a train.csv nor class folders train/<class>/<image>")
        labels = pd.Series([c for c, _ in rows])
        paths = [f for _, f in rows[:: max(1, len(rows) // 24)]]
        train_dir, ext = "train", ""
        reasons["label"] = f"one folder per class under train/ ({len(sub)} folders)"
        reasons["group"] = "class folders have no group column: rows are independent"
    test_dir, test_ext = _folder_of(sample[sample_id], dirs, "test", root)
    if layout == "folders":
        ext = test_ext
    elif test_ext != ext:
        raise InitError(f"{root}: training images are <id>{ext or ' (ids include it)'}, test images "
                        f"<id>{test_ext or ' (ids include it)'}: ensemble uses one extension for both")
    present = sort_labels(labels)
    if len(scored) >= 2:
        missing = [c for c in scored if c not in set(present)]
        if missing:
            raise InitError(f"{sample_path}: column(s) {', '.join(missing[:5])} are not labels in "
                            f"{train_csv.name if layout == 'csv' else 'train/'} (labels: {', '.join(present[:10])})")
        kind = "probs" if set(scored) == set(present) else "subset"
        classes = scored + [c for c in present if c not in scored]
    else:
        kind, classes = "label", present
    counts = [int((labels == c).sum()) for c in classes]
    metric, why = guess_metric(kind, classes, counts, lab)
    return Detected(root=root, layout=layout, train_csv=train_csv.name if layout == "csv" else None,
                    sample_submission=sample_path.name, train_dir=train_dir, test_dir=test_dir,
                    id_col=id_c, sample_id_col=sample_id, label_col=lab, group_col=group, ext=ext,
                    classes=classes, counts=counts, sample_kind=kind, scored=scored, n_test=len(sample),
                    metric=metric, metric_reason=why, image_px=_image_px(paths), reasons=reasons)
