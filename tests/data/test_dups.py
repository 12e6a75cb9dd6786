"""Duplicate detection: hashing, blockwise pairs, groups, dups.csv, duplicate-aware folds."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import make_competition, write_configs
from ensemble.data.dups import (COLUMNS, DEFAULT_THRESHOLD, _popcount, dup_groups, exact_pairs, find_duplicates,
                                get_hash, hash_images, near_pairs)
from ensemble.dups.__main__ import main as dups_main
from ensemble.data.competition import load_competition
from ensemble.config import load_config
from ensemble.train.setup import competition_folds


def smooth_image(rng, size: int = 64) -> np.ndarray:
    """A photo-like image: random 6x6 colours upsampled smoothly, plus mild noise."""
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(img + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    """6 distinct images + a byte copy of a, a JPEG q60 re-encode of b, a +15 brightness PNG of c."""
    rng = np.random.default_rng(3)
    paths = {}
    for name in "abcdef":
        paths[name] = tmp_path / f"{name}.jpg"
        cv2.imwrite(str(paths[name]), smooth_image(rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
    paths["a_copy"] = tmp_path / "a_copy.jpg"
    shutil.copyfile(paths["a"], paths["a_copy"])
    b = cv2.imread(str(paths["b"]))
    paths["b_jpeg"] = tmp_path / "b_jpeg.jpg"
    cv2.imwrite(str(paths["b_jpeg"]), b, [cv2.IMWRITE_JPEG_QUALITY, 60])
    c = cv2.imread(str(paths["c"])).astype(np.int16)
    paths["c_bright"] = tmp_path / "c_bright.png"
    cv2.imwrite(str(paths["c_bright"]), np.clip(c + 15, 0, 255).astype(np.uint8))
    return paths


def test_exact_and_near_duplicates_grouped_distinct_images_not(images):
    names = list(images)
    h = hash_images([images[n] for n in names], "phash", workers=2)
    assert h.ok.all() and h.hashes.dtype == np.uint64 and h.thumbs.shape == (len(names), 32 * 32)
    split = ["train"] * 6 + ["train", "test", "train"]
    labels = ["x", "y", "x", "x", "y", "x", "y", "", "x"]  # a (x) and its copy (y) conflict
    df, counts = find_duplicates(names, split, labels, [str(images[n]) for n in names], h,
                                   DEFAULT_THRESHOLD)
    assert list(df.columns) == COLUMNS
    groups = {frozenset(g["id"]) for _, g in df.groupby("dup_group")}
    assert groups == {frozenset({"a", "a_copy"}), frozenset({"b", "b_jpeg"}), frozenset({"c", "c_bright"})}
    row = df.set_index("id")
    assert row.loc["a", "kind"] == "exact" and row.loc["a", "distance"] == 0
    assert row.loc["b_jpeg", "kind"] == "near" and row.loc["c_bright", "kind"] == "near"
    assert row.loc["a", "conflict"] and row.loc["a_copy", "labels"] == "x|y"
    assert not row.loc["c", "conflict"] and row.loc["b_jpeg", "labels"] == "y"
    assert (counts["exact_train_train"], counts["near_train_test"], counts["near_train_train"]) == (1, 1, 1)
    assert counts["conflicting_groups"] == 1 and counts["groups"] == 3


def test_lookalikes_rejected_by_thumbnail_correlation(images):
    """A huge threshold proposes every pair; only the real duplicates survive the correlation checks
    (the candidates' images are read again for the detail check, so paths are real files)."""
    names = list(images)
    paths = [str(images[n]) for n in names]
    h = hash_images(paths)
    df, counts = find_duplicates(names, ["train"] * len(names), ["x"] * len(names), paths, h, threshold=64)
    assert set(df["id"]) == {"a", "a_copy", "b", "b_jpeg", "c", "c_bright"}
    assert counts["rejected_lookalikes"] == len(names) * (len(names) - 1) // 2 - 3
    assert counts["rejected_detail"] == 0 and counts["chain_refused"] == 0
    df_all, _ = find_duplicates(names, ["train"] * len(names), ["x"] * len(names), paths, h, 64, min_corr=-1,
                                  min_detail=-1)
    assert df_all["dup_group"].nunique() == 1 and len(df_all) == len(names)


@pytest.mark.parametrize("block", [7, 512])
def test_near_pairs_match_brute_force(block):
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 200, dtype=np.int64).astype(np.uint64) ^ np.uint64(1 << 63)
    hashes[50] = hashes[10]  # one exact pair
    ok = np.ones(200, bool)
    ok[7] = False
    i, j, d, nearest = near_pairs(hashes, 24, ok, block=block)
    brute = {(a, b): bin(int(hashes[a]) ^ int(hashes[b])).count("1")
             for a in range(200) for b in range(a + 1, 200) if ok[a] and ok[b]}
    want = {k: v for k, v in brute.items() if v <= 24}
    assert dict(zip(zip(i.tolist(), j.tolist()), d.tolist())) == want
    assert nearest[7] == -1 and nearest[10] == 0
    assert nearest[3] == min(v for k, v in brute.items() if 3 in k)


def test_popcount_lookup_fallback(monkeypatch):
    x = np.array([0, 1, 2**64 - 1, 0x0F0F], dtype=np.uint64)
    assert _popcount(x).tolist() == [0, 1, 64, 8]
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert _popcount(x.reshape(2, 2)).tolist() == [[0, 1], [64, 8]]


