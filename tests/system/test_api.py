"""The library from Python, as in a notebook: one fold by hand, then two runs voted, no argv."""
import json

import numpy as np
import pandas as pd

from ensemble import (FoldInputs, FoldPlan, FoldTrainer, Stage, VoteOptions, build_model, build_transforms,
                      load_config, resolve_device, resolve_precision, train_run, vote_runs)
def test_one_fold_from_a_hand_made_plan(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(12) % 3
    images = rng.integers(0, 60, size=(12, 24, 24, 3), dtype=np.uint8)
    images[np.arange(12), :, :, y] += 150  # class k: colour channel k
    plan = FoldPlan(stages=[Stage(epochs=1, train="head", augment=False), Stage(epochs=1)],
                      metric="accuracy", batch_size=4, num_workers=0)
    data = FoldInputs(train_images=images, test_images=images[:4], train_idx=np.arange(8),
                        val_idx=np.arange(8, 12), test_idx=np.arange(4), y=y, n_classes=3,
                        train_tf=build_transforms("light"), eval_tf=build_transforms("none"))
    prec = resolve_precision(resolve_device("cpu"), "off", False)
    model = build_model("resnet18", 3, head_hidden=[8]).to(prec.device)
    info = FoldTrainer(plan, 0, model, data, prec, tmp_path / "fold0").run()
    assert set(info) >= {"best_score", "best_epoch", "tta_score", "seconds"} and 0 <= info["best_score"] <= 1
    with np.load(tmp_path / "fold0" / "preds.npz") as p:
        assert p["val"].shape == (4, 3) and p["test"].shape == (4, 3)
        np.testing.assert_allclose(p["val"].sum(1), 1, atol=1e-5)
    assert len(pd.read_csv(tmp_path / "fold0" / "history.csv")) == 2


def test_train_two_runs_and_vote_them(tiny, tmp_path):
    cfg_path, comp, runs = tiny
    one = ["stages=[{epochs: 1, train: all}]"]
    a = train_run(load_config(cfg_path, ["name=a", *one]))
    b = train_run(load_config(cfg_path, ["name=b", "optim.lr.head=1.0e-2", *one]))
    assert a.complete and b.complete and set(a.folds) == {0, 1}
    assert a.metrics == json.loads((a.run_dir / "metrics.json").read_text())
    result = vote_runs([a.run_dir, b.run_dir],
                         VoteOptions(methods="mean,hillclimb", out_dir=str(tmp_path / "subs")))
    assert [e.name for e in result.ensembles] == ["mean", "hillclimb"]
    assert 0 <= result.best_ensemble.cv.score <= 1 and "OOF error correlation" in result.report()
    (path, cmd), = result.written
    sub = pd.read_csv(path, dtype=str)
    assert sub["id"].tolist() == pd.read_csv(comp / "sample_submission.csv", dtype=str)["id"].tolist()
    assert json.loads(path.with_suffix(".json").read_text())["method"] == result.best_ensemble.name
    assert pd.read_csv(runs / "tiny" / "labels.csv", dtype=str).columns.tolist() == ["id", "label"]
