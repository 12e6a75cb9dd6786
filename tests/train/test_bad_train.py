"""Issue 11, training side: bad input is one clear line and exit 2, never a traceback, a wrong answer
or files written before the error (config values at load, diverged weights, --storage drivers,
unsafe pickles, compete.yaml time candidates)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ensemble.compete.spec import load_compete_file
from ensemble.config import ConfigError, load_config
from ensemble.models.weights import UnsafePickleError, load_torch, read_state_dict
from ensemble.train.engine import NonFiniteLossError, check_diverged, divergence_hint
from ensemble.train.__main__ import main as train_main
from ensemble.tune.__main__ import main as tune_main

# ---------------------------------------------------------------- config values, at load
METRICS = "accuracy, balanced_accuracy, macro_f1, qwk, roc_auc, log_loss (a metric of your own: --plugin FILE.py)"
BAD_CONFIG = [
    ("model.backbone", "resnet19",
     "key 'model.backbone': unknown backbone 'resnet19'; available: resnet18, resnet34, resnet50, resnet101, vgg16, "
     "efficientnetv2_b0, efficientnetv2_s, efficientnetv2_m, mobilenetv3_large, mobilenetv3_small, efficientnet_lite0, "
     "efficientnet_lite1, efficientnet_lite2 (or any timm model name; closest timm names: resnet18, resnet61q, "
     "resnet51q, resnet18d, resnet152) (did you mean 'resnet18'?)"),
    ("loss.name", "focall",
     "key 'loss.name': unknown loss 'focall'; available: ce, focal, smooth_l1, mse (did you mean 'focal'?)"),
    ("competition.metric", "acuracy",
     f"key 'competition.metric': unknown metric 'acuracy'; available: {METRICS} (did you mean 'accuracy'?)"),
    ("optim.name", "adamx",
     "key 'optim.name': unknown optimizer 'adamx'; available: adamw, adam, sgd (did you mean 'adam'?)"),
    ("schedule.name", "cosin", "key 'schedule.name': unknown scheduler 'cosin'; available: cosine, constant, step, "
                               "plateau, onecycle (did you mean 'cosine'?)"),
    ("predict.tta", "[hflp]", "key 'predict.tta': unknown TTA view 'hflp'; available: none, hflip, vflip, rot90, "
                              "rot180, rot270, transpose, antitranspose, groups d4, flips, scaleF (0.25..4, e.g. "
                              "scale1.25), or views joined with +"),
    ("optim.lr.backbone", "-0.001", "key 'optim.lr.backbone': a learning rate must be > 0, got -0.001"),
    ("stages", "[{epochs: 1, lr: {head: -0.1}}]", "key 'stages.0.lr.head': a learning rate must be > 0, got -0.1"),
    ("stages", "[{epochs: 0}]", "key 'stages.0.epochs' expected an integer >= 1, got int 0"),
    ("stages", "[{epochs: 2}, {epochs: -1}]", "key 'stages.1.epochs' expected an integer >= 1, got int -1"),
    ("stages", "[]", "key 'stages' expected at least one stage, got list []"),
    ("stages", "[{epochs: 1, train: last}]", "key 'stages.0.train' expected 'all', 'head' or an integer k >= 0 "
                                             "(the last k backbone stages), got str 'last'"),
    ("stages", "[{epochs: 1, train: 6}]",
     "key 'stages.0.train': 6 is out of range for resnet18 (0..5 stages, 'head' or 'all')"),
    ("train.batch_size", "0", "key 'train.batch_size' expected an integer >= 1, got int 0"),
    ("train.eval_batch_size", "-8", "key 'train.eval_batch_size' expected an integer >= 1, got int -8"),
    ("train.accum_steps", "0", "key 'train.accum_steps' expected an integer >= 1, got int 0"),
    ("train.clip_grad", "0", "key 'train.clip_grad' expected a number > 0, got float 0.0"),
    ("train.num_workers", "-1", "key 'train.num_workers' expected an integer >= 0, got int -1"),
    ("train.time_limit", "-5", "key 'train.time_limit' expected a number > 0, got float -5.0"),
    ("folds.n", "1", "key 'folds.n' expected an integer >= 2 (K-fold cross-validation needs at least 2 folds), "
                     "got int 1"),
    ("input.size", "0", "key 'input.size' expected an integer >= 1, got int 0"),
    ("loss.label_smoothing", "1.0", "key 'loss.label_smoothing' expected a number in [0, 1), got float 1.0"),
    ("loss.label_smoothing", "-0.1", "key 'loss.label_smoothing' expected a number in [0, 1), got float -0.1"),
    ("loss.class_weights", "[1, -1, 1]", "key 'loss.class_weights' expected 'auto' or a list of numbers >= 0 "
                                         "(one per class), got list [1.0, -1.0, 1.0]"),
    ("model.head.dropout", "1", "key 'model.head.dropout' expected a number in [0, 1), got float 1.0"),
    ("model.drop_rate", "1.5", "key 'model.drop_rate' expected a number in [0, 1), got float 1.5"),
    ("model.head.hidden", "[16, 0]", "key 'model.head.hidden.1' expected an integer >= 1, got int 0"),
    ("optim.weight_decay", "-1", "key 'optim.weight_decay' expected a number >= 0, got float -1.0"),
    ("optim.momentum", "1.5", "key 'optim.momentum' expected a number in [0, 1), got float 1.5"),
    ("schedule.min_lr_ratio", "2", "key 'schedule.min_lr_ratio' expected a number in [0, 1], got float 2.0"),
    ("train.device", "tpu", "key 'train.device' expected auto, cpu, cuda, cuda:N or mps, got str 'tpu'"),
    ("schedule.factor", "1", "key 'schedule.factor' expected a number in (0, 1), got float 1.0"),
]


def _bad_config(cfg_path: Path, key: str, value: str) -> Path:
    """bad.yaml: the tiny model config with `key` (dotted) set to the YAML `value`."""
    node = yaml.safe_load(value)
    for part in reversed(key.split(".")):
        node = {part: node}
    bad = cfg_path.parent / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": cfg_path.name, **node}))
    return bad


@pytest.mark.parametrize("key, value, message", BAD_CONFIG)
def test_bad_config_value_fails_at_load_and_writes_nothing(tiny, capsys, key, value, message):
    cfg_path, _, runs = tiny
    bad = _bad_config(cfg_path, key, value)
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert str(e.value) == f"{bad}: {message}"
    assert train_main(["--cfg", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: {bad}: {message}\n"
    assert not runs.exists()  # no folds.csv, image cache or config.yaml to make the corrected rerun "another config"


CLASS_COUNT = [  # settings that are valid on their own but not for this competition's 3 classes
    ("loss.class_weights", "[1.0, 2.0]",
     "loss (ce): class_weights has 2 values; expected 3 (one per class); the competition has 3 classes: cat, dog, fox"),
    ("loss", "{name: focal, alpha: 0.25}",
     "loss (focal): focal alpha as a single float needs 2 classes (got 3); give a list of 3 per-class values; "
     "the competition has 3 classes: cat, dog, fox"),
]


@pytest.mark.parametrize("key, value, message", CLASS_COUNT)
def test_loss_settings_for_the_class_count_fail_before_anything_is_written(tiny, capsys, key, value, message):
    cfg_path, _, runs = tiny
    bad = _bad_config(cfg_path, key, value)
    assert train_main(["--cfg", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not runs.exists()


# ---------------------------------------------------------------- diverged weights
HINT = "or set train.clip_grad (e.g. 1.0)"
DIVERGED = [
    (["optim.lr.backbone=1e6", "optim.lr.head=1e6"],
     "fold 0, stage 1, epoch 1: the model's outputs on the validation rows became NaN/inf (weights diverged); "
     f"lower optim.lr (now backbone 1e+06, head 1e+06) {HINT}"),
    (["optim.lr.backbone=1e6", "optim.lr.head=1e6", "train.clip_grad=1e30"],
     "fold 0, stage 1, epoch 1: the model's outputs on the validation rows became NaN/inf (weights diverged); "
     "lower optim.lr (now backbone 1e+06, head 1e+06) or lower train.clip_grad (now 1e+30)"),
    (["optim.lr.backbone=1e30", "optim.lr.head=1e30", "optim.name=sgd", "schedule.name=constant"],
     f"fold 0, stage 1, epoch 1: the train loss became nan at step 1; lower optim.lr (now backbone 1e+30, head 1e+30) "
     f"{HINT}"),
]


@pytest.mark.parametrize("overrides, message", DIVERGED)
def test_diverged_weights_stop_the_fold_with_fold_epoch_and_what_to_change(tiny, capsys, overrides, message):
    cfg_path, _, runs = tiny
    args = ["--cfg", str(cfg_path), "--folds", "0", "--set", "stages=[{epochs: 2, train: all}]"]
    for o in overrides:
        args += ["--set", o]
    assert train_main(args) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    fold = runs / "tiny" / "tinyrun" / "fold0"
    assert sorted(p.name for p in fold.iterdir()) == []  # no checkpoint, preds or result.json of the bad epoch
    assert train_main(args + ["--resume"]) == 2  # resumable: the same clear line again, no traceback
    assert capsys.readouterr().err == f"error: {message}\n"


def _nan_weight(model):
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")


CHECKS = [
    (_nan_weight, None, "the weights became NaN/inf (diverged; first: 0.weight)"),
    (None, np.array([[0.5, np.inf]]), "the model's outputs on the validation rows became NaN/inf (weights diverged)"),
    (None, np.array([[0.5, np.nan]]), "the model's outputs on the validation rows became NaN/inf (weights diverged)"),
    (None, np.array([[0.5, 0.5]]), None),
]


@pytest.mark.parametrize("mutate, out, message", CHECKS)
def test_check_diverged(mutate, out, message):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    if mutate:
        mutate(model)
    if message is None:
        check_diverged(model, out)
        return
    with pytest.raises(NonFiniteLossError) as e:
        check_diverged(model, out)
    assert str(e.value) == message


@pytest.mark.parametrize("lrs, clip, amp, hint", [
    ({"backbone": 1.5e-3, "head": 3e-3}, None, False, "lower optim.lr (now backbone 0.0015, head 0.003) or set "
                                                       "train.clip_grad (e.g. 1.0)"),
    ({"head": 1e6}, 5.0, True, "lower optim.lr (now head 1e+06) or lower train.clip_grad (now 5) or set train.amp=off"),
])
def test_divergence_hint_cites_real_keys(lrs, clip, amp, hint):
    assert divergence_hint(lrs, clip, amp) == hint


# ---------------------------------------------------------------- --storage drivers
STORAGE = [
    ("mysql://user:secret@localhost/db", "--storage mysql://user:***@localhost/db: the MySQL driver is not "
                                         "installed; pip install pymysql (and use mysql+pymysql://)"),
    ("mysql+pymysql://localhost/db", "--storage mysql+pymysql://localhost/db: the MySQL driver 'pymysql' is not "
                                     "installed; pip install pymysql"),
    ("mysql+mysqldb://localhost/db", "--storage mysql+mysqldb://localhost/db: the MySQL driver 'mysqldb' is not "
                                     "installed; pip install mysqlclient"),
    ("postgresql+psycopg://localhost/db", "--storage postgresql+psycopg://localhost/db: the PostgreSQL driver "
                                          "'psycopg' is not installed; pip install psycopg[binary]"),
    ("postgresql+pg8000://localhost/db", "--storage postgresql+pg8000://localhost/db: the PostgreSQL driver "
                                         "'pg8000' is not installed; pip install pg8000"),
    ("nosuchdb://localhost/db", "--storage nosuchdb://localhost/db: Can't load plugin: sqlalchemy.dialects:nosuchdb; "
                                "expected a database URL like sqlite:///tune.db, mysql+pymysql://... or "
                                "postgresql://..., or a journal file path"),
]


@pytest.mark.parametrize("url, message", STORAGE)
def test_storage_without_its_driver_names_the_package(tiny, capsys, url, message):
    import importlib.util
    driver = {"mysql": "MySQLdb", "mysql+pymysql": "pymysql", "mysql+mysqldb": "MySQLdb",
              "postgresql+psycopg": "psycopg", "postgresql+pg8000": "pg8000"}.get(url.split("://")[0])
    if driver and importlib.util.find_spec(driver) is not None:
        pytest.skip(f"{driver} is installed here")
    cfg_path, _, _ = tiny
    cfg_path.write_text(cfg_path.read_text() + "tune: {space: {optim.lr.head: {type: float, low: 1.0e-3, high: 0.01}}}\n")
    assert tune_main(["--cfg", str(cfg_path), "--storage", url, "--trials", "1", "-q"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {message}"


# ---------------------------------------------------------------- unsafe pickles
class Payload:
    """Unpickling runs os.system: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Thing:
    pass


