"""The report's "Where it fails": mistakes gallery with Grad-CAM, reliability and temperature, ROC/PR per
class, for two tiny trained runs and their chosen ensemble; checked as text, by hand and in Chromium."""
from __future__ import annotations

import contextlib
import io
import os
import re

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from conftest import make_competition, write_configs
from ensemble.artifacts import read_probs, split_probs
from ensemble.config import load_config
from ensemble.models import build_model
from ensemble.report import page as report
from ensemble.report.failures import worst_mistakes
from ensemble.report.gradcam import gradcam, last_stage
from ensemble.vote.calibrate import ece, fit_temperature
from test_report import CHROMIUM_SKIP, HARNESS, chromium, render_harness, tables

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two runs trained for real on a tiny 3-class competition (weak on purpose: mistakes to show), one vote."""
    from ensemble.train.run import train_run
    from ensemble.vote.__main__ import main as vote
    tmp = tmp_path_factory.mktemp("fail")
    comp = make_competition(tmp / "comp", n_per_class=10, n_test=4, size=32)
    cfg_path = write_configs(tmp / "configs", comp, tmp / "runs")
    for name, backbone in (("res", "resnet18"), ("mnv", "mobilenetv3_small_100")):
        train_run(load_config(cfg_path, [f"name={name}", f"model.backbone={backbone}",
                                         "stages=[{epochs: 1, train: all}]"]))
    cwd, buf = os.getcwd(), io.StringIO()
    try:
        os.chdir(tmp)
        with contextlib.redirect_stdout(buf):
            assert vote(["--competition", "tiny", "--method", "mean,hillclimb"]) == 0
    finally:
        os.chdir(cwd)
    out = tmp / "site" / "report"
    report.build_report("tiny", tmp / "runs", tmp / "submissions", out)
    return out, tmp


def test_worst_mistakes_most_confident_first_per_pair():
    p = np.array([[0.1, 0.9, 0.0], [0.3, 0.6, 0.1], [0.2, 0.1, 0.7], [0.8, 0.1, 0.1], [0.05, 0.95, 0.0]])
    y = np.array([0, 0, 0, 0, 2])
    assert worst_mistakes(p, y) == [(2, 1, 1, [4]), (0, 1, 2, [0, 1]), (0, 2, 1, [2])]
    assert worst_mistakes(p, y, max_pairs=1, per_pair=1) == [(2, 1, 1, [4])]


def test_gradcam_is_the_gradient_weighted_last_stage():
    """Against a hand computation on resnet18 (its forward_features is layer4, the last stage)."""
    torch.manual_seed(0)
    model = build_model("resnet18", 3, head_hidden=[8])
    assert last_stage(model) is model.backbone.layer4
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    cams, grid = gradcam(model, images, [2, 0])
    assert grid == (2, 2)  # 64 px / stride 32
    model.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    feats = model.backbone.forward_features(model.normalize(x))
    logits = model.head(model.backbone.forward_head(feats))
    grads = torch.autograd.grad(logits[0, 2] + logits[1, 0], feats)[0]
    want = torch.relu((grads.mean((2, 3), keepdim=True) * feats).sum(1, keepdim=True))
    want = torch.nn.functional.interpolate(want, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    want = (want / want.flatten(1).max(1).values[:, None, None]).detach().numpy()
    assert cams.shape == (2, 64, 64) and cams.max() == pytest.approx(1.0) and cams.min() >= 0
    np.testing.assert_allclose(cams, want, atol=1e-5)


def test_sections_show_the_runs_and_the_chosen_ensemble(site):
    out, tmp = site
    page = (out / "index.html").read_text()
    t = tables(page)
    for key in ("ensemble", "run-res", "run-mnv"):
        assert f"gallery-{key}" in t and f"classes-{key}" in t, key
    # the run's gallery, recomputed from its oof.csv and labels.csv
    ids, cols, p, folds = split_probs(read_probs(tmp / "runs" / "tiny" / "res" / "oof.csv"))
    labels = pd.read_csv(tmp / "runs" / "tiny" / "labels.csv", dtype=str).set_index("id")["label"]
    y = np.array([CLASSES.index(labels[i]) for i in ids])
    pairs = worst_mistakes(p, y)
    assert [r[:3] for r in t["gallery-run-res"]] == [[CLASSES[a], CLASSES[b], str(n)] for a, b, n, _ in pairs]
    first = pairs[0][3][0]
    assert t["gallery-run-res"][0][3].startswith(f"{ids[first]}p={p[first, pairs[0][1]]:.2f}")
    cal = {r[0]: r for r in t["calibration"]}
    row = cal["run res"]
    assert row[1:4] == ["30", str(int((p.argmax(1) != y).sum())), f"{ece(p, y):.3f}"]
    assert row[4] == f"{fit_temperature(p, y):.2f}"
    assert list(cal)[0].startswith("chosen ensemble: ")
    auc = {r[0]: r[2] for r in t["classes-run-res"]}
    from sklearn.metrics import roc_auc_score
    assert auc["dog"] == f"{roc_auc_score(y == 1, p[:, 1]):.3f}"
    # every gallery image has its Grad-CAM beside it; both are files of the report
    cams = re.findall(r'<img class="big" src="([^"]+)" alt="Grad-CAM for ', page)
    shots = re.findall(r'<img class="big" src="([^"]+)" alt="(?!Grad-CAM)', page)
    n_shown = sum(len(r[3]) for r in pairs)
    assert len(cams) == len(shots) >= n_shown and all((out / c).is_file() for c in cams + shots)
    assert 'id="fail-ensemble"' in page and page.index('id="fail-ensemble"') < page.index('id="fail-run-res"')


def test_heat_maps_are_reused_until_a_checkpoint_changes(site):
    out, tmp = site
    page = (out / "index.html").read_text()
    cams = sorted(set(re.findall(r'<img class="big" src="([^"]+)" alt="Grad-CAM for ', page)))
    stamp = {c: (out / c).stat().st_mtime_ns for c in cams}
    report.build_report("tiny", tmp / "runs", tmp / "submissions", out)
    assert {c: (out / c).stat().st_mtime_ns for c in cams} == stamp  # not drawn again
    best = tmp / "runs" / "tiny" / "res" / "fold0" / "best.pt"
    os.utime(best, ns=(best.stat().st_atime_ns, best.stat().st_mtime_ns + 10**9))
    again = report.build_report("tiny", tmp / "runs", tmp / "submissions", out).read_text()
    new = set(re.findall(r'<img class="big" src="([^"]+)" alt="Grad-CAM for ', again))
    assert new != set(cams) and all((out / c).is_file() for c in new)
    assert not any((out / c).exists() for c in set(cams) - new)  # stale maps pruned


def test_no_thumbs_leaves_the_pictures_out(site, tmp_path):
    _, tmp = site
    page = report.build_report("tiny", tmp / "runs", tmp / "submissions", tmp_path / "r", thumbs=False).read_text()
    assert 'class="big"' not in page and "gallery-run-res" in tables(page)


@pytest.mark.skipif(chromium() is None, reason=CHROMIUM_SKIP)
def test_failure_sections_render_in_headless_chromium(site, tmp_path):
    out, _ = site
    (out.parent / "harness.html").write_text(HARNESS)
    res = render_harness(out.parent, tmp_path)
    big = [i for i in res["images"] if "cam-" in i["src"] or "err-" in i["src"]]
    figs = [i for i in res["images"] if "reliability" in i["src"] or "rocpr" in i["src"]]
    assert big and all(i["ok"] and i["w"] > 0 for i in big), big
    assert len(figs) == 6 and all(i["ok"] and i["w"] >= 400 for i in figs), figs
    ids = {t["id"]: t["rows"] for t in res["tables"]}
    assert ids["calibration"] == 3 and ids["classes-ensemble"] == 3 and ids["gallery-run-mnv"] >= 1


def test_scores_that_are_not_probabilities_rank_mistakes_without_calibration(tmp_path):
    """A rank-average ensemble's values order the rows but do not sum to 1: normalised for the gallery,
    no reliability diagram."""
    from ensemble.artifacts import probs_frame, write_probs
    from ensemble.report.failures import _subject
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.6], [0.3, 0.2, 0.95]], np.float32)
    write_probs(tmp_path / "oof.csv", probs_frame(["a", "b", "c"], scores, CLASSES, [0, 1, 0]))
    labels = pd.Series(["dog", "dog", "fox"], index=["a", "b", "c"])
    s = _subject("ensemble", "chosen ensemble: rank", tmp_path / "oof.csv", labels, CLASSES, [])
    assert s.probabilities is False and np.allclose(s.p.sum(1), 1)
    assert worst_mistakes(s.p, s.y) == [(1, 0, 1, [0])]
    write_probs(tmp_path / "oof.csv", probs_frame(["a", "b", "c"], scores / scores.sum(1, keepdims=True), CLASSES,
                                                  [0, 1, 0]))
    assert _subject("x", "x", tmp_path / "oof.csv", labels, CLASSES, []).probabilities is True
