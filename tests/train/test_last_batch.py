"""No training batch of one row, in any stage: a fold of k * batch_size + 1 rows trains."""
import pandas as pd
import torch

from conftest import make_competition, write_configs
from ensemble.config import load_config
from ensemble.data.datasets import CachedDataset, batch_bounds, make_loader
from ensemble.train import fold as fold_mod
from ensemble.train.engine import FeatureLoader
from ensemble.train.run import train


def test_batch_bounds_fold_a_single_last_row_into_the_batch_before():
    b = batch_bounds(29 * 33 + 1, 33)
    assert len(b) == 29 and b[-1] == (28 * 33, 958) and all(e - s == 33 for s, e in b[:-1])
    assert batch_bounds(29 * 33 + 2, 33)[-1] == (29 * 33, 29 * 33 + 2)  # two rows: a batch of their own
    assert batch_bounds(66, 33) == [(0, 33), (33, 66)]
    assert batch_bounds(34, 33) == [(0, 34)]
    assert batch_bounds(1, 33) == [(0, 1)]  # a single row with nothing to join


def test_loaders_never_end_in_one_row():
    import numpy as np
    images = np.zeros((67, 4, 4, 3), np.uint8)
    loader = make_loader(CachedDataset(images, np.arange(67), np.arange(67)), 33, shuffle=True, num_workers=0,
                         pin_memory=False, seed=3, no_single=True)
    sizes = [len(y) for _, y in loader]
    assert len(loader) == 2 and sizes == [33, 34]
    rows = torch.cat([y for _, y in loader])
    assert sorted(rows.tolist()) == list(range(67))  # every row once per epoch
    feats = FeatureLoader(torch.zeros(67, 5), torch.arange(67), 33, shuffle=True, seed=0)
    assert len(feats) == 2 and [len(y) for _, y in feats] == [33, 34]


def test_fold_of_29x33_plus_1_rows_trains_with_a_batchnorm_head(tmp_path, monkeypatch):
    # 2 classes x 958 images, 2 stratified folds: each fold's training part is 958 = 29 x 33 + 1 rows
    comp = make_competition(tmp_path / "comp", classes=("a", "b"), n_per_class=958, n_test=4, size=16)
    cfg_path = write_configs(tmp_path / "cfg", comp, tmp_path / "runs")  # head: hidden [16] + BatchNorm
    cfg = load_config(cfg_path, ["train.batch_size=33", "input.size=16", "folds.n=2", "output.plots=false",
                                 "stages=[{epochs: 1, train: head, augment: false}, {epochs: 1, train: all}]"])
    real, seen = fold_mod.train_one_epoch, []

    def record(net, loader, *a, **kw):
        seen.append((kw.get("forward") is not None, len(loader), [len(y) for _, y in loader]))
        return real(net, loader, *a, **kw)

    monkeypatch.setattr(fold_mod, "train_one_epoch", record)
    train(cfg, folds=[0])
    cached, n_batches, sizes = seen[0]
    assert cached and n_batches == 29 and sum(sizes) == 958 and sizes[-1] == 34  # head epoch on cached features
    cached, n_batches, sizes = seen[1]
    assert not cached and n_batches == 29 and sum(sizes) == 958 and min(sizes) == 33  # fine-tuning epoch
    hist = pd.read_csv(tmp_path / "runs" / "tiny" / "tinyrun" / "fold0" / "history.csv")
    assert hist["stage"].tolist() == [0, 1] and hist["train_loss"].notna().all()
