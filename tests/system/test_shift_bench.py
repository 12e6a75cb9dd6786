"""scripts/shift_bench.py on a tiny generated competition whose classes differ by fine texture only:
the table has every shift and adaptation, the shifts are deterministic and do what they say, plain /
none reproduces the fold's stored predictions, heavy blur (which erases the texture) scores lower than
plain, and a --train variant trains fold 0 on the same folds.csv into its own runs dir."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from ensemble.artifacts import file_hash
from ensemble.config import load_config
from ensemble.train.run import train_run

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("shift_bench", REPO / "scripts" / "shift_bench.py")
sb = sys.modules.setdefault("shift_bench", importlib.util.module_from_spec(_spec))  # dataclasses look it up
_spec.loader.exec_module(sb)

SIZE = 32


def texture_image(cls: int, rng: np.random.Generator) -> np.ndarray:
    """Grey 32x32 RGB around the same mean level: class 1 carries a 2-pixel checkerboard, class 0 is flat."""
    level = int(rng.integers(100, 156))
    img = np.full((SIZE, SIZE), level, np.int16) + rng.integers(-6, 7, (SIZE, SIZE))
    if cls == 1:
        yy, xx = np.mgrid[:SIZE, :SIZE]
        img += np.where(((yy // 2) + (xx // 2)) % 2 == 0, 60, -60).astype(np.int16)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def make_texture_competition(root: Path, n_per_class: int = 20) -> Path:
    """flat vs fine (lossless PNG, so the texture survives on disk), 4 test images."""
    rng = np.random.default_rng(0)
    for sub in ("train", "test"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for k, c in enumerate(("flat", "fine")):
        for i in range(n_per_class):
            cv2.imwrite(str(root / "train" / f"{c}_{i:03d}.png"), texture_image(k, rng))
            rows.append({"id": f"{c}_{i:03d}", "label": c})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    for i in range(4):
        cv2.imwrite(str(root / "test" / f"t{i}.png"), texture_image(i % 2, rng))
    pd.DataFrame({"id": [f"t{i}" for i in range(4)], "label": "flat"}).to_csv(root / "sample_submission.csv",
                                                                              index=False)
    return root


def write_config(dirpath: Path, comp: Path, runs: Path) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    path = dirpath / "texture.yaml"
    path.write_text(f"""
competition: {{name: texture, root: {comp}, id_col: id, label_col: label, ext: .png, metric: accuracy,
              classes: [flat, fine]}}
name: tex
folds: {{n: 2, seed: 1}}
input: {{size: {SIZE}}}
model: {{backbone: resnet10t, pretrained: false, head: {{hidden: [16], batchnorm: true, dropout: 0.0}}}}
optim: {{name: adamw, lr: {{backbone: 1.0e-3, head: 5.0e-3}}}}
stages: [{{epochs: 4, train: head, augment: false}}]
train: {{batch_size: 8, num_workers: 0, seed: 0, device: cpu}}
output: {{runs_dir: {runs}, tensorboard: false, progress: false, plots: false}}
predict: {{tta: [none, hflip]}}
""")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, runs dir, run dir) of a run whose fold 0 alone is trained (a partly finished run)."""
    root = tmp_path_factory.mktemp("shiftbench")
    comp = make_texture_competition(root / "comp")
    runs = root / "runs"
    cfg_path = write_config(root / "configs", comp, runs)
    run_dir = train_run(load_config(cfg_path), folds=[0]).run_dir
    return cfg_path, runs, run_dir


def _table(text: str, run: str, metric: str) -> dict[str, list[str]]:
    """{row label: [cells]} of one run's table for one metric in the markdown (header row: "shift")."""
    section = text.split(f"## {run}\n", 1)[1].split("\n## ", 1)[0]
    body = section.split(f"**{metric}**\n\n", 1)[1].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines() if line.startswith("|")]
    return {r[0]: r[1:] for r in rows if not r[0].startswith("---")}


