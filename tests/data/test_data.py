import pickle
import warnings

import albumentations
import cv2
import numpy as np
import pytest
import torch

from ensemble.data.datasets import (AUGMENTATIONS, PRESETS, CachedDataset, DecodeDataset, build_transforms,
                           make_loader)
from ensemble.data.images import build_cache

S = 16


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        img = rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)
        p = root / f"img{i}.png"
        p.write_bytes(cv2.imencode(".png", img)[1].tobytes())
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def cache(image_files, tmp_path_factory):
    return build_cache(image_files, S, tmp_path_factory.mktemp("cache"), progress=False)


def test_cached_dataset_shapes_and_labels(cache):
    ds = CachedDataset(cache.array, np.array([3, 1, 5]), np.array([2, 0, 1]))
    assert len(ds) == 3
    x, y = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (3, S, S) and x.is_contiguous()
    assert y == 2 and isinstance(y, int)
    np.testing.assert_array_equal(x.numpy(), cache.array[3].transpose(2, 0, 1))
    assert CachedDataset(cache.array, np.arange(2))[1][1] == -1


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_keep_shape_and_dtype(cache, preset):
    ds = CachedDataset(cache.array, np.arange(8), transform=build_transforms(preset, seed=1))
    for i in range(8):
        x, _ = ds[i]
        assert x.shape == (3, S, S) and x.dtype == torch.uint8


def test_presets_have_no_normalize_or_tensor():
    names = {t["name"] for spec in PRESETS.values() for t in spec}
    assert names >= {"HorizontalFlip", "VerticalFlip", "RandomRotate90", "Affine"}
    assert not names & {"Normalize", "ToTensorV2", "ShiftScaleRotate"}
    assert "Normalize" not in AUGMENTATIONS and "ToTensorV2" not in AUGMENTATIONS


def test_flip_spec_flips(cache):
    tf = build_transforms([{"name": "HorizontalFlip", "p": 1.0}, {"name": "VerticalFlip", "p": 1.0}])
    x, _ = CachedDataset(cache.array, np.arange(1), transform=tf)[0]
    np.testing.assert_array_equal(x.numpy(), cache.array[0][::-1, ::-1].transpose(2, 0, 1))


def test_nested_oneof():
    tf = build_transforms([{"name": "OneOf", "p": 0.5, "transforms": [
        {"name": "Blur", "blur_limit": 3}, {"name": "GaussianBlur", "blur_limit": (3, 5)}]}])
    assert isinstance(tf.transforms[0], albumentations.OneOf) and len(tf.transforms[0].transforms) == 2


@pytest.mark.parametrize("spec, message", [
    ([{"name": "HorizontalFlip"}, {"name": "Affine"}, {"name": "Flipp", "p": 0.5}],
     "augment.train[2]: unknown augmentation 'Flipp'; did you mean 'VerticalFlip' or 'HorizontalFlip'?"),
    ([{"name": "GausianBlur"}],
     "augment.train[0]: unknown augmentation 'GausianBlur'; did you mean 'GaussianBlur' or 'GlassBlur'?"),
    ([{"name": "HorizontalFlip", "prob": 0.5}],
     "augment.train[0]: HorizontalFlip got unknown parameter 'prob'; available: p"),
    ([{"name": "Affine", "rotation": 10}],
     "augment.train[0]: Affine got unknown parameter 'rotation'; did you mean 'rotate'?"),
    ([{"name": "HorizontalFlip", "p": 2}],
     "augment.train[0]: bad parameters for HorizontalFlip: p: Input should be less than or equal to 1"),
    ([{"name": "RandomBrightnessContrast", "brightness_limit": "big"}],
     "augment.train[0]: bad parameters for RandomBrightnessContrast: brightness_limit: "
     "Input should be a valid tuple | Input should be a valid number, unable to parse string as a number"),
    ([{"name": "Normalize"}],
     "augment.train[0]: Normalize is not allowed in an augment spec "
     "(the model normalises on device; datasets return uint8)"),
    ([{"name": "ToTensorV2"}],
     "augment.train[0]: ToTensorV2 is not allowed in an augment spec (datasets already return uint8 CHW tensors)"),
    (["HorizontalFlip"], "augment.train[0]: expected a mapping with a 'name' key, got 'HorizontalFlip'"),
    ([{"p": 0.5}], "augment.train[0]: expected a mapping with a 'name' key, got {'p': 0.5}"),
    ([{"name": "OneOf", "transforms": [{"name": "Blurr"}]}],
     "augment.train[0].transforms[0]: unknown augmentation 'Blurr'; did you mean 'Blur' or 'ZoomBlur'?"),
    ([{"name": "OneOf"}], "augment.train[0]: OneOf needs a 'transforms' list, got None"),
    ("heavy", "augment.train: unknown preset 'heavy'; available: medical, dermoscopy, light, none"),
    (42, "augment.train: expected a preset name or a list of transforms, got 42"),
])
def test_spec_errors(spec, message):
    with pytest.raises(ValueError) as e:
        build_transforms(spec)
    assert str(e.value) == message


