"""compete.yaml (compete/spec.py): every check runs when the file loads, before anything is written."""
import shutil

import pytest

from conftest import REPO
from ensemble.compete.__main__ import main
from ensemble.compete.spec import PseudoSpec, load_budget, load_compete_file, time_spec
from ensemble.config import ConfigError
from ensemble.vote.options import VoteOptions


def _file(tmp_path, text: str):
    (tmp_path / "x").mkdir(exist_ok=True)
    path = tmp_path / "x" / "compete.yaml"
    path.write_text(text)
    return path


BUDGET = "budgets:\n  cpu:\n    models: [a.yaml]\n"


@pytest.mark.parametrize("text, message", [
    (BUDGET + "    vote: {biass: 'on'}\n",
     "unknown key 'budgets.cpu.vote.biass' (did you mean 'budgets.cpu.vote.bias'?)"),
    (BUDGET + "    vote: {max_iter: 0}\n", "key 'budgets.cpu.vote.max_iter' expected an integer >= 1, got int 0"),
    (BUDGET + "    vote: {stack_c: 0}\n", "key 'budgets.cpu.vote.stack_c' expected a number > 0, got float 0.0"),
    (BUDGET + "    vote: {bias: maybe}\n",
     "key 'budgets.cpu.vote.bias' expected one of 'auto', 'on', 'off', got str 'maybe'"),
    (BUDGET + "    vote: {methods: 'mean,avg'}\n",
     "key 'budgets.cpu.vote.methods': unknown vote method 'avg'; available: mean, weighted, geometric"),
    (BUDGET + "    vote: {priors: lots}\n",
     "key 'budgets.cpu.vote.priors' expected 'train', 'estimated' or one number per class ('0.3,0.7' or "
     "'NORMAL=0.3,PNEUMONIA=0.7'), got str 'lots'"),
    (BUDGET + "    vote: {weights: '2,x'}\n", "key 'budgets.cpu.vote.weights' expected numbers in run order"),
    (BUDGET + "    vote: [--bias, 'on']\n", "key 'budgets.cpu.vote': expected a mapping of vote options such as "
                                            "{bias: \"on\", methods: \"mean,hillclimb\"}, got the flag list"),
    ("budgets:\n  cpu: {models: [a.yaml, {cfg: other/a.yaml}]}\n",
     "budgets.cpu: two models are named 'a' (they would train into one run); give one a name:"),
    ("time:\n  candidates: [{cfg: a.yaml}, {cfg: a.yaml, sizes: [64]}]\n",
     "two time candidates are named 'a'; give one a name:"),
    ("time:\n  candidates: [{cfg: a.yaml, twin: b}, {cfg: b.yaml}]\n",
     "candidate 'a' names twin 'b', which is not a candidate listed before it"),
    ("time:\n  candidates: [{cfg: a.yaml}]\n  vote: {write: some}\n",
     "key 'time.vote.write' expected one of 'best', 'all', 'none', got str 'some'"),
    ("time:\n  candidates: [{cfg: a.yaml}]\n  min_epochs: 6\n",
     "time: expected min_epochs <= target_epochs <= max_epochs, got 6, 5, 15"),
    ("time:\n  candidates: [{cfg: a.yaml, sizes: []}]\n",
     "key 'time.candidates.0.sizes' expected at least one image size, got list []"),
    ("time:\n  candidates: [{cfg: a.yaml}]\n  twins: always\n",
     "key 'time.twins' expected one of 'optional', 'required', got str 'always'"),
    (BUDGET + "    pseudo: {models: [b]}\n", "key 'budgets.cpu.pseudo.models': unknown model 'b'; models: a"),
    (BUDGET + "    pseudo: {weight: 0}\n", "key 'budgets.cpu.pseudo.weight' expected a number > 0, got float 0.0"),
    (BUDGET + "    pseudo: {precision: 1.2}\n",
     "key 'budgets.cpu.pseudo.precision' expected a number in (0, 1], got float 1.2"),
    (BUDGET + "    pseudo: {labels: fuzzy}\n",
     "key 'budgets.cpu.pseudo.labels' expected one of 'soft', 'hard', got str 'fuzzy'"),
    ("time:\n  candidates: [{cfg: a.yaml}]\n  pseudo: {max_fraction: 0}\n",
     "key 'time.pseudo.max_fraction' expected a number in (0, 1], got float 0.0"),
    ("time:\n  candidates: [{cfg: a.yaml}, {cfg: b.yaml, name: a-pseudo}]\n  pseudo: {models: [a]}\n",
     "'a-pseudo' is a model and the name of a's pseudo-label round; rename it"),
])
def test_bad_compete_yaml_is_one_line_naming_file_and_key(tmp_path, text, message):
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_compete_file("x", tmp_path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)


def test_pseudo_and_twins_are_off_by_default_and_true_means_the_defaults(tmp_path):
    _file(tmp_path, BUDGET + "time:\n  candidates: [{cfg: a.yaml}]\n")
    assert load_budget("x", "cpu", tmp_path)[1].pseudo is None
    assert time_spec("x", tmp_path)[1].pseudo is None and time_spec("x", tmp_path)[1].twins == "optional"
    _file(tmp_path, BUDGET + "    pseudo: true\ntime:\n  candidates: [{cfg: a.yaml}]\n  twins: required\n"
                             "  pseudo: {labels: hard, weight: 1, precision: 0.9, models: [a]}\n")
    assert load_budget("x", "cpu", tmp_path)[1].pseudo == PseudoSpec()
    ts = time_spec("x", tmp_path)[1]
    assert ts.twins == "required" and ts.pseudo == PseudoSpec("hard", 1, 0.9, 1.0, ["a"])
    assert ts.pseudo.chosen(["b", "a"]) == ["a"] and PseudoSpec().chosen(["b", "a"]) == ["b", "a"]


def test_vote_section_is_vote_options_and_yaml_on_off_mean_the_words(tmp_path):
    _file(tmp_path, BUDGET + "    shift: off\n    vote: {bias: on, methods: 'mean,hillclimb', max_iter: 20}\n"
                             "time:\n  candidates: [{cfg: a.yaml}]\n  shift: off\n")
    _, b, builder = load_budget("x", "cpu", tmp_path)
    assert b.vote == VoteOptions(methods="mean,hillclimb", bias="on", max_iter=20) and b.shift == "off"
    assert builder is None and time_spec("x", tmp_path)[1].shift == "off"
    assert time_spec("x", tmp_path)[1].vote == VoteOptions()
    _file(tmp_path, BUDGET)
    with pytest.raises(ConfigError, match=r"x/compete.yaml: no 'time:' section"):
        time_spec("x", tmp_path)


def test_a_vote_typo_fails_before_anything_is_written(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "configs" / "demo", tmp_path / "configs" / "demo")
    path = tmp_path / "configs" / "demo" / "compete.yaml"
    text = path.read_text().replace("    shift: stats   #", "    vote: {bias: 'yes'}\n    shift: stats   #", 1)
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["--competition", "demo", "--budget", "smoke"]) == 2
    assert capsys.readouterr().err == ("error: configs/demo/compete.yaml: key 'budgets.smoke.vote.bias' expected one "
                                       "of 'auto', 'on', 'off', got str 'yes'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]  # no data/, runs/ or submissions/
    assert main(["--competition", "demo", "--time", "3m"]) == 2  # the whole file is checked, whichever mode
    assert "budgets.smoke.vote.bias" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]