def test_exact_pairs_skip_missing_files():
    i, j = exact_pairs(np.array(["h1", None, "h1", None, "h2", "h1"], dtype=object))
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 2), (0, 5), (2, 5)]


@pytest.mark.parametrize("call, message", [
    (lambda: get_hash("md5"), "unknown hash 'md5'; available: phash, dhash, ahash, whash"),
    (lambda: near_pairs(np.zeros(3, np.uint64), 65), "threshold must be a Hamming distance in 0..64, got 65"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert str(e.value) == message


def test_dup_groups_reads_back_and_validates(tmp_path):
    f = tmp_path / "dups.csv"
    pd.DataFrame({"id": ["a", "b", "t1", "c"], "split": ["train", "train", "test", "train"],
                  "dup_group": ["d00000", "d00000", "d00000", "d00001"]}).to_csv(f, index=False)
    got = dup_groups(f, np.array(["c", "x", "a", "b", "y"], dtype=object))
    assert got.tolist() == ["d00001", None, "d00000", "d00000", None]
    with pytest.raises(ValueError, match=r"dups.csv: 1 train ids are not in train.csv \(e.g. 'c'\)"):
        dup_groups(f, ["a", "b"])
    pd.DataFrame({"id": ["a"], "group": ["g"]}).to_csv(f, index=False)
    with pytest.raises(ValueError, match=r"dups.csv: missing column 'split' \(columns: id, group\)"):
        dup_groups(f, ["a"])


def test_cli_then_folds_keep_duplicates_together(tmp_path, capsys):
    comp = make_competition(tmp_path / "comp", n_per_class=10, size=32)
    train = pd.read_csv(comp / "train.csv", dtype=str)
    pairs = {"cat_000": "cat_900", "cat_001": "cat_901", "dog_002": "dog_902", "fox_003": "fox_903"}
    for src, dst in list(pairs.items())[:3]:  # byte-identical copies
        shutil.copyfile(comp / "train" / f"{src}.jpg", comp / "train" / f"{dst}.jpg")
    fox = cv2.imread(str(comp / "train" / "fox_003.jpg")).astype(np.int16)  # re-encoded, brighter
    cv2.imwrite(str(comp / "train" / "fox_903.jpg"), np.clip(fox + 12, 0, 255).astype(np.uint8))
    shutil.copyfile(comp / "train" / "dog_005.jpg", comp / "test" / "t000.jpg")  # train-test leak
    extra = pd.DataFrame({"id": list(pairs.values()), "label": ["cat", "cat", "dog", "fox"]})
    pd.concat([train, extra]).to_csv(comp / "train.csv", index=False)
    model_cfg = write_configs(tmp_path / "configs", comp, tmp_path / "runs", n_folds=5)

    assert dups_main(["--cfg", str(model_cfg.parent / "base.yaml"), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "exact pairs: train-train 3, train-test 1, test-test 0" in out
    assert "near pairs (distance 1..4): train-train 1," in out
    df = pd.read_csv(tmp_path / "runs" / "tiny" / "dups.csv", dtype=str, keep_default_na=False)
    assert set(df["id"]) == set(pairs) | set(pairs.values()) | {"dog_005", "t000"}
    assert (tmp_path / "runs" / "tiny" / "dups.json").exists()

    cfg = load_config(model_cfg)
    c = load_competition(cfg.competition)
    fold, _ = competition_folds(c, cfg.competition_dir, cfg.folds.n, cfg.folds.seed,
                                grouped=bool(cfg.competition.group_col), use_dups=cfg.folds.dups)
    of = dict(zip(c.train["id"], fold))
    assert all(of[a] == of[b] for a, b in pairs.items())
    saved = pd.read_csv(tmp_path / "runs" / "tiny" / "folds.csv", dtype=str, keep_default_na=False)
    assert saved.set_index("id").loc["cat_900", "dup_group"] == saved.set_index("id").loc["cat_000", "dup_group"]

    # dups.csv re-made after folds.csv: a note when folds already fit, a warning when they split a group
    assert dups_main(["--cfg", str(model_cfg.parent / "base.yaml"), "--no-embed"]) == 0
    assert "already keeps every duplicate group in one fold" in capsys.readouterr().out
    saved.loc[saved["id"] == "cat_900", "fold"] = str((of["cat_000"] + 1) % 5)
    saved.to_csv(tmp_path / "runs" / "tiny" / "folds.csv", index=False)
    assert dups_main(["--cfg", str(model_cfg.parent / "base.yaml"), "--no-embed"]) == 0
    assert ("predates " + str(tmp_path / "runs" / "tiny" / "dups.csv") + " and splits 1 duplicate groups"
            in capsys.readouterr().out)


def test_cli_errors(tmp_path, capsys):
    assert dups_main(["--competition", "nope"]) == 2
    assert "error: --competition nope: config not found: configs/nope/base.yaml (use --cfg)" in capsys.readouterr().err
    comp = make_competition(tmp_path / "comp", n_per_class=2, n_test=1)
    cfg = write_configs(tmp_path / "configs", comp, tmp_path / "runs").parent / "base.yaml"
    assert dups_main(["--cfg", str(cfg), "--threshold", "70"]) == 2
    assert "--threshold must be a Hamming distance in 0..64, got 70" in capsys.readouterr().err
