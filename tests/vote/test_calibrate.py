"""Temperature scaling: the fitted temperature, ECE, and `vote --calibrate` on a log-loss competition."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ensemble.artifacts import read_probs
from ensemble.vote.calibrate import ece, fit_temperature, reliability, scale
from test_vote_cli import make_competition, make_run


def calibrated(n=4000, c=4, seed=0):
    """Probabilities q and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.full(c, 0.6), n).astype(np.float32)
    y = np.array([rng.choice(c, p=row / row.sum()) for row in q.astype(np.float64)])
    return q, y


def test_the_temperature_undoes_overconfidence():
    q, y = calibrated()
    p = scale(q, 0.5)  # sharpened: overconfident
    assert fit_temperature(p, y) == pytest.approx(2.0, rel=0.1)
    assert ece(p, y) > 0.08 and ece(scale(p, fit_temperature(p, y)), y) < 0.03
    assert (scale(p, 2.0).argmax(1) == p.argmax(1)).all()  # labels never change
    np.testing.assert_allclose(scale(p, 2.0), q, atol=1e-3)  # up to the clip of tiny probabilities


def test_ece_by_hand():
    p = np.array([[0.9, 0.1], [0.25, 0.75], [0.3, 0.7], [0.55, 0.45]], np.float32)
    y = np.array([0, 0, 1, 0])  # right, wrong, right, right
    bins = [r for r in reliability(p, y, bins=5) if r["n"]]
    assert [(round(r["lo"], 6), r["n"], r["accuracy"]) for r in bins] == [(0.4, 1, 1.0), (0.6, 2, 0.5), (0.8, 1, 1.0)]
    # (|1 - 0.55| + 2 |0.5 - 0.725| + |1 - 0.9|) / 4
    assert ece(p, y, bins=5) == pytest.approx(0.25, abs=1e-6)


def test_vote_calibrate_on_log_loss(tmp_path, monkeypatch, capsys):
    """An overconfident run: --calibrate fits T on the chosen ensemble's held-out OOF rows, scores it nested,
    and writes the scaled probabilities (and its OOF file for the report)."""
    from ensemble.vote.__main__ import main
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    for i, (name, strength) in enumerate([("a", 1.0)]):
        d = make_run(tmp_path / "runs", comp, name, strength, seed=i, metric="log_loss")
        for f in ("oof.csv", "test.csv"):  # sharpen: log loss punishes the confident mistakes
            df = pd.read_csv(d / f, dtype={"id": str})
            cols = ["akiec", "bcc", "mel"]
            df[cols] = scale(df[cols].to_numpy(np.float32), 0.3)
            df.to_csv(d / f, index=False)
    assert main(["--competition", "tiny", "--method", "mean", "--write", "best"]) == 0
    (plain,) = (tmp_path / "submissions" / "tiny").glob("*.csv")
    plain_values = pd.read_csv(plain)[["akiec", "bcc", "mel"]].to_numpy(np.float32)
    capsys.readouterr()
    assert main(["--competition", "tiny", "--method", "mean", "--write", "best", "--calibrate"]) == 0
    out = capsys.readouterr().out
    (cal,) = (tmp_path / "submissions" / "tiny").glob("mean+temp-*.csv")
    m = json.loads(cal.with_suffix(".json").read_text())["calibration"]
    assert m["applied"] is True and m["temperature"] > 1.5 and m["cv_after"] < m["cv_before"]
    assert m["ece_after"] < m["ece_before"]
    assert (f"calibration: temperature {m['temperature']:.3f}; log_loss CV {m['cv_before']:.4f} -> "
            f"{m['cv_after']:.4f} (nested)") in out
    values = pd.read_csv(cal)[["akiec", "bcc", "mel"]].to_numpy(np.float32)
    np.testing.assert_allclose(values, scale(plain_values, m["temperature"]), atol=2e-6)
    oof = read_probs(tmp_path / "runs" / "tiny" / "votes" / f"{cal.stem}.oof.csv")
    assert len(oof) == 60 and np.allclose(oof[["akiec", "bcc", "mel"]].sum(1), 1, atol=1e-5)


def test_calibrate_leaves_label_metrics_alone(tmp_path, monkeypatch, capsys):
    from ensemble.vote.__main__ import main
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    make_run(tmp_path / "runs", comp, "a", 2.0, seed=0)
    assert main(["--competition", "tiny", "--method", "mean", "--calibrate"]) == 0
    assert ("note: --calibrate: skipped: balanced_accuracy scores labels; temperature scaling keeps every row's "
            "class") in capsys.readouterr().out
    (f,) = (tmp_path / "submissions" / "tiny").glob("*.json")
    assert json.loads(f.read_text())["calibration"] is None and "+temp" not in f.name
