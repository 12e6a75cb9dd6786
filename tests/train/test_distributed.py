"""Scaling out: fold-parallel processes and DDP under torchrun (CPU, gloo)."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, make_competition, write_configs
from ensemble.artifacts import read_probs
from ensemble.config import load_config
from ensemble.data.digits import build_demo
from ensemble.train.distributed import DistEnv, shard
from ensemble.train.run import train
from test_multinode import free_port


def run_cli(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_shard_covers_every_row_once():
    idx = np.arange(11)
    parts = [shard(idx, DistEnv(3, r, r)) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 3]
    assert np.array_equal(np.concatenate(parts), idx)


def test_fold_parallel_processes_assemble_what_one_process_writes(tmp_path):
    comp = make_competition(tmp_path / "comp")
    over = ["stages=[{epochs: 1, train: head, augment: false}, {epochs: 1, train: all}]", "train.num_workers=0"]
    ref_cfg = write_configs(tmp_path / "a", comp, tmp_path / "runs_a")
    train(load_config(ref_cfg, over))
    cfg = write_configs(tmp_path / "b", comp, tmp_path / "runs_b")
    sets = [f"--set={o}" for o in over]
    procs = [run_cli(["-m", "ensemble.train", "--cfg", str(cfg), "--folds", k, *sets]) for k in ("0", "1")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("CV accuracy" in o for o in outs) >= 1  # the last one to finish assembled the run
    run_a, run_b = tmp_path / "runs_a/tiny/tinyrun", tmp_path / "runs_b/tiny/tinyrun"
    for name in ("oof.csv", "test.csv"):
        a, b = read_probs(run_a / name), read_probs(run_b / name)
        assert a["id"].tolist() == b["id"].tolist()
        np.testing.assert_allclose(a[["cat", "dog", "fox"]], b[["cat", "dog", "fox"]], atol=1e-4)
    assert json.loads((run_b / "metrics.json").read_text())["cv"] == pytest.approx(
        json.loads((run_a / "metrics.json").read_text())["cv"], abs=1e-6)


def test_assemble_with_a_missing_fold_is_an_error(tiny):
    cfg_path, _, runs = tiny
    cfg = load_config(cfg_path, ["stages=[{epochs: 1, train: all}]"])
    assert train(cfg, folds=[1]) is None
    p = run_cli(["-m", "ensemble.train", "--cfg", str(cfg_path), "--assemble", "--set=stages=[{epochs: 1, train: all}]"])
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 2
    assert "cannot assemble, fold(s) 0 of 2 have no predictions yet (fold<k>/preds.npz); train them first" in out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="torchrun needs POSIX processes")
def test_torchrun_ddp_covers_each_validation_row_once(tmp_path):
    root = build_demo(tmp_path / "demo")
    over = ["stages=[{epochs: 3, train: all}]", "train.num_workers=0", "output.progress=false",
            "output.tensorboard=false", f"competition.root={root}"]
    single = load_config(REPO / "configs/demo/resnet18.yaml", over + [f"output.runs_dir={tmp_path / 'single'}",
                                                                     "train.batch_size=64"])
    train(single, folds=[0])
    ddp_runs = tmp_path / "ddp"
    p = run_cli(["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                 "-m", "ensemble.train", "--cfg", "configs/demo/resnet18.yaml", "--folds", "0",
                 *[f"--set={o}" for o in over], f"--set=output.runs_dir={ddp_runs}", "--set=train.batch_size=32"])
    out = p.communicate(timeout=900)[0]
    assert p.returncode == 0, out
    assert "DDP: 2 ranks, effective batch size 64 (2 ranks x 32 x 1 accum steps)" in out
    assert out.count("fold 0: best accuracy") == 1  # only rank 0 logs
    folds = pd.read_csv(ddp_runs / "demo" / "folds.csv", dtype={"id": str})
    with np.load(ddp_runs / "demo/resnet18/fold0/preds.npz") as z:
        val_idx, val = z["val_idx"], z["val"]
    assert len(np.unique(val_idx)) == len(val_idx) == len(val)
    assert set(val_idx) == set(np.flatnonzero(folds["fold"].to_numpy() == 0))
    np.testing.assert_allclose(val.sum(1), 1, atol=1e-5)
    a = json.loads((tmp_path / "single/demo/resnet18/fold0/result.json").read_text())["best_score"]
    b = json.loads((ddp_runs / "demo/resnet18/fold0/result.json").read_text())["best_score"]
    assert abs(a - b) < 0.08, (a, b)
    assert len(pd.read_csv(ddp_runs / "demo/resnet18/fold0/history.csv")) == 3
