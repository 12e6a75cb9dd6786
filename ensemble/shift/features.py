"""What the train-vs-test classifier sees: cheap image statistics and pretrained embeddings.

Statistics come from each image's file header (width, height, bytes) and from its resized uint8
copy in the competition's image cache (ensemble.images): brightness, contrast, colour, saturation,
sharpness, the border's brightness against the centre, dark and bright pixel fractions.
Embeddings are a pretrained backbone's pooled features of the same cached images, stored once per
competition, backbone and size as runs/<competition>/cache/embed_<backbone>_<size>_<hash>.npy
(float16) beside the image cache, and reused by every later call.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..artifacts import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

STATS = ("width", "height", "aspect", "file_kb", "brightness", "contrast", "red", "green", "blue",
         "saturation", "sharpness", "border", "dark_frac", "bright_frac")
EMBED_VERSION = 1


def header_stats(path: str) -> tuple[float, float, float]:
    """(width, height, kilobytes) from the file header alone (PIL opens lazily); NaN when unreadable."""
    from PIL import Image
    try:
        kb = os.path.getsize(path) / 1024
        with Image.open(path) as im:
            w, h = im.size
        return float(w), float(h), float(kb)
    except (OSError, ValueError):
        return np.nan, np.nan, np.nan


def pixel_stats(img: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 RGB -> the pixel statistics of STATS[4:] as float32."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    g = grey.astype(np.float32)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    s = img.shape[0]
    b = max(1, s // 8)
    border = np.concatenate([g[:b].ravel(), g[-b:].ravel(), g[b:-b, :b].ravel(), g[b:-b, -b:].ravel()])
    centre = g[s // 4: s - s // 4, s // 4: s - s // 4]
    rgb = img.reshape(-1, 3).mean(0)
    return np.array([g.mean(), g.std(), rgb[0], rgb[1], rgb[2], hsv[..., 1].mean(),
                     cv2.Laplacian(grey, cv2.CV_32F).var(), border.mean() - centre.mean(),
                     (grey < 16).mean(), (grey > 240).mean()], dtype=np.float32)


def image_stats(paths: Sequence[str], images: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """(N, len(STATS)) float32: header statistics of paths[i] and pixel statistics of images[i]
    (the cached (N, S, S, 3) uint8 array); rows with ok False are NaN."""
    out = np.full((len(paths), len(STATS)), np.nan, np.float32)
    for i, p in enumerate(paths):
        if ok is not None and not ok[i]:
            continue
        w, h, kb = header_stats(p)
        out[i, :4] = (w, h, w / h if h else np.nan, kb)
        out[i, 4:] = pixel_stats(np.asarray(images[i]))
    return out


def _embed_key(paths: Sequence[str], backbone: str, size: int, stamp: str = "") -> str:
    import hashlib
    h = hashlib.sha1(f"{EMBED_VERSION}|{backbone}|{size}{'|' + stamp if stamp else ''}".encode())
    for p in paths:
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()[:16]


def embed_path(paths: Sequence[str], backbone: str, size: int, cache_dir: str | Path, stamp: str = "") -> Path:
    return Path(cache_dir) / f"embed_{backbone}_{size}_{_embed_key(paths, backbone, size, stamp)}.npy"


def embed_images(images: np.ndarray, backbone: str = "efficientnet_lite0", pretrained=True,
                 batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, F) float32 pooled features of a pretrained backbone (eval mode)."""
    import torch

    from ..models import build_model
    model = build_model(backbone, 1, pretrained=pretrained).to(device).eval()
    feats = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[s:s + batch_size])).permute(0, 3, 1, 2)  # a writable copy
            feats.append(model.forward_features(x.to(device)).float().cpu().numpy())
    return np.concatenate(feats) if feats else np.zeros((0, model.num_features), np.float32)


def cached_embeddings(paths: Sequence[str], images: np.ndarray, cache_dir: str | Path,
                      backbone: str = "efficientnet_lite0", pretrained=True, size: int | None = None,
                      batch_size: int = 64, device: str = "cpu", stamp: str = "") -> tuple[np.ndarray, bool]:
    """Embeddings of images (row i <-> paths[i]) from cache_dir when there, else computed and stored
    (atomically). stamp: the image cache's CacheResult.stamp, so changed images are embedded again.
    -> ((N, F) float32, reused)."""
    size = int(size or images.shape[1])
    npy = embed_path(paths, backbone, size, cache_dir, stamp)
    if npy.is_file():
        try:
            arr = np.load(npy)
            if arr.shape[0] == len(paths):
                return arr.astype(np.float32), True
        except (OSError, ValueError):
            pass
    t0 = time.perf_counter()
    arr = embed_images(images, backbone, pretrained, batch_size, device)
    arr = arr.astype(np.float16)  # what a later call reads back
    with atomic_path(npy, size=arr.nbytes + 4096) as tmp, open(tmp, "wb") as f:  # a full disk: one line
        np.save(f, arr)
    atomic_write_json(npy.with_suffix(".json"), {"version": EMBED_VERSION, "backbone": backbone, "size": size,
                                                 "n": len(paths), "seconds": round(time.perf_counter() - t0, 1)})
    logger.info("embedded %d images with %s in %.1f s", len(paths), backbone, time.perf_counter() - t0)
    return arr.astype(np.float32), False
