import io
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ensemble.data import images
from ensemble.data.images import CacheResult, ImageError, build_cache, decode, repair_jpeg, resize


def _rgb(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 10)  # red left half (RGB), so channel order is checked
    img[:, w // 2:] = rng.integers(0, 255, (h, w - w // 2, 3), dtype=np.uint8)
    return img


def _write(path: Path, rgb: np.ndarray, ext=".png") -> Path:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


def test_repair_jpeg_bytes():
    assert repair_jpeg(b"\xff\xd8abc") == (b"\xff\xd8abc\xff\xd9", True)
    assert repair_jpeg(b"\xff\xd8abc\xff\xd9") == (b"\xff\xd8abc\xff\xd9", False)
    assert repair_jpeg(b"\xff\xd8abc\xff\xd9\x00\x00") == (b"\xff\xd8abc\xff\xd9\x00\x00", False)
    assert repair_jpeg(b"\x89PNG....") == (b"\x89PNG....", False)


def test_decode_truncated_jpeg_is_repaired(tmp_path):
    p = _write(tmp_path / "t.jpg", _rgb(), ".jpg")
    full, rep_full = decode(p)
    p.write_bytes(p.read_bytes()[:-2])  # drop the FFD9 end marker
    img, rep = decode(p)
    assert (rep_full, rep) == (False, True)
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, full)
    assert abs(int(img[5, 5, 0]) - 200) < 8 and img[5, 5, 2] < 30  # RGB, not BGR


def test_decode_grayscale_png_gives_3_channels(tmp_path):
    gray = np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)
    p = tmp_path / "g.png"
    p.write_bytes(cv2.imencode(".png", gray)[1].tobytes())
    img, rep = decode(p)
    assert img.shape == (16, 20, 3) and not rep
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], gray)


def test_decode_errors(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.jpg: missing$") as e:
        decode(tmp_path / "nope.jpg")
    assert e.value.reason == "missing"
    (tmp_path / "x.jpg").write_bytes(b"0123456789")
    with pytest.raises(ImageError, match=r"x\.jpg: cannot decode \(10 bytes\)$"):
        decode(tmp_path / "x.jpg")


def test_resize_shrink_and_grow():
    img = _rgb(24, 32)
    assert resize(img, 16).shape == (16, 16, 3)
    big = resize(img, 48)
    assert big.shape == (48, 48, 3) and big.dtype == np.uint8
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert (resize(flat, 4) == 77).all() and (resize(flat, 40) == 77).all()
    with pytest.raises(ValueError, match="image size must be > 0, got 0"):
        resize(img, 0)


def _image_set(root: Path, n=4):
    return [_write(root / f"img{i}.png", _rgb(20 + i, 24, seed=i)) for i in range(n)]


def test_build_cache_contents_and_files(tmp_path):
    paths = _image_set(tmp_path / "train")
    res = build_cache(paths, 16, tmp_path / "cache", progress=False)
    assert isinstance(res, CacheResult) and isinstance(res.array, np.memmap)
    assert res.array.shape == (4, 16, 16, 3) and res.array.dtype == np.uint8
    assert res.ok.tolist() == [True] * 4 and res.bad == {} and res.repaired == []
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(res.array[i], resize(decode(p)[0], 16))
    assert res.path.name.startswith("images_16_") and res.path.suffix == ".npy"
    assert sorted(f.suffix for f in (tmp_path / "cache").iterdir()) == [".json", ".npy"]  # no temp left


def test_cache_reused_without_decoding(tmp_path, monkeypatch):
    paths = _image_set(tmp_path / "train")
    first = build_cache(paths, 16, tmp_path / "cache", progress=False)
    expected = np.array(first.array)

    def boom(path, *a):
        raise AssertionError("decode called on a cached set")

    monkeypatch.setattr(images, "decode", boom)
    again = build_cache(paths, 16, tmp_path / "cache", progress=False)
    assert again.path == first.path
    np.testing.assert_array_equal(again.array, expected)
    with pytest.raises(AssertionError, match="decode called"):  # a new size must decode
        build_cache(paths, 8, tmp_path / "cache", progress=False)


def test_sizes_and_sets_coexist(tmp_path):
    paths = _image_set(tmp_path / "train")
    a = build_cache(paths, 16, tmp_path / "cache", progress=False)
    b = build_cache(paths, 8, tmp_path / "cache", progress=False)
    c = build_cache(paths[:2], 16, tmp_path / "cache", progress=False)
    assert len({a.path, b.path, c.path}) == 3
    assert (a.array.shape, b.array.shape, c.array.shape) == ((4, 16, 16, 3), (4, 8, 8, 3), (2, 16, 16, 3))
    np.testing.assert_array_equal(c.array, a.array[:2])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3


def _bad_set(root: Path):
    good = _image_set(root, 2)
    (root / "b.jpg").write_bytes(b"0123456789")
    return [root / "a.jpg", good[0], root / "b.jpg", good[1], root / "c.jpg"]


def test_fail_policy_lists_all_bad_files_once(tmp_path):
    root = tmp_path / "train"
    paths = _bad_set(root)
    with pytest.raises(ImageError) as e:
        build_cache(paths, 16, tmp_path / "cache", progress=False)
    assert str(e.value) == (
        f"3 unreadable images under {root} (input.bad_images=fail; use 'skip' to drop them): "
        "a.jpg (missing), b.jpg (cannot decode (10 bytes)), c.jpg (missing)")
    assert list((tmp_path / "cache").iterdir()) == []  # a failed build is not cached


def test_fail_policy_truncates_long_lists(tmp_path):
    paths = [tmp_path / f"m{i:02d}.jpg" for i in range(23)]
    with pytest.raises(ImageError) as e:
        build_cache(paths, 8, tmp_path / "cache", progress=False)
    msg = str(e.value)
    assert msg.startswith("23 unreadable images under ")
    assert msg.endswith("m18.jpg (missing), m19.jpg (missing), ... and 3 more")


def test_skip_policy_keeps_going_and_warns(tmp_path, caplog):
    root = tmp_path / "train"
    paths = _bad_set(root)
    res = build_cache(paths, 16, tmp_path / "cache", policy="skip", progress=False)
    assert res.ok.tolist() == [False, True, False, True, False]
    assert res.bad == {str(root / "a.jpg"): "missing", str(root / "b.jpg"): "cannot decode (10 bytes)",
                       str(root / "c.jpg"): "missing"}
    assert (res.array[0] == 0).all() and res.array[1].any()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING",
        "warning: skipped 3 unreadable images (input.bad_images=skip): "
        "a.jpg (missing), b.jpg (cannot decode (10 bytes)), c.jpg (missing)")]
    # the cached set remembers its bad rows: reused with "skip" it is identical, with "fail" it raises
    again = build_cache(paths, 16, tmp_path / "cache", policy="skip", progress=False)
    assert again.ok.tolist() == res.ok.tolist() and again.bad == res.bad
    with pytest.raises(ImageError, match="^3 unreadable images under"):
        build_cache(paths, 16, tmp_path / "cache", policy="fail", progress=False)


