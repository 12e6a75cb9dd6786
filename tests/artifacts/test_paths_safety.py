"""Nothing outside runs/ (submissions/, bundles/) is ever written or deleted: run and competition names
are checked when the config loads, and every path the project writes or deletes is resolved and must
stay inside its folder (`--set name=../.. --fresh` used to delete the whole checkout, .git included)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from ensemble.artifacts import PathEscapeError, inside
from ensemble.config import ConfigError, load_config
from ensemble.config.names import check_name
from test_vote_cli import setup, vote  # noqa: F401  (the fixture)

RULE = "letters, digits, '.', '_' and '-' (not empty, not '.', no '..')"

BAD_NAMES = [  # (--set, expected message after "--set: ")
    ("name=../..", f"key 'name' expected {RULE} in each /-separated part, got '../..'"),
    ("name=..", f"key 'name' expected {RULE} in each /-separated part, got '..'"),
    ("name=.", f"key 'name' expected {RULE} in each /-separated part, got '.'"),
    ("name=x/../y", f"key 'name' expected {RULE} in each /-separated part, got 'x/../y'"),
    ("name=/etc", f"key 'name' expected {RULE} in each /-separated part, got '/etc'"),
    ("name='a b'", f"key 'name' expected {RULE} in each /-separated part, got 'a b'"),
    ("name=''", f"key 'name' expected {RULE} in each /-separated part, got ''"),
    ("competition.name=../other", f"key 'competition.name' expected {RULE}, got '../other'"),
    ("competition.name=a/b", f"key 'competition.name' expected {RULE}, got 'a/b'"),
    ("competition.name=..", f"key 'competition.name' expected {RULE}, got '..'"),
]


@pytest.mark.parametrize("override, message", BAD_NAMES)
def test_unsafe_names_fail_at_load_naming_the_key(tiny, override, message):
    cfg_path, _, runs = tiny
    with pytest.raises(ConfigError) as e:
        load_config(cfg_path, [override])
    assert str(e.value) == f"--set: {message}"


@pytest.mark.parametrize("name", ["resnet18", "resnet18-best", "efficientnet_lite0.v2", "tune/resnet18/trial-0001"])
def test_safe_names_load(tiny, name):
    assert load_config(tiny[0], [f"name={name}"]).run_name == name
    assert check_name(name, parts=True) == name


def test_inside_resolves_links_and_dots(tmp_path):
    root = tmp_path / "runs"
    (root / "demo").mkdir(parents=True)
    assert inside(root, "demo", "resnet18") == root / "demo" / "resnet18"
    for parts, real in [(("..",), tmp_path), (("demo", "..", ".."), tmp_path), ((".",), root), (("demo", ".."), root)]:
        with pytest.raises(PathEscapeError) as e:
            inside(root, *parts)
        assert str(e.value) == (f"{root.joinpath(*parts)}: it resolves to {real}, not inside {root}; "
                                f"refusing to write or delete it")
    os.symlink(tmp_path / "elsewhere", root / "demo" / "linked")
    with pytest.raises(PathEscapeError) as e:
        inside(root, "demo", "linked")
    assert str(e.value) == (f"{root / 'demo' / 'linked'}: it resolves to {tmp_path / 'elsewhere'}, not inside {root}; "
                            f"refusing to write or delete it")


def _throwaway_tree(tmp_path: Path) -> Path:
    """A copy of the demo configs and a tiny competition beside a fake .git, runs/ of two competitions."""
    from conftest import make_competition
    tree = tmp_path / "checkout"
    shutil.copytree(REPO / "configs" / "demo", tree / "configs" / "demo")
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    make_competition(tree / "data" / "demo", classes=("0", "1", "2"), n_per_class=4, n_test=3, size=16, ext=".png")
    for comp in ("demo", "other"):
        (tree / "runs" / comp / "kept").mkdir(parents=True)
        (tree / "runs" / comp / "kept" / "metrics.json").write_text("{}")
    return tree


def _files(tree: Path) -> list[str]:
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", ["../..", "..", "../../..", "x/../.."])
def test_fresh_with_an_escaping_name_deletes_nothing(tmp_path, name):
    """The command a user typed: refused at load, every file of the throwaway checkout still there."""
    tree = _throwaway_tree(tmp_path)
    before = _files(tree)
    r = subprocess.run([sys.executable, "-m", "ensemble.train", "--cfg", "configs/demo/resnet18.yaml",
                        "--set", f"name={name}", "--set", "competition.root=data/demo", "--fresh"],
                       cwd=tree, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr == f"error: --set: key 'name' expected {RULE} in each /-separated part, got '{name}'\n"
    assert _files(tree) == before and (tree / ".git" / "HEAD").is_file()


def test_train_run_refuses_a_run_folder_outside_runs_whatever_built_the_config(tiny, tmp_path):
    """A Config built in a notebook (no load-time check), or a run folder that is a link to elsewhere:
    train_run refuses before anything is written or deleted."""
    import dataclasses
    from ensemble.train.run import train_run
    cfg_path, _, runs = tiny
    cfg = load_config(cfg_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    escaping = dataclasses.replace(cfg, name="../..")  # runs/tiny/../.. = the folder that holds runs/
    with pytest.raises(PathEscapeError, match=r"not inside .*runs; refusing to write or delete it$"):
        train_run(escaping, fresh=True)
    assert precious.read_text() == "keep me" and not runs.exists()
    (runs / "tiny").mkdir(parents=True)
    os.symlink(tmp_path, runs / "tiny" / "tinyrun")  # the run folder itself links out of runs/
    with pytest.raises(PathEscapeError) as e:
        train_run(cfg, fresh=True)
    assert str(e.value) == (f"{runs / 'tiny' / 'tinyrun'}: it resolves to {tmp_path}, not inside {runs}; "
                            f"refusing to write or delete it")
    assert precious.read_text() == "keep me" and sorted(p.name for p in (runs / "tiny").iterdir()) == ["tinyrun"]


def test_vote_writes_submissions_only_inside_its_folder(setup, capsys):
    """The competition name in the submission's path comes from the runs' metrics.json: a hand-edited
    '../../escaped' is refused, nothing is written outside subs/."""
    import json
    tmp, _, runs = setup
    for m in (runs / "tiny").glob("*/metrics.json"):
        m.write_text(json.dumps({**json.loads(m.read_text()), "competition": "../../escaped"}))
    before = sorted(p for p in tmp.rglob("*") if "subs" not in p.parts)
    assert vote("--method", "mean") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: subs/../../escaped/mean-cv") and err.endswith(
        f", not inside subs; refusing to write or delete it\n") and f"it resolves to {tmp.parent}/escaped/mean-cv" in err
    assert sorted(p for p in tmp.rglob("*") if "subs" not in p.parts) == before and not (tmp.parent / "escaped").exists()
