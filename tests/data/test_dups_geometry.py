"""Geometric confirmation of near duplicates: different pictures in one fundus camera's frame (the
same mask, notch, vignetting and dust specks) are not grouped although their thumbnails and detail
correlate; copies under resize, JPEG, crop and brightness still are."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, make_competition, write_configs
from ensemble.data.dups import DEFAULT_MIN_CORR, find_duplicates, hash_images, thumb_corr
from ensemble.data.dups_confirm import DEFAULT_MIN_DETAIL, detail_corr, detail_thumbs, pair_scores
from ensemble.data import dups_geometry
from ensemble.dups.__main__ import main as dups_main

_spec = importlib.util.spec_from_file_location("measure_dups", REPO / "scripts" / "measure_dups.py")
measure = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(measure)  # the measurement's frame, so the test and the figures agree


def retina_texture(rng, size: int = 224) -> np.ndarray:
    """(size, size, 3) uint8 RGB: a retina-like picture, different for every rng: faint fractal (1/f)
    noise in fundus colours and a tree of darker, branching vessels drawn as random walks."""
    noise = sum(cv2.resize(rng.normal(0, 1, (s, s)).astype(np.float32), (size, size),
                           interpolation=cv2.INTER_CUBIC) * s ** -0.7 for s in (4, 8, 16, 32, 64))
    noise /= noise.std()
    img = np.stack([170 + 15 * noise, 75 + 10 * noise, 30 + 5 * noise], -1)
    start = rng.uniform(0.3, 0.7, 2) * size
    for _ in range(8):
        pts, ang = [start], rng.uniform(0, 2 * np.pi)
        for _ in range(25):
            ang += rng.normal(0, 0.3)
            pts.append(pts[-1] + size / 40 * np.array([np.cos(ang), np.sin(ang)]))
        cv2.polylines(img, [np.array(pts, np.int32)], False, (140, 52, 25), int(rng.integers(1, 4)))
    return np.clip(img, 0, 255).astype(np.uint8)


def framed(rng) -> np.ndarray:
    """A retina texture in the measurement's fundus frame with the camera's own artefacts (BGR)."""
    return cv2.cvtColor(measure.fundus_frame(retina_texture(rng), artefacts=True), cv2.COLOR_RGB2BGR)


def copies_of(img: np.ndarray) -> dict[str, np.ndarray]:
    """A 2/3 resize, a JPEG q70 re-encode (made when written), 1% and 3% crops and +20 brightness (BGR)."""
    h, w = img.shape[:2]
    crop = {f"crop{k}": cv2.resize(img[c:h - c, c:w - c], (w, h), interpolation=cv2.INTER_AREA)
            for k, c in ((1, round(0.01 * h)), (3, round(0.03 * h)))}
    return {"resized": cv2.resize(img, (w * 2 // 3, h * 2 // 3), interpolation=cv2.INTER_AREA), "q70": img,
            **crop, "bright": np.clip(img.astype(np.int16) + 20, 0, 255).astype(np.uint8)}


@pytest.fixture
def fundus_set(tmp_path):
    """Pictures e0..e5 of six different 'eyes' through one camera, plus five copies of e0."""
    rng = np.random.default_rng(5)
    paths, imgs = {}, [framed(rng) for _ in range(6)]
    for k, img in enumerate(imgs):
        paths[f"e{k}"] = tmp_path / f"e{k}.jpg"
        cv2.imwrite(str(paths[f"e{k}"]), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    for name, arr in copies_of(imgs[0]).items():
        paths[f"e0_{name}"] = tmp_path / f"e0_{name}.jpg"
        cv2.imwrite(str(paths[f"e0_{name}"]), arr, [cv2.IMWRITE_JPEG_QUALITY, 70 if name == "q70" else 95])
    return paths


def find(paths, **kw):
    names = list(paths)
    strs = [str(paths[n]) for n in names]
    h = hash_images(strs, workers=2)
    return find_duplicates(names, ["train"] * len(names), ["x"] * len(names), strs, h, **kw)


def test_lookalikes_in_one_frame_pass_the_correlations_but_not_the_geometry(fundus_set):
    strs = [str(p) for p in fundus_set.values()]
    h = hash_images(strs, workers=2)
    i, j = np.triu_indices(6, 1)  # the 15 pairs of different eyes
    det, _ = pair_scores(strs, i, j)
    assert (thumb_corr(h.thumbs, i, j) >= DEFAULT_MIN_CORR).all()
    assert (det >= DEFAULT_MIN_DETAIL).all()  # the correlations alone would group every pair
    inl, ratio, kp = dups_geometry.geometry_scores(strs, i, j)
    assert kp.min() >= 100 and inl.max() < dups_geometry.DEFAULT_MIN_INLIERS  # what the shared specks give, not a copy
    assert not dups_geometry.geometry_confirmed(inl, ratio, kp).any()
    ci, cj = np.zeros(5, np.int64), np.arange(6, 11)  # e0 against its five copies
    inl, ratio, kp = dups_geometry.geometry_scores(strs, ci, cj)
    assert inl.min() >= 2 * dups_geometry.DEFAULT_MIN_INLIERS and ratio.min() >= 2 * dups_geometry.DEFAULT_MIN_INLIER_RATIO
    assert pair_scores(strs, ci, cj)[0].min() >= DEFAULT_MIN_DETAIL

    df, counts = find(fundus_set, threshold=64)  # the 3% crop stops at the 32 px thumbnail gate (< 0.98)
    assert {frozenset(g["id"]) for _, g in df.groupby("dup_group")} == {
        frozenset({"e0", "e0_resized", "e0_q70", "e0_crop1", "e0_bright"})}
    assert counts["rejected_geometry"] >= 15 and counts["geometry_unjudged"] == 0
    old, _ = find(fundus_set, threshold=64, min_inliers=0, min_inlier_ratio=0)  # the correlations alone
    assert old["id"].str.match(r"e[1-5]$").sum() >= 2 and old["dup_group"].nunique() < 6


def test_keypoints_on_the_frame_and_notch_do_not_count():
    """A frame with a flat field has SIFT keypoints only on its rim and notch: none is kept."""
    flat = measure.fundus_frame(np.full((224, 224, 3), 150, np.uint8))
    grey = cv2.cvtColor(cv2.resize(flat, (dups_geometry.GEO_SIZE, dups_geometry.GEO_SIZE)), cv2.COLOR_RGB2GRAY)
    assert len(cv2.SIFT_create(contrastThreshold=dups_geometry.GEO_CONTRAST).detect(grey, None)) >= 20
    assert len(dups_geometry.geo_features(flat).pts) == 0
    frame = dups_geometry.frame_mask(grey)
    assert frame[0, 0] and frame[-1, -1] and not frame[dups_geometry.GEO_SIZE // 2, dups_geometry.GEO_SIZE // 2]
    c, r = dups_geometry.GEO_SIZE / 2, 0.46 * dups_geometry.GEO_SIZE  # the notch (upper right) is frame, inside the disc's radius
    nx, ny = round(c + r * np.cos(np.pi / 4.5)), round(c - r * np.sin(np.pi / 4.5))
    assert frame[ny, nx]
    dark_inside = flat.copy()  # a dark lesion inside the field is content, not frame
    cv2.circle(dark_inside, (112, 112), 20, (5, 5, 5), -1)
    assert not dups_geometry.frame_mask(cv2.cvtColor(cv2.resize(dark_inside, (dups_geometry.GEO_SIZE,) * 2), cv2.COLOR_RGB2GRAY))[128, 128]
    textured = measure.fundus_frame(retina_texture(np.random.default_rng(1)))
    f = dups_geometry.geo_features(textured)
    g = cv2.cvtColor(cv2.resize(textured, (dups_geometry.GEO_SIZE,) * 2), cv2.COLOR_RGB2GRAY)
    dist = dups_geometry.content_distance(dups_geometry.frame_mask(g))
    assert len(f.pts) >= 100 and (dist[f.pts[:, 1].astype(int), f.pts[:, 0].astype(int)] > 3).all()


@pytest.mark.parametrize("inliers, ratio, keypoints, expected", [
    (300, 0.5, 600, True),     # a copy
    (29, 0.5, 58, False),      # too few inliers (camera specks agree on the identity too)
    (100, 0.1, 1000, False),   # chance inliers among many keypoints
    (8, 0.6, 13, True),        # 13 keypoints: no copy could show 30 inliers, the correlations decide
    (0, 0.0, 29, True),
])
def test_geometry_rule(inliers, ratio, keypoints, expected):
    got = dups_geometry.geometry_confirmed(np.array([inliers]), np.array([ratio]), np.array([keypoints]), 30, 0.15)
    assert got.tolist() == [expected]
    assert dups_geometry.geometry_unjudged(np.array([keypoints]), 30).tolist() == [keypoints < 30]


def test_unreadable_image_scores_nothing(tmp_path):
    good = tmp_path / "a.jpg"
    cv2.imwrite(str(good), framed(np.random.default_rng(0)))
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not an image")
    inl, ratio, kp = dups_geometry.geometry_scores([str(good), str(bad)], np.array([0]), np.array([1]))
    assert (inl.tolist(), ratio.tolist()) == ([0], [0.0]) and not dups_geometry.geometry_confirmed(inl, ratio, kp).any()
    empty = dups_geometry.geometry_scores([str(good)], np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert [a.shape for a in empty] == [(0,), (0,), (0,)]


def test_cli_geometry_flags_reach_dups_json_and_the_summary(tmp_path, capsys):
    """Two look-alikes and a copy in a competition: the copy is grouped, the look-alike refused by
    geometry (and grouped with --min-inliers 0 --min-inlier-ratio 0, the correlations alone); a
    32 px copy is left to the correlations."""
    comp = make_competition(tmp_path / "comp", n_per_class=2, n_test=1, size=32)
    rng = np.random.default_rng(5)
    imgs = [framed(rng) for _ in range(6)]
    pair = next((a, b) for a in range(6) for b in range(a + 1, 6)
                if detail_corr(*(detail_thumbs(cv2.cvtColor(imgs[k], cv2.COLOR_BGR2RGB)) for k in (a, b)))
                >= DEFAULT_MIN_DETAIL)
    cv2.imwrite(str(comp / "train" / "eye_a.jpg"), imgs[pair[0]], [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(comp / "train" / "eye_b.jpg"), imgs[pair[1]], [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(comp / "test" / "t000.jpg"), imgs[pair[0]], [cv2.IMWRITE_JPEG_QUALITY, 70])
    small = cv2.imread(str(comp / "train" / "dog_000.jpg"))  # 32 px: too small to judge, the correlations decide
    cv2.imwrite(str(comp / "train" / "dog_001.jpg"), np.clip(small.astype(np.int16) + 12, 0, 255).astype(np.uint8))
    train = pd.read_csv(comp / "train.csv", dtype=str)
    pd.concat([train, pd.DataFrame({"id": ["eye_a", "eye_b"], "label": ["cat", "dog"]})]).to_csv(
        comp / "train.csv", index=False)
    cfg = write_configs(tmp_path / "configs", comp, tmp_path / "runs").parent / "base.yaml"
    runs = tmp_path / "runs" / "tiny"

    assert dups_main(["--cfg", str(cfg), "--no-embed", "--threshold", "64", "--min-inliers", "24",
                      "--min-inlier-ratio", "0.05"]) == 0
    out = capsys.readouterr().out
    assert ("more rejected by geometry (< 24 keypoints on one RANSAC homography or < 5% of them); 1 left to the "
            "correlations (images under 96 px or with < 24 keypoints)") in out
    df = pd.read_csv(runs / "dups.csv", dtype=str)
    assert {frozenset(g["id"]) for _, g in df.groupby("dup_group")} == {frozenset({"eye_a", "t000"}),
                                                                         frozenset({"dog_000", "dog_001"})}
    s = json.loads((runs / "dups.json").read_text())
    assert (s["min_inliers"], s["min_inlier_ratio"], s["rejected_geometry"] >= 1, s["geometry_unjudged"]) == (
        24, 0.05, True, 1)

    assert dups_main(["--cfg", str(cfg), "--no-embed", "--threshold", "64", "--min-inliers", "0",
                      "--min-inlier-ratio", "0"]) == 0
    assert "rejected by geometry" not in capsys.readouterr().out
    df = pd.read_csv(runs / "dups.csv", dtype=str)
    assert {"eye_a", "eye_b", "t000"} <= set(df["id"])
