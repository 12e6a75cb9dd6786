"""Datasets over the uint8 image cache (or raw files), albumentations pipelines from config, loaders.

Datasets return ``(uint8 tensor (3, S, S), int label)``: no Normalize / ToTensor here, the model
normalises on device, so host -> device copies are 4x smaller than float32.
albumentations 2.x Compose keeps its own RNG (global numpy/random seeds do not reach it), so
``make_loader`` reseeds every dataset's Compose per worker from the loader's seeded generator.
"""

from __future__ import annotations

import difflib
import inspect
import mmap
import random
import warnings
from pathlib import Path
from typing import Any, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ensemble.data.images import decode, resize

__all__ = ["AUGMENTATIONS", "PRESETS", "build_transforms", "CachedDataset", "DecodeDataset",
           "make_loader", "seed_worker"]

# Pipeline steps that break the uint8-in, uint8-out contract (or cannot come from a config file).
_FORBIDDEN = {
    "Normalize": "the model normalises on device; datasets return uint8",
    "ToTensorV2": "datasets already return uint8 CHW tensors",
    "ToTensor3D": "datasets already return uint8 CHW tensors",
    "ToFloat": "datasets return uint8; the model converts on device",
    "FromFloat": "datasets return uint8; the model converts on device",
    "Lambda": "a config cannot hold a Python function",
}
_ABSTRACT = {"BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D"}
# Compositions whose "transforms" key is itself a spec list.
_COMPOSITIONS: dict[str, type] = {"OneOf": A.OneOf, "SomeOf": A.SomeOf,
                                  "Sequential": A.Sequential, "RandomOrder": A.RandomOrder}


def _registry() -> dict[str, type]:
    out = dict(_COMPOSITIONS)
    for name in dir(A):
        obj = getattr(A, name)
        if (inspect.isclass(obj) and issubclass(obj, A.BasicTransform) and name not in _ABSTRACT
                and name not in _FORBIDDEN and not issubclass(obj, A.Transform3D)):
            out[name] = obj
    return dict(sorted(out.items()))


AUGMENTATIONS: dict[str, type] = _registry()
"""name -> albumentations class usable in an augment spec (2D transforms + OneOf/SomeOf/...)."""

PRESETS: dict[str, list[dict[str, Any]]] = {
    "medical": [  # orientation-free images (dermoscopy, histology, fundus crops)
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "VerticalFlip", "p": 0.5},
        {"name": "RandomRotate90", "p": 0.5},
        {"name": "Affine", "translate_percent": (-0.05, 0.05), "scale": (0.9, 1.1),
         "rotate": (-15, 15), "border_mode": cv2.BORDER_REFLECT_101, "p": 0.5},
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.5},
        {"name": "GaussianBlur", "blur_limit": (3, 5), "p": 0.1},
    ],
    "light": [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "Affine", "translate_percent": (-0.03, 0.03), "scale": (0.95, 1.05),
         "rotate": (-5, 5), "border_mode": cv2.BORDER_REFLECT_101, "p": 0.3},
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.3},
    ],
    "none": [],
}


def _init_params(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n not in ("self", "strict")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _suggest(word: str, choices: Sequence[str], n: int = 1, cutoff: float = 0.6) -> str:
    """"did you mean 'X'?" (case-insensitive difflib), else the full list of choices."""
    lower = {c.lower(): c for c in choices}
    close = [lower[c] for c in difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=cutoff)]
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"available: {', '.join(choices)}"


def _albu_message(err: Exception) -> str:
    """One line out of albumentations' (pydantic) validation error."""
    cause = err.__cause__
    if hasattr(cause, "errors"):
        by_field: dict[str, list[str]] = {}
        for e in cause.errors():
            field = str(e["loc"][0]) if e.get("loc") else "value"
            msgs = by_field.setdefault(field, [])
            if e["msg"] not in msgs:
                msgs.append(e["msg"])
        return "; ".join(f"{f}: {' | '.join(m)}" for f, m in by_field.items())
    return " ".join(str(err).split()) or type(err).__name__


def _build_one(item: Any, where: str) -> A.BasicTransform | A.BaseCompose:
    if not isinstance(item, dict) or "name" not in item:
        raise ValueError(f"{where}: expected a mapping with a 'name' key, got {item!r}")
    params = dict(item)
    name = params.pop("name")
    if name in _FORBIDDEN:
        raise ValueError(f"{where}: {name} is not allowed in an augment spec ({_FORBIDDEN[name]})")
    if name not in AUGMENTATIONS:
        raise ValueError(f"{where}: unknown augmentation {name!r}; "
                         f"{_suggest(str(name), list(AUGMENTATIONS), n=2, cutoff=0.4)}")
    cls = AUGMENTATIONS[name]
    accepted = _init_params(cls)
    for key in params:
        if key not in accepted:
            raise ValueError(f"{where}: {name} got unknown parameter {key!r}; {_suggest(key, accepted)}")
    if name in _COMPOSITIONS:
        if not isinstance(params.get("transforms"), list):
            raise ValueError(f"{where}: {name} needs a 'transforms' list, got {params.get('transforms')!r}")
        params["transforms"] = [_build_one(t, f"{where}.transforms[{i}]")
                                for i, t in enumerate(params["transforms"])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = cls(**params)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: bad parameters for {name}: {_albu_message(e)}") from e
    for w in caught:  # re-emit albumentations' warnings (deprecations...) with the spec position
        warnings.warn(f"{where} ({name}): {w.message}", w.category, stacklevel=3)
    return out


def build_transforms(spec: list[dict[str, Any]] | str | None, *, where: str = "augment.train",
                     seed: int | None = None) -> A.Compose:
    """Albumentations pipeline from a spec: a preset name or a list of {"name": Class, "p": ..., **params}.

    ``where`` prefixes error messages (``augment.train[2]: unknown augmentation ...``).
    The pipeline maps (S, S, 3) uint8 -> (S, S, 3) uint8; normalisation happens on device.
    """
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"{where}: unknown preset {spec!r}; available: {', '.join(PRESETS)}")
        spec = PRESETS[spec]
    if not isinstance(spec, (list, tuple)):
        raise ValueError(f"{where}: expected a preset name or a list of transforms, got {spec!r}")
    return A.Compose([_build_one(item, f"{where}[{i}]") for i, item in enumerate(spec)], seed=seed)


def _to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


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
                 transform: A.Compose | None = None):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (N, S, S, 3) uint8, got {images.shape} {images.dtype}")
        self.images = images
        self.indices, self.labels = _check_rows(indices, labels, len(images), "cached images")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = np.array(self.images[self.indices[i]])  # copy out of the (read-only) memmap
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        return _to_chw(img), int(self.labels[i]) if self.labels is not None else -1

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
                 transform: A.Compose | None = None, *, size: int):
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
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        return _to_chw(img), int(self.labels[i]) if self.labels is not None else -1


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


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, num_workers: int, pin_memory: bool,
                drop_last: bool = False, seed: int = 0, persistent_workers: bool = True,
                prefetch_factor: int = 4, sampler=None) -> DataLoader:
    """DataLoader with reproducible order and augmentation for a given seed.

    Batches are (uint8 (B, 3, S, S), int64 (B,)). With num_workers == 0 the dataset's Compose is
    reseeded here; with workers, each worker reseeds it from the loader's generator (seed_worker).
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
    if sampler is not None:  # e.g. a DistributedSampler, which shuffles itself
        extra["sampler"], shuffle = sampler, False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last, generator=gen, **extra)
