"""PNG figures of a run: normalised confusion matrix and per-fold learning curves."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ensemble.artifacts import atomic_path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> None:
    """cm: (C, C) counts, rows = true class. Cells show row-normalised recall and counts."""
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix (row-normalised)")
    _save(fig, path)


def plot_curves(history: pd.DataFrame, metric: str, path: Path) -> None:
    """history: rows with fold, global_epoch, train_loss, val_loss, score."""
    _save(curves_figure(history, metric), path)


def curves_figure(history: pd.DataFrame, metric: str):
    """Loss and validation metric per fold. Integer epoch ticks; one legend (a colour per fold,
    solid = train, dashed = validation) below the plots, readable at the report's width."""
    import math

    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    handles = []
    for fold, h in history.groupby("fold"):
        x = h["global_epoch"] + 1
        line, = a.plot(x, h["train_loss"], marker="." if len(h) < 30 else None)
        a.plot(x, h["val_loss"], "--", color=line.get_color())
        b.plot(x, h["score"], color=line.get_color(), marker="." if len(h) < 30 else None)
        handles.append(Line2D([], [], color=line.get_color(), lw=2, label=f"fold {fold}"))
    handles += [Line2D([], [], color="0.3", label="train loss"),
                Line2D([], [], color="0.3", ls="--", label="val loss")]
    for ax, ylabel in ((a, "loss"), (b, f"val {metric}")):
        ax.set_xlabel("epoch", fontsize=11)
        ax.set_ylabel(ylabel, fontsize=11)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
    ncol = min(len(handles), 7)
    fig.tight_layout(rect=(0, 0.05 + 0.06 * math.ceil(len(handles) / ncol), 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=10, frameon=False)
    return fig


def plot_lr_find(sweeps: dict, path: Path, title: str = "") -> None:
    """LR range test curves: loss (faint) and smoothed loss against the LR (log scale), one panel
    per sweep (ensemble.train.lr_find.Sweep), with the suggested LRs marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 3.6), squeeze=False)
    for ax, (group, s) in zip(axes[0], sweeps.items()):
        finite = np.isfinite(s.smoothed)
        ax.plot(s.lrs, s.losses, color="0.75", lw=0.8, label="loss")
        ax.plot(s.lrs[finite], s.smoothed[finite], color="C0", lw=1.6, label="smoothed")
        for (name, lr), colour in zip(s.suggestions().items(), ("C3", "C2")):
            ax.axvline(lr, color=colour, ls="--", lw=1, label=f"{name.replace('_div', ' / ')} {lr:.1e}")
        top = np.nanmax(s.smoothed[finite]) if finite.any() else 1.0
        ax.set_ylim(max(0.0, np.nanmin(s.smoothed[finite]) * 0.8) if finite.any() else 0.0, top * 1.1)
        ax.set_xscale("log")
        ax.set_xlabel(f"optim.lr.{group}")
        ax.set_ylabel("training loss")
        ax.set_title(f"{group}{' (diverged)' if s.diverged else ''}")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)
