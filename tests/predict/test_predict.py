"""Train -> vote -> export -> predict reproduces every voted submission; a swapped test set; the CLI
from another folder with another HOME; the Python API."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, make_competition
from predict_fixtures import CLASSES, submission, trained
from ensemble.predict import Predictor, read_bundle
from ensemble.predict.__main__ import main as predict_main
from ensemble.vote.recipe import replay


@pytest.fixture(scope="session")
def t(tmp_path_factory):
    return trained(tmp_path_factory)


def _same_submission(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) and got["id"].tolist() == want["id"].tolist()
    cols = [c for c in want.columns if c != "id"]
    if cols == ["label"]:
        assert got["label"].tolist() == want["label"].tolist()
    else:
        np.testing.assert_allclose(got[cols].to_numpy(float), want[cols].to_numpy(float), atol=1e-4)
        assert (got[cols].to_numpy().argmax(1) == want[cols].to_numpy().argmax(1)).all()


@pytest.mark.parametrize("method", ["stacking+bias", "weighted", "majority", "mean+priors"])
def test_export_then_predict_reproduces_the_voted_submission(t, tmp_path, method):
    out = tmp_path / "sub.csv"
    assert predict_main(["--bundle", str(t.bundle(method)), "--images", str(t.comp / "test"),
                         "--sample", str(t.comp / "sample_submission.csv"), "--out", str(out), "-q"]) == 0
    _same_submission(pd.read_csv(out, dtype={"id": str}), submission(t.manifest(method)))


def test_every_method_replays_on_the_bundles_per_model_predictions(t):
    """The per-model predictions predict makes, voted by each manifest's recipe: each submission."""
    p = Predictor.load(t.bundle("mean"))
    test = pd.read_csv(t.comp / "sample_submission.csv", dtype=str)
    paths = [str(t.comp / "test" / f"{i}.jpg") for i in test["id"]]
    stack = p.predict_models(paths)
    runs = np.stack([pd.read_csv(r / "test.csv").set_index("id").loc[test["id"], CLASSES].to_numpy(np.float32)
                     for r in t.runs])
    np.testing.assert_allclose(stack, runs, atol=1e-5)  # each model: the run's test predictions (TTA, AdaBN, eval aug)
    methods = [m.name.split("-cv")[0] for m in t.manifests()]
    assert {"mean", "weighted+bias", "geometric", "rank+bias", "majority", "hillclimb+bias", "stacking",
            "mean+priors", "stacking+priors"} <= set(methods)
    for m in t.manifests():
        recipe = json.loads(m.read_text())["recipe"]
        values = replay(recipe, stack)
        want = submission(m)
        np.testing.assert_allclose(values / values.sum(1, keepdims=True), want[CLASSES].to_numpy(float), atol=1e-4,
                                   err_msg=m.name)


def test_ordinal_thresholds_reproduce_the_labels(t, tmp_path):
    for m in sorted(t.ord_subs.glob("*.json")):
        method = m.name.split("-cv")[0]
        out = tmp_path / f"{method}.csv"
        assert predict_main(["--bundle", str(t.bundle(method, "tinyord")), "--images", str(t.ord_comp / "test"),
                             "--sample", str(t.ord_comp / "sample_submission.csv"), "--out", str(out), "-q"]) == 0
        _same_submission(pd.read_csv(out, dtype={"id": str}), submission(m))
    assert {m.name.split("-cv")[0] for m in t.ord_subs.glob("*.json")} == {"mean", "mean+thr"}
    df = Predictor.load(t.bundle("mean+thr", "tinyord")).predict(t.ord_comp / "test")
    assert list(df.columns) == ["label", "score"] and set(df["label"]) <= set(CLASSES)


def test_a_swapped_test_set_gets_its_own_ids_and_scores_like_the_cv(t, tmp_path):
    new = make_competition(tmp_path / "new", n_per_class=1, n_test=15, seed=7)  # images no model has seen
    truth = np.array([CLASSES[i % 3] for i in range(15)])  # make_competition: test image i is class i % 3
    out = tmp_path / "new.csv"
    assert predict_main(["--bundle", str(t.bundle("hillclimb")), "--images", str(new / "test"), "--out", str(out),
                         "-q"]) == 0
    df = pd.read_csv(out, dtype={"id": str})
    assert df["id"].tolist() == [f"t{i:03d}" for i in range(15)] and list(df.columns) == ["id", *CLASSES]
    acc = float((np.array(CLASSES)[df[CLASSES].to_numpy().argmax(1)] == truth).mean())
    cv = json.loads(t.manifest("hillclimb").read_text())["cv"]
    assert acc >= cv["score"] - max(3 * cv["std"], 0.15), (acc, cv)


