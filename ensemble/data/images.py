"""Image decoding (OpenCV), truncated-JPEG repair, and a resized uint8 cache on disk.

The cache holds every image of a set decoded once and resized to ``size x size``:
``<cache_dir>/images_<size>_<hash>.npy`` (N, size, size, 3) uint8 RGB, opened with mmap,
plus ``images_<size>_<hash>.json`` (paths hash, size, ok mask, repaired files, bad files).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

__all__ = ["ImageError", "CacheResult", "BAD_IMAGE_POLICIES", "repair_jpeg", "decode", "resize",
           "build_cache", "cache_paths"]

BAD_IMAGE_POLICIES = ("fail", "skip")
CACHE_VERSION = 1
_CHUNK = 256          # images decoded per parallel chunk (bounds the in-flight memory)
_MAX_LISTED = 20      # bad files named in one error/warning line


class ImageError(ValueError):
    """An image file is missing or cannot be decoded (or a set of them, for build_cache).

    ``reason`` is the short cause for one file ("missing", "cannot decode (N bytes)"), else None.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


@dataclass
class CacheResult:
    """A decoded, resized image set.

    array: (N, S, S, 3) uint8 RGB (a read-only memmap), row i <-> paths[i]; bad rows are zeros.
    ok: (N,) bool, False where the image could not be read (only with policy "skip").
    repaired: paths of truncated JPEGs that were repaired (EOI appended) and decoded.
    bad: path -> reason for unreadable files.
    path: the .npy file.
    """

    array: np.ndarray
    ok: np.ndarray
    repaired: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def repair_jpeg(data: bytes) -> tuple[bytes, bool]:
    """Append the EOI marker (FFD9) to a JPEG missing it; trailing zero padding is allowed.

    Returns (bytes, repaired). Non-JPEG data is returned unchanged.
    """
    if not data.startswith(b"\xff\xd8"):
        return data, False
    if data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return data, False
    return data + b"\xff\xd9", True


