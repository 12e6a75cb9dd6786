"""vote with train/test shift weights: weighted and test-like CV per run and method, --select,
--priors, and the manifest's "shift" and "priors" entries; train's metrics.json "shift" hook."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ensemble.artifacts import atomic_write_csv
from test_vote_cli import N_TRAIN, setup, vote  # noqa: F401  (the fixture)


def write_weights(runs, weight_of):
    """runs/tiny/shift/weights.csv with weight_of(i) for train row tr<i>; the top fifth test-like."""
    ids = [f"tr{i:03d}" for i in range(N_TRAIN)]
    w = np.array([weight_of(i) for i in range(N_TRAIN)], float)
    w /= w.mean()
    like = w >= np.quantile(w, 0.8)
    atomic_write_csv(runs / "tiny" / "shift" / "weights.csv", pd.DataFrame(
        {"id": ids, "split": "train", "label": "", "p_test": w / (1 + w), "weight": w, "test_like": like, "path": ""}))
    (runs / "tiny" / "shift" / "shift.json").write_text(json.dumps({"auc": 0.87}))


def table(out: str) -> dict[str, list[str]]:
    """The shift table printed by vote: {row name: [cv, weighted, test-like, w - cv]}."""
    block = out.split("train/test shift (AUC")[1].split("\nclass priors")[0].splitlines()[2:]
    return {r.split()[-5]: r.split()[-4:] for r in block}


def test_equal_weights_give_weighted_equal_to_cv(setup, capsys):
    tmp, _, runs = setup
    write_weights(runs, lambda i: 1.0)
    assert vote("--method", "mean,hillclimb") == 0
    rows = table(capsys.readouterr().out)
    assert set(rows) == {"good", "ok", "weak", "mean", "hillclimb"}
    assert all(r[0] == r[1] and r[3] in ("+0.0000", "-0.0000") for r in rows.values()), rows


def test_select_weighted_and_manifest(setup, capsys):
    tmp, _, runs = setup
    write_weights(runs, lambda i: 5.0 if i % 3 == 2 else 0.5)  # the third class (mel) is test-like
    assert vote("--method", "mean,hillclimb,stacking", "--select", "weighted") == 0
    out = capsys.readouterr().out
    rows = table(out)
    assert "AUC 0.870" in out and "* = chosen by --select weighted" in out
    chosen = [k for k in rows if out.count(f"* {k}") >= 1]
    assert len(chosen) == 1
    best = max(("mean", "hillclimb", "stacking"), key=lambda k: float(rows[k][1]))
    assert chosen[0] == best
    [f] = (tmp / "subs" / "tiny").glob("*.json")
    m = json.loads(f.read_text())
    assert m["method"] == best and m["select"] == "weighted"
    assert m["shift"]["weighted_cv"] == pytest.approx(float(rows[best][1]), abs=1e-4)
    assert m["shift"]["shift_auc"] == 0.87 and m["priors"]["applied"] == "train" and len(m["priors"]["estimated"]) == 3


def test_select_needs_weights(setup, capsys):
    assert vote("--select", "weighted") == 2
    assert "--select weighted needs runs/tiny/shift/weights.csv: run python -m ensemble.shift" in capsys.readouterr().err


def test_priors_estimated_and_given(setup, capsys):
    tmp, comp, _ = setup
    assert vote("--method", "mean") == 0
    out = capsys.readouterr().out
    assert "note: no train/test shift weights" in out and "class priors, train -> estimated test" in out
    assert vote("--method", "mean", "--priors", "akiec=0.8,bcc=0.1,mel=0.1") == 0
    out = capsys.readouterr().out
    assert "submission probabilities adjusted to priors akiec 0.800, bcc 0.100, mel 0.100" in out
    plain = next(f for f in (tmp / "subs" / "tiny").glob("mean-cv*.csv"))
    [adjusted] = (tmp / "subs" / "tiny").glob("mean+priors-cv*.csv")
    a, b = pd.read_csv(plain), pd.read_csv(adjusted)
    assert b["akiec"].mean() > a["akiec"].mean() + 0.1 and np.allclose(b[["akiec", "bcc", "mel"]].sum(1), 1, atol=1e-3)
    assert json.loads(adjusted.with_suffix(".json").read_text())["priors"]["applied"] == "akiec=0.8,bcc=0.1,mel=0.1"
    assert vote("--method", "mean", "--priors", "0.5,0.5") == 2
    assert "--priors: got 2 numbers for 3 classes" in capsys.readouterr().err


def test_assemble_writes_shift_into_metrics_json(tmp_path):
    from ensemble.train.assemble import assemble_run
    rng = np.random.default_rng(0)
    comp_dir = tmp_path / "runs" / "tiny"
    run = comp_dir / "r"
    ids = np.array([f"tr{i:03d}" for i in range(N_TRAIN)])
    y, folds = np.arange(N_TRAIN) % 3, (np.arange(N_TRAIN) // 3) % 2
    for k in range(2):
        (run / f"fold{k}").mkdir(parents=True)
        idx = np.flatnonzero(folds == k)
        np.savez(run / f"fold{k}" / "preds.npz", val_idx=idx, val=rng.dirichlet(np.ones(3), len(idx)).astype(np.float32),
                 test=np.full((4, 3), 1 / 3, np.float32))
        (run / f"fold{k}" / "result.json").write_text(json.dumps({"seconds": 1.0}))
    kw = dict(fmt="csv", ids=ids, test_ids=np.array(["a", "b", "c", "d"]), y=y, folds=folds,
              classes=["x", "y", "z"], metric="accuracy", task="classification", folds_hash="h")
    assert "shift" not in assemble_run(run, **kw)  # no weights.csv: nothing added
    write_weights(tmp_path / "runs", lambda i: 1.0)
    m = assemble_run(run, **kw)
    assert m["shift"]["weighted_cv"] == m["cv"] and m["shift"]["ess_frac"] == 1.0
    write_weights(tmp_path / "runs", lambda i: 1 + i / 20)
    s = assemble_run(run, **kw)["shift"]
    assert np.isfinite(s["weighted_cv"]) and np.isfinite(s["test_like_cv"]) and s["n_test_like"] == 12
    assert 0.8 < s["ess_frac"] < 1
    assert json.loads((run / "metrics.json").read_text())["shift"]["shift_auc"] == 0.87