def test_repaired_files_reported_and_indexed(tmp_path, caplog, monkeypatch):
    p = _write(tmp_path / "t.jpg", _rgb(), ".jpg")
    p.write_bytes(p.read_bytes()[:-2])
    q = _write(tmp_path / "ok.png", _rgb(seed=3))
    res = build_cache([p, q], 16, tmp_path / "cache", progress=False)
    assert res.repaired == [str(p)] and res.ok.all()
    assert [r.getMessage() for r in caplog.records] == ["warning: repaired 1 truncated JPEGs (missing end marker): t.jpg"]
    monkeypatch.setattr(images, "decode", None)  # reuse must not decode
    assert build_cache([p, q], 16, tmp_path / "cache", progress=False).repaired == [str(p)]


def test_unknown_policy(tmp_path):
    with pytest.raises(ValueError, match="^unknown bad-image policy 'drop'; available: fail, skip$"):
        build_cache([], 16, tmp_path, policy="drop")


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    paths = _image_set(tmp_path / "train")
    monkeypatch.setattr(images, "_decode_resized", lambda p, s, *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        build_cache(paths, 16, tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, drawn", [(io.StringIO, False), (_Terminal, True)])
def test_progress_bars_draw_on_a_terminal_only(tmp_path, monkeypatch, stream, drawn):
    from ensemble.train.engine import _progress
    err = stream()
    monkeypatch.setattr(sys, "stderr", err)
    build_cache(_image_set(tmp_path / "train"), 16, tmp_path / "cache", progress=True)
    assert list(_progress(range(3), 3, "epoch 1", enabled=True)) == [0, 1, 2]
    text = err.getvalue()
    assert ("caching 4 images at 16px" in text and "epoch 1" in text) == drawn
    assert (text == "") == (not drawn)  # a redirected log gets no bar at all
