"""Reading one image file (OpenCV, truncated-JPEG repair), and which files a competition may read,
checked before anything is decoded or written:

- a file (or a folder on its way) that is a symbolic link must resolve inside the competition
  folder (the `train/` or `test/` folder itself may be a link: the whole set then lives there);
  a link to anywhere else, or a loop of links, is refused naming the row;
- an image whose header declares more than `input.max_pixels` pixels is never decoded (a 20000 x
  20000 PNG of a few KB would take gigabytes); the header is read with Pillow, without decoding.
"""
from __future__ import annotations

import errno
import io
import os
import re
import stat
import threading
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ensemble.config.schema import InputCfg

# input.max_pixels: Pillow's own decompression-bomb threshold (~9459 x 9459, 268 MB decoded as RGB), far
# above any photograph, scan or slide crop a classifier is trained on, far below what fills a machine
DEFAULT_MAX_PIXELS = InputCfg.max_pixels
_WARN_LOCK = threading.Lock()  # warnings.catch_warnings is process-wide state: one header probe at a time


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header (nothing decoded); None when Pillow cannot
    tell (OpenCV may still decode it). Over twice Pillow's threshold the size comes from its error."""
    from PIL import Image, UnidentifiedImageError
    try:
        with _WARN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is ours: pixel_problem
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        return (int(m.group(1)), 1) if m else None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):  # not a format Pillow reads
        return None


def pixel_problem(data: bytes, max_pixels: int | None) -> str | None:
    """Why `data` must not be decoded (its header declares more than max_pixels), else None."""
    if not max_pixels:
        return None
    size = image_size(data)
    if size is None or size[0] * size[1] <= max_pixels:
        return None
    shape = f"{size[0]}x{size[1]} = " if size[1] > 1 else ""
    return f"{shape}{size[0] * size[1]:,} pixels, over input.max_pixels {max_pixels:,}; not decoded"


def read_problem(e: OSError) -> str:
    """The short reason for an image file that cannot be opened."""
    if e.errno == errno.ELOOP:
        return "a loop of symbolic links"
    return f"cannot be read ({e.strerror or e})"


class ImageError(ValueError):
    """An image file is missing or cannot be decoded (or a set of them, for build_cache).

    ``reason`` is the short cause for one file ("missing", "cannot decode (N bytes)"), else None.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


def repair_jpeg(data: bytes) -> tuple[bytes, bool]:
    """Append the EOI marker (FFD9) to a JPEG missing it; trailing zero padding is allowed.

    Returns (bytes, repaired). Non-JPEG data is returned unchanged.
    """
    if not data.startswith(b"\xff\xd8"):
        return data, False
    if data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return data, False
    return data + b"\xff\xd9", True


def decode(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """Read an image file as (H, W, 3) uint8 RGB (grayscale -> 3 channels, alpha dropped).

    Truncated JPEGs are repaired first. Returns (image, repaired). An image whose header declares
    more than max_pixels pixels is refused without decoding (None: no limit).
    Raises ImageError("<path>: missing"), ImageError("<path>: cannot decode (N bytes)") and the like.
    """
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ImageError(f"{path}: missing", "missing") from None
    except OSError as e:  # a loop of symbolic links, no permission
        raise ImageError(f"{path}: {read_problem(e)}", read_problem(e)) from None
    except ValueError as e:  # a NUL byte in the id
        raise ImageError(f"{path}: cannot be read ({e})", f"cannot be read ({e})") from None
    nbytes = len(data)
    too_big = pixel_problem(data, max_pixels)
    if too_big:
        raise ImageError(f"{path}: {too_big}", too_big)
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


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def link_problems(paths: Sequence[str], roots: Sequence[str | Path]) -> dict[str, str]:
    """path -> what is wrong, for files that are (or sit in a folder that is) a symbolic link
    resolving outside every folder of `roots` (resolved), or a loop of links. Files that are
    missing are left to the decoder's message. One lstat per file; folders resolved once each."""
    real_roots = [Path(r).resolve() for r in roots]
    folders: dict[str, Path | None] = {}
    out: dict[str, str] = {}
    for p in paths:
        parent = os.path.dirname(p)
        if parent not in folders:
            try:
                folders[parent] = Path(parent).resolve(strict=True)
            except (OSError, RuntimeError):
                folders[parent] = None
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not stat.S_ISLNK(st.st_mode):
            if folders[parent] is not None and not _inside(folders[parent], real_roots):
                out[p] = f"in a folder that resolves to {folders[parent]}, outside {roots[0]}"
            continue
        try:
            target = Path(p).resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop as RuntimeError
            out[p] = "a loop of symbolic links"
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:
                out[p] = "a loop of symbolic links"
            continue  # a dangling link: "missing" when decoded
        if not _inside(target, real_roots):
            out[p] = f"a symbolic link to {target}, outside {roots[0]}"
    return out


def check_image_files(comp) -> None:
    """Raise DataError naming the rows (file, id) whose image is a symbolic link leaving the
    competition folder (or a folder that does), or a loop of links. comp: a Competition."""
    from ensemble.data.competition import DataError, _listing
    roots = [comp.root, *comp.image_dirs]
    rows = []
    for frame, source in ((comp.train, comp.train_file.name), (comp.test, comp.sample_path.name)):
        bad = link_problems(frame["path"].tolist(), roots)
        rows += [f"{source} id '{i}' ({p}: {bad[p]})" for i, p in zip(frame["id"], frame["path"]) if p in bad]
    if rows:
        n = len(rows)
        raise DataError(f"{n} image file{'s' if n > 1 else ''} outside the competition folder or in a loop of "
                        f"links: {_listing(rows, 3, n)}; copy the images into {comp.root} (the train/ or test/ "
                        f"folder itself may be a link)")
