"""tune: section parsing, config-key validation, sampling, defaults and epoch capping."""
from __future__ import annotations

import optuna
import pytest

from conftest import REPO, write_configs
from ensemble.config import ConfigError, load_config
from ensemble.tune.space import (check_space, defaults, encode, load_tuning, max_total_epochs, parse_param,
                                   parse_tune, sample, scale_epochs)


def _cfg(tmp_path, tune: str):
    return write_configs(tmp_path / "configs", tmp_path / "comp", tmp_path / "runs", extra=tune)


@pytest.mark.parametrize("space, message", [
    ("{type: float, low: 1.0, high: 0.5}", "'low' must be < 'high', got low=1.0 high=0.5"),
    ("{type: float, low: 0.1, high: 0.1}", "'low' must be < 'high', got low=0.1 high=0.1"),
    ("{type: float, low: 0.0, high: 1.0, log: true}", "a log range needs low > 0, got low=0.0"),
    ("{type: int, low: 1.5, high: 4}", "'low' expected an integer, got 1.5"),
    ("{type: float, low: x, high: 1}", "'low' expected a number, got 'x'"),
    ("{type: float, high: 1}", "missing 'low' (type float needs low and high)"),
    ("{type: float, low: 1.0e-3, high: 1.0, log: true, step: 0.1}", "'step' and 'log: true' cannot be combined"),
    ("{type: int, low: 1, high: 4, step: 0}", "'step' must be > 0, got 0"),
    ("{type: categorical, choices: []}", "'choices' expected a non-empty list, got []"),
    ("{type: categorical, choices: [ce, ce]}", "choice 'ce' is listed twice"),
    ("{type: uniform, low: 0, high: 1}", "unknown type 'uniform'; available: float, int, categorical"),
    ("{type: float, low: 0, hgh: 1}", "unknown field 'hgh' for type float; expected: type, low, high, log, step"),
    ("0.001", "expected a mapping like {type: float, low: 0.1, high: 1}, got 0.001"),
])
def test_bad_bounds_name_the_key(space, message):
    import yaml
    with pytest.raises(ConfigError) as e:
        parse_param("optim.lr.head", yaml.safe_load(space), "x.yaml: tune.space 'optim.lr.head'")
    assert str(e.value) == f"x.yaml: tune.space 'optim.lr.head': {message}"


@pytest.mark.parametrize("key, value_spec, message", [
    ("optim.lrr", "{type: float, low: 0.1, high: 1.0}",
     "tune.space: unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("optim.lrr.head", "{type: float, low: 0.1, high: 1.0}",
     "tune.space: unknown config key 'optim.lrr.head' (did you mean 'optim.lr'?)"),
    ("stages.5.epochs", "{type: int, low: 1, high: 3}",
     "tune.space: unknown config key 'stages.5.epochs' (key 'stages.5' expected a list index < 2, got '5')"),
    ("stages.0.epochs", "{type: float, low: 1, high: 3}",
     "tune.space 'stages.0.epochs': value 1.0 does not fit the config: key 'stages.0.epochs' expected an "
     "integer, got float 1.0"),
    ("loss.name", "{type: categorical, choices: [ce, [1]]}",
     "tune.space 'loss.name': value [1] does not fit the config: key 'loss.name' expected a string, got list [1]"),
])
def test_space_keys_are_checked_against_the_config(tmp_path, key, value_spec, message):
    path = _cfg(tmp_path, f"tune:\n  space:\n    {key}: {value_spec}\n")
    with pytest.raises(ConfigError) as e:
        load_tuning(path)
    assert str(e.value) == f"{path}: {message}"


@pytest.mark.parametrize("tune, message", [
    ("tune: {spaces: {}}", "unknown key 'tune.spaces'; expected: space, epochs, folds, trials, pruner, "
                           "startup_trials, warmup_epochs"),
    ("tune: {epochs: 2}", "tune.space expected a non-empty mapping of config key -> {type, low, high | choices}, "
                          "got None"),
    ("tune: {epochs: 0, space: {loss.gamma: {type: float, low: 0, high: 3}}}",
     "tune.epochs expected an integer >= 1, got 0"),
    ("tune: {epochs: 1, space: {loss.gamma: {type: float, low: 0, high: 3}}}",
     "tune.epochs expected an integer >= 2 (one epoch per stage), got 1"),
    ("tune: {folds: 0, space: {loss.gamma: {type: float, low: 0, high: 3}}}",
     "tune.folds expected a list of fold numbers like [0], got 0"),
    ("tune: {folds: [2], space: {loss.gamma: {type: float, low: 0, high: 3}}}",
     "tune.folds: fold 2 does not exist (folds.n=2)"),
])
def test_bad_tune_section(tmp_path, tune, message):
    path = _cfg(tmp_path, tune)
    with pytest.raises(ConfigError) as e:
        load_tuning(path)
    assert str(e.value) == f"{path}: {message}"


