"""Near-duplicate confirmation: look-alikes sharing one layout are not grouped,
copies are; groups never grow by chaining; real images from ../shared/datasets when present."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, make_competition, write_configs
from ensemble.data.dups import DEFAULT_MIN_CORR, find_duplicates, hash_images, near_pairs, thumb_corr
from ensemble.data.dups_confirm import DEFAULT_MIN_COS, DEFAULT_MIN_DETAIL, complete_linkage, detail_thumbs, pair_scores
from ensemble.dups.__main__ import embedder, main as dups_main

SHARED = REPO.parent / "shared" / "datasets"


def fundus(rng, size: int = 128) -> np.ndarray:
    """A fundus-like photo (BGR): dark surround, orange retina, bright optic disc, all in one place;
    faint texture and vessels (random walks from the disc) differ per image."""
    img = np.zeros((size, size, 3), np.float32)
    c = size // 2
    cv2.circle(img, (c, c), int(size * 0.45), (20, 60, 170), -1)
    img = cv2.GaussianBlur(img, (0, 0), size / 40)
    inside = img[..., 2:] > 60
    tex = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.5)
    img += inside * (tex / tex.std() * 4)[..., None]
    disc = (int(size * 0.68), c)
    for _ in range(10):
        pts, ang = [disc], rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            ang += rng.normal(0, 0.35)
            pts.append((int(pts[-1][0] + np.cos(ang) * size / 18), int(pts[-1][1] + np.sin(ang) * size / 18)))
        cv2.polylines(img, [np.array(pts, np.int32)], False, (14, 40, 130), 1)
    cv2.circle(img, disc, size // 14, (150, 220, 250), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def copies(src: Path, out: Path) -> dict[str, Path]:
    """A byte copy, a 2/3 resize and a JPEG q70 re-encode of src."""
    img = cv2.imread(str(src))
    made = {"copy": out / f"{src.stem}_copy{src.suffix}", "resized": out / f"{src.stem}_resized.jpg",
            "q70": out / f"{src.stem}_q70.jpg"}
    shutil.copyfile(src, made["copy"])
    cv2.imwrite(str(made["resized"]), cv2.resize(img, (img.shape[1] * 2 // 3, img.shape[0] * 2 // 3),
                                                 interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(made["q70"]), img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return made


def group_sets(df: pd.DataFrame) -> set[frozenset]:
    return {frozenset(g["id"]) for _, g in df.groupby("dup_group")}


@pytest.fixture
def lookalikes(tmp_path):
    """8 fundus look-alikes f0..f7 plus a byte copy, a resize and a q70 re-encode of f0."""
    rng = np.random.default_rng(0)
    paths = {}
    for k in range(8):
        paths[f"f{k}"] = tmp_path / f"f{k}.jpg"
        cv2.imwrite(str(paths[f"f{k}"]), fundus(rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
    paths.update({f"f0_{k}": p for k, p in copies(paths["f0"], tmp_path).items()})
    return paths


def find(paths: dict[str, Path], **kw):
    names = list(paths)
    strs = [str(paths[n]) for n in names]
    h = hash_images(strs, workers=2)
    return find_duplicates(names, ["train"] * len(names), [n[:2] for n in names], strs, h, **kw)


def test_lookalikes_pass_the_old_checks_but_are_not_grouped(lookalikes):
    """threshold 64 proposes every pair; the grey thumbnails pass nearly all of them (what used to
    chain all 11 images into one group); the detail check keeps only f0's copies."""
    h = hash_images([str(p) for p in lookalikes.values()], workers=2)
    i, j, _, _ = near_pairs(h.hashes, 64)
    look = (i < 8) & (j < 8)
    assert (thumb_corr(h.thumbs, i[look], j[look]) >= DEFAULT_MIN_CORR).all()
    df, counts = find(lookalikes, threshold=64)
    assert group_sets(df) == {frozenset({"f0", "f0_copy", "f0_resized", "f0_q70"})}
    assert counts["rejected_detail"] >= 28 and counts["chain_refused"] == 0
    assert counts["largest_group"] == 4 and set(df["kind"]) == {"exact", "near"}
    old, _ = find(lookalikes, threshold=64, min_detail=-1, min_inliers=0, min_inlier_ratio=0)  # the first: one big group
    assert old["dup_group"].nunique() == 1 and len(old) == 11


def test_detail_scores_separate_copies_from_lookalikes(lookalikes):
    strs = [str(p) for p in lookalikes.values()]
    det, _ = pair_scores(strs, np.array([0, 0, 0, 0, 1]), np.array([9, 10, 1, 2, 2]))
    assert det[:2].min() >= 0.95 and det[2:].max() < DEFAULT_MIN_DETAIL
    flat = np.full((40, 40, 3), 90, np.uint8)  # no detail at all: never confirmed by accident
    assert not detail_thumbs(flat).any()


@pytest.mark.parametrize("pairs, strength, groups, refused", [
    # a~b~c, a and c unconfirmed: the stronger pair wins, c stays alone
    ([(0, 1), (1, 2)], [0.9, 0.95], [{1, 2}], 1),
    ([(0, 1), (1, 2), (0, 2)], [0.9, 0.95, 0.88], [{0, 1, 2}], 0),
    # two confirmed pairs joined by one bridge pair: the bridge is refused
    ([(0, 1), (2, 3), (1, 2)], [0.99, 0.99, 0.9], [{0, 1}, {2, 3}], 1),
    # a chain of 5: never one group of 5
    ([(0, 1), (1, 2), (2, 3), (3, 4)], [0.9, 0.91, 0.92, 0.93], [{3, 4}, {1, 2}], 2),
])
def test_complete_linkage_never_chains(pairs, strength, groups, refused):
    pi, pj = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    comp, n_refused = complete_linkage(6, pi, pj, np.array(strength))
    got = [set(np.flatnonzero(comp == g).tolist()) for g in np.unique(comp)]
    assert sorted(map(sorted, (g for g in got if len(g) > 1))) == sorted(map(sorted, groups))
    assert n_refused == refused


