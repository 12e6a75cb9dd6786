"""Every check that can fail runs before the first file is written: a refused run leaves no folds.csv,
labels.csv, image cache or config.yaml behind, so the corrected rerun starts without --fresh (the
advised `--set input.bad_images=skip` after an unreadable image used to be refused as "another
config"). Settings that do not change results (device, workers, progress, TensorBoard, plots) are not
part of a run's identity: docs/scaling.md's folds-in-parallel recipe with one --device per process works."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import evil_pickle, png_header
from ensemble.train.__main__ import main as train_main

FAST = ["--set", "stages=[{epochs: 1, train: head, augment: false}]"]
KEEP = ["--set", "train.keep_last=true"]  # a finished fold keeps last.pt, as a killed one has it


# (what the user has, how to make it, --set overrides, the one stderr line: {comp}, {tmp} substituted)
BAD = [
    ("an unreadable train image", lambda c, t: (c / "train" / "cat_001.jpg").write_bytes(b"garbage"), [],
     "1 unreadable images under {comp}/train (input.bad_images=fail; use 'skip' to drop them): cat_001.jpg "
     "(cannot decode (7 bytes))"),
    ("a sample id without its test image", lambda c, t: (c / "test" / "t002.jpg").unlink(), [],
     "1 unreadable test images under {comp}/test (input.bad_images=fail; every sample row needs its image: restore "
     "them, or use 'skip' to predict those rows from a blank image): t002.jpg (missing)"),
    ("a 20000 x 20000 PNG", lambda c, t: (c / "train" / "dog_003.jpg").write_bytes(png_header(20000, 20000)), [],
     "1 unreadable images under {comp}/train (input.bad_images=fail; use 'skip' to drop them): dog_003.jpg "
     "(400,000,000 pixels, over input.max_pixels 89,478,485; not decoded)"),
    ("an image over input.max_pixels", lambda c, t: None, ["input.max_pixels=500"],
     "24 unreadable images under {comp}/train (input.bad_images=fail; use 'skip' to drop them): cat_000.jpg "
     "(24x24 = 576 pixels, over input.max_pixels 500; not decoded), "),
    ("a symbolic link loop", lambda c, t: (os.unlink(c / "train" / "fox_002.jpg"),
                                           os.symlink("fox_002.jpg", c / "train" / "fox_002.jpg")), [],
     "1 image file outside the competition folder or in a loop of links: train.csv id 'fox_002' "
     "({comp}/train/fox_002.jpg: a loop of symbolic links); copy the images into {comp} (the train/ or test/ folder "
     "itself may be a link)"),
    ("a link leaving the competition folder", lambda c, t: ((t / "x.jpg").write_bytes((c / "test" / "t000.jpg")
                                                                                       .read_bytes()),
                                                            os.unlink(c / "test" / "t001.jpg"),
                                                            os.symlink(t / "x.jpg", c / "test" / "t001.jpg")), [],
     "1 image file outside the competition folder or in a loop of links: sample_submission.csv id 't001' "
     "({comp}/test/t001.jpg: a symbolic link to {tmp}/x.jpg, outside {comp}); copy the images into {comp} "
     "(the train/ or test/ folder itself may be a link)"),
    ("an id with ../", lambda c, t: pd.read_csv(c / "train.csv").replace({"id": {"dog_004": "../../x"}})
     .to_csv(c / "train.csv", index=False), [],
     "{comp}/train.csv: line 14: id '../../x' leaves the image folder {comp}/train (a '..' part or an absolute "
     "path); ids name files inside it"),
    ("an absolute id in the sample", lambda c, t: pd.read_csv(c / "sample_submission.csv").replace(
        {"id": {"t003": "/etc/passwd"}}).to_csv(c / "sample_submission.csv", index=False), [],
     "{comp}/sample_submission.csv: line 5: id '/etc/passwd' leaves the image folder {comp}/test (a '..' part or an "
     "absolute path); ids name files inside it"),
    ("one unknown label (classes from the labels)", lambda c, t: pd.read_csv(c / "train.csv").replace(
        {"label": {"cat": "cat"}}).assign(label=lambda d: d["label"].where(d["id"] != "fox_005", "bird"))
     .to_csv(c / "train.csv", index=False), [],
     "{comp}/train.csv: label 'bird' is on 1 row only (line 23), too few for a class (its rows must fall into at least "
     "2 folds); the classes come from the train.csv labels (bird, cat, dog, fox): fix those rows, or list the real "
     "classes under competition.classes"),
    ("a label differing only in case", lambda c, t: pd.read_csv(c / "train.csv").assign(
        label=lambda d: d["label"].where(~d["id"].isin(["dog_001", "dog_006"]), "Dog"))
     .to_csv(c / "train.csv", index=False), [],
     "{comp}/train.csv: label 'Dog' (2 rows: line 11, line 16) differs from class 'dog' (6 rows) only in case, spaces "
     "or punctuation; the classes come from the train.csv labels (Dog, cat, dog, fox): fix those rows, or list the "
     "real classes under competition.classes"),
    ("pickled code as pretrained weights", lambda c, t: evil_pickle(t / "evil.pt"), ["model.pretrained={tmp}/evil.pt"],
     "{tmp}/evil.pt: refused: the file contains pickled code or objects beyond tensors (posix.system); convert it to "
     ".safetensors or a plain state dict of tensors"),
    ("weights of another shape", lambda c, t: torch.save({"conv1.weight": torch.zeros(3, 3)}, t / "shape.pt"),
     ["model.pretrained={tmp}/shape.pt"],
     "{tmp}/shape.pt: weights do not fit backbone 'resnet18': missing keys: bn1.weight, bn1.bias, bn1.running_mean "
     "(+96 more); shape mismatch: conv1.weight (3, 3) vs model (64, 3, 7, 7) (a file in another naming scheme: set "
     "model.weights_map: by_order)"),
    ("weights cut short", lambda c, t: (t / "cut.pt").write_bytes(b"PK\x03\x04" + b"\0" * 40),
     ["model.pretrained={tmp}/cut.pt"],
     "{tmp}/cut.pt: not a complete PyTorch file (cut short or corrupt: PytorchStreamReader failed reading zip archive: "
     "failed finding central directory)"),
    ("a CUDA device this machine lacks", lambda c, t: None, ["train.device=cuda:7"],
     "train.device='cuda:7' but CUDA is not available; use 'cpu' or 'auto'" if not torch.cuda.is_available() else
     f"train.device='cuda:7', but this machine has {torch.cuda.device_count()} CUDA device"),
]


@pytest.mark.parametrize("what, make, sets, message", BAD, ids=[b[0] for b in BAD])
def test_refused_before_anything_is_written(tiny, tmp_path, capsys, what, make, sets, message):
    cfg_path, comp, runs = tiny
    make(comp, tmp_path)
    args = [a for s in sets for a in ("--set", s.format(tmp=tmp_path))]
    assert train_main(["--cfg", str(cfg_path), *args, *FAST]) == 2
    err = capsys.readouterr().err
    expected = f"error: {message.format(comp=comp, tmp=tmp_path)}"
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert not runs.exists(), sorted(str(p) for p in runs.rglob("*"))


def test_advised_skip_after_an_unreadable_image_reruns_without_fresh(tiny, capsys):
    cfg_path, comp, runs = tiny
    (comp / "train" / "cat_001.jpg").write_bytes(b"garbage")
    assert train_main(["--cfg", str(cfg_path), *FAST]) == 2
    assert "use 'skip' to drop them" in capsys.readouterr().err
    assert train_main(["--cfg", str(cfg_path), "--set", "input.bad_images=skip", *FAST]) == 0
    assert (runs / "tiny" / "tinyrun" / "metrics.json").is_file()
    import json
    assert json.loads((runs / "tiny" / "tinyrun" / "metrics.json").read_text())["skipped_images"] == ["cat_001"]


def test_full_disk_for_the_checkpoints_is_found_before_the_cache(tiny, monkeypatch, capsys):
    """Room for the image caches (23 KB) but not for resnet18's checkpoints: nothing decoded or written."""
    import shutil
    from collections import namedtuple
    from ensemble.data import images
    cfg_path, comp, runs = tiny
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(100 << 20, 90 << 20, 10 << 20))
    monkeypatch.setattr(images, "_write", None)  # never reached
    assert train_main(["--cfg", str(cfg_path), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no space left on device writing {runs / 'tiny' / 'tinyrun'} (needs ~") \
        and err.endswith(" MB, 10 MB free)\n") and int(err.split("needs ~")[1].split()[0]) > 300, err  # 2 folds x 4 x 45 MB
    assert not runs.exists()


def test_resume_with_a_truncated_last_pt_is_one_line_and_changes_nothing(tiny, capsys):
    cfg_path, comp, runs = tiny
    assert train_main(["--cfg", str(cfg_path), "--folds", "0", *FAST, *KEEP]) == 0
    fold0 = runs / "tiny" / "tinyrun" / "fold0"
    (fold0 / "preds.npz").unlink()  # as if killed during its last epoch
    last = fold0 / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert train_main(["--cfg", str(cfg_path), "--folds", "0", "--resume", *FAST, *KEEP]) == 2
    assert capsys.readouterr().err == (f"error: {last}: not a complete checkpoint (File is not a zip file); delete it "
                                       f"to restart fold 0 from its first epoch, or use --fresh to start the run over\n")
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()} == before
    last.unlink()
    assert train_main(["--cfg", str(cfg_path), "--folds", "0", "--resume", *FAST, *KEEP]) == 0  # the advice works


def test_folds_in_parallel_with_one_device_each(tiny, capsys):
    """docs/scaling.md, "Folds in parallel": --device differs per process (and so may the progress bar,
    TensorBoard and plots); the second process continues the same run and assembles it."""
    cfg_path, comp, runs = tiny
    assert train_main(["--cfg", str(cfg_path), "--folds", "0", "--device", "cpu", *FAST, *KEEP]) == 0
    assert train_main(["--cfg", str(cfg_path), "--folds", "1", "--device", "auto", "--set", "output.plots=false",
                       "--set", "output.tensorboard=true", "--set", "output.progress=true", *FAST, *KEEP]) == 0
    run = runs / "tiny" / "tinyrun"
    assert (run / "metrics.json").is_file() and sorted(pd.read_csv(run / "oof.csv")["fold"].unique()) == [0, 1]
    capsys.readouterr()
    # a setting that does change results is still refused, naming it
    assert train_main(["--cfg", str(cfg_path), "--folds", "1", "--resume", "--set", "input.size=16", *FAST, *KEEP]) == 2
    assert capsys.readouterr().err == (f"error: {run} was made with another config (input.size: 24 -> 16); use --set "
                                       f"name=<new run> or --fresh to overwrite it\n")


def test_an_image_rewritten_with_its_old_size_and_mtime_is_decoded_again(tmp_path):
    """cp -p / rsync -t / os.utime put the old size and mtime back: ctime and inode still tell."""
    import cv2
    from ensemble.data.images import build_cache
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), np.full((8, 8, 3), 40 * i, np.uint8))
        paths.append(p)
    first = build_cache(paths, 8, tmp_path / "cache", progress=False)
    assert first.array[1].max() == 40
    st = paths[1].stat()
    data = bytearray(paths[1].read_bytes())
    new = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
    assert len(new) == len(data)  # same size: a flat image of another grey
    paths[1].write_bytes(new)
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))  # the old mtime back
    assert (paths[1].stat().st_size, paths[1].stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = build_cache(paths, 8, tmp_path / "cache", progress=False)
    assert again.array[1].min() == 200 and again.stamp != first.stamp  # fresh pixels, not the stale 40s
    np.testing.assert_array_equal(again.array[0], first.array[0])
