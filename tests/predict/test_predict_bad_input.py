"""Bad input to export and predict: one clear line each, exit code 2, nothing (half-)written."""
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from predict_fixtures import CLASSES, trained
from ensemble.data.images import decode
from ensemble.export.__main__ import main as export_main
from ensemble.predict import Predictor
from ensemble.predict.__main__ import main as predict_main


@pytest.fixture(scope="session")
def t(tmp_path_factory):
    return trained(tmp_path_factory)


@pytest.fixture
def bundle(t, tmp_path):
    return shutil.copytree(t.bundle("mean"), tmp_path / "bundle")


def _edit_json(path, **changes):
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


BUNDLE_CASES = [  # (break the copied bundle, the error line after "error: <bundle>/")
    (lambda b: _edit_json(b / "bundle.json", format_version=99),
     "bundle.json: bundle format version 99 is not supported (this ensemble reads version 1); export the bundle "
     "again with this version, or install the ensemble version that wrote it"),
    (lambda b: _edit_json(b / "bundle.json", format="something-else"),
     "bundle.json: not an ensemble bundle (format 'something-else', expected 'ensemble-bundle')"),
    (lambda b: (b / "mnv3" / "fold1.safetensors").unlink(),
     "mnv3/fold1.safetensors: weights file missing (listed in {b}/bundle.json)"),
    (lambda b: _truncate(b / "r10t" / "fold0.safetensors"),
     "r10t/fold0.safetensors: weights file is corrupt or truncated ({n} bytes, expected {m}; see {b}/bundle.json); "
     "copy the bundle again"),
    (lambda b: _flip_byte(b / "r10t" / "fold1.safetensors"),
     "r10t/fold1.safetensors: weights file is corrupt or truncated (sha256 differs; see {b}/bundle.json); "
     "copy the bundle again"),
    (lambda b: (b / "bundle.json").unlink(), "__not_a_bundle__"),
]


