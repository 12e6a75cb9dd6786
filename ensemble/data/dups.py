"""`python -m ensemble.dups --competition NAME`: exact and near-duplicate images in train + test.

Every image gets a 64-bit perceptual hash (imagehash: phash, dhash, ahash or whash), a sha1 of
its bytes and a 32x32 grey thumbnail. Candidate pairs within Hamming distance <= threshold are
found blockwise with numpy (XOR + popcount), pass when their thumbnails correlate >= min_corr, and
are confirmed by a detail correlation and an embedding cosine (data/dups_confirm.py), then by
geometry: SIFT keypoints inside the frame agreeing on one RANSAC homography (data/dups_geometry.py);
groups grow by complete linkage over exact + confirmed pairs (never by chaining). Writes
runs/NAME/dups.csv (only rows in some group) and runs/NAME/dups.json (settings, counts, timings);
`ensemble.train` keeps each duplicate group inside one fold when `folds.dups: true`.
"""
from __future__ import annotations

import logging
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd

from ensemble.artifacts import atomic_write_csv, atomic_write_json
from ensemble.artifacts.paths import CompetitionPaths
from ensemble.data.dups_report import folds_note, summary_lines  # noqa: F401 (re-exported)
from ensemble.data.dups_confirm import (DEFAULT_MIN_COS, DEFAULT_MIN_DETAIL, Embedder, complete_linkage, confirmed,
                                        pair_scores)
from ensemble.data.dups_geometry import (DEFAULT_MIN_INLIER_RATIO, DEFAULT_MIN_INLIERS, geometry_confirmed,
                                         geometry_scores, geometry_unjudged)
from ensemble.registry import Registry

logger = logging.getLogger(__name__)

# Defaults, measured on chest_xray and ham10000 (224 px JPEGs): a JPEG q50 re-encode, +20
# brightness, x1.2 contrast or a down/up-scale moves a 64-bit pHash by <= 4 bits (99-100% of 200
# images each; pHash bits are a median split, so distances are even) and keeps the thumbnail
# correlation >= 0.985. But distinct look-alike images (X-rays of different children) also come
# within 2-4 bits, with correlations <= 0.96: the hash proposes, the correlation confirms.
DEFAULT_THRESHOLD = 4
DEFAULT_MIN_CORR = 0.98
THUMB = 32
COLUMNS = ["id", "split", "label", "dup_group", "kind", "distance", "labels", "conflict", "path"]
HASHES: Registry[Callable] = Registry("hash")


def register_hash(name: str):
    """Decorator: add an imagehash function (PIL image -> 64-bit ImageHash) to HASHES."""
    return HASHES.register(name)


def _imagehash(name: str):
    def fn(img):  # PIL image -> 64-bit ImageHash
        import imagehash
        return getattr(imagehash, name)(img, hash_size=8)
    return fn


for _name, _fn in (("phash", "phash"), ("dhash", "dhash"), ("ahash", "average_hash"), ("whash", "whash")):
    register_hash(_name)(_imagehash(_fn))


def get_hash(name: str) -> Callable:
    return HASHES.get(name)


@dataclass
class Hashes:
    """Per-image fingerprints. hashes (N,) uint64; sha1 (N,) object (None: unreadable file);
    thumbs (N, THUMB*THUMB) float32 zero-mean unit-norm grey thumbnails; ok (N,) bool decoded;
    bad {path: reason}."""

    hashes: np.ndarray
    sha1: np.ndarray
    thumbs: np.ndarray
    ok: np.ndarray
    bad: dict[str, str] = field(default_factory=dict)


def _hash_one(path: str, fn: Callable) -> tuple[int, str | None, np.ndarray | None, str | None]:
    """-> (perceptual hash as int or -1, sha1 hex or None, thumbnail or None, problem or None)."""
    from PIL import Image

    from ensemble.data.images import ImageError, decode
    try:
        sha = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError:
        return -1, None, None, "missing"
    try:
        img, _ = decode(path)
    except ImageError as e:
        return -1, sha, None, e.reason or str(e)
    bits = np.asarray(fn(Image.fromarray(img)).hash, dtype=bool).ravel()
    grey = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    t = grey.astype(np.float32).ravel()
    t -= t.mean()
    t /= max(float(np.linalg.norm(t)), 1e-6)  # a flat image stays all zeros
    return int.from_bytes(np.packbits(bits).tobytes(), "big"), sha, t, None


