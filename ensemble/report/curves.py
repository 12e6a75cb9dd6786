"""The report's probability figures from out-of-fold predictions: a reliability diagram (before and after
the temperature that fixes it, with ECE) and one-vs-rest ROC and precision-recall curves per class.

p: (N, C) probabilities, y: (N,) class indices; figures are written as PNG with matplotlib (Agg).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from ensemble.vote.calibrate import ece, fit_temperature, reliability, scale

MAX_CURVES = 12  # classes drawn per figure (the table lists every class)


def calibration_summary(p: np.ndarray, y: np.ndarray) -> dict:
    """{ece, temperature, ece_after, nll, nll_after}: the temperature fitted on these rows."""
    t = fit_temperature(p, y)
    q = scale(p, t)
    lp = lambda a: float(-np.mean(np.log(np.clip(a[np.arange(len(y)), y], 1e-7, 1))))
    return {"ece": ece(p, y), "temperature": t, "ece_after": ece(q, y), "nll": lp(p), "nll_after": lp(q)}


def per_class_curves(p: np.ndarray, y: np.ndarray) -> list[dict]:
    """Per class: {auc, ap, positives} one-vs-rest (None where the class has no or only positive rows)."""
    out = []
    for c in range(p.shape[1]):
        pos = y == c
        ok = 0 < pos.sum() < len(y)
        out.append({"auc": float(roc_auc_score(pos, p[:, c])) if ok else None,
                    "ap": float(average_precision_score(pos, p[:, c])) if ok else None, "positives": int(pos.sum())})
    return out


def plot_reliability(p: np.ndarray, y: np.ndarray, path: Path) -> None:
    """Accuracy vs confidence per bin (top label), before and after temperature scaling; bar widths = bins.
    No subject in the title: the page's heading names it (a long name would be clipped)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = calibration_summary(p, y)
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=100)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="perfect calibration")
    for probs, colour, label in ((p, "C3", f"as predicted (ECE {s['ece']:.3f})"),
                                 (scale(p, s["temperature"]), "C0",
                                  f"temperature {s['temperature']:.2f} (ECE {s['ece_after']:.3f})")):
        rows = [r for r in reliability(probs, y) if r["n"]]
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-", c=colour, ms=4, label=label)
    counts = [r["n"] for r in reliability(p, y)]
    ax2 = ax.twinx()
    ax2.bar(np.linspace(0, 1, len(counts) + 1)[:-1], counts, width=1 / len(counts), align="edge", color="grey",
            alpha=0.15)
    ax2.set_yticks([])
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence (top class probability)", ylabel="accuracy",
           title="reliability (top class)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_roc_pr(p: np.ndarray, y: np.ndarray, classes: Sequence[str], path: Path) -> None:
    """One-vs-rest ROC (left) and precision-recall (right) curves, one line per class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9.2, 4.2), dpi=100)
    stats = per_class_curves(p, y)
    for c, (name, st) in enumerate(list(zip(classes, stats))[:MAX_CURVES]):
        if st["auc"] is None:
            continue
        fpr, tpr, _ = roc_curve(y == c, p[:, c])
        prec, rec, _ = precision_recall_curve(y == c, p[:, c])
        roc.plot(fpr, tpr, lw=1.3, c=f"C{c % 10}", label=f"{name} (AUC {st['auc']:.3f})")
        pr.plot(rec, prec, lw=1.3, c=f"C{c % 10}", label=f"{name} (AP {st['ap']:.3f})")
    roc.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    roc.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
            title="ROC, one vs rest")
    pr.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title="precision-recall")
    for ax in (roc, pr):
        ax.legend(loc="best" if ax is pr else "lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