def test_embedding_cosine_confirms_copies_with_packaged_weights(lookalikes, monkeypatch, tmp_path):
    """efficientnet_lite0's ImageNet weights from the installed package (no hub, no local folder)."""
    from ensemble.models import backbones
    monkeypatch.setattr(backbones, "hub_reachable", lambda: False)
    monkeypatch.setenv("ENSEMBLE_WEIGHTS", str(tmp_path / "weights"))
    strs = [str(p) for p in lookalikes.values()]
    embed, seen = embedder(), {}

    def once(images):  # the same 11 images twice: embed them once (a CPU model build takes seconds)
        key = images.tobytes()
        seen[key] = seen[key] if key in seen else embed(images)
        return seen[key]
    _, cos = pair_scores(strs, np.zeros(10, np.int64), np.arange(1, 11), embed=once)
    assert cos[7:].min() >= DEFAULT_MIN_COS and cos[7] > 0.999  # f0 vs its copy, resize, q70
    df, _ = find(lookalikes, threshold=64, embed=once)
    assert len(seen) == 1
    assert group_sets(df) == {frozenset({"f0", "f0_copy", "f0_resized", "f0_q70"})}


@pytest.mark.parametrize("args, message", [
    (["--min-detail", "2"], "error: --min-detail must be a correlation in -1..1, got 2.0"),
    (["--min-cos", "-3"], "error: --min-cos must be a correlation in -1..1, got -3.0"),
    (["--min-corr", "1.5"], "error: --min-corr must be a correlation in -1..1, got 1.5"),
    (["--min-inliers", "-1"], "error: --min-inliers must be a whole number of keypoints >= 0, got -1"),
    (["--min-inlier-ratio", "1.5"], "error: --min-inlier-ratio must be a fraction in 0..1, got 1.5"),
])
def test_cli_bad_thresholds(tmp_path, capsys, args, message):
    comp = make_competition(tmp_path / "comp", n_per_class=2, n_test=1)
    cfg = write_configs(tmp_path / "configs", comp, tmp_path / "runs").parent / "base.yaml"
    assert dups_main(["--cfg", str(cfg), "--no-embed", *args]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "runs" / "tiny" / "dups.csv").exists()


def test_cli_without_weights_is_one_line(tmp_path, capsys, monkeypatch):
    from ensemble.models import backbones
    monkeypatch.setattr(backbones, "hub_reachable", lambda: False)
    monkeypatch.setenv("ENSEMBLE_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr("ensemble.dups.__main__.EMBED_BACKBONE", "resnet18")  # no package ships resnet18 weights
    comp = make_competition(tmp_path / "comp", n_per_class=2, n_test=1, size=32)
    shutil.copyfile(comp / "train" / "cat_000.jpg", comp / "test" / "t000.jpg")
    img = cv2.imread(str(comp / "train" / "dog_000.jpg"))
    cv2.imwrite(str(comp / "train" / "dog_001.jpg"), np.clip(img.astype(np.int16) + 12, 0, 255).astype(np.uint8))
    cfg = write_configs(tmp_path / "configs", comp, tmp_path / "runs").parent / "base.yaml"
    assert dups_main(["--cfg", str(cfg), "--threshold", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not get pretrained weights for 'resnet18'") and "\n" not in err
    assert err.endswith("; or run with --no-embed (detail check only)")
    assert dups_main(["--cfg", str(cfg), "--no-embed"]) == 0
    out = capsys.readouterr().out
    assert "near pairs (distance 1..4): train-train 1, train-test 0, test-test 0" in out
    assert "  0 more rejected by detail corr < 0.76; 0 confirmed pairs not chained" in out
    df = pd.read_csv(tmp_path / "runs" / "tiny" / "dups.csv", dtype=str)
    assert {"cat_000", "t000"} <= set(df["id"])
    s = json.loads((tmp_path / "runs" / "tiny" / "dups.json").read_text())
    assert (s["min_detail"], s["min_cos"], s["embedded"], s["chain_refused"]) == (0.76, 0.8, False, 0)


@pytest.mark.skipif(not (SHARED / "ham10000" / "train.csv").exists(), reason="../shared/datasets is absent")
@pytest.mark.parametrize("name, id_col, group_col, ext", [("ham10000", "image", "lesion_id", ".jpg"),
                                                         ("chest_xray", "id", "patient", ".jpeg")])
def test_real_images_copies_found_different_lesions_not(tmp_path, name, id_col, group_col, ext):
    """20 different lesions (ham10000 lesion_id) or patients (chest_xray) plus a byte copy, a resize
    and a q70 re-encode of the first: every pair is proposed, only the copies are grouped."""
    root = SHARED / name
    df = pd.read_csv(root / "train.csv", dtype=str).drop_duplicates(group_col).head(20)
    paths = {i: root / "train" / f"{i}{ext}" for i in df[id_col]}
    first = df[id_col].iat[0]
    paths.update({f"{first}_{k}": p for k, p in copies(paths[first], tmp_path).items()})
    got, counts = find(paths, threshold=64)
    assert group_sets(got) == {frozenset({first, f"{first}_copy", f"{first}_resized", f"{first}_q70"})}
    assert counts["chain_refused"] == 0
