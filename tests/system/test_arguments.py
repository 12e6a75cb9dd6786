"""The library's entry points check every choice argument first, in the config loader's words, before
anything is read or written: vote_runs, train_run, tune_model."""
import pytest

from conftest import make_competition, write_configs
from ensemble.config import ConfigError, load_config
from ensemble.train.run import train_run
from ensemble.tune.tuner import tune_model
from ensemble.vote.options import VoteOptionError, VoteOptions
from ensemble.vote.voter import vote_runs

TUNE = """tune:
  trials: 2
  space:
    optim.lr.head: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


@pytest.fixture
def model_cfg(tmp_path):
    return write_configs(tmp_path / "configs", make_competition(tmp_path / "comp"), tmp_path / "runs", extra=TUNE)


VOTE_CASES = [
    (dict(options=VoteOptions(bias="maybe")), VoteOptionError, "vote option 'bias' expected one of auto, on, off, "
                                                               "got 'maybe'"),
    (dict(options=VoteOptions(select="best")), VoteOptionError, "vote option 'select' expected one of cv, weighted, "
                                                                "test_like, got 'best'"),
    (dict(options=VoteOptions(methods="mean,hilclimb")), VoteOptionError, "unknown vote method 'hilclimb'; available: "),
    (dict(options="mean"), TypeError, "vote_runs: argument 'options' expected a VoteOptions (e.g. "
                                      "VoteOptions(methods='mean')), got str 'mean'"),
    (dict(run_dirs=[]), ValueError, "vote_runs: argument 'run_dirs' expected a list of run directories (at least "
                                    "one), got list []"),
]


@pytest.mark.parametrize("kwargs, error, message", VOTE_CASES)
def test_vote_runs_checks_its_options_before_reading_any_run(tmp_path, kwargs, error, message):
    missing = tmp_path / "runs" / "tiny" / "nothing-here"  # never read: the options fail first
    with pytest.raises(error) as e:
        vote_runs(kwargs.get("run_dirs", [missing]), kwargs.get("options"))
    assert str(e.value).startswith(message), str(e.value)
    assert not (tmp_path / "submissions").exists()


TRAIN_CASES = [
    (dict(folds=[0, 2]), "train_run: argument 'folds' expected distinct fold numbers 0..1 (folds.n=2), got list [0, 2]"),
    (dict(folds=[1, 1]), "train_run: argument 'folds' expected distinct fold numbers 0..1 (folds.n=2), got list [1, 1]"),
    (dict(resume="yes"), "train_run: argument 'resume' expected true or false, got str 'yes'"),
    (dict(assemble_only=1), "train_run: argument 'assemble_only' expected true or false, got int 1"),
]


@pytest.mark.parametrize("kwargs, message", TRAIN_CASES)
def test_train_run_checks_its_arguments_before_writing(model_cfg, tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as e:
        train_run(load_config(model_cfg), **kwargs)
    assert str(e.value) == message
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match=r"^train_run: argument 'cfg' expected a Config \(load_config\(path\)\), "
                                          r"got PosixPath"):
        train_run(model_cfg)


TUNE_CASES = [
    (dict(sampler="tpee"), "tune_model: argument 'sampler': unknown sampler 'tpee'; available: tpe, random "
                           "(did you mean 'tpe'?)"),
    (dict(pruner="mediam"), "tune_model: argument 'pruner': unknown pruner 'mediam'; available: median, hyperband, "
                            "none (did you mean 'median'?)"),
    (dict(trials=0), "tune_model: argument 'trials' expected an integer >= 1, got int 0"),
    (dict(timeout=-5), "tune_model: argument 'timeout' expected a number > 0, got int -5"),
    (dict(seed="1"), "tune_model: argument 'seed' expected an integer, got str '1'"),
    (dict(overrides="folds.n=3"), "tune_model: argument 'overrides' expected a list of key=value strings, "
                                  "got str 'folds.n=3'"),
    (dict(verbose=None, keep_checkpoints="no"), "tune_model: argument 'keep_checkpoints' expected true or false, "
                                                "got str 'no'"),
    (dict(folds=[3]), "tune_model: argument 'folds' expected distinct fold numbers 0..1 (folds.n=2), got list [3]"),
]


@pytest.mark.parametrize("kwargs, message", TUNE_CASES)
def test_tune_model_checks_its_arguments_before_the_study_starts(model_cfg, tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as e:
        tune_model(model_cfg, **kwargs)
    assert str(e.value) == message
    assert not (tmp_path / "runs").exists()


def test_a_config_pruner_is_checked_when_the_tune_section_loads(tmp_path):
    cfg = write_configs(tmp_path / "configs", make_competition(tmp_path / "comp"), tmp_path / "runs",
                        extra=TUNE + "  pruner: hyperbnd\n")
    with pytest.raises(ConfigError) as e:
        tune_model(cfg)
    assert str(e.value) == (f"{cfg}: tune.pruner: unknown pruner 'hyperbnd'; available: median, hyperband, none "
                            "(did you mean 'hyperband'?)")
