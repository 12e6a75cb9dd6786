"""Issue 11, items 3 and 6: the image cache follows the files it was built from (size + mtime of
every file; only changed rows are decoded again), and a full disk is one line, never a SIGBUS, a
traceback or a temp file left behind (cache, checkpoint, run assembly, submission)."""
from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from ensemble.artifacts import io as aio
from ensemble.artifacts.io import NoSpaceError, atomic_write_json, write_probs
from ensemble.data import images
from ensemble.data.images import ImageError, build_cache, cache_paths, decode, resize
from ensemble.train.files import save_npz, save_torch
from ensemble.vote.submission import write_frame

MB = 1 << 20
Usage = namedtuple("Usage", "total used free")


def _img(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _put(path: Path, rgb: np.ndarray, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())
    if mtime_ns is not None:  # a fixed, distinct mtime: the test does not depend on the clock's resolution
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _set(root: Path, n: int = 4) -> list[Path]:
    return [_put(root / f"img{i}.png", _img(i), 1_000_000_000_000_000_000 + i) for i in range(n)]


def _counting(monkeypatch) -> list[str]:
    """Record every file the cache decodes."""
    seen: list[str] = []
    real = images.decode

    def counted(path, *a):
        seen.append(Path(path).name)
        return real(path, *a)

    monkeypatch.setattr(images, "decode", counted)
    return seen


def _overwrite(paths):
    _put(paths[1], _img(99), 2_000_000_000_000_000_000)


def _same_size_new_mtime(paths):
    os.utime(paths[2], ns=(2_000_000_000_000_000_000,) * 2)


def _two_changed(paths):
    _put(paths[0], _img(98), 2_000_000_000_000_000_000)
    _put(paths[3], _img(97), 2_000_000_000_000_000_001)


def _restore_missing(paths):
    _put(paths[1], _img(99), 2_000_000_000_000_000_000)


def _delete(paths):
    paths[2].unlink()


def _nothing(paths):
    pass


# (name, files missing before the first build, mutation, decoded on the rebuild, expected log line)
CHANGES = [
    ("overwritten", [], _overwrite, ["img1.png"],
     "image cache: 1 of 4 images changed since the cache was built; re-decoded them"),
    ("mtime only", [], _same_size_new_mtime, ["img2.png"],
     "image cache: 1 of 4 images changed since the cache was built; re-decoded them"),
    ("two overwritten", [], _two_changed, ["img0.png", "img3.png"],
     "image cache: 2 of 4 images changed since the cache was built; re-decoded them"),
    ("missing restored", [1], _restore_missing, ["img1.png"],
     "image cache: 1 of 4 images changed since the cache was built; re-decoded them"),
    ("deleted", [], _delete, ["img2.png"],
     "image cache: 1 of 4 images changed since the cache was built; re-decoded them\n"
     "warning: skipped 1 unreadable images (input.bad_images=skip): img2.png (missing)"),
    ("unchanged", [], _nothing, [], ""),
]


@pytest.mark.parametrize("name, missing, mutate, decoded, message", CHANGES, ids=[c[0] for c in CHANGES])
def test_cache_follows_the_files(tmp_path, monkeypatch, capsys, name, missing, mutate, decoded, message):
    paths = _set(tmp_path / "train")
    for i in missing:
        paths[i].unlink()
    first = build_cache(paths, 16, tmp_path / "cache", policy="skip", progress=False)
    assert first.ok.tolist() == [i not in missing for i in range(4)]
    before = np.array(first.array)
    capsys.readouterr()
    mutate(paths)
    seen = _counting(monkeypatch)
    res = build_cache(paths, 16, tmp_path / "cache", policy="skip", progress=False)
    out = capsys.readouterr().out
    assert seen == decoded and out.strip() == message
    assert res.path == first.path and sorted(p.name for p in (tmp_path / "cache").iterdir()) == \
        sorted([first.path.name, first.path.with_suffix(".json").name])  # same file name, no temp left
    for i, p in enumerate(paths):  # every row is what the file holds now (zeros where it is gone)
        want = resize(decode(p)[0], 16) if p.exists() else np.zeros((16, 16, 3), np.uint8)
        np.testing.assert_array_equal(res.array[i], want)
        if p.name not in decoded:
            np.testing.assert_array_equal(res.array[i], before[i])  # copied, not decoded
    assert res.ok.tolist() == [p.exists() for p in paths]
    assert res.bad == {str(p): "missing" for p in paths if not p.exists()}
    seen.clear()
    again = build_cache(paths, 16, tmp_path / "cache", policy="skip", progress=False)
    skipped = [line for line in message.splitlines() if line.startswith("warning: skipped")]  # said on every reuse
    assert seen == [] and capsys.readouterr().out.splitlines() == skipped  # the rebuilt index is current
    np.testing.assert_array_equal(again.array, res.array)


def test_index_holds_size_mtime_ctime_and_inode_of_every_file(tmp_path):
    paths = _set(tmp_path / "train", 3)
    res = build_cache(paths, 8, tmp_path / "cache", progress=False)
    meta = json.loads(res.path.with_suffix(".json").read_text())
    assert meta["version"] == 3
    assert meta["stats"] == [[p.stat().st_size, 1_000_000_000_000_000_000 + i, p.stat().st_ctime_ns, p.stat().st_ino]
                             for i, p in enumerate(paths)]


def test_cache_without_file_stats_is_rebuilt(tmp_path, monkeypatch, capsys):
    """A cache written before file stats were kept (version 1) cannot tell what changed: decoded again."""
    paths = _set(tmp_path / "train")
    res = build_cache(paths, 16, tmp_path / "cache", progress=False)
    idx = res.path.with_suffix(".json")
    meta = json.loads(idx.read_text())
    del meta["stats"]
    idx.write_text(json.dumps({**meta, "version": 1}))
    seen = _counting(monkeypatch)
    build_cache(paths, 16, tmp_path / "cache", progress=False)
    assert seen == [p.name for p in paths]
    assert json.loads(idx.read_text())["version"] == 3


def test_changed_file_now_unreadable_under_fail_keeps_old_cache(tmp_path):
    paths = _set(tmp_path / "train")
    first = build_cache(paths, 16, tmp_path / "cache", progress=False)
    index = first.path.with_suffix(".json").read_text()
    paths[1].write_bytes(b"garbage")
    with pytest.raises(ImageError) as e:
        build_cache(paths, 16, tmp_path / "cache", progress=False)
    assert str(e.value) == (f"1 unreadable images under {paths[1].parent} (input.bad_images=fail; "
                            "use 'skip' to drop them): img1.png (cannot decode (7 bytes))")
    assert first.path.with_suffix(".json").read_text() == index  # nothing half-written
    assert len(list((tmp_path / "cache").iterdir())) == 2


# ---------------------------------------------------------------- item 6: a full disk


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(100 * MB, 100 * MB - free, free))


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _cache_little_space(tmp_path, monkeypatch):
    paths = _set(tmp_path / "train")
    _free(monkeypatch, 2 * MB)
    build_cache(paths, 512, tmp_path / "cache", progress=False)  # 4 x 512 x 512 x 3 = 3 MB


