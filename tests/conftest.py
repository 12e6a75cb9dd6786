"""Shared fixtures: tiny generated competitions and configs (no real data, no downloads)."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
REPO = Path(__file__).resolve().parents[1]
# tests/ mirrors the package; some suites reuse another folder's factories (report tests build
# vote's fake runs), so every test folder is importable by module name (names are unique)
sys.path[:0] = [str(p) for p in sorted(Path(__file__).parent.iterdir()) if p.is_dir() and p.name.isidentifier()]


def make_competition(root: Path, classes=("cat", "dog", "fox"), n_per_class: int = 8, n_test: int = 6,
                     size: int = 24, ext: str = ".jpg", groups: bool = False, seed: int = 0) -> Path:
    """A Kaggle-layout competition: class k images are dominated by colour channel k % 3."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)

    def image(k: int) -> np.ndarray:
        img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
        img[..., k % 3] += np.uint8(150)
        if k >= 3:
            img[: size // 2] = 255 - img[: size // 2]
        return img

    rows = []
    for k, c in enumerate(classes):
        for i in range(n_per_class):
            rid = f"{c}_{i:03d}"
            cv2.imwrite(str(root / "train" / f"{rid}{ext}"), image(k))
            rows.append({"id": rid, "label": c, "patient": f"p{(k * n_per_class + i) // 2}"})
    df = pd.DataFrame(rows)
    if not groups:
        df = df.drop(columns="patient")
    df.to_csv(root / "train.csv", index=False)
    test_ids = [f"t{i:03d}" for i in range(n_test)]
    for i, tid in enumerate(test_ids):
        cv2.imwrite(str(root / "test" / f"{tid}{ext}"), image(i % len(classes)))
    pd.DataFrame({"id": test_ids, "label": classes[0]}).to_csv(root / "sample_submission.csv", index=False)
    return root


def write_configs(dirpath: Path, comp_root: Path, runs_dir: Path, backbone: str = "resnet18",
                  extra: str = "", metric: str = "accuracy", n_folds: int = 2) -> Path:
    """base.yaml + model.yaml for a tiny fast run; returns the model config path."""
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "base.yaml").write_text(f"""
competition: {{name: tiny, root: {comp_root}, id_col: id, label_col: label, ext: .jpg, metric: {metric}}}
folds: {{n: {n_folds}, seed: 1}}
input: {{size: 24}}
train: {{batch_size: 8, num_workers: 0, seed: 0, device: cpu}}
output: {{runs_dir: {runs_dir}, tensorboard: false, progress: false}}
augment: {{train: light}}
""")
    (dirpath / "model.yaml").write_text(f"""base: base.yaml
name: tinyrun
model: {{backbone: {backbone}, pretrained: false, head: {{hidden: [16], batchnorm: true, dropout: 0.1}}}}
optim: {{name: adamw, lr: {{backbone: 1.0e-3, head: 3.0e-3}}}}
stages:
  - {{epochs: 1, train: head, augment: false}}
  - {{epochs: 1, train: all}}
{extra}
""")
    return dirpath / "model.yaml"


def png_header(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares width x height (decoding it would take GBs)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


class _Evil:
    def __reduce__(self):
        return os.system, ("true",)


def evil_pickle(path: Path) -> Path:
    """A .pt file whose pickle would call os.system: weights_only loading must refuse it."""
    torch.save({"conv1.weight": _Evil()}, path)
    return path


@pytest.fixture
def tiny(tmp_path):
    """(model config path, competition root, runs dir) of a tiny 3-class competition."""
    comp = make_competition(tmp_path / "comp")
    runs = tmp_path / "runs"
    return write_configs(tmp_path / "configs", comp, runs), comp, runs


@pytest.fixture(autouse=True)
def _command_logging():
    """Library messages on stdout, one plain line each, as every `python -m ensemble.<cmd>` sets them up
    (ensemble.cli.setup_logging); also undoes a -q of an earlier test."""
    from ensemble.cli import setup_logging
    setup_logging(0)


@contextlib.contextmanager
def log_lines(name: str = "ensemble", level: int = logging.INFO):
    """Collect the messages of logger `name` (and its children) at `level` or above as a list of lines."""
    lines: list[str] = []

    class _List(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log, handler = logging.getLogger(name), _List(level)
    log.addHandler(handler)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