PICKLES = [
    ("code", lambda m: {"weight": torch.zeros(2), "x": Payload(m)}, "posix.system"),
    ("object", lambda m: {"weight": torch.zeros(2), "x": Thing()}, f"{__name__}.Thing"),
]


@pytest.mark.parametrize("reader", [read_state_dict, load_torch], ids=["pretrained", "checkpoint"])
@pytest.mark.parametrize("kind, make, what", PICKLES, ids=[p[0] for p in PICKLES])
def test_unsafe_pickle_is_refused_without_running_it(tmp_path, reader, kind, make, what):
    marker, path = tmp_path / "pwned", tmp_path / "weights.pt"
    torch.save(make(marker), path)
    with pytest.raises(UnsafePickleError) as e:
        reader(path)
    assert str(e.value) == (f"{path}: refused: the file contains pickled code or objects beyond tensors ({what}); "
                            "convert it to .safetensors or a plain state dict of tensors")
    assert "weights_only=False" not in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()  # the payload never ran


# ---------------------------------------------------------------- compete.yaml time candidates
CANDIDATES = [
    ("{cfg: model.yaml, train: 7}", "time.candidates[1].train 7 is out of range for resnet18 (1..5 stages or 'all')"),
    ("{cfg: model.yaml, train: 0}", "time.candidates[1].train 0 is out of range for resnet18 (1..5 stages or 'all')"),
    ("{cfg: model.yaml, train: head}", "time.candidates[1].train 'head' is unknown; expected 'all' or the number k "
                                       "of last backbone stages to train (1..5 for resnet18)"),
    ("{cfg: model.yaml, partial: 9}", "time.candidates[1].partial 9 is out of range for resnet18 (1..5 stages or "
                                      "null)"),
    ("{cfg: model.yaml, set: [model.backbone=mobilenetv3_small], train: 12}",
     "time.candidates[1].train 12 is out of range for mobilenetv3_small (1..8 stages or 'all')"),
]


