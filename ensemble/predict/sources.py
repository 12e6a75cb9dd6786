"""Which images to predict, under which ids: a folder, a CSV list, or a sample submission's ids.

    ids, paths = list_images("test/", sample="sample_submission.csv", ext=".jpg", id_col="image")

With a sample submission, its ids (in its order) name the images: <folder>/<id><ext>, as training
found the competition's test images. Without one, a folder gives every image file in it (sorted,
id = the file name without the competition's extension) and a CSV list gives a `path` column
(relative to the CSV's folder) and optionally an id column. Duplicate ids are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.data.competition import IMAGE_EXTS, DataError, image_paths, read_csv
from ensemble.vote.submission import read_sample


def image_id(name: str, ext: str) -> str:
    """A file name's id: without the competition's extension (ids of an ext-less competition keep theirs)."""
    if ext:
        return name[: -len(ext)] if name.endswith(ext) else Path(name).stem
    return name


def _check_unique(ids: pd.Series, where: str) -> None:
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iat[i]).to_numpy())[0])
        raise DataError(f"{where}: row {i + 1}: duplicate id '{ids.iat[i]}' (first at row {first + 1}; "
                        f"{int(dup.sum())} duplicate(s) in all): every id must name one image")


def _folder(folder: Path, ext: str) -> tuple[pd.Series, list[str]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"{folder}: no images (expected files ending in {', '.join(IMAGE_EXTS)})")
    ids = pd.Series([image_id(p.name, ext) for p in files], dtype=object)
    _check_unique(ids, str(folder))
    return ids, [str(p) for p in files]


def _listing(path: Path, ext: str, id_col: str) -> tuple[pd.Series, list[str]]:
    df = read_csv(path, ["path"])
    if df.empty:
        raise DataError(f"{path}: no rows (expected a 'path' column with one image per row)")
    base = path.parent
    paths = [p if Path(p).is_absolute() else str(base / p) for p in df["path"]]
    col = id_col if id_col in df.columns else ("id" if "id" in df.columns else None)
    ids = df[col].astype(str) if col else pd.Series([image_id(Path(p).name, ext) for p in paths], dtype=object)
    _check_unique(ids.reset_index(drop=True), str(path))
    return ids.reset_index(drop=True), paths


def list_images(images: str | Path, sample: str | Path | None = None, ext: str = "",
                id_col: str = "id") -> tuple[pd.Series, list[str], pd.DataFrame | None]:
    """-> (ids (N,), image paths (N,), the sample submission or None). images: a folder or a CSV list.

    With `sample`, the rows are the sample's ids in its order; a CSV list must then name every one of them.
    Raises DataError (a missing folder or file, no images, a duplicate id, ids without images)."""
    src = Path(images)
    if not src.exists():
        raise DataError(f"images not found: {src} (expected a folder of images or a CSV list with a 'path' column)")
    if sample is None:
        ids, paths = _folder(src, ext) if src.is_dir() else _listing(src, ext, id_col)
        return ids, paths, None
    frame = read_sample(sample, id_col)
    col = id_col if id_col in frame.columns else str(frame.columns[0])
    ids = frame[col].astype(str).reset_index(drop=True)
    if ids.empty:
        raise DataError(f"{sample}: no rows (expected one row per test image)")
    _check_unique(ids, str(sample))
    if src.is_dir():
        return ids, image_paths(src, ids, ext).tolist(), frame
    listed_ids, listed = _listing(src, ext, id_col)
    where = pd.Series(listed, index=pd.Index(listed_ids))
    missing = ids[~ids.isin(where.index)]
    if len(missing):
        raise DataError(f"{src}: {len(missing)} id(s) of {sample} have no image (e.g. '{missing.iat[0]}')")
    return ids, where.loc[ids].tolist(), frame
