"""DDP across nodes that do not share runs/: two gloo ranks started as two nodes (each its own
LOCAL_RANK 0), each with its own runs folder; rank 0 broadcasts folds, finished folds, last.pt and
the best weights, and every rank stops with one line when a rank's competition files differ."""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, make_competition, write_configs
from ensemble.artifacts import read_probs
from ensemble.config import load_config
from ensemble.data.competition import load_competition
from ensemble.data.images import build_cache
from ensemble.train.ranks import input_digest, inputs_difference

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX processes")
CLASSES = ["cat", "dog", "fox"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(cfg: Path, runs: list[Path], *args: str, roots: list[Path] | None = None) -> tuple[list[int], list[str]]:
    """`python -m ensemble.train` as ranks 0 and 1 of a 2-node job (env:// rendezvous on localhost),
    rank r writing to runs[r] (and reading its competition from roots[r]). -> (exit codes, outputs)."""
    port = free_port()
    procs = []
    for rank, folder in enumerate(runs):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WORLD_SIZE": "2", "RANK": str(rank),
               "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        sets = [f"--set=output.runs_dir={folder}"] + ([f"--set=competition.root={roots[rank]}"] if roots else [])
        procs.append(subprocess.Popen([sys.executable, "-m", "ensemble.train", "--cfg", str(cfg), *sets, *args],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=600)[0])
        except subprocess.TimeoutExpired:  # a rank waiting for a dead one: the failure this guards against
            for q in procs:
                q.kill()
            raise
    return [p.returncode for p in procs], outs


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_separate_runs_folders_train_what_a_shared_one_does(tmp_path):
    comp = make_competition(tmp_path / "comp")
    KEEP = "--set=train.keep_last=true"  # fold 1's last.pt stays, so --resume below has an epoch to resume at
    cfg = write_configs(tmp_path / "cfg", comp, tmp_path / "unused")
    shared = tmp_path / "shared"
    codes, outs = two_nodes(cfg, [shared, shared], KEEP)
    assert codes == [0, 0], outs
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    codes, outs = two_nodes(cfg, [node0, node1], KEEP)
    assert codes == [0, 0], outs
    assert "CV accuracy" in outs[0] and "CV accuracy" not in outs[1]  # rank 0 assembles and logs
    for name in ("oof.csv", "test.csv"):
        a, b = read_probs(shared / "tiny/tinyrun" / name), read_probs(node0 / "tiny/tinyrun" / name)
        assert a["id"].tolist() == b["id"].tolist()
        np.testing.assert_allclose(a[CLASSES].to_numpy(), b[CLASSES].to_numpy(), atol=1e-6)
    # rank 1 kept only its own image cache; rank 0 has every artifact of the run
    assert files_under(node1) and all(f.startswith("tiny/cache/images_24_") for f in files_under(node1))
    for f in ("tiny/folds.csv", "tiny/labels.csv", "tiny/tinyrun/config.yaml", "tiny/tinyrun/metrics.json",
              "tiny/tinyrun/fold0/best.pt", "tiny/tinyrun/fold1/last.pt", "tiny/tinyrun/fold1/preds.npz"):
        assert (node0 / f).is_file(), f

    # --resume: rank 0 says fold 0 is finished and sends fold 1's last.pt and best weights (nothing left to train)
    oof = read_probs(node0 / "tiny/tinyrun/oof.csv")
    for f in ("fold1/preds.npz", "fold1/result.json", "oof.csv", "test.csv", "metrics.json"):
        (node0 / "tiny/tinyrun" / f).unlink()
    codes, outs = two_nodes(cfg, [node0, node1], KEEP, "--resume")
    assert codes == [0, 0], outs
    assert "fold 0: already finished, skipped" in outs[0] and "resuming at stage 2 epoch 2" in outs[0]
    np.testing.assert_allclose(read_probs(node0 / "tiny/tinyrun/oof.csv")[CLASSES].to_numpy(),
                               oof[CLASSES].to_numpy(), atol=1e-6)
    assert all(f.startswith("tiny/cache/") for f in files_under(node1))

    # a failure on rank 0 alone (its run folder has the folds already) stops rank 1 too, with the same line
    codes, outs = two_nodes(cfg, [node0, node1], KEEP)
    line = (f"error: {node0 / 'tiny/tinyrun'}: fold(s) 0, 1 already exist; pass --resume to continue them or "
            f"--fresh to start over")
    assert codes == [2, 2] and all(line in o for o in outs), outs


def test_a_rank_with_other_images_stops_every_rank_in_one_line(tmp_path):
    comp0 = make_competition(tmp_path / "comp0")
    comp1 = tmp_path / "comp1"
    shutil.copytree(comp0, comp1)
    img = cv2.imread(str(comp1 / "train/dog_003.jpg"))
    cv2.imwrite(str(comp1 / "train/dog_003.jpg"), 255 - img)
    cfg = write_configs(tmp_path / "cfg", comp0, tmp_path / "unused")
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    codes, outs = two_nodes(cfg, [node0, node1], roots=[comp0, comp1])
    line = (f"error: rank 1 on {socket.gethostname()}: 1 of 24 train images differ from rank 0's (decoded pixels): "
            f"dog_003; every rank needs the same competition files (train.csv, sample submission, images under "
            f"competition.root)")
    assert codes == [2, 2], outs
    assert all(line in o.splitlines() for o in outs), outs
    assert all(f.startswith("tiny/cache/") for f in files_under(node1)), files_under(node1)
    # checked before rank 0 wrote folds.csv, labels.csv or the run folder (a corrected rerun needs no --fresh)
    assert [f for f in files_under(node0) if not f.startswith("tiny/cache/")] == []


def _inputs(root: Path, cache: Path):
    comp = load_competition(load_config(write_configs(root.parent / "cfg", root, cache), []).competition)
    paths = [comp.train["path"].tolist(), comp.test["path"].tolist()]
    return comp, input_digest(comp, *(build_cache(p, 24, cache, progress=False) for p in paths))


def test_input_digest_names_the_first_difference(tmp_path):
    comp, main = _inputs(make_competition(tmp_path / "a/comp"), tmp_path / "a/cache")
    assert inputs_difference(main, main, comp) is None
    relabeled = {**main, "train labels": main["train labels"].copy()}
    relabeled["train labels"][[2, 5]] = 2
    assert inputs_difference(relabeled, main, comp) == "2 of 24 train labels differ from rank 0's: cat_002, cat_005"
    other, mine = _inputs(make_competition(tmp_path / "b/comp", n_test=5), tmp_path / "b/cache")
    assert inputs_difference(mine, main, other) == "5 test ids, rank 0 has 6"
    _, mine = _inputs(make_competition(tmp_path / "c/comp", seed=1), tmp_path / "c/cache")
    assert inputs_difference(mine, main, comp).startswith("24 of 24 train images differ from rank 0's "
                                                              "(decoded pixels): cat_000, cat_001, cat_002, cat_003, "
                                                              "cat_004, ...")