def test_no_tune_section(tmp_path):
    path = _cfg(tmp_path, "")
    with pytest.raises(ConfigError, match="no tune.space to search"):
        load_tuning(path)


def test_sample_decodes_lists_and_yaml_strings(tmp_path):
    path = _cfg(tmp_path, """tune:
  epochs: 2
  space:
    optim.lr.head: {type: float, low: 1e-4, high: 1e-2, log: true}
    model.head.hidden: {type: categorical, choices: [[], [16], [32, 16]]}
    stages.1.epochs: {type: int, low: 1, high: 5, step: 2}
""")
    cfg, spec = load_tuning(path)
    assert spec.space["optim.lr.head"].low == 1e-4  # "1e-4" is a string to PyYAML
    trial = optuna.trial.FixedTrial({"optim.lr.head": 0.005, "model.head.hidden": "[32, 16]", "stages.1.epochs": 3})
    params = sample(spec.space, trial)
    assert params == {"optim.lr.head": 0.005, "model.head.hidden": [32, 16], "stages.1.epochs": 3}
    assert load_config(path, params).model.head.hidden == [32, 16]
    # the config's own values, as Optuna params; stages.1.epochs=1 is on the grid 1, 3, 5
    assert defaults(spec.space, cfg) == {"optim.lr.head": 3e-3, "model.head.hidden": "[16]", "stages.1.epochs": 1}


def test_defaults_outside_the_space_are_sampled(tmp_path):
    path = _cfg(tmp_path, "tune: {space: {optim.lr.head: {type: float, low: 0.1, high: 1.0}, "
                          "loss.name: {type: categorical, choices: [ce, focal]}}}")
    cfg, spec = load_tuning(path)
    warnings = []
    assert defaults(spec.space, cfg, warnings.append) == {"loss.name": "ce"}
    assert warnings == ["tune.space 'optim.lr.head': the config's value 0.003 is outside the space; "
                        "the first trial samples it instead"]


def test_encode_keeps_scalars():
    assert [encode(v) for v in (None, True, 3, 0.5, "ce", [256, 128], {"a": 1})] == \
        [None, True, 3, 0.5, "ce", "[256, 128]", '{"a": 1}']


@pytest.mark.parametrize("epochs, total, expected", [
    ([2, 12], 6, [1, 5]), ([6], 4, [4]), ([6], 10, [6]), ([1, 1, 8], 4, [1, 1, 2]),
    ([0, 10], 5, [0, 5]), ([5, 5], 7, [4, 3]), ([1, 20], 3, [1, 2]),
])
def test_scale_epochs(epochs, total, expected):
    out = scale_epochs(epochs, total)
    assert out == expected
    assert sum(out) == min(total, sum(epochs))


def test_scale_epochs_needs_one_epoch_per_stage():
    with pytest.raises(ValueError, match="^cannot fit 2 stages into 1 epochs$"):
        scale_epochs([3, 3], 1)


def test_max_total_epochs_uses_the_searched_maximum(tmp_path):
    space = parse_tune({"space": {"stages.0.epochs": {"type": "int", "low": 1, "high": 9}}}, "x").space
    assert max_total_epochs([2, 4], space, None) == 13
    assert max_total_epochs([2, 4], space, 5) == 5
    cat = parse_tune({"space": {"stages.1.epochs": {"type": "categorical", "choices": [2, 8]}}}, "x").space
    assert max_total_epochs([2, 4], cat, None) == 10


@pytest.mark.parametrize("path", ["configs/demo/resnet18.yaml", "configs/demo/mobilenetv3.yaml",
                                  "configs/ham10000/resnet18.yaml", "configs/chest_xray/resnet18.yaml"])
def test_repo_tune_sections_are_valid(path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg, spec = load_tuning(path)
    assert spec.space and spec.epochs and spec.epochs < sum(s.epochs for s in cfg.stages)
    check_space(path, spec)
