"""What vote writes to submissions/ names no path of the machine that wrote it, and an ensemble that
is one model says so (manifest, printed notes, Kaggle message, report)."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from ensemble.artifacts.provenance import portable, repo_root, root_relative
from ensemble.report import page as report
from test_report import tables
from test_kaggle import fake_kaggle, voted  # noqa: F401  (fixture)
from test_vote_cli import make_competition, make_run

ABSOLUTE = re.compile(r"""(^|[\s'"=(\[,])/[A-Za-z0-9_.~-]""")  # a path from the file system root


def absolute_paths(folder: Path) -> list[str]:
    """Every absolute path token in every file under folder, as 'file: token'."""
    hits = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            text = f.read_text()
            for line in text.splitlines():
                for m in ABSOLUTE.finditer(line):
                    hits.append(f"{f.name}: ...{line[max(0, m.start() - 30):m.end() + 30]}...")
    return hits


def test_repo_root_is_the_checkout_not_the_package():
    top = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    assert repo_root() == (Path(top.stdout.strip()) if top.returncode == 0 else REPO)
    assert repo_root() != REPO / "ensemble"
    assert root_relative(REPO / "runs" / "x") == "runs/x"
    assert root_relative(REPO) == "."


@pytest.mark.parametrize("text, expected", [
    ("{root}/runs/tiny/a", "runs/tiny/a"),
    ("python -m ensemble.vote --runs {root}/runs/a '{root}/runs/b c'", "python -m ensemble.vote --runs runs/a 'runs/b c'"),
    ("--sample=/data/x.csv", "--sample=../../data/x.csv"),
    ("see https://www.kaggle.com/c/x/data and 1/2 a / b", "see https://www.kaggle.com/c/x/data and 1/2 a / b"),
    ("{home}/.kaggle/kaggle.json", "~/.kaggle/kaggle.json"),
])
def test_portable_rewrites_absolute_paths_in_any_text(text, expected, monkeypatch, tmp_path):
    root, home = tmp_path / "w" / "repo", tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    want = expected.replace("../../data", os.path.relpath("/data", root))
    assert portable({"a": [text.format(root=root, home=home)]}, root) == {"a": [want]}


def test_nothing_written_to_submissions_holds_an_absolute_path(voted, monkeypatch, capsys):  # noqa: F811
    """Runs, sample and output given as absolute paths, a --submit through a fake kaggle: the manifest's
    paths are relative to the repository root, git.root is '.', and no file names this machine's paths."""
    from ensemble.vote.__main__ import main
    fake_kaggle(voted, monkeypatch)
    runs = [str(voted / "runs" / "tiny" / n) for n in ("good", "ok", "weak")]
    assert main(["--runs", *runs, "--out-dir", str(voted / "subs"), "--method", "mean,hillclimb", "--write", "all",
                 "--submit"]) == 0
    assert absolute_paths(voted / "subs") == []
    (f, *_) = sorted((voted / "subs" / "tiny").glob("mean-*.json"))
    m = json.loads(f.read_text())
    assert m["git"]["root"] == "."
    assert m["runs"][0]["dir"] == os.path.relpath(voted / "runs" / "tiny" / "good", repo_root())
    assert m["submission"]["path"] == os.path.relpath(f.with_suffix(".csv"), repo_root())
    assert m["command"].startswith("python -m ensemble.vote --runs " + os.path.relpath(runs[0], repo_root()))
    sent = [json.loads((voted / "subs" / "tiny" / g.name).read_text()) for g in (voted / "subs" / "tiny").glob("*.json")]
    rec = next(s["kaggle_submit"] for s in sent if "kaggle_submit" in s)
    assert rec["executable"] == "kaggle" and rec["credentials"] == "~/.kaggle/kaggle.json"


def test_an_ensemble_equal_to_one_model_says_so(tmp_path, monkeypatch, capsys):
    """Hill climbing that keeps only the strong run: manifest, notes, Kaggle message and report say it."""
    from ensemble.vote.__main__ import main
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    for i, (name, strength) in enumerate([("strong", 6.0), ("noise", 0.0)]):
        make_run(tmp_path / "runs", comp, name, strength, seed=i)
    assert main(["--competition", "tiny", "--method", "hillclimb,mean", "--write", "all"]) == 0
    out = capsys.readouterr().out
    assert "note: the chosen ensemble (hillclimb) equals one model: strong alone" in out
    by_method = {json.loads(f.read_text())["method"]: json.loads(f.read_text())
                 for f in (tmp_path / "submissions" / "tiny").glob("*.json")}
    hc, mean = by_method["hillclimb"], by_method["mean"]
    assert hc["weights"] == {"strong": 1.0, "noise": 0.0} and hc["single_model"] == "strong"
    assert mean["single_model"] is None
    assert hc["kaggle_command"].endswith(f"-m 'hillclimb cv {hc['cv']['score']:.4f} (2 runs; = strong alone)'")
    assert mean["kaggle_command"].endswith(f"-m 'mean cv {mean['cv']['score']:.4f} (2 runs)'")
    page = report.build_report("tiny", "runs", "submissions", tmp_path / "site").read_text()
    note = re.search(r'<p class="note" id="alone">(.*?)</p>', page).group(1)
    assert note == ("The chosen ensemble (hillclimb) equals one model: strong alone; its 1 other run(s) add "
                    "nothing to its out-of-fold predictions.")


def test_vote_over_one_run_is_that_model(tmp_path, monkeypatch, capsys):
    from ensemble.vote.options import VoteOptions
    from ensemble.vote.voter import vote_runs
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    run = make_run(tmp_path / "runs", comp, "only", 2.0, seed=0)
    result = vote_runs([run], VoteOptions(methods="mean"))
    assert result.alone == "only" and result.message() == f"mean cv {result.best_ensemble.cv.score:.4f} (1 run)"
    page = report.build_report("tiny", "runs", "submissions", tmp_path / "site").read_text()
    assert "One run was voted: the submission is only alone (an ensemble of one)." in page
    assert tables(page)["ensembles"][0][1] == "mean"
