"""End-to-end training on a tiny generated competition: artifacts, resume, cache, bad input."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_competition, write_configs
from ensemble.train import fold as fold_mod
from ensemble.artifacts import read_probs
from ensemble.config import ConfigError, load_config
from ensemble.train.engine import FeatureLoader, NonFiniteLossError, Precision, extract_features
from ensemble.data.images import ImageError
from ensemble.train.losses import build_loss
from ensemble.models import build_model, set_trainable
from ensemble.train.__main__ import main
from ensemble.train.run import train


def test_cli_writes_the_artifact_contract(tiny, capsys):
    cfg_path, comp, runs = tiny
    assert main(["--cfg", str(cfg_path), "--set", "predict.tta=[none, hflip]"]) == 0
    run = runs / "tiny" / "tinyrun"
    train_ids = pd.read_csv(comp / "train.csv", dtype=str)["id"]
    oof, test = read_probs(run / "oof.csv"), read_probs(run / "test.csv")
    assert oof["id"].tolist() == train_ids.tolist()
    assert test["id"].tolist() == pd.read_csv(comp / "sample_submission.csv", dtype=str)["id"].tolist()
    assert list(oof.columns) == ["id", "fold", "cat", "dog", "fox"]
    np.testing.assert_allclose(oof[["cat", "dog", "fox"]].sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(test[["cat", "dog", "fox"]].sum(1), 1, atol=1e-5)
    folds = pd.read_csv(runs / "tiny" / "folds.csv", dtype={"id": str})
    assert (oof["fold"].to_numpy() == folds.set_index("id").loc[oof["id"], "fold"].to_numpy()).all()
    m = json.loads((run / "metrics.json").read_text())
    assert m["metric"] == "accuracy" and 0 <= m["cv"] <= 1 and set(m["cv_folds"]) == {"0", "1"}
    assert np.array(m["confusion"]).sum() == 24 and list(m["per_class_recall"]) == ["cat", "dog", "fox"]
    assert m["classes"] == ["cat", "dog", "fox"] and len(m["folds_hash"]) == 64
    for f in ("config.yaml", "confusion.png", "curves.png", "fold0/best.pt", "fold1/history.csv"):
        assert (run / f).exists(), f
    assert not list(run.glob("fold*/last.pt"))  # a finished fold drops its optimizer state (train.keep_last)
    hist = pd.read_csv(run / "fold0" / "history.csv")
    assert hist["stage"].tolist() == [0, 1] and bool(hist["cached_features"].iloc[0])
    assert load_config(run / "config.yaml").stages == load_config(cfg_path).stages
    out = capsys.readouterr().out
    assert "CV accuracy" in out and "head trains on cached features" in out


def test_rerun_without_resume_is_refused_and_changed_config_too(tiny):
    cfg_path, _, runs = tiny
    cfg = load_config(cfg_path, ["stages=[{epochs: 1, train: all}]", "folds.n=2"])
    train(cfg)
    with pytest.raises(ConfigError, match=r"fold\(s\) 0, 1 already exist; pass --resume to continue them or --fresh"):
        train(cfg)
    other = load_config(cfg_path, ["stages=[{epochs: 2, train: all}]"])
    with pytest.raises(ConfigError, match=r"was made with another config \(stages: "):
        train(other, resume=True)


def test_resume_after_interrupted_fold_matches_uninterrupted(tmp_path, monkeypatch):
    comp = make_competition(tmp_path / "comp")
    extra = "augment: {train: none}\n"
    over = ["stages=[{epochs: 1, train: head, augment: false}, {epochs: 2, train: all}]", "folds.n=2"]
    ref = load_config(write_configs(tmp_path / "a", comp, tmp_path / "runs_a", extra=extra), over)
    train(ref)
    cfg = load_config(write_configs(tmp_path / "b", comp, tmp_path / "runs_b", extra=extra), over)
    real, calls = fold_mod.train_one_epoch, {"n": 0}

    def crash_on_third_epoch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*a, **kw)

    monkeypatch.setattr(fold_mod, "train_one_epoch", crash_on_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    run = tmp_path / "runs_b" / "tiny" / "tinyrun"
    assert (run / "fold0" / "last.pt").exists() and not (run / "fold0" / "preds.npz").exists()
    monkeypatch.setattr(fold_mod, "train_one_epoch", real)
    train(cfg, resume=True)
    hist = pd.read_csv(run / "fold0" / "history.csv")
    assert hist["global_epoch"].tolist() == [0, 1, 2]
    a = read_probs(tmp_path / "runs_a" / "tiny" / "tinyrun" / "oof.csv")
    b = read_probs(run / "oof.csv")
    np.testing.assert_allclose(a[["cat", "dog", "fox"]], b[["cat", "dog", "fox"]], atol=1e-4)


def test_cached_features_give_the_same_head_gradients():
    torch.manual_seed(0)
    model = build_model("resnet18", 3, head_hidden=[8], head_batchnorm=True, head_dropout=0.0)
    set_trainable(model, "head")
    x = torch.randint(0, 255, (6, 3, 24, 24), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = build_loss("ce", class_counts=[2, 2, 2])
    prec = Precision(torch.device("cpu"))

    def grads(logits):
        model.zero_grad()
        loss_fn(logits, y).backward()
        return [p.grad.clone() for p in model.head.parameters()]

    model.train()
    full = grads(model(x))
    feats = extract_features(model, [(x, y)], prec)
    model.train()
    (fx, fy), = list(FeatureLoader(feats, y, batch_size=6, shuffle=False))
    cached = grads(model.forward_head(fx))
    for a, b in zip(full, cached):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in model.backbone.parameters())


def test_missing_and_truncated_images(tiny, capsys):
    cfg_path, comp, runs = tiny
    (comp / "train" / "dog_003.jpg").unlink()
    data = (comp / "train" / "cat_001.jpg").read_bytes()
    (comp / "train" / "cat_001.jpg").write_bytes(data[:-2])  # missing EOI: repaired, reported
    (comp / "train" / "fox_002.jpg").write_bytes(b"not a jpeg")
    cfg = load_config(cfg_path, ["stages=[{epochs: 1, train: all}]"])
    with pytest.raises(ImageError) as e:
        train(cfg)
    msg = str(e.value)
    assert msg.startswith(f"2 unreadable images under {comp / 'train'} (input.bad_images=fail; use 'skip'")
    assert "dog_003.jpg (missing)" in msg and "fox_002.jpg (cannot decode (10 bytes))" in msg
    m = train(load_config(cfg_path, ["stages=[{epochs: 1, train: all}]", "input.bad_images=skip"]), fresh=True)
    assert sorted(m["skipped_images"]) == ["dog_003", "fox_002"]
    assert np.array(m["confusion"]).sum() == 22
    assert "warning: repaired 1 truncated JPEGs (missing end marker): cat_001.jpg" in capsys.readouterr().out


def test_nan_loss_stops_the_fold_with_a_message(tiny):
    cfg_path, _, _ = tiny
    cfg = load_config(cfg_path, ["stages=[{epochs: 1, train: all}]", "optim.lr.backbone=1e30", "optim.lr.head=1e30",
                                 "optim.name=sgd"])
    with pytest.raises(NonFiniteLossError, match=r"^fold 0, stage 1, epoch 1: the train loss became (nan|inf) at step \d+; lower optim.lr"):
        train(cfg)


def test_list_backbones(capsys):
    assert main(["--list-backbones", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "vgg16_bn" in out and "mobilenetv3_large_100" in out


def test_ordinal_task_writes_a_score_column(tmp_path):
    comp = make_competition(tmp_path / "comp", classes=("0", "1", "2"))
    cfg = load_config(write_configs(tmp_path / "c", comp, tmp_path / "runs", metric="qwk"),
                      ["competition.task=ordinal", "loss.name=smooth_l1", "stages=[{epochs: 2, train: all}]"])
    m = train(cfg)
    oof = read_probs(tmp_path / "runs/tiny/tinyrun/oof.csv")
    assert list(oof.columns) == ["id", "fold", "score"] and m["task"] == "ordinal"
    assert list(read_probs(tmp_path / "runs/tiny/tinyrun/test.csv").columns) == ["id", "score"]
    assert -1 <= m["cv"] <= 1 and np.array(m["confusion"]).shape == (3, 3)


def test_time_limit_stops_a_fold_at_an_epoch_end_with_its_best_checkpoint(tiny, capsys):
    cfg_path, comp, runs = tiny
    cfg = load_config(cfg_path, ["folds.n=2", "stages=[{epochs: 1, train: head, augment: false}, {epochs: 4, train: all}]",
                                 "train.time_limit=0.001"])
    metrics = train(cfg)
    out = capsys.readouterr().out
    assert out.count("time limit 0s reached") == 2 and "stopping in stage 2" in out
    for k in (0, 1):
        hist = pd.read_csv(runs / "tiny" / "tinyrun" / f"fold{k}" / "history.csv")
        assert len(hist) == 1  # the first epoch ran; every later one would have ended past the limit
    assert metrics is not None and set(metrics["cv_folds"]) == {"0", "1"}