def _cache_fallocate_fails(tmp_path, monkeypatch):
    paths = _set(tmp_path / "train")
    _free(monkeypatch, 5 * MB)  # enough by statvfs, yet the blocks cannot be had (another writer, quota)
    monkeypatch.setattr(os, "posix_fallocate", _enospc, raising=False)
    build_cache(paths, 512, tmp_path / "cache", progress=False)


class _FillsUp(io.FileIO):
    """A file on a disk that is full after the .npy header."""

    def write(self, b):
        if self.tell() > 0:
            _enospc()
        return super().write(b)


def _cache_write_fails(tmp_path, monkeypatch):
    paths = _set(tmp_path / "train")
    _free(monkeypatch, 5 * MB)
    monkeypatch.setattr(images, "_preallocate", lambda f, n: None)  # a file system without fallocate
    monkeypatch.setattr(images, "open", lambda p, mode: _FillsUp(p, mode), raising=False)
    build_cache(paths, 512, tmp_path / "cache", progress=False)


def _checkpoint_little_space(tmp_path, monkeypatch):
    _free(monkeypatch, 1 * MB)
    save_torch({"w": np.zeros(3 * MB // 8)}, tmp_path / "fold0" / "last.pt")


def _checkpoint_write_fails(tmp_path, monkeypatch):
    _free(monkeypatch, 7 * MB)
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    save_torch({"w": np.zeros(3 * MB // 8)}, tmp_path / "fold0" / "last.pt")


def _preds_write_fails(tmp_path, monkeypatch):
    _free(monkeypatch, 7 * MB)
    monkeypatch.setattr(np, "savez", _enospc)
    save_npz(tmp_path / "fold0" / "preds.npz", val=np.zeros(3))


def _assembly_write_fails(tmp_path, monkeypatch):
    _free(monkeypatch, 7 * MB)
    monkeypatch.setattr(pd.DataFrame, "to_csv", _enospc)
    write_probs(tmp_path / "oof.csv", pd.DataFrame({"id": ["a"], "cat": [1.0]}))


def _metrics_write_fails(tmp_path, monkeypatch):
    _free(monkeypatch, 7 * MB)
    monkeypatch.setattr(Path, "write_text", _enospc)
    atomic_write_json(tmp_path / "metrics.json", {"cv": 0.5})


def _submission_write_fails(tmp_path, monkeypatch):
    _free(monkeypatch, 7 * MB)
    monkeypatch.setattr(pd.DataFrame, "to_csv", _enospc)
    try:
        import pyarrow.csv
        monkeypatch.setattr(pyarrow.csv, "write_csv", _enospc)
    except ImportError:  # write_frame then writes with pandas
        pass
    write_frame(tmp_path / "sub.csv", pd.DataFrame({"id": ["a"], "cat": [1.0]}))


def _cache_npy(tmp_path):
    return cache_paths(_set(tmp_path / "train"), 512, tmp_path / "cache")[0]


# (case, the write, the file named, expected message after "writing <file> ")
NO_SPACE = [
    ("cache: free space checked first", _cache_little_space, _cache_npy, "(needs ~3 MB, 2 MB free)"),
    ("cache: preallocation fails", _cache_fallocate_fails, _cache_npy, "(needs ~3 MB, 5 MB free)"),
    ("cache: a write fails", _cache_write_fails, _cache_npy, "(needs ~3 MB, 5 MB free)"),
    ("checkpoint: free space checked first", _checkpoint_little_space, lambda t: t / "fold0" / "last.pt",
     "(needs ~3 MB, 1 MB free)"),
    ("checkpoint: the write fails", _checkpoint_write_fails, lambda t: t / "fold0" / "last.pt",
     "(needs ~3 MB, 7 MB free)"),
    ("fold predictions", _preds_write_fails, lambda t: t / "fold0" / "preds.npz", "(needs ~1 MB, 7 MB free)"),
    ("run assembly: oof", _assembly_write_fails, lambda t: t / "oof.csv", "(needs ~1 MB, 7 MB free)"),
    ("run assembly: metrics.json", _metrics_write_fails, lambda t: t / "metrics.json", "(needs ~1 MB, 7 MB free)"),
    ("submission", _submission_write_fails, lambda t: t / "sub.csv", "(needs ~1 MB, 7 MB free)"),
]


@pytest.mark.parametrize("case, write, target, tail", NO_SPACE, ids=[c[0] for c in NO_SPACE])
def test_full_disk_is_one_error_and_leaves_nothing(tmp_path, monkeypatch, case, write, target, tail):
    with pytest.raises(NoSpaceError) as e:
        write(tmp_path, monkeypatch)
    assert str(e.value) == f"no space left on device writing {target(tmp_path)} {tail}"
    assert isinstance(e.value, ValueError) and e.value.errno == errno.ENOSPC  # every command prints it as one line
    left = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
            if p.is_file() and "train" not in p.parts]
    assert left == []  # no temp file, no half-written file


def test_quota_exceeded_is_a_full_disk_too(tmp_path, monkeypatch):
    _free(monkeypatch, 0)

    def quota(*a, **k):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(Path, "write_text", quota)
    with pytest.raises(NoSpaceError, match=r"^no space left on device writing .*x\.txt \(needs ~1 MB, 0 MB free\)$"):
        aio.atomic_write_text(tmp_path / "x.txt", "hello")


def test_no_space_error_survives_pickling():
    """Raised in a data-loader worker or a tuning subprocess, it comes back as the same one line."""
    import pickle
    e = pickle.loads(pickle.dumps(NoSpaceError("/x/last.pt", 3 * MB, MB)))
    assert isinstance(e, NoSpaceError) and str(e) == "no space left on device writing /x/last.pt (needs ~3 MB, 1 MB free)"


def test_other_write_errors_pass_through(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    with pytest.raises(PermissionError):
        aio.atomic_write_text(tmp_path / "x.txt", "hello")
    assert list(tmp_path.iterdir()) == []


def test_train_command_full_disk_exits_2_with_one_line(tiny, monkeypatch, capsys):
    """The cache of 24 train images at 512 px (18 MB) on a disk with 5 MB free: refused before decoding."""
    from ensemble.train.__main__ import main
    cfg_path, comp, runs = tiny
    _free(monkeypatch, 5 * MB)
    monkeypatch.setattr(images, "decode", None)  # never reached
    assert main(["--cfg", str(cfg_path), "--set", "input.size=512"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(
        re.escape(f"error: no space left on device writing {runs / 'tiny' / 'cache'}/images_512_")
        + r"[0-9a-f]{16}\.npy \(needs ~18 MB, 5 MB free\)", err[0]), err
    assert not any(".tmp" in p.name for p in runs.rglob("*"))


def test_train_command_checkpoint_full_disk_exits_2(tiny, monkeypatch, capsys):
    from ensemble.train.__main__ import main
    cfg_path, comp, runs = tiny
    real = Path.write_bytes

    def full_in_folds(self, data):
        if self.parent.name.startswith("fold"):
            _enospc()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_in_folds)
    assert main(["--cfg", str(cfg_path), "--set", "stages=[{epochs: 1, train: head}]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(
        re.escape(f"error: no space left on device writing {runs / 'tiny' / 'tinyrun' / 'fold0' / 'best.pt'}")
        + r" \(needs ~\d+ MB, \d+ MB free\)", err[0]), err
    assert not any(".tmp" in p.name or p.suffix == ".pt" for p in runs.rglob("*"))


def test_embeddings_beside_the_cache_follow_the_images(tmp_path, monkeypatch):
    """Shift's embeddings are keyed on the cache's stamp: an overwritten image is embedded again."""
    from ensemble.shift import features
    calls = []
    monkeypatch.setattr(features, "embed_images",
                        lambda imgs, *a, **k: calls.append(len(imgs)) or imgs.reshape(len(imgs), -1)[:, :4] / 255.0)
    paths = _set(tmp_path / "train")
    strs = [str(p) for p in paths]
    first = build_cache(paths, 8, tmp_path / "cache", progress=False)
    assert features.cached_embeddings(strs, first.array, tmp_path / "cache", "tiny", False, stamp=first.stamp)[1] is False
    same = build_cache(paths, 8, tmp_path / "cache", progress=False)
    assert same.stamp == first.stamp
    assert features.cached_embeddings(strs, same.array, tmp_path / "cache", "tiny", False, stamp=same.stamp)[1] is True
    _overwrite(paths)
    new = build_cache(paths, 8, tmp_path / "cache", progress=False)
    emb, reused = features.cached_embeddings(strs, new.array, tmp_path / "cache", "tiny", False, stamp=new.stamp)
    assert new.stamp != first.stamp and reused is False and calls == [4, 4]
    np.testing.assert_allclose(emb[1], new.array[1].reshape(-1)[:4] / 255.0, atol=1e-3)


def test_cache_stamp_is_the_build_stamp_without_decoding(tmp_path, monkeypatch):
    paths = _set(tmp_path / "train")
    res = build_cache(paths, 16, tmp_path / "cache", progress=False)
    monkeypatch.setattr(images, "decode", lambda p, *a: (_ for _ in ()).throw(AssertionError("decoded")))
    assert images.cache_stamp(paths, 16) == res.stamp
    assert images.cache_stamp(paths, 8) != res.stamp  # the size is part of it
    os.utime(paths[0], ns=(os.stat(paths[0]).st_atime_ns, os.stat(paths[0]).st_mtime_ns + 10**9))
    assert images.cache_stamp(paths, 16) != res.stamp
