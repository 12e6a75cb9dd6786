"""Predictions -> a CSV written row chunk by row chunk into a temporary file, renamed when complete.

With a sample submission the file has its exact format (ids, order, columns: ensemble.vote.submission);
without one, the id column and one probability column per class (or `label` when the vote ends in
grades). Every chunk is validated as vote validates a submission before it is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from ensemble.artifacts import atomic_path
from ensemble.predict.bundle import Bundle
from ensemble.predict.predictor import Predictions
from ensemble.vote.recipe import outputs_labels
from ensemble.vote.submission import (SubmissionError, SubmissionFormat, build_frame, detect_format, value_problems,
                                      write_csv_rows)


def output_format(bundle: Bundle, sample: pd.DataFrame | None, name: str = "sample_submission.csv") -> SubmissionFormat:
    """The sample's format (checked against the bundle's classes), else plain per-class probabilities
    (or a label column for votes that end in grades) under the competition's id column."""
    classes, id_col = tuple(bundle.classes), bundle.meta["id_col"]
    if sample is not None:
        return detect_format(sample, classes, id_col, name)
    if outputs_labels(bundle.recipe):
        return SubmissionFormat("label-name", id_col, ("label",), classes)
    return SubmissionFormat("probs", id_col, classes, classes)


def write_predictions(path: str | Path, parts: Iterable[Predictions], ids: pd.Series, fmt: SubmissionFormat) -> int:
    """Write every chunk of predictions as rows (ids (N,) in input order). -> rows written.
    Raises SubmissionError (nothing written) when a chunk's values fail validation."""
    rows = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for p in parts:
            frame = build_frame(fmt, ids.iloc[p.start:p.start + len(p.values)], p.values)
            found = value_problems(frame, fmt)
            if found:
                raise SubmissionError(f"{path}: not written: " + "; ".join(found))
            write_csv_rows(f, frame, header=rows == 0)
            rows += len(frame)
        if rows != len(ids):
            raise SubmissionError(f"{path}: not written: {rows} rows predicted for {len(ids)} images")
    return rows