def decode(path: str | Path) -> tuple[np.ndarray, bool]:
    """Read an image file as (H, W, 3) uint8 RGB (grayscale -> 3 channels, alpha dropped).

    Truncated JPEGs are repaired first. Returns (image, repaired).
    Raises ImageError("<path>: missing") or ImageError("<path>: cannot decode (N bytes)").
    """
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ImageError(f"{path}: missing", "missing") from None
    nbytes = len(data)
    data, repaired = repair_jpeg(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None or img.size == 0:
        reason = f"cannot decode ({nbytes} bytes)"
        raise ImageError(f"{path}: {reason}", reason)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img), repaired


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8; INTER_AREA when shrinking, INTER_LINEAR when growing."""
    if size <= 0:
        raise ValueError(f"image size must be > 0, got {size}")
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if size * size < h * w else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def _paths_hash(paths: Sequence[str]) -> str:
    h = hashlib.sha1()
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_paths(paths: Sequence[str | Path], size: int, cache_dir: str | Path) -> tuple[Path, Path]:
    """(array .npy path, index .json path) for this image list and size."""
    key = _paths_hash([str(p) for p in paths])
    base = Path(cache_dir) / f"images_{size}_{key}"
    return base.with_suffix(".npy"), base.with_suffix(".json")


def _list_names(names: Sequence[str], reasons: dict[str, str] | None = None) -> str:
    shown = [f"{Path(n).name} ({reasons[n]})" if reasons else Path(n).name for n in names[:_MAX_LISTED]]
    more = f", ... and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return ", ".join(shown) + more


def _common_dir(paths: Sequence[str]) -> str:
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:  # mixed drives / relative+absolute
        return "."


def _load_cached(npy: Path, idx: Path, key: str, n: int, size: int) -> CacheResult | None:
    """Open an existing cache if its index matches; None if absent or stale."""
    if not (npy.is_file() and idx.is_file()):
        return None
    try:
        meta = json.loads(idx.read_text())
        arr = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (meta.get("version") != CACHE_VERSION or meta.get("paths_hash") != key
            or meta.get("size") != size or arr.shape != (n, size, size, 3) or arr.dtype != np.uint8
            or len(meta.get("ok", [])) != n):
        return None
    return CacheResult(arr, np.asarray(meta["ok"], dtype=bool), list(meta.get("repaired", [])),
                       dict(meta.get("bad", {})), npy)


def _decode_resized(path: str, size: int) -> tuple[np.ndarray | None, bool, str | None]:
    try:
        img, repaired = decode(path)
    except ImageError as e:
        return None, False, e.reason or str(e)
    return resize(img, size), repaired, None


def build_cache(paths: Sequence[str | Path], size: int, cache_dir: str | Path, *,
                policy: str = "fail", workers: int = 2, progress: bool = True) -> CacheResult:
    """Decode every image once, resize to (size, size), store (N, size, size, 3) uint8 in cache_dir.

    An existing cache for the same path list and size is reused without decoding anything.
    policy: "fail" raises one ImageError naming all unreadable files (nothing is cached);
    "skip" keeps going with ok[i] = False (zero rows) and prints a warning line.
    """
    if policy not in BAD_IMAGE_POLICIES:
        raise ValueError(f"unknown bad-image policy {policy!r}; available: {', '.join(BAD_IMAGE_POLICIES)}")
    if size <= 0:
        raise ValueError(f"image size must be > 0, got {size}")
    strs = [str(p) for p in paths]
    n = len(strs)
    key = _paths_hash(strs)
    npy, idx = cache_paths(strs, size, cache_dir)
    cached = _load_cached(npy, idx, key, n, size)
    if cached is not None:
        return _report(cached, policy)

    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(f"{npy.stem}.tmp{os.getpid()}.npy")
    ok = np.zeros(n, dtype=bool)
    repaired: list[str] = []
    bad: dict[str, str] = {}
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=f"caching {n} images at {size}px", unit="img", leave=False)
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, n, _CHUNK):
                chunk = strs[start:start + _CHUNK]
                results = pool.map(_decode_resized, chunk, [size] * len(chunk))
                for i, (p, (img, rep, reason)) in enumerate(zip(chunk, results), start):
                    if img is None:
                        bad[p] = reason
                    else:
                        arr[i] = img
                        ok[i] = True
                        if rep:
                            repaired.append(p)
                if bar is not None:
                    bar.update(len(chunk))
        if bad and policy == "fail":
            raise _bad_error(bad)
        arr.flush()
        arr = None  # close the memmap before the rename
        meta = {"version": CACHE_VERSION, "paths_hash": key, "size": size, "n": n,
                "ok": ok.tolist(), "repaired": repaired, "bad": bad}
        idx_tmp = idx.with_name(f"{idx.name}.tmp{os.getpid()}")
        idx_tmp.write_text(json.dumps(meta))
        os.replace(tmp, npy)          # array first: an index never points at a missing array
        os.replace(idx_tmp, idx)
    finally:
        arr = None
        if bar is not None:
            bar.close()
        for leftover in (tmp, idx.with_name(f"{idx.name}.tmp{os.getpid()}")):
            leftover.unlink(missing_ok=True)
    return _report(CacheResult(np.load(npy, mmap_mode="r"), ok, repaired, bad, npy), policy)


def _bad_error(bad: dict[str, str]) -> ImageError:
    return ImageError(f"{len(bad)} unreadable images under {_common_dir(list(bad))} "
                      f"(input.bad_images=fail; use 'skip' to drop them): {_list_names(list(bad), bad)}")


def _report(res: CacheResult, policy: str) -> CacheResult:
    """Apply the bad-file policy to a (new or reused) cache and print warning lines to stderr."""
    if res.bad and policy == "fail":
        raise _bad_error(res.bad)
    if res.bad:
        print(f"warning: skipped {len(res.bad)} unreadable images (input.bad_images=skip): "
              f"{_list_names(list(res.bad), res.bad)}", file=sys.stderr)
    if res.repaired:
        print(f"warning: repaired {len(res.repaired)} truncated JPEGs (missing end marker): "
              f"{_list_names(res.repaired)}", file=sys.stderr)
    return res
