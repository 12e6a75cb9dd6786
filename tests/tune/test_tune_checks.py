"""Command-line values of tune and vote: one `error: ...` line
(exit 2) naming the flag or key and what was expected, before anything runs or is written."""
from __future__ import annotations

import pytest

from conftest import REPO, make_competition, write_configs
from ensemble.tune.__main__ import main as tune_main
from ensemble.vote.__main__ import main as vote_main

TUNE = """tune:
  trials: 1
  space:
    optim.lr.head: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""
HELP = "(python -m ensemble.{} --help lists the options)"


@pytest.fixture
def tuned(tmp_path):
    comp = make_competition(tmp_path / "comp", n_per_class=4, n_test=2, size=8)
    return write_configs(tmp_path / "configs", comp, tmp_path / "runs", extra=TUNE), tmp_path / "runs"


TUNE_ARGS = [
    (["--dashboard", "--port", "70000"], "argument --port: expected a port number 0..65535 (0: any free port), "
                                         "got '70000'"),
    (["--timeout", "-5"], "argument --timeout: expected a number > 0, got '-5'"),
    (["--timeout", "nan"], "argument --timeout: expected a number > 0, got 'nan'"),
    (["--trials", "0"], "argument --trials: expected an integer >= 1, got '0'"),
]


@pytest.mark.parametrize("args, message", TUNE_ARGS)
def test_tune_flag_values(tuned, capsys, args, message):
    cfg, runs = tuned
    with pytest.raises(SystemExit) as e:
        tune_main(["--cfg", str(cfg), *args])
    assert e.value.code == 2
    assert capsys.readouterr().err == f"error: {message} {HELP.format('tune')}\n"
    assert not runs.exists()


def test_cfg_glob_matching_nothing_is_refused(tuned, capsys):
    cfg, runs = tuned
    typo = str(cfg.parent / "*.yml")
    assert tune_main(["--cfg", str(cfg), typo]) == 2  # it used to tune model.yaml alone, silently
    assert capsys.readouterr().err == f"error: --cfg '{typo}' matched no file\n"
    assert not runs.exists()


def test_no_tune_space_points_at_the_tuning_page(tmp_path, capsys):
    comp = make_competition(tmp_path / "comp", n_per_class=4, n_test=2, size=8)
    cfg = write_configs(tmp_path / "configs", comp, tmp_path / "runs")
    assert tune_main(["--cfg", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {cfg}: no tune.space to search (add a `tune:` section with `space:`, see docs/tuning.md)\n"
    assert "tune:\n" in (REPO / "docs" / "tuning.md").read_text() and "  space:\n" in (REPO / "docs" / "tuning.md").read_text()


def test_the_pruner_is_printed_by_name(tuned, capsys):
    cfg, runs = tuned
    assert tune_main(["--cfg", str(cfg), "--timeout", "1e-9"]) == 0  # no trial starts: only the study's line
    out = capsys.readouterr().out
    assert "1 trials, pruner median, 0 finished trial(s) so far" in out and " object at 0x" not in out


@pytest.mark.parametrize("args, message", [
    (["--max-iter", "-5"], "argument --max-iter: expected an integer >= 1, got '-5'"),
    (["--max-iter", "0"], "argument --max-iter: expected an integer >= 1, got '0'"),
    (["--stack-c", "0"], "argument --stack-c: expected a number > 0, got '0'"),
    (["--stack-c", "-0.001"], "argument --stack-c: expected a number > 0, got '-0.001'"),
])
def test_vote_flag_values(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        vote_main(["--competition", "tiny", "--runs-dir", str(tmp_path), *args])
    assert e.value.code == 2
    assert capsys.readouterr().err == f"error: {message} {HELP.format('vote')}\n"
