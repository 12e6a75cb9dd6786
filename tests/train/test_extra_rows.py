"""Extra soft-target rows (train.extra_rows) and the training rows' own soft targets (train.soft_targets)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_competition, write_configs
from ensemble.artifacts import read_probs
from ensemble.config import ConfigError, load_config
from ensemble.data.competition import load_competition
from ensemble.train import fold as fold_mod
from ensemble.train.fold import FoldTrainer
from ensemble.train.run import train
from ensemble.train.targets import SoftInputs, read_extra_rows, read_soft_targets

CLASSES = ["cat", "dog", "fox"]


def _teacher(comp, path, seed=0):
    """A teacher's OOF-like file: a distinct probability row for every training id."""
    ids = pd.read_csv(comp / "train.csv", dtype=str)["id"]
    p = np.random.default_rng(seed).dirichlet(np.ones(3), size=len(ids)).astype(np.float32)
    df = pd.DataFrame(p, columns=CLASSES)
    df.insert(0, "id", ids)
    df.to_csv(path, index=False, float_format="%.8f")
    return path, dict(zip(ids, df[CLASSES].to_numpy(np.float32)))


def _extra(comp, path, n=4, weight=0.5):
    """Pseudo-label-like rows: the first n test images, soft labels, one weight."""
    rows = [{"id": f"t{i:03d}", "path": str(comp / "test" / f"t{i:03d}.jpg"),
             **dict(zip(CLASSES, np.roll([0.8, 0.1, 0.1], i))), "weight": weight} for i in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_extra_rows_join_training_only_and_the_student_learns_soft_targets(tiny, tmp_path, monkeypatch):
    cfg_path, comp, runs = tiny
    teacher_file, teacher = _teacher(comp, tmp_path / "teacher.csv")
    extra_file = _extra(comp, tmp_path / "pseudo.csv")
    cfg = load_config(cfg_path, [f"train.extra_rows={extra_file}", f"train.soft_targets={{file: {teacher_file}}}",
                                 "stages=[{epochs: 1, train: all}]", "output.plots=false"])
    real, seen = fold_mod.train_one_epoch, []

    def record(net, loader, loss_fn, *a, **kw):
        calls = []

        def spy(logits, targets):
            calls.append(targets.detach().cpu().clone())
            return loss_fn(logits, targets)

        out = real(net, loader, spy, *a, **kw)
        seen.append((len(loader.dataset), kw["targets"].cpu(), torch.cat(calls)))
        return out

    predicted, real_predict = [], FoldTrainer._predict

    def record_predict(self, net, images, idx, tf, **kw):
        predicted.append((images is self.data.train_images, images is self.data.extra_images, np.array(idx)))
        return real_predict(self, net, images, idx, tf, **kw)

    monkeypatch.setattr(fold_mod, "train_one_epoch", record)
    monkeypatch.setattr(FoldTrainer, "_predict", record_predict)
    train(cfg)
    run = runs / "tiny" / "tinyrun"
    folds = pd.read_csv(runs / "tiny" / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    train_ids = pd.read_csv(comp / "train.csv", dtype=str)["id"].tolist()
    # every fold trains on its 12 own rows + the 4 extra rows, and its loss sees only soft targets
    assert [n for n, _, _ in seen] == [16, 16]
    teacher_rows = np.stack(list(teacher.values()))
    for _, table, targets in seen:
        assert len(targets) == 16 and not (targets == 1).any()  # no one-hot row: the student learns soft targets
        own, extra = targets[targets.sum(1) > 0.75], targets[targets.sum(1) < 0.75]
        assert len(own) == 12 and len(extra) == 4
        dist = np.abs(own.numpy()[:, None] - teacher_rows[None]).max(2).min(1)
        assert dist.max() < 1e-6  # each of the fold's rows learns its teacher probabilities (alpha 1)
        torch.testing.assert_close(extra.sum(1), torch.full((4,), 0.5))  # weight 0.5
        torch.testing.assert_close(extra.max(1).values, torch.full((4,), 0.4))  # 0.8 x 0.5
        torch.testing.assert_close(table[12:], torch.as_tensor(
            np.stack([np.roll([0.8, 0.1, 0.1], i) * 0.5 for i in range(4)]), dtype=torch.float32))
    # validation predicts only the fold's own held-out rows, never an extra row
    assert not any(is_extra for _, is_extra, _ in predicted)
    val_calls = [idx for on_train, _, idx in predicted if on_train]
    assert len(val_calls) == 4  # 2 folds x (1 epoch + final prediction)
    for k, idx in zip([0, 0, 1, 1], val_calls):
        assert (folds.loc[np.array(train_ids)[idx]] == k).all()
    # OOF and CV are on the competition's own rows only; the run names its target files
    oof = read_probs(run / "oof.csv")
    assert oof["id"].tolist() == train_ids
    m = json.loads((run / "metrics.json").read_text())
    assert np.array(m["confusion"]).sum() == 24
    assert m["extra_rows"]["rows"] == 4 and m["extra_rows"]["path"] == str(extra_file)
    assert m["soft_targets"]["alpha"] == 1.0 and len(m["soft_targets"]["sha256"]) == 64


def test_soft_targets_alpha_mixes_with_the_label(tiny, tmp_path):
    cfg_path, comp, _ = tiny
    teacher_file, teacher = _teacher(comp, tmp_path / "teacher.csv")
    comp_ = load_competition(load_config(cfg_path).competition)
    soft = SoftInputs.read(None, type("S", (), {"file": str(teacher_file), "alpha": 0.25})(), comp_)
    targets, x, t = soft.fold_inputs(comp_.train["y"].to_numpy(), 3, [], None, 24, tmp_path)
    assert x is None and t is None
    row = 0.25 * teacher["cat_000"] + 0.75 * np.eye(3, dtype=np.float32)[0]
    np.testing.assert_allclose(targets[0], row, atol=1e-6)


def _bad(tmp_path, comp, mutate):
    path = _extra(comp, tmp_path / "x.csv")
    df = pd.read_csv(path, dtype=str)
    df = mutate(df)
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns="fox"), r"missing column\(s\) 'fox'; expected id, path, cat, dog, fox, weight"),
    (lambda d: d.assign(wolf=0), r"unknown column\(s\) 'wolf'"),
    (lambda d: d.assign(cat="0.9"), r"line 2 \(id 't000'\): probabilities sum to 1.1, expected 1"),
    (lambda d: d.assign(weight="0"), r"line 2 \(id 't000'\): weight must be a number > 0, got '0'"),
    (lambda d: d.assign(id=["t000", "t000", "t002", "t003"]), r"id 't000' appears more than once"),
    (lambda d: d.assign(id=["cat_001", "t001", "t002", "t003"]), r"line 2 \(id 'cat_001'\): the id is a training row"),
    (lambda d: d.assign(path=lambda x: x["path"].str.replace("test/t000", "train/cat_000")),
     r"train/cat_000.jpg is a training image of the competition; it would also be in a validation part"),
    (lambda d: d.assign(path=lambda x: x["path"].str.replace("t003.jpg", "nope.jpg")),
     r"line 5 \(id 't003'\): image .*nope.jpg not found"),
])
def test_bad_extra_rows_are_one_line(tiny, tmp_path, mutate, message):
    cfg_path, comp, _ = tiny
    c = load_competition(load_config(cfg_path).competition)
    with pytest.raises((ValueError, FileNotFoundError), match=r"^train.extra_rows: .*" + message):
        read_extra_rows(_bad(tmp_path, comp, mutate), CLASSES, c.train["id"].tolist(), c.train["path"].tolist())


def test_bad_soft_targets_and_nothing_written(tiny, tmp_path):
    cfg_path, comp, runs = tiny
    teacher_file, _ = _teacher(comp, tmp_path / "teacher.csv")
    df = pd.read_csv(teacher_file, dtype={"id": str})
    df.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match=r"1 training id\(s\) have no row \(e.g. 'cat_000'\)"):
        read_soft_targets(tmp_path / "short.csv", CLASSES, df["id"].tolist())
    cfg = load_config(cfg_path, [f"train.soft_targets={{file: {tmp_path / 'short.csv'}}}"])
    with pytest.raises(ConfigError, match=r"^train.soft_targets.file: .*short.csv: 1 training id"):
        train(cfg)
    assert not runs.exists()  # checked before folds.csv, the cache or the run folder are written
