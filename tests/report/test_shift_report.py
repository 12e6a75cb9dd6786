"""The report's "Train vs test" section, as text and in headless Chromium (like tests/test_report.py)."""
from __future__ import annotations

import re

import pytest

from ensemble.report.__main__ import main as report_main
from ensemble.artifacts import atomic_write_json
from ensemble.data.competition import load_competition
from ensemble.config import CompetitionCfg
from ensemble.shift.run import run_shift
from test_report import CHROMIUM_SKIP, HARNESS, chromium, render_harness, tables
from test_shift import make_shift_competition


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shiftreport")
    root, _ = make_shift_competition(tmp / "comp", shift=100, n_train=20, n_test=10)
    comp = load_competition(CompetitionCfg(name="syn", root=str(root), ext=".png"))
    runs, subs = tmp / "runs", tmp / "submissions"
    run_shift(comp, runs / "syn", size=16, backbone="none", n_boot=20, quiet=True)
    atomic_write_json(runs / "syn" / "r1" / "metrics.json", {
        "run": "r1", "metric": "accuracy", "cv": 0.9, "classes": list(comp.classes), "folds_hash": "h",
        "shift": {"weighted_cv": 0.8, "test_like_cv": 0.75}})
    atomic_write_json(subs / "syn" / "mean-cv0.9100-20250101-000000.json", {
        "method": "mean", "metric": "accuracy", "cv": {"score": 0.91}, "created_utc": "20250101-000000",
        "runs": [{"name": "r1"}], "shift": {"weighted_cv": 0.82, "test_like_cv": 0.7},
        "priors": {"classes": comp.classes, "train": [0.33, 0.33, 0.34], "estimated": [0.5, 0.3, 0.2],
                   "ci_low": [0.4, 0.2, 0.1], "ci_high": [0.6, 0.4, 0.3], "predicted": [0.4, 0.3, 0.3],
                   "applied": "train", "method": "EM (Saerens et al. 2002)"}})
    out = tmp / "site" / "report"
    assert report_main(["--competition", "syn", "--runs-dir", str(runs), "--submissions-dir", str(subs),
                        "--out", str(out)]) == 0
    return out


def test_train_vs_test_section(site):
    page = (site / "index.html").read_text()
    assert '<section id="shift"><h2>Train vs test</h2>' in page and '<a href="#shift">Train vs test</a>' in page
    t = tables(page)
    summary = dict(t["shift-summary"])
    assert summary["train vs test AUC"].startswith("0.9") and "CV is likely optimistic" in summary["reading"]
    assert t["shift-stats"][0][0] in ("brightness", "red", "green", "blue", "saturation")
    assert [r[0] for r in t["shift-classes"]] == ["blue", "green", "red"]
    assert t["shift-cv"] == [["run r1", "0.9000", "0.8000", "0.7500", "pooled OOF"],
                             ["submission mean-cv0.9100-20250101-000000", "0.9100", "0.8200", "0.7000", "fold mean"]]
    assert t["shift-priors"][0] == ["blue", "0.330", "0.500", "0.400-0.600", "0.400"]
    strips = re.findall(r'<p class="strip" id="shift-(most|least)">(.*?)</p>', page)
    assert [k for k, _ in strips] == ["most", "least"] and all(body.count("<img") == 8 for _, body in strips)


def test_section_without_shift_check_says_what_to_run(tmp_path):
    from ensemble.report.shift import shift_section
    assert "run python -m ensemble.shift --competition x" in shift_section(tmp_path, "x", [], [], None)


@pytest.mark.skipif(chromium() is None, reason=CHROMIUM_SKIP)
def test_train_vs_test_renders_in_headless_chromium(site, tmp_path):
    root = site.parent
    (root / "harness.html").write_text(HARNESS)
    res = render_harness(root, tmp_path)
    shift_imgs = [i for i in res["images"] if "shift-" in i["src"]]
    assert len(shift_imgs) == 16 and all(i["ok"] for i in shift_imgs), shift_imgs
    ids = {t["id"]: t["rows"] for t in res["tables"]}
    assert all(ids.get(k, 0) >= 1 for k in ("shift-summary", "shift-stats", "shift-classes", "shift-cv",
                                            "shift-priors")), ids
    assert res["scripts"] == 0
