"""Adversarial validation on synthetic competitions: brightness-shifted test copies are
found (AUC > 0.9) and importance-weighted CV moves toward the shifted test score; an unshifted split
stays near 0.5 and weighted CV equals plain CV within noise. Plus the weights, scores and CLI."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ensemble.data.competition import load_competition
from ensemble.config import CompetitionCfg
from ensemble.data.images import build_cache
from ensemble.shift.adversarial import adversarial_cv, density_weights, effective_sample_size, verdict
from ensemble.shift.run import one_line, run_shift
from conftest import log_lines
from ensemble.shift.scores import align, load_weights, replicate_counts, weighted_score

CLASSES = ("red", "green", "blue")


def make_shift_competition(root: Path, shift: float, n_train: int = 150, n_test: int = 50, size: int = 16,
                           bmax: float = 150, seed: int = 0) -> tuple[Path, list[str]]:
    """Class k = extra colour in channel k; each image is washed out towards white by a brightness b
    (train: uniform 0..bmax; test: the same + `shift`), which also fades the class colour, so bright
    images are harder. -> (root, hidden test labels in sample order)."""
    rng = np.random.default_rng(seed)
    for d in ("train", "test"):
        (root / d).mkdir(parents=True, exist_ok=True)

    def image(k: int, b: float) -> np.ndarray:
        a = min(b / 255, 0.9)
        img = rng.uniform(40, 120, (size, size, 3))
        img[..., k] += 40
        img = img * (1 - a) + 255 * a + rng.normal(0, 8, 3)[None, None] + rng.normal(0, 10, (size, size, 3))
        return np.clip(img, 0, 255).astype(np.uint8)[..., ::-1]  # RGB -> BGR for OpenCV

    rows = []
    for k, c in enumerate(CLASSES):
        for i in range(n_train):
            cv2.imwrite(str(root / "train" / f"{c}_{i:03d}.png"), image(k, rng.uniform(0, bmax)))
            rows.append((f"{c}_{i:03d}", c))
    labels = []
    for i in range(n_test * len(CLASSES)):
        k = i % len(CLASSES)
        cv2.imwrite(str(root / "test" / f"t{i:03d}.png"), image(k, rng.uniform(0, bmax) + shift))
        labels.append(CLASSES[k])
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": [f"t{i:03d}" for i in range(len(labels))], "label": "red"}).to_csv(
        root / "sample_submission.csv", index=False)
    return root, labels


def colour_model(comp, tmp: Path):
    """A stand-in for a trained model: logistic regression on mean RGB. -> (oof probs, test probs)."""
    tr = build_cache(comp.train["path"].tolist(), 16, tmp / "c", progress=False)
    te = build_cache(comp.test["path"].tolist(), 16, tmp / "c", progress=False)
    f = lambda a: np.asarray(a, np.float32).reshape(len(a), -1, 3).mean(1)
    y = comp.train["y"].to_numpy()
    lr = LogisticRegression(max_iter=2000)
    oof = cross_val_predict(lr, f(tr.array), y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                            method="predict_proba")
    return oof, lr.fit(f(tr.array), y).predict_proba(f(te.array))


def accuracy(y, p):
    return float((np.asarray(p).argmax(1) == y).mean())


def synthetic(shift: float, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"shift{shift}")
    root, labels = make_shift_competition(tmp / "comp", shift=shift)
    comp = load_competition(CompetitionCfg(name="syn", root=str(root), ext=".png"))
    with log_lines("ensemble.shift") as lines:
        s = run_shift(comp, tmp / "runs" / "syn", size=16, backbone="none", n_boot=100)
    oof, test = colour_model(comp, tmp)
    y_test = np.array([comp.classes.index(c) for c in labels])
    w, like = align(load_weights(tmp / "runs" / "syn"), comp.train["id"])
    y = comp.train["y"].to_numpy()
    scores = {"plain": accuracy(y, oof), "weighted": weighted_score(accuracy, y, oof, w),
              "test_like": accuracy(y[like], oof[like]), "test": accuracy(y_test, test)}
    return s, scores, lines, tmp


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    return synthetic(100, tmp_path_factory)


@pytest.fixture(scope="module")
def unshifted(tmp_path_factory):
    return synthetic(0, tmp_path_factory)


def test_shifted_test_is_detected_and_weighted_cv_moves_toward_it(shifted):
    s, sc, lines, _ = shifted
    assert s["auc"] > 0.9 and s["ci"][0] > 0.85, s
    assert s["stats"][0]["stat"] in ("brightness", "red", "green", "blue", "saturation")  # a brightness statistic
    assert sc["test"] < sc["plain"] - 0.1, sc  # the shift really hurts the model
    assert abs(sc["weighted"] - sc["test"]) < abs(sc["plain"] - sc["test"]) - 0.02, sc
    assert abs(sc["test_like"] - sc["test"]) < abs(sc["plain"] - sc["test"]), sc
    assert "CV is likely optimistic" in lines[1] and 0 < s["weights"]["ess_frac"] < 0.6


def test_unshifted_split_stays_near_half_and_weighted_equals_plain(unshifted):
    s, sc, lines, _ = unshifted
    assert 0.38 < s["auc"] < 0.62 and s["ci"][0] < 0.5 < s["ci"][1], s
    assert abs(sc["weighted"] - sc["plain"]) < 0.02, sc
    assert "CV can be trusted" in lines[1] and s["weights"]["ess_frac"] > 0.8


def test_shift_artifacts(shifted):
    s, _, _, tmp = shifted
    out = tmp / "runs" / "syn" / "shift"
    df = pd.read_csv(out / "weights.csv", dtype={"id": str})
    assert list(df.columns) == ["id", "split", "label", "p_test", "weight", "test_like", "path"]
    tr = df[df["split"] == "train"]
    assert len(tr) == 450 and len(df) == 600 and abs(tr["weight"].mean() - 1) < 1e-3
    assert tr["test_like"].sum() == 90 and df.loc[df["split"] == "test", "weight"].isna().all()
    assert json.loads((out / "shift.json").read_text())["auc"] == s["auc"]
    assert len(s["most_test_like"]) == 8 and s["most_test_like"][0]["p_test"] >= s["least_test_like"][0]["p_test"]
    assert [c["class"] for c in s["classes"]] == ["blue", "green", "red"]
    assert abs(sum(c["weighted_share"] for c in s["classes"]) - 1) < 1e-6


def test_weights_are_clipped_normalised_and_ess():
    p = np.r_[np.full(98, 0.5), 0.9999, 0.99999]
    w = density_weights(p, 100, 100, clip=5)
    assert abs(w.mean() - 1) < 1e-9 and w.max() <= 5 + 1e-9
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size(np.r_[1.0, np.zeros(9)]) == pytest.approx(1)
    with pytest.raises(ValueError, match="clip must be > 1"):
        density_weights(p, 1, 1, clip=1)


def test_weighted_score_is_exact_for_equal_and_integer_weights():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    p = rng.dirichlet(np.ones(3), 50)
    assert weighted_score(accuracy, y, p, np.ones(50)) == accuracy(y, p)
    w = rng.integers(0, 4, 50).astype(float)
    rep = np.repeat(np.arange(50), w.astype(int))
    assert weighted_score(accuracy, y, p, w) == pytest.approx(accuracy(y[rep], p[rep]))
    assert replicate_counts(np.ones(3)).tolist() == [64, 64, 64]
    with pytest.raises(ValueError, match="weights must be finite"):
        replicate_counts(np.array([1.0, -1.0]))


@pytest.mark.parametrize("args, message", [
    ((np.zeros((5, 2)), np.zeros((5, 3))), "same F"),
    ((np.zeros((1, 2)), np.zeros((5, 2))), "needs >= 2 train and test rows"),
])
def test_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        adversarial_cv(*args)


def test_one_line_and_verdicts():
    assert one_line({"auc": 0.934, "pm": 0.012, "verdict": verdict(0.934)}) == (
        "train/test shift AUC 0.93 +- 0.01: CV is likely optimistic; weighted CV will be shown beside it")
    assert verdict(0.52).startswith("train and test look alike") and verdict(0.65).startswith("mild shift")
