"""Confirming near-duplicate candidates, and grouping them without transitive chaining.

A pHash distance <= 4 plus a 32x32 grey-thumbnail correlation >= 0.98 cannot tell apart images
that share one layout (fundus photographs: a dark disc, a bright optic disc, the same vignette;
chest X-rays of different children). Two checks that can:

- detail correlation: 64x64 colour thumbnails minus their Gaussian blur (the layout), locally
  contrast-normalised and down-weighted where the layout itself has an edge, so that neither the
  shared outline nor a brightness or contrast change counts; compared over centre crops (ZOOMS)
  and +-DETAIL_SHIFT px shifts so that a slightly cropped copy still aligns. What is left is
  vessels, lesion borders, texture: a copy keeps it, another eye does not;
- embedding cosine: pooled features of a pretrained backbone (the caller passes the embedder,
  e.g. ensemble.shift.features.embed_images with efficientnet_lite0), only for images that are
  in some candidate pair.

Groups are grown by greedy complete linkage: pairs are merged strongest first, and two groups
merge only when every cross pair of members is confirmed, so a~b~c with a, c unconfirmed never
puts a and c together (b joins the stronger side; the weaker pair is counted as refused).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import cv2
import numpy as np

# Thresholds measured by `scripts/measure_dups.py --n-pos 40` on ham10000 + chest_xray (224 px JPEGs).
# Positives, 480 pairs (80 images x byte copy, 160 px resize, JPEG q70, 3% crop, +20 brightness,
# crop + q70): detail min 0.849 (p1 0.902), cosine min 0.839 (p1 0.888). Negatives, all 266 pHash
# <= 4 candidates between different lesions / patients: detail max 0.687 (p99 0.672), cosine max
# 0.916 (median 0.786). Detail separates, the cutoff is halfway (0.76: 480/480 vs 0/266); the
# cosine overlaps, so it only vetoes clear mismatches (below every positive). Synthetic fundus
# look-alikes (tests/test_dups_confirm.py) score <= 0.64 detail, their copies >= 0.96. Widened to
# pHash <= 8 (`--n-pos 0 --no-embed --threshold 8`): 9,793 negatives, detail p99 0.659, max 0.743.
DETAIL = 64
DETAIL_SHIFT = 1          # px of a 64 px thumbnail searched either way
ZOOMS = (1.0, 0.97, 0.94)  # centre crops tried on either side: a copy cropped by up to ~3% per edge
DETAIL_SIGMA = 3.0        # Gaussian blur subtracted: structure finer than ~3 px of 64 stays
DEFAULT_MIN_DETAIL = 0.76  # halfway between 0.687 and 0.849
DEFAULT_MIN_COS = 0.8     # below the positives' minimum 0.839
LOCAL_SIGMA = 4.0
LOCAL_FLOOR = 0.2  # of the thumbnail's RMS detail: flat areas (JPEG noise) stay small
FLAT_RMS = 0.25   # grey levels
EDGE_K = 0.5      # layout edge strength (in units of the detail RMS) that halves a pixel's weight
EMBED_SIZE = 128

Embedder = Callable[[np.ndarray], np.ndarray]  # (M, S, S, 3) uint8 -> (M, F) float features


def _prepare(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """-> (detail thumbnails, EMBED_SIZE RGB copy), or None when unreadable; the full-size image is
    dropped at once (fundus photographs are megapixels, candidates can be thousands)."""
    from ensemble.data.images import ImageError, decode
    try:
        img = decode(path)[0]
    except (ImageError, OSError):
        return None
    return detail_thumbs(img), cv2.resize(img, (EMBED_SIZE, EMBED_SIZE), interpolation=cv2.INTER_AREA)


def detail_thumbs(img: np.ndarray, size: int = DETAIL, sigma: float = DETAIL_SIGMA) -> np.ndarray:
    """(H, W, 3) uint8 -> (len(ZOOMS), size, size, 3) float32: colour thumbnails of the centre
    ZOOMS[k] of the image, each minus its blur, unit norm (a flat image stays all zeros)."""
    h, w = img.shape[:2]
    out = np.zeros((len(ZOOMS), size, size, 3), np.float32)
    for k, z in enumerate(ZOOMS):
        dy, dx = round(h * (1 - z) / 2), round(w * (1 - z) / 2)
        t = cv2.resize(img[dy:h - dy, dx:w - dx], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        layout = cv2.GaussianBlur(t, (0, 0), sigma)
        t -= layout
        rms = float(np.sqrt((t * t).mean()))
        if rms < FLAT_RMS:  # no detail at all (a flat image): left all zeros, never confirmed
            continue
        # local contrast normalisation, then less weight where the layout itself has an edge: a
        # shared outline (a fundus rim, an optic disc) must not outweigh the vessels and texture
        local = np.sqrt(cv2.GaussianBlur((t * t).mean(2), (0, 0), LOCAL_SIGMA))[..., None]
        g = layout.mean(2)
        edge = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)) / 8
        t *= (1 / (1 + edge / (EDGE_K * rms)))[..., None] / (local + LOCAL_FLOOR * rms)
        out[k] = t / max(float(np.linalg.norm(t)), 1e-6)
    return out


def _shifted(a: np.ndarray, b: np.ndarray, shift: int) -> float:
    s, best = a.shape[0], -1.0
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            pa = a[max(dy, 0):s + min(dy, 0), max(dx, 0):s + min(dx, 0)]
            pb = b[max(-dy, 0):s + min(-dy, 0), max(-dx, 0):s + min(-dx, 0)]
            na, nb = float(np.linalg.norm(pa)), float(np.linalg.norm(pb))
            if na > 1e-6 and nb > 1e-6:
                best = max(best, float((pa * pb).sum()) / (na * nb))
    return best


def detail_corr(a: np.ndarray, b: np.ndarray, shift: int = DETAIL_SHIFT) -> float:
    """Best correlation of two images' detail thumbnails (detail_thumbs) over a zoom of either one
    (a cropped copy) and integer shifts of up to shift px, each on the overlap (renormalised)."""
    combos = [(0, 0)] + [(k, 0) for k in range(1, len(ZOOMS))] + [(0, k) for k in range(1, len(ZOOMS))]
    return max(_shifted(a[ka], b[kb], shift) for ka, kb in combos)


def pair_scores(paths: Sequence[str], i: np.ndarray, j: np.ndarray, embed: Embedder | None = None,
                workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Detail correlation and embedding cosine (NaN without an embedder) of pairs (paths[i], paths[j]).

    Decodes only the images in some pair. Unreadable images score -1 (never confirmed)."""
    rows = np.unique(np.concatenate([i, j])) if len(i) else np.zeros(0, np.int64)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        prep = list(pool.map(_prepare, [str(paths[r]) for r in rows]))
    at = {int(r): k for k, r in enumerate(rows)}
    detail = np.array([-1.0 if prep[at[a]] is None or prep[at[b]] is None
                       else detail_corr(prep[at[a]][0], prep[at[b]][0]) for a, b in zip(i, j)], np.float32)
    cos = np.full(len(i), np.nan, np.float32)
    good = [k for k, m in enumerate(prep) if m is not None]
    if embed is not None and good:
        f = np.asarray(embed(np.stack([prep[k][1] for k in good])), np.float32).reshape(len(good), -1)
        f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6)
        feats = np.zeros((len(rows), f.shape[1]), np.float32)
        feats[good] = f
        ia, ib = np.array([at[int(a)] for a in i]), np.array([at[int(b)] for b in j])
        cos = np.einsum("pd,pd->p", feats[ia], feats[ib]).astype(np.float32)
        cos[detail <= -1] = -1.0
    return detail, cos


