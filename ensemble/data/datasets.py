"""Datasets over the uint8 image cache (or raw files), and seeded loaders (pipelines: ensemble.data.augment).

Datasets return ``(uint8 tensor (3, S, S), int label)``: no Normalize / ToTensor here, the model
normalises on device, so host -> device copies are 4x smaller than float32.
albumentations 2.x Compose keeps its own RNG (global numpy/random seeds do not reach it), so
``make_loader`` reseeds every dataset's Compose per worker from the loader's seeded generator.
"""

from __future__ import annotations

import mmap
import random
from pathlib import Path
from typing import Any, Sequence

import albumentations
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from ensemble.data.augment import AUGMENTATIONS, PRESETS, build_transforms  # noqa: F401 (re-exported)
from ensemble.data.images import decode, resize

__all__ = ["AUGMENTATIONS", "PRESETS", "build_transforms",  # re-exported from ensemble.data.augment
           "CachedDataset", "DecodeDataset", "NoSingleBatchSampler", "batch_bounds", "make_loader", "seed_worker",
           "to_input", "to_rgb"]


def _to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def to_rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    """An image array as images.decode gives a file: (H, W, 3) uint8 RGB. Grayscale (H, W) or
    (H, W, 1) is repeated into 3 channels and RGBA (H, W, 4) loses its alpha, as OpenCV's
    IMREAD_COLOR does for files; RGB passes unchanged. Anything else: ValueError naming `name`."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixel values (0..255), got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2 and img.size:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] in (3, 4) and img.size:
        return np.ascontiguousarray(img[:, :, :3])
    raise ValueError(f"{name}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")


def to_input(img: np.ndarray, transform: albumentations.Compose | None = None) -> torch.Tensor:
    """A resized (S, S, 3) uint8 image -> the model's input (3, S, S) uint8, through `transform`
    (augmentation in training, augment.eval at test time). Every dataset and predict use this."""
    if transform is not None:
        img = transform(image=img)["image"]
    return _to_chw(img)


def _check_rows(indices: np.ndarray, labels: np.ndarray | None, n: int, what: str) -> tuple:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}) for {n} {what}, got range "
                         f"[{indices.min()}, {indices.max()}]")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(indices):
            raise ValueError(f"labels has {len(labels)} rows, expected one per index ({len(indices)})")
    return indices, labels


class CachedDataset(Dataset):
    """Rows of a cached (N, S, S, 3) uint8 array (memmap ok) -> (uint8 tensor (3, S, S), label).

    indices: (M,) rows into images; labels: (M,) int64 or None (label -1); transform: uint8 -> uint8.
    """

    def __init__(self, images: np.ndarray, indices: np.ndarray, labels: np.ndarray | None = None,
                 transform: albumentations.Compose | None = None):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (N, S, S, 3) uint8, got {images.shape} {images.dtype}")
        self.images = images
        self.indices, self.labels = _check_rows(indices, labels, len(images), "cached images")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = np.array(self.images[self.indices[i]])  # copy out of the (read-only) memmap
        return to_input(img, self.transform), int(self.labels[i]) if self.labels is not None else -1

    def __getstate__(self) -> dict:
        # A top-level memmap travels to spawned workers as its file, not as a pickled copy.
        state = self.__dict__.copy()
        im = self.images
        if isinstance(im, np.memmap) and isinstance(im.base, mmap.mmap) and im.filename:
            state["images"] = ("__memmap__", im.filename, im.offset, im.shape, im.dtype.str)
        return state

    def __setstate__(self, state: dict) -> None:
        im = state["images"]
        if isinstance(im, tuple) and im[0] == "__memmap__":
            _, filename, offset, shape, dtype = im
            state["images"] = np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


class DecodeDataset(Dataset):
    """Like CachedDataset but decodes + resizes paths[indices[i]] on every access (no cache)."""

    def __init__(self, paths: Sequence[str | Path], indices: np.ndarray, labels: np.ndarray | None = None,
                 transform: albumentations.Compose | None = None, *, size: int):
        if size <= 0:
            raise ValueError(f"image size must be > 0, got {size}")
        self.paths = [str(p) for p in paths]
        self.indices, self.labels = _check_rows(indices, labels, len(self.paths), "paths")
        self.transform = transform
        self.size = size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = resize(decode(self.paths[self.indices[i]])[0], self.size)
        return to_input(img, self.transform), int(self.labels[i]) if self.labels is not None else -1


def _reseed(dataset: Any, seed: int) -> None:
    """Reseed the albumentations Compose of a dataset (and of Subset/ConcatDataset children)."""
    tf = getattr(dataset, "transform", None)
    if hasattr(tf, "set_random_seed"):
        tf.set_random_seed(seed)
    if hasattr(dataset, "dataset"):
        _reseed(dataset.dataset, seed)
    for k, child in enumerate(getattr(dataset, "datasets", []) or []):
        _reseed(child, seed + 7919 * (k + 1))


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed numpy, random and the dataset's Compose from torch's worker seed."""
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2**32
    np.random.seed(seed)
    random.seed(seed)
    _reseed(info.dataset, seed)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, end) of the training batches over n rows: full batches, and a last batch of one row
    folded into the batch before it (n = k * bs + 1 -> k batches, the last of bs + 1 rows).

    A one-row batch cannot train: BatchNorm in train mode needs more than one value per channel
    ("Expected more than 1 value per channel"), and even without BatchNorm one row's gradient step
    is as large as a full batch's. Folded rather than dropped: every row (an extra soft-target row
    included) trains every epoch, and the schedule's step count stays exact; one batch per epoch
    of bs + 1 rows costs nothing measurable.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


class NoSingleBatchSampler(Sampler):
    """Batches of `batch_size` indices drawn from `sampler` (random, sequential or a
    DistributedSampler's shard), with a last batch of one row folded into the one before it
    (see batch_bounds). -> lists of dataset indices."""

    def __init__(self, sampler: Sampler, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size

    def __len__(self) -> int:
        return len(batch_bounds(len(self.sampler), self.batch_size))

    def __iter__(self):
        order = list(self.sampler)
        for start, end in batch_bounds(len(order), self.batch_size):
            yield order[start:end]


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, num_workers: int, pin_memory: bool,
                drop_last: bool = False, seed: int = 0, persistent_workers: bool = True,
                prefetch_factor: int = 4, sampler=None, no_single: bool = False) -> DataLoader:
    """DataLoader with reproducible order and augmentation for a given seed.

    Batches are (uint8 (B, 3, S, S), int64 (B,)). With num_workers == 0 the dataset's Compose is
    reseeded here; with workers, each worker reseeds it from the loader's generator (seed_worker).
    no_single: never a last batch of one row (training loaders; see batch_bounds).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    gen = torch.Generator()
    gen.manual_seed(seed)
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra = {"worker_init_fn": seed_worker, "persistent_workers": persistent_workers,
                 "prefetch_factor": prefetch_factor}
    else:
        _reseed(dataset, seed)
    if no_single:  # the same order as DataLoader(shuffle=...) draws from `gen`, batched by batch_bounds
        if sampler is None:
            sampler = RandomSampler(dataset, generator=gen) if shuffle else SequentialSampler(dataset)
        return DataLoader(dataset, batch_sampler=NoSingleBatchSampler(sampler, batch_size), num_workers=num_workers,
                          pin_memory=pin_memory, generator=gen, **extra)
    if sampler is not None:  # e.g. a DistributedSampler, which shuffles itself
        extra["sampler"], shuffle = sampler, False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last, generator=gen, **extra)
