"""A resized uint8 cache on disk of every image of a set (decoding: ensemble.data.imagefiles).

The cache holds every image of a set decoded once and resized to ``size x size``:
``<cache_dir>/images_<size>_<hash of the paths>.npy`` (N, size, size, 3) uint8 RGB, opened with mmap,
plus ``images_<size>_<hash>.json`` (paths hash, size, ok mask, repaired and bad files, and the
size, mtime_ns, ctime_ns and inode of every file when it was decoded). A later build re-decodes only
the files whose stats changed (a missing file that is back counts as changed) and copies the other
rows. ctime and inode catch a file rewritten in place with its old size and mtime put back (cp -p,
rsync -t, os.utime): the kernel sets ctime on every write and no program can set it back, so this
costs nothing beyond the stat already made, where a content hash would read every file each run.
The array is written with ordinary file I/O after checking and preallocating its size, so a full
disk is one NoSpaceError, never a SIGBUS from a memmap.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.artifacts.io import check_space, no_space
from ensemble.data.imagefiles import DEFAULT_MAX_PIXELS, ImageError, decode, repair_jpeg, resize  # noqa: F401

__all__ = ["ImageError", "CacheResult", "BAD_IMAGE_POLICIES", "repair_jpeg", "decode", "resize",
           "build_cache", "cache_paths", "check_present"]

BAD_IMAGE_POLICIES = ("fail", "skip")
CACHE_VERSION = 3     # 2: per-file size + mtime_ns in the index; 3: + ctime_ns and inode
_CHUNK = 256          # images decoded per parallel chunk (bounds the in-flight memory)
_MAX_LISTED = 20      # bad files named in one error/warning line
logger = logging.getLogger(__name__)


@dataclass
class CacheResult:
    """A decoded, resized image set.

    array: (N, S, S, 3) uint8 RGB (a read-only memmap), row i <-> paths[i]; bad rows are zeros.
    ok: (N,) bool, False where the image could not be read (only with policy "skip").
    repaired: paths of truncated JPEGs that were repaired (EOI appended) and decoded.
    bad: path -> reason for unreadable files.
    path: the .npy file.
    stamp: changes whenever the decoded content may have (size, and every file's size + mtime):
    for results derived from the cache (embeddings) to key on.
    """

    array: np.ndarray
    ok: np.ndarray
    repaired: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    stamp: str = ""


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


def _stats(paths: Sequence[str]) -> list[list[int] | None]:
    """[size, mtime_ns, ctime_ns, inode] of every file (None if it cannot be stat'ed): what tells a
    changed file (see the module docstring for why ctime and inode)."""
    out: list[list[int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
            continue
        out.append([st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return out


def _stamp(strs: list[str], size: int, stats: list) -> str:
    return hashlib.sha1(json.dumps([CACHE_VERSION, size, strs, stats]).encode()).hexdigest()[:16]


def cache_stamp(paths: Sequence[str | Path], size: int) -> str:
    """The CacheResult.stamp build_cache would give these files now, from file stats alone (no decoding)."""
    strs = [str(p) for p in paths]
    return _stamp(strs, size, _stats(strs))


def _load_cached(npy: Path, idx: Path, key: str, n: int, size: int) -> tuple[CacheResult, list] | None:
    """An existing cache and its per-file stats if its index matches this list and size; else None."""
    if not (npy.is_file() and idx.is_file()):
        return None
    try:
        meta = json.loads(idx.read_text())
        arr = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION or meta.get("paths_hash") != key
            or meta.get("size") != size or arr.shape != (n, size, size, 3) or arr.dtype != np.uint8
            or len(meta.get("ok", [])) != n or len(meta.get("stats", [])) != n):
        return None
    return (CacheResult(arr, np.asarray(meta["ok"], dtype=bool), list(meta.get("repaired", [])),
                        dict(meta.get("bad", {})), npy), meta["stats"])


def _decode_resized(path: str, size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS
                    ) -> tuple[np.ndarray | None, bool, str | None]:
    try:
        img, repaired = decode(path, max_pixels)
    except ImageError as e:
        return None, False, e.reason or str(e)
    return resize(img, size), repaired, None


def build_cache(paths: Sequence[str | Path], size: int, cache_dir: str | Path, *, policy: str = "fail",
                workers: int = 2, progress: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                test: bool = False) -> CacheResult:
    """Decode every image once, resize to (size, size), store (N, size, size, 3) uint8 in cache_dir.

    An existing cache for the same path list and size is reused; only files whose size or mtime
    changed since (or that were missing and are back) are decoded again, and one line says so.
    policy: "fail" raises one ImageError naming all unreadable files (nothing is cached);
    "skip" keeps going with ok[i] = False (zero rows) and prints a warning line. test: the images of
    sample rows (which skip cannot drop: their rows are predicted from a blank image), for the advice.
    max_pixels: images declaring more pixels are not decoded (unreadable). A full disk raises
    NoSpaceError (checked before decoding); no temp file is left.
    """
    if policy not in BAD_IMAGE_POLICIES:
        raise ValueError(f"unknown bad-image policy {policy!r}; available: {', '.join(BAD_IMAGE_POLICIES)}")
    if size <= 0:
        raise ValueError(f"image size must be > 0, got {size}")
    strs = [str(p) for p in paths]
    n = len(strs)
    key = _paths_hash(strs)
    npy, idx = cache_paths(strs, size, cache_dir)
    stats = _stats(strs)
    cached = _load_cached(npy, idx, key, n, size)
    if cached is None:
        res = _write(npy, idx, key, strs, size, stats, None, range(n), workers, policy, progress, max_pixels, test)
    else:
        res, old = cached
        changed = [i for i in range(n) if stats[i] != old[i]]
        if changed:
            res = _write(npy, idx, key, strs, size, stats, res, changed, workers, policy, progress, max_pixels, test)
            logger.info(f"image cache: {len(changed)} of {n} images changed since the cache was built; "
                        "re-decoded them")
    res.stamp = _stamp(strs, size, stats)
    return _report(res, policy, test)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _preallocate(f, nbytes: int) -> None:
    """Reserve the file's blocks now, so a full disk fails here and not after minutes of decoding."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(f.fileno(), 0, nbytes)
        except OSError as e:
            if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise
            # EOPNOTSUPP / EINVAL: the file system cannot; the writes below still report a full disk


def _write(npy: Path, idx: Path, key: str, strs: list[str], size: int, stats: list, base: CacheResult | None,
           rows: Sequence[int], workers: int, policy: str, progress: bool, max_pixels: int | None,
           test: bool) -> CacheResult:
    """Write a new cache file: `rows` decoded, every other row copied from `base` (zeros if None)."""
    n = len(strs)
    header = _npy_header((n, size, size, 3))
    nbytes = len(header) + n * size * size * 3
    npy.parent.mkdir(parents=True, exist_ok=True)
    check_space(npy, nbytes + 200 * n)  # + the index json
    ok = base.ok.copy() if base is not None else np.zeros(n, dtype=bool)
    repaired = set(base.repaired) if base is not None else set()
    bad = dict(base.bad) if base is not None else {}
    todo = set(rows)
    tmp = npy.with_name(f"{npy.stem}.tmp{os.getpid()}.npy")
    idx_tmp = idx.with_name(f"{idx.name}.tmp{os.getpid()}")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        what = f"caching {n} images" if base is None else f"re-decoding {len(todo)} of {n} images"
        bar = tqdm(total=len(todo), desc=f"{what} at {size}px", unit="img", leave=False, disable=None)
    try:
        with open(tmp, "wb") as f, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            _preallocate(f, nbytes)
            f.write(header)
            for start in range(0, n, _CHUNK):
                stop = min(n, start + _CHUNK)
                block = (np.zeros((stop - start, size, size, 3), np.uint8) if base is None
                         else np.array(base.array[start:stop]))
                need = [i for i in range(start, stop) if i in todo]
                for i, (img, rep, reason) in zip(need, pool.map(_decode_resized, [strs[i] for i in need],
                                                                [size] * len(need), [max_pixels] * len(need))):
                    bad.pop(strs[i], None)
                    repaired.discard(strs[i])
                    ok[i] = img is not None
                    block[i - start] = 0 if img is None else img
                    if img is None:
                        bad[strs[i]] = reason
                    elif rep:
                        repaired.add(strs[i])
                f.write(block.data)
                if bar is not None:
                    bar.update(len(need))
            if bad and policy == "fail":
                raise _bad_error({p: bad[p] for p in strs if p in bad}, test)
        bad = {p: bad[p] for p in strs if p in bad}  # in path order, whatever order they were found in
        meta = {"version": CACHE_VERSION, "paths_hash": key, "size": size, "n": n, "ok": ok.tolist(),
                "repaired": [p for p in strs if p in repaired], "bad": bad, "stats": stats}
        idx_tmp.write_text(json.dumps(meta))
        base = None  # drop the old memmap before replacing its file
        os.replace(tmp, npy)          # array first: an index never points at a missing array
        os.replace(idx_tmp, idx)
    except OSError as e:
        for leftover in (tmp, idx_tmp):  # before measuring what is free
            leftover.unlink(missing_ok=True)
        full = no_space(e, npy, nbytes)
        if full is not None and full is not e:
            raise full from None
        raise
    finally:
        if bar is not None:
            bar.close()
        for leftover in (tmp, idx_tmp):
            leftover.unlink(missing_ok=True)
    return CacheResult(np.load(npy, mmap_mode="r"), ok, meta["repaired"], bad, npy)


def _bad_error(bad: dict[str, str], test: bool = False) -> ImageError:
    advice = ("every sample row needs its image: restore them, or use 'skip' to predict those rows from a blank "
              "image" if test else "use 'skip' to drop them")
    return ImageError(f"{len(bad)} unreadable {'test ' if test else ''}images under {_common_dir(list(bad))} "
                      f"(input.bad_images=fail; {advice}): {_list_names(list(bad), bad)}")


def check_present(paths: Sequence[str | Path], policy: str = "fail", test: bool = False) -> None:
    """With policy "fail": the ImageError build_cache would raise for files that are not there, from one
    stat each (nothing decoded or written), so a missing test image never leaves the train cache behind."""
    if policy == "fail":
        bad = {str(p): "missing" for p in paths if not os.path.isfile(p)}
        if bad:
            raise _bad_error(bad, test)


def _report(res: CacheResult, policy: str, test: bool = False) -> CacheResult:
    """Apply the bad-file policy to a (new or reused) cache and log one warning line per kind."""
    if res.bad and policy == "fail":
        raise _bad_error(res.bad, test)
    if res.bad:
        logger.warning(f"warning: skipped {len(res.bad)} unreadable images (input.bad_images=skip): "
                       f"{_list_names(list(res.bad), res.bad)}")
    if res.repaired:
        logger.warning(f"warning: repaired {len(res.repaired)} truncated JPEGs (missing end marker): "
                       f"{_list_names(res.repaired)}")
    return res