def confirmed(detail: np.ndarray, cos: np.ndarray, min_detail: float = DEFAULT_MIN_DETAIL,
              min_cos: float = DEFAULT_MIN_COS) -> np.ndarray:
    """(P,) bool: pairs whose detail correlation and (where computed) embedding cosine pass."""
    return (detail >= min_detail) & (np.isnan(cos) | (cos >= min_cos))


def complete_linkage(n: int, pi: np.ndarray, pj: np.ndarray, strength: np.ndarray) -> tuple[np.ndarray, int]:
    """Groups of n rows from confirmed pairs (pi[k], pj[k]), strongest first, where two groups merge
    only if every cross pair is confirmed. -> ((n,) group number per row, pairs refused)."""
    confirmed_set = {(int(min(a, b)), int(max(a, b))) for a, b in zip(pi, pj)}
    members = {r: [r] for r in range(n)}
    group = np.arange(n)
    refused, blocked = 0, set()  # blocked (group, group): a surviving id only gains members, so it stays
    for k in np.argsort(-np.asarray(strength, np.float64), kind="stable"):
        ga, gb = int(group[pi[k]]), int(group[pj[k]])
        if ga == gb:
            continue
        if (min(ga, gb), max(ga, gb)) not in blocked and all(
                (min(a, b), max(a, b)) in confirmed_set for a in members[ga] for b in members[gb]):
            if len(members[ga]) < len(members[gb]):
                ga, gb = gb, ga
            for r in members.pop(gb):
                group[r] = ga
                members[ga].append(r)
        else:
            blocked.add((min(ga, gb), max(ga, gb)))
            refused += 1
    return group, refused
