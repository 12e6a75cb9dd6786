"""Geometric confirmation of near-duplicate candidates: one homography must explain the keypoints.

A copy (resized, re-encoded, cropped a little, brighter) is the same picture under one plane
transform, so most of its keypoints map onto the original's by a single homography. Two different
eyes photographed with one fundus camera share the camera's dark circle and notch, a dermatoscope's
vignette, a chest's outline: enough for a hash, a thumbnail and even a detail correlation, but the
vessels, lesion borders and texture inside the frame sit elsewhere, so their keypoints do not agree
on one transform.

- geo_features: grey image at GEO_SIZE px, the content's range stretched and CLAHE (so brightness
  and contrast changes do not move the detector, and a dim retina has keypoints), SIFT keypoints;
  a keypoint counts only when its neighbourhood (GEO_MARGIN x its size, + FRAME_PAD px for the
  blurred rim) stays clear of the frame (dark pixels connected to the image border: the camera's
  circle and notch) and of the image edge, so the shared layout never matches itself;
- geo_match: Lowe's ratio test, then cv2.findHomography with RANSAC -> the inlier count and the
  inlier ratio (inliers / keypoints of the image with fewer: how much of it the transform explains).

Only candidate pairs that already passed the correlation checks are measured (each image decoded
once more), so the cost stays with the few pairs that matter.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

# Measured by `scripts/measure_dups.py --n-pos 20 --n-framed 300 --max-pairs 150` on ham10000 +
# chest_xray (224 px JPEGs; the table is in docs/dups.md). 720 copies (six kinds, plain,
# in a fundus frame, and in the frame at 30% contrast with the camera's vignetting and dust): inliers
# min 32, ratio min 0.076. 266 different lesions/patients within pHash 4: inliers max 25, ratio max
# 0.026. 600 look-alikes in one frame: inliers max 20 (the shared dust specks agree on the identity),
# ratio max 0.100 (few keypoints in dim content). Each threshold sits halfway and each is needed: the
# ratio refuses chance inliers among many keypoints, the count the shared specks. SIFT's default
# contrastThreshold (0.04) finds no keypoint at all on some smooth dermoscopy images; the content's
# stretch, CLAHE and 0.0075 find >= 190 even on the dimmed ones, and lift the dim copies' inliers
# (CLAHE clip 2 with 0.02: min 17) while the specks' stay put.
GEO_SIZE = 256
GEO_MIN_SIDE = 96       # px: blown up from less, keypoints are JPEG noise (the correlations decide alone)
GEO_FEATURES = 1000     # strongest SIFT keypoints kept per image
GEO_CONTRAST = 0.0075   # SIFT contrastThreshold
CLAHE_CLIP = 4.0
FRAME_DARK = 30         # grey level (after a slight blur) at or below which border-connected pixels are frame
GEO_MARGIN = 1.0        # a keypoint's distance to the frame or image edge must exceed this x its size
FRAME_PAD = 3.0         # ... plus this (px): the rim is blurred over a few px beyond the frame mask
LOWE_RATIO = 0.8
RANSAC_PX = 2.0         # reprojection error (px of GEO_SIZE) of an inlier
DEFAULT_MIN_INLIERS = 28
DEFAULT_MIN_INLIER_RATIO = 0.05


@dataclass
class GeoFeatures:
    """pts (K, 2) float32 keypoint positions (x, y) in GEO_SIZE px; desc (K, 128) float32 SIFT."""

    pts: np.ndarray
    desc: np.ndarray


def frame_mask(grey: np.ndarray, dark: int = FRAME_DARK) -> np.ndarray:
    """(H, W) uint8 grey -> (H, W) bool: the frame, i.e. dark pixels connected to the image border
    (a fundus camera's black surround and its notch, a dermatoscope's dark corners)."""
    g = cv2.GaussianBlur(grey, (0, 0), 1.5)
    _, lab = cv2.connectedComponents((g <= dark).astype(np.uint8))
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return np.isin(lab, edge[edge > 0])


def content_distance(frame: np.ndarray) -> np.ndarray:
    """(H, W) bool frame (frame_mask) -> (H, W) float32: each pixel's distance in px to the frame or
    the image edge."""
    inside = np.pad((~frame).astype(np.uint8), 1)  # beyond the image edge counts as frame
    return cv2.distanceTransform(inside, cv2.DIST_L2, 5)[1:-1, 1:-1]


def geo_features(img: np.ndarray) -> GeoFeatures:
    """(H, W, 3) uint8 RGB -> SIFT keypoints and descriptors of the content inside the frame; none
    for an image under GEO_MIN_SIDE px (blown up 3x and more, its keypoints are JPEG noise)."""
    from ensemble.data.images import resize
    if min(img.shape[:2]) < GEO_MIN_SIDE:
        return GeoFeatures(pts=np.zeros((0, 2), np.float32), desc=np.zeros((0, 128), np.float32))
    grey = cv2.cvtColor(resize(img, GEO_SIZE), cv2.COLOR_RGB2GRAY)
    frame = frame_mask(grey)
    dist = content_distance(frame)
    inner = grey[~frame] if (~frame).any() else grey.ravel()
    lo, hi = np.percentile(inner, [1, 99])  # the content's own range: a dim retina is stretched like a bright one
    grey = np.clip((grey.astype(np.float32) - lo) * (255 / max(hi - lo, 1.0)), 0, 255).astype(np.uint8)
    grey = cv2.createCLAHE(CLAHE_CLIP, (8, 8)).apply(grey)
    sift = cv2.SIFT_create(nfeatures=GEO_FEATURES, contrastThreshold=GEO_CONTRAST)
    kps, desc = sift.detectAndCompute(grey, (dist > 1).astype(np.uint8) * 255)
    pts = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
    size = np.array([k.size for k in kps], np.float32)
    r = np.clip(np.round(pts).astype(np.int64), 0, GEO_SIZE - 1)
    keep = dist[r[:, 1], r[:, 0]] > GEO_MARGIN * size + FRAME_PAD  # its neighbourhood stays off the layout
    desc = desc[keep] if desc is not None else np.zeros((0, 128), np.float32)
    return GeoFeatures(pts=pts[keep], desc=desc.astype(np.float32))


def geo_match(a: GeoFeatures, b: GeoFeatures) -> tuple[int, float]:
    """-> (RANSAC homography inliers among one-to-one ratio-test matches, inliers / min(keypoints of
    a, of b), in 0..1)."""
    if len(a.desc) < 2 or len(b.desc) < 2:
        return 0, 0.0
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.desc, b.desc, k=2)
    good = sorted((m[0] for m in knn if len(m) == 2 and m[0].distance < LOWE_RATIO * m[1].distance),
                  key=lambda m: m.distance)
    seen: set[int] = set()
    good = [m for m in good if not (m.trainIdx in seen or seen.add(m.trainIdx))]  # one-to-one: best match first
    if len(good) < 4:  # a homography needs 4 points
        return 0, 0.0
    src = a.pts[[m.queryIdx for m in good]]
    dst = b.pts[[m.trainIdx for m in good]]
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX)
    n = int(inl.sum()) if H is not None else 0
    return n, n / min(len(a.pts), len(b.pts))


def _features(path: str) -> GeoFeatures | None:
    from ensemble.data.images import ImageError, decode
    try:
        return geo_features(decode(path)[0])
    except (ImageError, OSError):
        return None


def _pair(fa: GeoFeatures | None, fb: GeoFeatures | None) -> tuple[int, float, int]:
    if fa is None or fb is None:  # unreadable: scores nothing, and is not "too few keypoints" either
        return 0, 0.0, GEO_FEATURES
    return (*geo_match(fa, fb), min(len(fa.pts), len(fb.pts)))


def geometry_scores(paths: Sequence[str], i: np.ndarray, j: np.ndarray, workers: int = 2
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (paths[i], paths[j]) -> (P,) int32 inliers, (P,) float32 inlier ratios, (P,) int32
    keypoints of the image with fewer. Decodes only the images in some pair, in threads (OpenCV
    releases the GIL)."""
    rows = np.unique(np.concatenate([i, j])) if len(i) else np.zeros(0, np.int64)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        feats = dict(zip(rows.tolist(), pool.map(_features, [str(paths[r]) for r in rows])))
        scores = list(pool.map(lambda ab: _pair(feats[ab[0]], feats[ab[1]]), zip(i.tolist(), j.tolist())))
    s = np.array(scores, np.float64).reshape(-1, 3)
    return s[:, 0].astype(np.int32), s[:, 1].astype(np.float32), s[:, 2].astype(np.int32)


def geometry_confirmed(inliers: np.ndarray, ratio: np.ndarray, keypoints: np.ndarray,
                       min_inliers: int = DEFAULT_MIN_INLIERS, min_ratio: float = DEFAULT_MIN_INLIER_RATIO
                       ) -> np.ndarray:
    """(P,) bool: pairs whose homography explains >= min_inliers keypoints and >= min_ratio of them,
    or whose image with fewer keypoints has < min_inliers (no copy could pass: geometry cannot
    judge, the correlation checks decide alone; see geometry_unjudged)."""
    return geometry_unjudged(keypoints, min_inliers) | (
        (np.asarray(inliers) >= min_inliers) & (np.asarray(ratio) >= min_ratio))


def geometry_unjudged(keypoints: np.ndarray, min_inliers: int = DEFAULT_MIN_INLIERS) -> np.ndarray:
    """(P,) bool: pairs with too few keypoints inside the frame for the geometry to judge (images
    under GEO_MIN_SIDE px, textureless ones)."""
    return np.asarray(keypoints) < min_inliers