def test_predict_runs_from_a_copied_bundle_elsewhere(t, tmp_path):
    """No runs/, configs/ or competition data, another cwd and HOME, no weights folder, no hub."""
    bundle = shutil.copytree(t.bundle("stacking+bias"), tmp_path / "kaggle" / "input" / "bundle")
    images = shutil.copytree(t.comp / "test", tmp_path / "kaggle" / "input" / "test")
    sample = shutil.copy(t.comp / "sample_submission.csv", tmp_path / "kaggle" / "input" / "sample.csv")
    work = tmp_path / "kaggle" / "working"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ENSEMBLE_WEIGHTS"}
    env.update(HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9")
    r = subprocess.run([sys.executable, "-m", "ensemble.predict", "--bundle", "../input/bundle", "--images",
                        "../input/test", "--sample", "../input/sample.csv", "--out", "submission.csv", "--threads", "1"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote submission.csv: 10 rows (probs) from 2 model(s)" in r.stdout
    assert sorted(p.name for p in work.iterdir()) == ["submission.csv"] and not (tmp_path / "home").exists()
    _same_submission(pd.read_csv(work / "submission.csv", dtype={"id": str}), submission(t.manifest("stacking+bias")))
    assert bundle.exists() and images.exists() and sample


def test_models_are_built_without_pretrained_weights(t, monkeypatch):
    from ensemble.models import backbones

    def no_pretrained(*a, **kw):
        raise AssertionError("predict asked for pretrained weights")
    monkeypatch.setattr(backbones, "hub_reachable", no_pretrained)
    monkeypatch.setattr(backbones, "find_offline", no_pretrained)
    p = Predictor.load(t.bundle("mean"))
    assert all(net.weights_origin == "none" for m in p.models for _, net in m.nets)


def test_python_api(t):
    p = Predictor.load(t.bundle("mean"), threads=1)
    df = p.predict(t.comp / "test")  # a folder: every image, ids from the file names
    want = submission(t.manifest("mean")).set_index("id")
    assert df.index.name == "id" and df.index.tolist() == sorted(want.index) and list(df.columns) == CLASSES
    np.testing.assert_allclose(df.loc[want.index].to_numpy(), want.to_numpy(float), atol=1e-4)
    import cv2
    rgb = cv2.cvtColor(cv2.imread(str(t.comp / "test" / "t004.jpg")), cv2.COLOR_BGR2RGB)
    with pytest.raises(ValueError, match=r"^test-time adaptation needs a set of images: call adapt_to\(images\)"):
        p.predict_one(rgb)  # r10t adapts (AdaBN) to what it predicts: one image has no batch statistics
    p.adapt_to([t.comp / "test" / f"{i}.jpg" for i in want.index])  # as training: the test set, in its order
    row = p.predict_one(rgb)  # an RGB array, as a notebook holds it
    np.testing.assert_allclose(row.to_numpy(float), want.loc["t004"].to_numpy(float), atol=1e-4)
    both = p.predict([str(t.comp / "test" / "t001.jpg"), rgb], ids=["a", "b"])
    assert both.index.tolist() == ["a", "b"]
    np.testing.assert_allclose(both.to_numpy(), want.loc[["t001", "t004"]].to_numpy(float), atol=1e-4)


def test_adaptation_is_replayed_and_can_be_switched_off(t):
    """r10t was trained with predict.adapt=bn: its test predictions are AdaBN's, and predict's too."""
    b = read_bundle(t.bundle("mean"))
    assert [m.adapt["method"] for m in b.models] == ["bn", "none"] and b.models[0].adapt["batch_size"] == 16
    paths = sorted(str(p) for p in (t.comp / "test").iterdir())
    adapted = Predictor.load(b).predict(paths)
    plain = Predictor.load(b, adapt="none").predict(paths)
    assert np.abs(adapted.to_numpy() - plain.to_numpy()).max() > 1e-3


def test_half_bundle_is_half_the_size_and_close(t):
    full, half = t.bundle("mean"), t.bundle("mean", half=True)
    size = lambda d: sum(f.stat().st_size for f in d.rglob("*.safetensors"))
    assert 0.45 < size(half) / size(full) < 0.55
    meta = json.loads((half / "bundle.json").read_text())
    assert {m["dtype"] for m in meta["models"]} == {"float16"}
    paths = sorted(str(p) for p in (t.comp / "test").iterdir())
    a = Predictor.load(full, adapt="none").predict(paths)
    b = Predictor.load(half, adapt="none").predict(paths)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=2e-2)


def test_bundle_contents(t):
    root = t.bundle("weighted")
    meta = json.loads((root / "bundle.json").read_text())
    assert meta["format"] == "ensemble-bundle" and meta["format_version"] == 1 and meta["classes"] == CLASSES
    assert meta["id_col"] == "id" and meta["image_ext"] == ".jpg" and meta["submission"] == {
        "kind": "probs", "id_col": "id", "columns": CLASSES}
    r10t, mnv3 = meta["models"]
    assert r10t["build"]["backbone"] == "resnet10t" and r10t["input_size"] == 24 and r10t["tta"] == ["none", "hflip"]
    assert mnv3["eval_augment"][0]["name"] == "Sharpen" and mnv3["build"]["head_hidden"] == [16]
    assert [f["weight"] for f in r10t["folds"]] == [0.5, 0.5] and all(len(f["sha256"]) == 64 for f in r10t["folds"])
    assert meta["recipe"]["method"] == "weighted" and meta["recipe"]["options"]["weights"] == pytest.approx([2 / 3, 1 / 3])
    assert meta["provenance"]["manifest"]["path"].endswith(".json") and meta["provenance"]["git"] is not None
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == [
        "README.md", "bundle.json", "fold0.safetensors", "fold0.safetensors", "fold1.safetensors", "fold1.safetensors"]
    readme = (root / "README.md").read_text()
    assert f"| r10t | resnet10t | 24 | none, hflip | 2 | {r10t['cv']:.4f}" in readme
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in root.rglob("*"))


def test_finished_folds_keep_last_only_when_asked(t):
    r10t, mnv3 = t.runs  # r10t: train.keep_last=true
    assert sorted(p.parent.name for p in r10t.glob("fold*/last.pt")) == ["fold0", "fold1"]
    assert not list(mnv3.glob("fold*/last.pt")) and len(list(mnv3.glob("fold*/best.pt"))) == 2


def test_a_model_without_vote_weight_is_not_run(t):
    b = read_bundle(t.bundle("weighted"))
    recipe = json.loads(json.dumps(b.meta["recipe"]))
    recipe["state"]["weights"] = recipe["options"]["weights"] = [1.0, 0.0]  # as hill-climbing may choose
    b.meta["recipe"] = recipe
    p = Predictor.load(b)
    assert [len(m.nets) for m in p.models] == [2, 0]
    paths = sorted(str(x) for x in (t.comp / "test").iterdir())
    stack = p.predict_models(paths)
    assert not stack[1].any()
    r10t = Predictor.load(t.bundle("mean")).predict_models(paths)[0]
    np.testing.assert_allclose(stack[0], r10t, atol=1e-6)
    np.testing.assert_allclose(p.predict(paths).to_numpy(), r10t, atol=1e-6)


def test_a_zipped_bundle_predicts_the_same(t, tmp_path):
    from ensemble.predict import export_bundle
    res = export_bundle("tiny", t.manifest("majority"), tmp_path / "majority", make_zip=True,
                        submissions_dir=t.root / "submissions")
    assert res.zip_path == tmp_path / "majority.zip" and res.zip_path.stat().st_size > res.nbytes * 0.5
    shutil.rmtree(res.path)  # the zip alone
    out = tmp_path / "sub.csv"
    assert predict_main(["--bundle", str(res.zip_path), "--images", str(t.comp / "test"), "--sample",
                         str(t.comp / "sample_submission.csv"), "--out", str(out), "-q"]) == 0
    _same_submission(pd.read_csv(out, dtype={"id": str}), submission(t.manifest("majority")))