@pytest.mark.parametrize("candidate, message", CANDIDATES)
def test_time_candidate_train_out_of_range_fails_when_compete_yaml_loads(tiny, candidate, message):
    cfg_path, _, _ = tiny
    compete = cfg_path.parent / "compete.yaml"
    compete.write_text(f"time:\n  candidates:\n    - {{cfg: model.yaml, name: first, train: 5}}\n    - {candidate}\n")
    with pytest.raises(ConfigError) as e:
        load_compete_file(cfg_path.parent.name, cfg_path.parent.parent)
    assert str(e.value) == f"{compete}: {message}"


TIME_SPEC = [
    ("candidates: []", "key 'time.candidates' expected at least one candidate, got list []"),
    ("candidates: [{cfg: model.yaml, sizes: []}]",
     "key 'time.candidates.0.sizes' expected at least one image size, got list []"),
    ("candidates: [{cfg: model.yaml, sizes: [64, 0]}]",
     "key 'time.candidates.0.sizes.1' expected an integer >= 1, got int 0"),
    ("candidates: [{cfg: model.yaml, head_epochs: -1}]",
     "key 'time.candidates.0.head_epochs' expected an integer >= 0, got int -1"),
    ("{candidates: [{cfg: model.yaml}], folds: [5, 1]}", "key 'time.folds.1' expected fold counts >= 2, got int 1"),
    ("{candidates: [{cfg: model.yaml}], min_epochs: 0}", "key 'time.min_epochs' expected an integer >= 1, got int 0"),
    ("{candidates: [{cfg: model.yaml}], reserve: 1.0}", "key 'time.reserve' expected a number in [0, 1), got float 1.0"),
    ("{candidates: [{cfg: model.yaml}], min_epochs: 4, target_epochs: 3}",
     "time: expected min_epochs <= target_epochs <= max_epochs, got 4, 3, 15"),
]