@pytest.mark.parametrize("case", range(len(BUNDLE_CASES)))
def test_broken_bundles(t, bundle, tmp_path, capsys, case):
    breaks, expected = BUNDLE_CASES[case]
    m = json.loads((bundle / "bundle.json").read_text())["models"][0]["folds"][0]["bytes"]
    breaks(bundle)
    out = tmp_path / "sub.csv"
    assert predict_main(["--bundle", str(bundle), "--images", str(t.comp / "test"), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    if expected == "__not_a_bundle__":
        expected = f"error: {bundle}: not a bundle (no bundle.json); make one with python -m ensemble.export\n"
    else:
        expected = f"error: {bundle}/" + expected.format(b=bundle, n=m // 2, m=m) + "\n"
    assert err == expected
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


def _predict(t, bundle, images, out, *extra):
    return predict_main(["--bundle", str(bundle), "--images", str(images), "--sample",
                         str(t.comp / "sample_submission.csv"), "--out", str(out), "-q", *extra])


def test_an_undecodable_image_stops_or_gets_the_priors(t, bundle, tmp_path, capsys):
    images = shutil.copytree(t.comp / "test", tmp_path / "test")
    (images / "t003.jpg").write_bytes(b"not an image")
    out = tmp_path / "sub.csv"
    assert _predict(t, bundle, images, out) == 2
    assert capsys.readouterr().err == (f"error: {images / 't003.jpg'}: cannot decode (12 bytes) (--on-bad-image prior "
                                       f"gives unreadable images the class priors)\n")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "test"]
    assert _predict(t, bundle, images, out, "--on-bad-image", "prior", "--adapt", "none") == 0
    assert capsys.readouterr().err == (f"warning: 1 unreadable image(s) got the class priors: t003 "
                                       f"({images / 't003.jpg'}: cannot decode (12 bytes))\n")
    assert _predict(t, bundle, t.comp / "test", tmp_path / "clean.csv", "--adapt", "none") == 0
    got, want = (pd.read_csv(f, dtype={"id": str}).set_index("id") for f in (out, tmp_path / "clean.csv"))
    np.testing.assert_allclose(got.loc["t003"], [1 / 3] * 3, atol=1e-6)  # the training class shares
    rest = [i for i in want.index if i != "t003"]  # (without adaptation: with it, the bad image is not in the statistics)
    np.testing.assert_allclose(got.loc[rest].to_numpy(), want.loc[rest].to_numpy(), atol=1e-6)


def test_a_missing_image_is_named(t, bundle, tmp_path, capsys):
    images = shutil.copytree(t.comp / "test", tmp_path / "test")
    (images / "t005.jpg").unlink()
    assert _predict(t, bundle, images, tmp_path / "sub.csv") == 2
    assert capsys.readouterr().err.startswith(f"error: {images / 't005.jpg'}: missing (--on-bad-image prior")


def test_grayscale_and_rgba_are_converted_as_training_did(bundle, t, tmp_path):
    rgb = decode(t.comp / "test" / "t004.jpg")[0]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert np.array_equal(decode(tmp_path / "rgba.png")[0], rgb)  # OpenCV drops alpha: the colours are kept
    assert np.array_equal(decode(tmp_path / "gray.png")[0], np.dstack([gray] * 3))
    p = Predictor.load(bundle, adapt="none")
    df = p.predict([str(tmp_path / "gray.png"), gray, gray[..., None], str(tmp_path / "rgba.png"), rgba, rgb])
    v = df.to_numpy()
    np.testing.assert_allclose(v[1], v[0], atol=1e-6)
    np.testing.assert_allclose(v[2], v[0], atol=1e-6)
    np.testing.assert_allclose(v[3], v[5], atol=1e-6)
    np.testing.assert_allclose(v[4], v[5], atol=1e-6)
    assert np.abs(v[0] - v[5]).max() > 1e-4  # grey is another image than its colours (class = colour here)
    with pytest.raises(ValueError, match=r"^image 0: expected uint8 pixel values \(0..255\), got float32$"):
        p.predict([rgb.astype(np.float32)])
    with pytest.raises(ValueError, match=r"^image 0: expected an image of shape \(H, W\), \(H, W, 3\) or \(H, W, 4\), "
                                         r"got \(24, 24, 2\)$"):
        p.predict([rgb[..., :2]])


def test_duplicate_ids_are_refused(t, bundle, tmp_path, capsys):
    sample = pd.read_csv(t.comp / "sample_submission.csv", dtype=str)
    dup = pd.concat([sample.iloc[:3], sample.iloc[[1]], sample.iloc[3:]])
    dup.to_csv(tmp_path / "sample.csv", index=False)
    out = tmp_path / "sub.csv"
    assert predict_main(["--bundle", str(bundle), "--images", str(t.comp / "test"), "--sample",
                         str(tmp_path / "sample.csv"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'sample.csv'}: row 4: duplicate id 't001' (first at row 2; "
                                       f"1 duplicate(s) in all): every id must name one image\n")
    pd.DataFrame({"id": ["a", "b", "a"], "path": [str(t.comp / "test" / f"t00{i}.jpg") for i in range(3)]}).to_csv(
        tmp_path / "list.csv", index=False)
    assert predict_main(["--bundle", str(bundle), "--images", str(tmp_path / "list.csv"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'list.csv'}: row 3: duplicate id 'a' (first at row 1; "
                                       f"1 duplicate(s) in all): every id must name one image\n")
    assert not out.exists()


def test_a_list_csv_names_the_images(t, bundle, tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in (2, 0):
        shutil.copy(t.comp / "test" / f"t00{i}.jpg", tmp_path / "imgs" / f"x{i}.jpg")
    pd.DataFrame({"path": ["imgs/x2.jpg", "imgs/x0.jpg"]}).to_csv(tmp_path / "list.csv", index=False)
    out = tmp_path / "sub.csv"
    assert predict_main(["--bundle", str(bundle), "--images", str(tmp_path / "list.csv"), "--out", str(out),
                         "--adapt", "none", "-q"]) == 0
    got = pd.read_csv(out, dtype={"id": str})
    assert got["id"].tolist() == ["x2", "x0"] and list(got.columns) == ["id", *CLASSES]


@pytest.mark.parametrize("args, expected", [
    (["--adapt", "adabn"], "error: unknown adaptation 'adabn'; available: none, bn, tent\n"),
    (["--batch-size", "0"], "error: batch size must be >= 1, got 0\n"),
    (["--threads", "0"], "error: threads must be >= 1, got 0\n"),
])
def test_bad_options(t, bundle, tmp_path, capsys, args, expected):
    assert predict_main(["--bundle", str(bundle), "--images", str(t.comp / "test"), "--out",
                         str(tmp_path / "x.csv"), "-q", *args]) == 2
    assert capsys.readouterr().err == expected and not (tmp_path / "x.csv").exists()


def test_export_refuses_what_it_cannot_bundle(t, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any working directory: the manifests' paths are relative to the repository root
    manifest = json.loads(t.manifest("mean").read_text())
    old = dict(manifest)
    del old["recipe"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    changed = json.loads(json.dumps(manifest))
    changed["runs"][1]["test"]["sha256"] = "0" * 64
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    run = lambda *a: export_main(["--competition", "tiny", "--submissions-dir", str(t.root / "submissions"), *a])
    assert run("--submission", str(tmp_path / "old.json")) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'old.json'}: the manifest has no vote recipe (voted before "
                                       "bundles existed); vote again (python -m ensemble.vote --competition tiny) "
                                       "and export the new submission\n")
    assert run("--submission", str(tmp_path / "changed.json")) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'changed.json'}: run 'mnv3' changed since the vote "
                                       f"({t.runs[1] / 'test.csv'} sha256 differs): its models are not those of the "
                                       "submission; vote again and export the new submission\n")
    assert export_main(["--competition", "tinyord", "--submission", str(t.manifest("mean"))]) == 2
    assert "a submission of 'tiny', not of 'tinyord'" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert run("--submission", str(t.manifest("mean")), "--out", str(tmp_path / "taken")) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'taken'} exists; remove it, choose another --out or pass "
                                       "--overwrite\n")
    assert export_main(["--competition", "nope", "--submissions-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: no submission manifests in {tmp_path / 'nope'} (vote first: python -m "
                                       "ensemble.vote --competition nope)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["changed.json", "old.json", "taken"]