def test_shifts_are_deterministic_and_do_what_they_say():
    rng = np.random.default_rng(3)
    img = rng.integers(30, 220, (90, 120, 3), dtype=np.uint8)
    assert list(sb.SHIFTS)[0] == "plain" and len(sb.SHIFTS) == 13
    for name in sb.SHIFTS:
        a, b = sb.apply_shift(name, img), sb.apply_shift(name, img.copy())
        assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b), name
        assert np.array_equal(a, img) == (name == "plain"), name
    x = img.astype(np.float64)
    gamma = sb.apply_shift("gamma1.5", img).astype(np.float64)
    assert np.abs(gamma - 255 * (x / 255) ** 1.5).max() <= 1.0
    low = sb.apply_shift("contrast0.7", img).astype(np.float64)
    assert abs(low.mean() - x.mean()) < 1.0 and low.std() / x.std() == pytest.approx(0.7, abs=0.01)
    crop = sb.apply_shift("crop20", img).astype(np.float64)  # 20% of each side cut (18 rows, 24 columns), resized
    ref = cv2.resize(img[18:72, 24:96], (120, 90), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    assert np.abs(crop - ref).mean() < 1.0
    assert sb.apply_shift("blur2", img).std() < sb.apply_shift("blur1", img).std() < img.std()
    jpeg = [np.abs(sb.apply_shift(f"jpeg{q}", img).astype(np.float64) - x).mean() for q in (30, 10)]
    assert 0 < jpeg[0] < jpeg[1]


def test_bench_table_has_every_shift_and_adaptation(trained, tmp_path, capsys):
    cfg_path, runs, run_dir = trained
    out = tmp_path / "bench.md"
    rc = sb.main(["--competition", "texture", "--runs-dir", str(runs), "--runs", "tex", "--threads", "1",
                  "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    assert capsys.readouterr().out.strip().endswith(text.strip())
    folds = pd.read_csv(runs / "texture" / "folds.csv")
    n0 = int((folds["fold"] == 0).sum())
    assert f"{n0} of the fold's {n0} held-out rows" in text
    labels = [s.label for s in sb.SHIFTS.values()]
    for metric in ("accuracy", "roc_auc", "share_gap"):
        table = _table(text, "tex", metric)
        assert table["shift"] == ["none", "bn", "tent"]
        assert list(table) == ["shift", *labels, "**mean of 12 shifts**", "worst shift"]
        assert all(len(cells) == 3 for cells in table.values())
        ref = float(table["plain"][0])  # every other cell: "score (score - plain / none)"
        cells = [c.strip("*") for row, cs in table.items() if row != "shift" for c in cs][1:]
        pairs = [re.fullmatch(r"([0-9.]+) \(([+-][0-9.]+)\)", c).groups() for c in cells]
        assert all(abs(float(v) - ref - float(d)) < 2e-4 for v, d in pairs)
    # the unshifted, unadapted predictions are those the fold stored for its validation rows
    dp = float(re.search(r"max \|dp\| ([0-9.]+e[+-][0-9]+)", text).group(1))
    assert dp < 1e-5
    assert _table(text, "tex", "accuracy")["plain"][0] == "1.0000"  # every held-out row right: no gap
    assert _table(text, "tex", "share_gap")["plain"][0] == "0.0000"


def test_share_gap_is_the_distance_of_the_predicted_class_shares():
    y = np.array([0, 0, 0, 1, 1, 2])
    eye = np.eye(3)
    assert sb.share_gap(y, eye[y]) == 0.0
    assert sb.share_gap(y, eye[[1, 1, 1, 1, 1, 1]]) == pytest.approx(4 / 6)  # 1/2 (|0 - 3| + |6 - 2| + |0 - 1|) / 6
    assert sb.share_gap(y, eye[[1, 0, 0, 0, 1, 2]]) == 0.0  # a swap keeps the shares: the gap is not an error rate


def test_train_variant_trains_fold_0_on_the_same_folds(trained, tmp_path, capsys):
    cfg_path, runs, run_dir = trained
    train_dir = tmp_path / "variants"
    rc = sb.main(["--competition", "texture", "--runs-dir", str(runs), "--cfg", str(cfg_path),
                  "--train-dir", str(train_dir), "--train", "ema=train.ema={decay: 0.9};train.seed=3",
                  "--set", "stages=[{epochs: 2, train: head, augment: false}]", "--shifts", "jpeg10",
                  "--adapt", "none", "--also", ""])
    assert rc == 0
    variant = train_dir / "texture" / "tex-ema"
    assert (variant / "fold0" / "best.pt").is_file() and not (variant / "fold1").exists()
    cfg = load_config(variant / "config.yaml")
    assert (cfg.train.ema.decay, cfg.train.seed, cfg.stages[0].epochs) == (0.9, 3, 2)
    assert file_hash(train_dir / "texture" / "folds.csv") == file_hash(runs / "texture" / "folds.csv")
    table = _table(capsys.readouterr().out, "tex-ema", "accuracy")
    assert list(table) == ["shift", "plain", "JPEG quality 10", "**mean of 1 shifts**", "worst shift"]
    assert not (runs / "texture" / "tex-ema").exists()


def test_heavy_blur_erases_the_texture_and_scores_lower(trained):
    _, runs, run_dir = trained
    res = sb.run_bench("texture", [run_dir], runs / "texture" / "folds.csv", modes=["none", "bn"],
                       shifts=["blur2", "contrast1.4"], also=[])
    sc = res.tables[0].scores["accuracy"]
    assert res.shifts == ["plain", "blur2", "contrast1.4"]
    assert sc["plain"]["none"] >= 0.9
    assert sc["blur2"]["none"] <= sc["plain"]["none"] - 0.3  # the checkerboard is gone: near chance
    assert sc["blur2"]["bn"] <= sc["plain"]["none"] - 0.3  # no adaptation brings back what the image lost
    again = sb.run_bench("texture", [run_dir], runs / "texture" / "folds.csv", modes=["none", "bn"],
                         shifts=["blur2", "contrast1.4"], also=[])
    assert again.tables[0].scores == res.tables[0].scores


def test_max_rows_keeps_the_class_shares():
    folds = np.array([0] * 40 + [1] * 10)
    y = np.array([0] * 30 + [1] * 10 + [0] * 10)
    rows = sb.held_out_rows(folds, y, 0, 20, seed=0)
    assert len(rows) == 20 and set(rows) <= set(range(40)) and np.bincount(y[rows]).tolist() == [15, 5]
    assert np.array_equal(sb.held_out_rows(folds, y, 0, None), np.arange(40))


def _other_folds(runs: Path, run_dir: Path, tmp: Path) -> Path:
    """A copy of the runs dir whose run says it was trained on another folds.csv."""
    copy = tmp / "runs"
    shutil.copytree(runs, copy)
    (copy / "texture" / run_dir.name / "run.json").write_text(json.dumps({"folds_hash": "0" * 64}))
    return copy


@pytest.mark.parametrize("args, expected", [
    (["--runs", "tex", "--shifts", "blurr"], "error: unknown shift 'blurr'; available: plain, gamma0.7"),
    (["--runs", "tex", "--adapt", "none,bm"], "error: unknown adaptation 'bm'"),
    (["--runs", "nope"], "error: run folder not found: {runs}/texture/nope"),
    (["--runs", "tex", "--train", "ema=train.ema={decay: 0.9}"], "error: --train needs --cfg"),
    (["--runs", "tex", "--cfg", "x.yaml", "--train", "e ma"], "error: --train: expected VARIANT=KEY=VALUE"),
    (["--runs", "tex", "--fold", "1"], "error: {runs}/texture/tex/fold1/best.pt: missing (fold 1 of run 'tex'"),
    (["--runs", "tex", "--fold", "2"], "error: --fold 2: {runs}/texture/folds.csv has folds 0..1"),
    (["--runs", "tex", "--also", "roc_aux"], "error: unknown metric 'roc_aux'"),
    (["--runs", "tex", "--also", "share_gap,log_los"], "error: unknown metric 'log_los'"),
    (["other-folds", "--runs", "tex"], "error: {runs}/texture/tex/run.json: the run was trained on another folds.csv"),
])
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys, args, expected):
    _, runs, run_dir = trained
    if args[0] == "other-folds":
        runs, args = _other_folds(runs, run_dir, tmp_path), args[1:]
    out = tmp_path / "bench.md"
    rc = sb.main(["--competition", "texture", "--runs-dir", str(runs), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(expected.format(runs=runs)) and err.count("\n") == 1, err
    assert not out.exists()
