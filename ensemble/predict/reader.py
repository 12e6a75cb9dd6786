"""Images -> resized uint8 arrays in chunks, decoded ahead in threads, with training's decode and resize.

    for chunk in read_chunks(paths_or_arrays, sizes=[128, 224], chunk=32):
        chunk.images[128]     # (n, 128, 128, 3) uint8, row i <-> chunk.start + i; unreadable rows are zeros
        chunk.ok, chunk.bad   # (n,) bool, {row: reason}

A file goes through ensemble.data.images.decode then resize, exactly as the training cache made its
rows; an array through ensemble.data.datasets.to_rgb (grayscale -> 3 channels, RGBA -> RGB). At most
two chunks are in memory at a time, whatever the number of images. `spool` writes every chunk to
one memmap per size (a temporary folder), for the extra pass test-time adaptation needs.
"""
from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ensemble.data.datasets import to_rgb
from ensemble.data.images import ImageError, decode, resize

BAD_IMAGE = ("error", "prior")  # stop at an unreadable image, or give its row the class priors


@dataclass
class Chunk:
    start: int  # index of the first row in the input
    images: dict[int, np.ndarray]  # size -> (n, size, size, 3) uint8
    ok: np.ndarray  # (n,) bool
    bad: dict[int, str] = field(default_factory=dict)  # row within the chunk -> "<name>: reason"

    def __len__(self) -> int:
        return len(self.ok)


def _load(item, i: int, sizes: Sequence[int]) -> tuple[dict[int, np.ndarray] | None, str | None]:
    """One input at every size, or (None, reason). Bad arrays raise: they are the caller's bug."""
    if isinstance(item, np.ndarray):
        img = to_rgb(item, f"image {i}")
    else:
        try:
            img = decode(item)[0]
        except ImageError as e:
            return None, str(e)
    return {s: resize(img, s) for s in sizes}, None


def _chunk_of(items: Sequence, start: int, size: int, sizes: Sequence[int], pool: ThreadPoolExecutor) -> Chunk:
    """Inputs start .. start + size - 1, decoded by `pool`."""
    rows = range(start, min(len(items), start + size))
    loaded = list(pool.map(lambda i: _load(items[i], i, sizes), rows))
    n = len(loaded)
    images = {s: np.zeros((n, s, s, 3), np.uint8) for s in sizes}
    ok, bad = np.ones(n, bool), {}
    for j, (arrs, reason) in enumerate(loaded):
        if arrs is None:
            ok[j], bad[j] = False, reason
        else:
            for s in sizes:
                images[s][j] = arrs[s]
    return Chunk(start, images, ok, bad)


def read_chunks(items: Sequence, sizes: Sequence[int], chunk: int = 32, workers: int = 2,
                on_bad_image: str = "error") -> Iterator[Chunk]:
    """Chunks of `chunk` inputs (paths or arrays), the next one decoding while the caller works.
    on_bad_image "error": the first unreadable file raises ImageError (naming it); "prior": its row is
    marked bad and the run goes on."""
    if on_bad_image not in BAD_IMAGE:
        raise ValueError(f"unknown on_bad_image {on_bad_image!r}; available: {', '.join(BAD_IMAGE)}")
    if chunk < 1:
        raise ValueError(f"batch size must be >= 1, got {chunk}")
    sizes = sorted(set(sizes))
    starts = list(range(0, len(items), chunk))
    with ThreadPoolExecutor(max(1, workers)) as pool, ThreadPoolExecutor(1) as ahead:
        make = lambda s: _chunk_of(items, s, chunk, sizes, pool)
        pending = ahead.submit(make, starts[0]) if starts else None
        for k in range(len(starts)):
            out = pending.result()
            pending = ahead.submit(make, starts[k + 1]) if k + 1 < len(starts) else None
            if out.bad and on_bad_image == "error":
                j = min(out.bad)
                raise ImageError(f"{out.bad[j]} (--on-bad-image prior gives unreadable images the class priors)")
            yield out


@dataclass
class Spooled:
    """Every input decoded once into one read-only memmap per size (in `folder`)."""
    images: dict[int, np.ndarray]  # size -> (N, size, size, 3) uint8
    ok: np.ndarray  # (N,) bool
    bad: dict[int, str]  # input index -> reason
    folder: tempfile.TemporaryDirectory

    def chunks(self, chunk: int) -> Iterator[Chunk]:
        for start in range(0, len(self.ok), chunk):
            stop = min(len(self.ok), start + chunk)
            yield Chunk(start, {s: np.asarray(a[start:stop]) for s, a in self.images.items()}, self.ok[start:stop],
                        {i - start: r for i, r in self.bad.items() if start <= i < stop})


def spool(items: Sequence, sizes: Sequence[int], chunk: int = 32, workers: int = 2, on_bad_image: str = "error",
          folder: str | Path | None = None) -> Spooled:
    """Decode every input once into memmaps (a temporary folder inside `folder`, removed with the result)."""
    tmp = tempfile.TemporaryDirectory(prefix="ensemble-predict-", dir=folder)
    sizes = sorted(set(sizes))
    n = len(items)
    arrays = {s: np.lib.format.open_memmap(Path(tmp.name) / f"images_{s}.npy", mode="w+", dtype=np.uint8,
                                           shape=(n, s, s, 3)) for s in sizes}
    ok, bad = np.ones(n, bool), {}
    for c in read_chunks(items, sizes, chunk, workers, on_bad_image):
        for s in sizes:
            arrays[s][c.start:c.start + len(c)] = c.images[s]
        ok[c.start:c.start + len(c)] = c.ok
        bad.update({c.start + j: r for j, r in c.bad.items()})
    for a in arrays.values():
        a.flush()
    images = {s: np.load(Path(tmp.name) / f"images_{s}.npy", mmap_mode="r") for s in sizes}
    return Spooled(images, ok, bad, tmp)