def test_where_prefix_and_deprecation_warning_position():
    with pytest.raises(ValueError, match=r"^augment\.tta\[0\]: unknown augmentation"):
        build_transforms([{"name": "Nope"}], where="augment.tta")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_transforms([{"name": "HorizontalFlip"}, {"name": "ShiftScaleRotate", "p": 0.5}])
    assert any(str(w.message).startswith("augment.train[1] (ShiftScaleRotate): ") and "Affine" in str(w.message)
               for w in caught)


def _epochs(ds, num_workers, seed, epochs=2):
    loader = make_loader(ds, 4, shuffle=True, num_workers=num_workers, pin_memory=False, seed=seed)
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(epochs)]


def _same(a, b):
    return all(torch.equal(x1, x2) and torch.equal(y1, y2)
               for e1, e2 in zip(a, b) for (x1, y1), (x2, y2) in zip(e1, e2))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_seeded_loader_reproducible_with_augmentation(cache, num_workers):
    torch.set_num_threads(1)
    ds = CachedDataset(cache.array, np.arange(8), np.arange(8) % 3, build_transforms("medical"))
    run1, run2 = _epochs(ds, num_workers, seed=5), _epochs(ds, num_workers, seed=5)
    x, y = run1[0][0]
    assert x.shape == (4, 3, S, S) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert _same(run1, run2)
    assert not _same([run1[0]], [run1[1]])  # epochs differ (order and augmentation)
    assert not _same(run1, _epochs(ds, num_workers, seed=6))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_workers_do_not_share_augmentation_stream(cache, num_workers):
    # 8 copies of one image, random rotation on every item: identical RNG streams would repeat outputs
    ds = CachedDataset(cache.array, np.zeros(8, np.int64),
                       transform=build_transforms([{"name": "Affine", "rotate": (-90, 90), "p": 1.0}]))
    loader = make_loader(ds, 4, shuffle=False, num_workers=num_workers, pin_memory=False, seed=0)
    b0, b1 = [x for x, _ in loader]
    assert not torch.equal(b0, b1)


def test_decode_dataset_matches_cached(image_files, cache):
    idx = np.array([6, 0, 3])
    dec = DecodeDataset(image_files, idx, np.array([1, 2, 0]), size=S)
    cached = CachedDataset(cache.array, idx, np.array([1, 2, 0]))
    for i in range(3):
        (xd, yd), (xc, yc) = dec[i], cached[i]
        assert xd.dtype == torch.uint8 and xd.shape == (3, S, S) and yd == yc
        assert torch.equal(xd, xc)


def test_memmap_pickles_as_file_reference(cache):
    ds = CachedDataset(cache.array, np.arange(4))
    blob = pickle.dumps(ds)
    assert len(blob) < cache.array.nbytes // 4  # the pixels did not travel
    back = pickle.loads(blob)
    assert isinstance(back.images, np.memmap)
    np.testing.assert_array_equal(back.images, cache.array)


@pytest.mark.parametrize("kwargs, message", [
    (dict(images=np.zeros((2, S, S), np.uint8), indices=[0]),
     f"images must be (N, S, S, 3) uint8, got (2, {S}, {S}) uint8"),
    (dict(images=np.zeros((2, S, S, 3), np.uint8), indices=[0, 2]),
     "indices must lie in [0, 2) for 2 cached images, got range [0, 2]"),
    (dict(images=np.zeros((2, S, S, 3), np.uint8), indices=[0, 1], labels=[1]),
     "labels has 1 rows, expected one per index (2)"),
])
def test_dataset_bad_input(kwargs, message):
    with pytest.raises(ValueError) as e:
        CachedDataset(**kwargs)
    assert str(e.value) == message


def test_make_loader_bad_input(cache):
    ds = CachedDataset(cache.array, np.arange(2))
    with pytest.raises(ValueError, match="^batch_size must be > 0, got 0$"):
        make_loader(ds, 0, shuffle=False, num_workers=0, pin_memory=False)
    with pytest.raises(ValueError, match="^num_workers must be >= 0, got -1$"):
        make_loader(ds, 2, shuffle=False, num_workers=-1, pin_memory=False)