def hash_images(paths: Sequence[str | Path], method: str = "phash", workers: int | None = None) -> Hashes:
    """Hash, fingerprint and thumbnail every image in parallel threads (decode releases the GIL)."""
    fn = get_hash(method)
    strs = [str(p) for p in paths]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        res = list(pool.map(_hash_one, strs, [fn] * len(strs)))
    thumbs = np.zeros((len(strs), THUMB * THUMB), np.float32)
    for k, (_, _, t, _) in enumerate(res):
        if t is not None:
            thumbs[k] = t
    return Hashes(hashes=np.array([max(h, 0) for h, *_ in res], dtype=np.uint64),
                  sha1=np.array([r[1] for r in res], dtype=object), thumbs=thumbs,
                  ok=np.array([r[0] >= 0 for r in res], dtype=bool),
                  bad={p: r[3] for p, r in zip(strs, res) if r[3]})


def thumb_corr(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """(P,) Pearson correlation of thumbnails i[k], j[k] (in chunks of pairs); two flat images -> 1."""
    out = np.empty(len(i), np.float32)
    for s in range(0, len(i), chunk):
        a, b = thumbs[i[s:s + chunk]], thumbs[j[s:s + chunk]]
        out[s:s + chunk] = np.where(~a.any(1) & ~b.any(1), 1.0, np.einsum("pd,pd->p", a, b))
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per element of a uint64 array (same shape, uint8)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    lut = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return lut[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)


def near_pairs(hashes: np.ndarray, threshold: int, ok: np.ndarray | None = None, block: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with Hamming(hashes[i], hashes[j]) <= threshold, in blocks of rows.

    hashes: (N,) uint64; ok: (N,) bool rows that take part; block: rows per step (default:
    about 4M distances, 32 MB, per step).
    -> i, j (P,) int64, distance (P,) uint8, nearest (N,) int16: each row's distance to its
    nearest other row (-1 for rows not taking part), to judge the threshold.
    """
    if threshold < 0 or threshold > 64:
        raise ValueError(f"threshold must be a Hamming distance in 0..64, got {threshold}")
    idx = np.arange(len(hashes)) if ok is None else np.flatnonzero(ok)
    h = np.asarray(hashes, dtype=np.uint64)[idx]
    nearest = np.full(len(hashes), -1, np.int16)
    block = block or max(1, (1 << 22) // max(len(h), 1))
    out_i, out_j, out_d = [], [], []
    for s in range(0, len(h), block):
        d = _popcount(h[s:s + block, None] ^ h[None, :])  # (B, M) distances to every row
        rows = np.arange(len(d))
        d[rows, s + rows] = 255  # not its own neighbour
        nearest[idx[s:s + block]] = d.min(1) if d.shape[1] > 1 else -1
        r, c = np.nonzero(d <= threshold)
        keep = c > s + r  # each pair once
        r, c = r[keep], c[keep]
        out_i.append(idx[s + r])
        out_j.append(idx[c])
        out_d.append(d[r, c])
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return cat(out_i, np.int64), cat(out_j, np.int64), cat(out_d, np.uint8), nearest


def exact_pairs(sha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs i < j of byte-identical files (equal sha1; None never matches). -> i, j (P,) int64."""
    codes = pd.factorize(pd.Series(sha, dtype=object))[0]  # None -> -1
    rows = np.flatnonzero(codes >= 0)
    ii, jj = [], []
    for members in pd.Series(rows).groupby(codes[rows]).agg(list):
        if len(members) > 1:
            a, b = np.triu_indices(len(members), 1)
            ii.append(np.asarray(members)[a])
            jj.append(np.asarray(members)[b])
    cat = (lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64))
    return cat(ii), cat(jj)


def find_duplicates(ids: Sequence[str], split: Sequence[str], labels: Sequence[str], paths: Sequence[str],
                    h: Hashes, threshold: int, min_corr: float = DEFAULT_MIN_CORR,
                    min_detail: float = DEFAULT_MIN_DETAIL, min_cos: float = DEFAULT_MIN_COS,
                    embed: Embedder | None = None, workers: int = 2, min_inliers: int = DEFAULT_MIN_INLIERS,
                    min_inlier_ratio: float = DEFAULT_MIN_INLIER_RATIO) -> tuple[pd.DataFrame, dict]:
    """Group rows (train + test) by exact and confirmed near pairs (embed: pretrained features for
    the cosine check; None skips it; min_inliers 0 and min_inlier_ratio 0 skip the geometry check).
    -> (dups.csv frame, counts)."""
    n = len(ids)
    split = np.asarray(split, dtype=object)
    sha = np.asarray(h.sha1, dtype=object)
    ni, nj, nd, nearest = near_pairs(h.hashes, threshold, h.ok)
    ei, ej = exact_pairs(sha)
    near = ~((sha[ni] == sha[nj]) & pd.notna(sha[ni]))  # exact pairs are counted once, as exact
    corr = thumb_corr(h.thumbs, ni, nj)
    cand = np.flatnonzero(near & (corr >= min_corr))
    detail, cos = pair_scores(paths, ni[cand], nj[cand], embed, workers)
    ok = confirmed(detail, cos, min_detail, min_cos)
    counts = {"rejected_detail": int((~ok).sum()), "rejected_geometry": 0, "geometry_unjudged": 0}
    if (min_inliers > 0 or min_inlier_ratio > 0) and ok.any():  # only pairs the correlations passed
        inliers, ratio, keypoints = geometry_scores(paths, ni[cand[ok]], nj[cand[ok]], workers)
        geo_ok = geometry_confirmed(inliers, ratio, keypoints, min_inliers, min_inlier_ratio)
        counts["rejected_geometry"] = int((~geo_ok).sum())
        counts["geometry_unjudged"] = int(geometry_unjudged(keypoints, min_inliers).sum())
        ok[np.flatnonzero(ok)[~geo_ok]] = False
    keep = np.zeros(len(ni), bool)
    keep[cand[ok]] = True
    pi, pj = np.concatenate([ei, ni[keep]]), np.concatenate([ej, nj[keep]])
    dist = np.concatenate([np.zeros(len(ei), np.int64), nd[keep].astype(np.int64)])
    kind = np.array(["exact"] * len(ei) + ["near"] * int(keep.sum()), dtype=object)
    sp = np.sort(np.stack([split[pi], split[pj]]).astype(str), axis=0)  # "test" < "train"
    where = np.char.add(np.char.add(sp[1], "_"), sp[0]) if len(pi) else np.zeros(0, str)
    counts.update({f"{k}_{w}": int(((kind == k) & (where == w)).sum())
                   for k in ("exact", "near") for w in ("train_train", "train_test", "test_test")})
    counts["rejected_lookalikes"] = int((near & (corr < min_corr)).sum())
    nn = nearest[nearest >= 0]
    counts["nearest_hist"] = {**{str(k): int((nn == k).sum()) for k in range(13)}, ">12": int((nn > 12).sum())}
    strength = np.concatenate([np.full(len(ei), 2.0), detail[ok]])  # byte-identical first
    comp, counts["chain_refused"] = complete_linkage(n, pi, pj, strength)
    in_pair = np.zeros(n, bool)
    in_pair[pi] = in_pair[pj] = True
    # per row: smallest distance to any group partner, and whether it has a byte-identical twin
    best = np.full(n, 255, np.int64)
    np.minimum.at(best, pi, dist)
    np.minimum.at(best, pj, dist)
    twin = np.zeros(n, bool)
    twin[ei] = twin[ej] = True
    rows = np.flatnonzero(in_pair)
    df = pd.DataFrame({"id": np.asarray(ids, object)[rows], "split": split[rows],
                       "label": np.asarray(labels, object)[rows], "comp": comp[rows],
                       "kind": np.where(twin[rows], "exact", "near"), "distance": best[rows],
                       "path": np.asarray(paths, object)[rows]})
    order = pd.factorize(df["comp"])[0]  # groups numbered in train-then-test row order
    df["dup_group"] = [f"d{g:05d}" for g in order]
    by_group = df[df["split"] == "train"].groupby("dup_group")["label"]
    labels_of = by_group.agg(lambda s: "|".join(sorted(set(s)))).to_dict()
    n_labels = by_group.nunique().to_dict()
    df["labels"] = [labels_of.get(g, "") for g in df["dup_group"]]
    df["conflict"] = np.array([n_labels.get(g, 0) > 1 for g in df["dup_group"]], dtype=bool)
    counts.update(groups=int(df["dup_group"].nunique()), rows=int(len(df)),
                  conflicting_groups=int(df.loc[df["conflict"], "dup_group"].nunique()),
                  largest_group=int(df["dup_group"].value_counts().max()) if len(df) else 0)
    return df[COLUMNS].reset_index(drop=True), counts


def dup_groups(dups_file: str | Path, train_ids: Sequence[str]) -> np.ndarray:
    """dups.csv read back aligned to train_ids -> (N,) object: group label, or None if in no group."""
    dups_file = Path(dups_file)
    df = pd.read_csv(dups_file, dtype=str, keep_default_na=False)
    for col in ("id", "split", "dup_group"):
        if col not in df.columns:
            raise ValueError(f"{dups_file}: missing column '{col}' (columns: {', '.join(df.columns)}); "
                             f"re-run python -m ensemble.dups")
    tr = df[df["split"] == "train"]
    if tr["id"].duplicated().any():
        raise ValueError(f"{dups_file}: train id '{tr['id'][tr['id'].duplicated()].iat[0]}' listed twice")
    ids = pd.Index(np.asarray(train_ids, dtype=object).astype(str))
    unknown = pd.Index(tr["id"]).difference(ids)
    if len(unknown):
        raise ValueError(f"{dups_file}: {len(unknown)} train ids are not in train.csv (e.g. "
                         f"'{unknown[0]}'); re-run python -m ensemble.dups for this competition")
    s = pd.Series(tr["dup_group"].replace("", None).to_numpy(), index=tr["id"])
    out = s.reindex(ids).to_numpy(dtype=object, copy=True)
    out[pd.isna(out)] = None
    return out


def run_dups(comp, out_dir: Path, method: str = "phash", threshold: int = DEFAULT_THRESHOLD,
             min_corr: float = DEFAULT_MIN_CORR, workers: int | None = None, *,
             min_detail: float = DEFAULT_MIN_DETAIL, min_cos: float = DEFAULT_MIN_COS,
             embed: Embedder | None = None, min_inliers: int = DEFAULT_MIN_INLIERS,
             min_inlier_ratio: float = DEFAULT_MIN_INLIER_RATIO) -> tuple[pd.DataFrame, dict]:
    """Hash a Competition's train + test images, write out_dir/dups.csv + dups.json. -> (frame, summary).
    embed: pretrained features for the cosine check (the CLI passes efficientnet_lite0's); None skips it.
    min_inliers / min_inlier_ratio: the geometry check (0 and 0 skip it)."""
    get_hash(method)
    if not 0 <= threshold <= 64:
        raise ValueError(f"--threshold must be a Hamming distance in 0..64, got {threshold}")
    if not -1 <= min_corr <= 1:
        raise ValueError(f"--min-corr must be a correlation in -1..1, got {min_corr}")
    for flag, v in (("--min-detail", min_detail), ("--min-cos", min_cos)):
        if not -1 <= v <= 1:
            raise ValueError(f"{flag} must be a correlation in -1..1, got {v}")
    if isinstance(min_inliers, bool) or not isinstance(min_inliers, (int, np.integer)) or min_inliers < 0:
        raise ValueError(f"--min-inliers must be a whole number of keypoints >= 0, got {min_inliers}")
    if not 0 <= min_inlier_ratio <= 1:
        raise ValueError(f"--min-inlier-ratio must be a fraction in 0..1, got {min_inlier_ratio}")
    t0 = time.perf_counter()
    n_tr, n_te = len(comp.train), len(comp.test)
    paths = comp.train["path"].tolist() + comp.test["path"].tolist()
    h = hash_images(paths, method, workers)
    t1 = time.perf_counter()
    df, counts = find_duplicates(
        comp.train["id"].tolist() + comp.test["id"].tolist(), ["train"] * n_tr + ["test"] * n_te,
        comp.train["label"].tolist() + [""] * n_te, paths, h, threshold, min_corr,
        min_detail, min_cos, embed, workers or 2, min_inliers, min_inlier_ratio)
    t2 = time.perf_counter()
    out_dir = Path(out_dir)
    atomic_write_csv(CompetitionPaths(out_dir).dups, df)
    summary = {"competition": comp.name, "hash": method, "threshold": threshold, "min_corr": min_corr,
               "min_detail": min_detail, "min_cos": min_cos, "embedded": embed is not None,
               "min_inliers": min_inliers, "min_inlier_ratio": min_inlier_ratio,
               "n_train": n_tr, "n_test": n_te, **counts, "unreadable": h.bad,
               "hash_seconds": round(t1 - t0, 2), "pair_seconds": round(t2 - t1, 2)}
    atomic_write_json(CompetitionPaths(out_dir).dups_json, summary)
    for line in summary_lines(summary, df, out_dir):
        logger.info(line)
    note = folds_note(CompetitionPaths(out_dir).folds, df)
    if note:
        logger.info(note)
    logger.info(f"wrote {CompetitionPaths(out_dir).dups} ({len(df)} rows) in {time.perf_counter() - t0:.1f} s")
    return df, summary