@pytest.mark.parametrize("section, message", TIME_SPEC)
def test_time_numbers_fail_when_compete_yaml_loads(tiny, section, message):
    cfg_path, _, _ = tiny
    compete = cfg_path.parent / "compete.yaml"
    compete.write_text(f"time:\n  {section}\n" if not section.startswith("{") else f"time: {section}\n")
    with pytest.raises(ConfigError) as e:
        load_compete_file(cfg_path.parent.name, cfg_path.parent.parent)
    assert str(e.value) == f"{compete}: {message}"


def test_time_candidates_in_range_load(tiny):
    cfg_path, _, _ = tiny
    (cfg_path.parent / "compete.yaml").write_text(
        "time:\n  candidates:\n    - {cfg: model.yaml, train: 5, partial: 2}\n"
        "    - {cfg: model.yaml, name: b, train: all}\n")
    _, spec = load_compete_file(cfg_path.parent.name, cfg_path.parent.parent)
    assert [(c.train, c.partial) for c in spec.time.candidates] == [(5, 2), ("all", None)]


def test_resume_from_a_poisoned_checkpoint_is_refused(tiny, capsys):
    cfg_path, _, runs = tiny
    args = ["--cfg", str(cfg_path), "--folds", "0", "--set", "stages=[{epochs: 1, train: all}]"]
    assert train_main(args) == 0
    fold = runs / "tiny" / "tinyrun" / "fold0"
    marker = fold / "pwned"
    torch.save({"model": Payload(marker)}, fold / "last.pt")
    (fold / "preds.npz").unlink()  # the fold looks interrupted: --resume reads last.pt
    assert train_main(args + ["--resume"]) == 2
    assert capsys.readouterr().err == (f"error: {fold / 'last.pt'}: refused: the file contains pickled code or objects "
                                       "beyond tensors (posix.system); convert it to .safetensors or a plain state "
                                       "dict of tensors\n")
    assert not marker.exists()
