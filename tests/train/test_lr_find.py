"""The LR range test: sweep shape and suggestions, and `python -m ensemble.train --lr-find` on a tiny competition."""
import math
import re

import numpy as np
import pandas as pd
import torch

from ensemble.train.engine import Precision
from ensemble.train.lr_find import Sweep, lr_sweep
from ensemble.train.__main__ import main


def _batches(seed=0):
    """Two overlapping Gaussian blobs in 8 dimensions (no separating plane), batches of 16, forever."""
    g = torch.Generator().manual_seed(seed)
    while True:
        y = torch.randint(0, 2, (16,), generator=g)
        x = torch.randn(16, 8, generator=g) + 0.8 * (2 * y[:, None] - 1)
        yield x, y


def test_sweep_is_flat_then_falls_then_diverges_at_the_top():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD([{"name": "head", "params": model.parameters(), "lr": 1.0}])
    s = lr_sweep(model, _batches(), torch.nn.CrossEntropyLoss(), opt, Precision(torch.device("cpu")), "head",
                 start=1e-5, end=1e4, steps=90)
    assert s.diverged and len(s.lrs) < 90  # stopped once the smoothed loss passed 4x its minimum
    assert s.smoothed[-1] > 4 * s.smoothed[s.minimum()] or not math.isfinite(s.smoothed[-1])
    low = s.smoothed[s.lrs < 1e-4]
    assert np.ptp(low) < 0.1 * low.mean()  # too small to learn: flat
    assert s.smoothed[s.minimum()] < 0.5 * s.smoothed[0]  # learns in the middle
    ratio = np.diff(np.log(s.lrs))
    np.testing.assert_allclose(ratio, ratio[0])  # exponential steps
    for lr in s.suggestions().values():
        assert s.lrs[0] <= lr <= s.lrs[-1]
    sug = s.suggestions()
    assert sug["min_div10"] == max(s.lrs[s.minimum()] / 10, s.lrs[0])
    assert 1e-3 < sug["steepest"] < s.lrs[s.minimum()]  # where the loss falls fastest, before the minimum


def test_suggestions_stay_in_range_when_the_minimum_is_at_the_start():
    lrs = np.geomspace(1e-3, 1.0, 20)
    s = Sweep("head", lrs, np.linspace(1, 3, 20), np.linspace(1, 3, 20), True, settle=3)
    assert s.minimum() == 3 and s.suggestions() == {"steepest": lrs[3], "min_div10": lrs[0]}


def test_lr_find_cli_writes_csv_and_plot_and_no_run(tiny, capsys):
    cfg_path, _, runs = tiny
    assert main(["--cfg", str(cfg_path), "--lr-find", "--lr-steps", "30", "--set", "input.size=16"]) == 0
    out = capsys.readouterr().out
    run = runs / "tiny" / "tinyrun"
    assert sorted(p.name for p in run.iterdir()) == ["lr_find.csv", "lr_find.png"]  # no checkpoint, no metrics.json
    df = pd.read_csv(run / "lr_find.csv")
    assert list(df.columns) == ["group", "step", "lr", "loss", "smoothed"]
    assert set(df["group"]) == {"head", "backbone"}
    assert df["lr"].min() == 1e-7 and df["lr"].max() <= 10.0
    assert (run / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for group in ("head", "backbone"):
        m = re.search(rf"suggested optim.lr.{group}: (\S+) \(minimum / 10\), (\S+) \(steepest descent\)", out)
        assert m, out
        swept = df[df["group"] == group]["lr"]
        for value in m.groups():
            assert swept.min() <= float(value) <= swept.max() * 1.001  # printed with 2 significant digits
    assert re.search(r"try: --set optim.lr.head=\S+ --set optim.lr.backbone=\S+", out)
