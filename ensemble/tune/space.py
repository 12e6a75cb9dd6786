"""The `tune:` section of a model config: a search space over dotted config keys, trial budgets.

    tune:
      epochs: 4                 # cap on a trial's total epochs (stages shortened proportionally)
      folds: [0]                # folds a trial trains (default: all; --folds overrides)
      trials: 20                # default for --trials
      pruner: median            # median | hyperband | none (default for --pruner)
      startup_trials: 5         # trials before TPE models the space and before the median pruner prunes
      warmup_epochs: 1          # epochs of each trial never pruned
      space:
        optim.lr.head: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        stages.0.epochs: {type: int, low: 1, high: 4}
        model.head.hidden: {type: categorical, choices: [[], [128], [256, 128]]}

Categorical choices that are not plain scalars (lists, mappings) are stored in Optuna as their
JSON text and decoded when a trial's overrides are built.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ensemble.config import Config, ConfigError, load_config, parse_overrides, to_dict

logger = logging.getLogger(__name__)
TUNE_KEYS = ("space", "epochs", "folds", "trials", "pruner", "startup_trials", "warmup_epochs")
PARAM_FIELDS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"),
                "categorical": ("choices",)}
_SCALAR = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One searched config key: a float/int range or a list of categorical choices."""

    key: str = field(metadata={"internal": True})  # the dotted config key (the space's key)
    type: str  # float, int or categorical
    low: float | int | None = None  # float, int: the smallest value
    high: float | int | None = None  # float, int: the largest value (> low)
    log: bool = False  # float, int: sample on a log scale (needs low > 0)
    step: float | int | None = None  # float, int: a grid step (not with log)
    choices: tuple = ()  # categorical: the values (any YAML: numbers, names, lists)

    def suggest(self, trial) -> Any:
        """Sample this key on an optuna trial; -> the config value (decoded)."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        coded = {encode(c): c for c in self.choices}
        return coded[trial.suggest_categorical(self.key, list(coded))]

    def contains(self, value: Any) -> bool:
        """Whether a config value is a point of this space (so it can be enqueued)."""
        if self.type == "categorical":
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.type == "int" and value != int(value):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-9

    @property
    def largest(self) -> Any:
        """The largest value the key can take (used to bound a trial's epochs)."""
        if self.type == "categorical":
            nums = [c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
            return max(nums) if nums else None
        return self.high


@dataclass(frozen=True)
class TuneSpec:
    space: dict[str, Param] = field(metadata={"placeholder": "<key>"})  # dotted config key -> its range
    epochs: int | None = None  # cap on a trial's total epochs (stages shortened in proportion; >= 1)
    folds: list[int] | None = None  # folds a trial trains, e.g. [0] (default: all; --folds overrides)
    trials: int = 20  # the default of --trials (>= 1)
    pruner: str = "median"  # median, hyperband or none (the default of --pruner)
    startup_trials: int = 5  # trials before TPE models the space and the median pruner prunes (>= 0)
    warmup_epochs: int = 1  # epochs of each trial never pruned (>= 0)
    stage_epochs: list[int] = field(default_factory=list, metadata={"internal": True})  # the config's own epochs per stage

    @property
    def max_epochs(self) -> int:
        """Upper bound on any trial's total epochs: the pruning step stride between folds."""
        return max_total_epochs(self.stage_epochs, self.space, self.epochs)


# ---------------------------------------------------------------- value encoding
def encode(value: Any) -> Any:
    """A categorical choice as Optuna stores it: scalars as is, lists/mappings as JSON text."""
    return value if isinstance(value, _SCALAR) else json.dumps(value, separators=(", ", ": "))


def decode(value: Any) -> Any:
    """Inverse of encode for a stored param (JSON text of a list/mapping -> the list/mapping)."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


# ---------------------------------------------------------------- parsing
def _num(spec: Mapping, name: str, where: str, integer: bool) -> float | int:
    v = spec[name]
    if isinstance(v, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and v != int(v)):
        raise ConfigError(f"{where}: '{name}' expected {'an integer' if integer else 'a number'}, got {v!r}")
    return int(v) if integer else float(v)


def parse_param(key: str, spec: Any, where: str) -> Param:
    """Validate one `tune.space` entry. `where` prefixes errors: "configs/x.yaml: tune.space 'key'"."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{type: float, low: 0.1, high: 1}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in PARAM_FIELDS:
        raise ConfigError(f"{where}: unknown type {kind!r}; available: {', '.join(PARAM_FIELDS)}")
    allowed = ("type",) + PARAM_FIELDS[kind]
    for name in spec:
        if name not in allowed:
            raise ConfigError(f"{where}: unknown field '{name}' for type {kind}; expected: {', '.join(allowed)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' expected a non-empty list, got {choices!r}")
        enc = [encode(c) for c in choices]
        dup = next((c for i, c in enumerate(enc) if enc.index(c) != i), None)
        if dup is not None:
            raise ConfigError(f"{where}: choice {dup!r} is listed twice")
        return Param(key, kind, choices=tuple(choices))
    integer = kind == "int"
    for name in ("low", "high"):
        if name not in spec:
            raise ConfigError(f"{where}: missing '{name}' (type {kind} needs low and high)")
    low, high = _num(spec, "low", where, integer), _num(spec, "high", where, integer)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: 'log' expected true or false, got {log!r}")
    if low >= high:
        raise ConfigError(f"{where}: 'low' must be < 'high', got low={low} high={high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got low={low}")
    step = _num(spec, "step", where, integer) if spec.get("step") is not None else None
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: 'step' must be > 0, got {step}")
    if step is not None and log:
        raise ConfigError(f"{where}: 'step' and 'log: true' cannot be combined")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _pos_int(tune: Mapping, name: str, where: str, default: int | None, minimum: int) -> int | None:
    v = tune.get(name, default)
    if v is None and default is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{where}: tune.{name} expected an integer >= {minimum}, got {v!r}")
    return v


def parse_tune(tune: Mapping, where: str, stage_epochs: Sequence[int] = ()) -> TuneSpec:
    """Validate a `tune:` mapping (fields and bounds; config keys are checked by check_space)."""
    if not isinstance(tune, Mapping):
        raise ConfigError(f"{where}: tune expected a mapping, got {tune!r}")
    for k in tune:
        if k not in TUNE_KEYS:
            raise ConfigError(f"{where}: unknown key 'tune.{k}'; expected: {', '.join(TUNE_KEYS)}")
    space = tune.get("space")
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"{where}: tune.space expected a non-empty mapping of config key -> "
                          f"{{type, low, high | choices}}, got {space!r}")
    params = {str(k): parse_param(str(k), v, f"{where}: tune.space '{k}'") for k, v in space.items()}
    folds = tune.get("folds")
    if folds is not None and (not isinstance(folds, list) or not folds
                              or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in folds)):
        raise ConfigError(f"{where}: tune.folds expected a list of fold numbers like [0], got {folds!r}")
    pruner = tune.get("pruner", "median")
    if not isinstance(pruner, str):
        raise ConfigError(f"{where}: tune.pruner expected a name, got {pruner!r}")
    from ensemble.tune.study import PRUNERS  # optuna's pruners: imported when a tune section is read
    if pruner not in PRUNERS:
        raise ConfigError(f"{where}: tune.pruner: {PRUNERS.unknown(pruner)}")
    return TuneSpec(space=params, epochs=_pos_int(tune, "epochs", where, None, 1),
                    folds=sorted(set(folds)) if folds else None,
                    trials=_pos_int(tune, "trials", where, 20, 1), pruner=pruner,
                    startup_trials=_pos_int(tune, "startup_trials", where, 5, 0),
                    warmup_epochs=_pos_int(tune, "warmup_epochs", where, 1, 0),
                    stage_epochs=list(stage_epochs))


_HINT = re.compile(r"\(did you mean '([^']+)'\?\)")


def check_space(path: str | Path, spec: TuneSpec, overrides: Mapping[str, Any] | Sequence[str] = ()) -> None:
    """Apply every value of every key through load_config; an unknown key or a wrong type -> ConfigError."""
    base = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    for key, p in spec.space.items():
        samples = list(p.choices) if p.type == "categorical" else [p.low, p.high]
        for value in samples:
            try:
                load_config(path, {**base, key: value})
            except ConfigError as e:
                msg = str(e)
                if "unknown key" in msg or "expected a list index" in msg or "is a value, cannot set" in msg:
                    hint = _HINT.search(msg)
                    extra = f" (did you mean '{hint.group(1)}'?)" if hint else ""
                    if "expected a list index" in msg:
                        extra = " (" + msg.split(": ", 1)[1] + ")"
                    raise ConfigError(f"{path}: tune.space: unknown config key '{key}'{extra}") from None
                raise ConfigError(f"{path}: tune.space '{key}': value {value!r} does not fit the config: "
                                  f"{msg.split(': ', 1)[-1]}") from None


def load_tuning(path: str | Path, overrides: Sequence[str] = ()) -> tuple[Config, TuneSpec]:
    """Load a model config and its validated `tune:` section. Raises ConfigError."""
    cfg = load_config(path, overrides)
    if not cfg.tune:
        raise ConfigError(f"{path}: no tune.space to search (add a `tune:` section with `space:`, see docs/tuning.md)")
    spec = parse_tune(cfg.tune, str(path), [s.epochs for s in cfg.stages])
    check_space(path, spec, overrides)
    stages = sum(s.epochs > 0 for s in cfg.stages)
    if spec.epochs is not None and spec.epochs < stages:
        raise ConfigError(f"{path}: tune.epochs expected an integer >= {stages} (one epoch per stage), "
                          f"got {spec.epochs}")
    if spec.folds and max(spec.folds) >= cfg.folds.n:
        raise ConfigError(f"{path}: tune.folds: fold {max(spec.folds)} does not exist (folds.n={cfg.folds.n})")
    return cfg, spec


# ---------------------------------------------------------------- trials
def sample(space: Mapping[str, Param], trial) -> dict[str, Any]:
    """-> {dotted key: config value} for one trial."""
    return {key: p.suggest(trial) for key, p in space.items()}


def config_value(cfg: Config, key: str) -> Any:
    """The resolved config's value at a dotted key (list indices allowed)."""
    node: Any = to_dict(cfg)
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def defaults(space: Mapping[str, Param], cfg: Config, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The config's own values as Optuna params (to enqueue as the first trial).

    A value outside its range is left out (that key is sampled), with a warning."""
    out = {}
    for key, p in space.items():
        value = config_value(cfg, key)
        if p.contains(value):
            out[key] = encode(value)
        else:
            (warn or logger.warning)(f"tune.space '{key}': the config's value {value!r} is outside the space; "
                 f"the first trial samples it instead")
    return out


def scale_epochs(epochs: Sequence[int], total: int) -> list[int]:
    """Shorten stages proportionally so they sum to `total`, each keeping >= 1 epoch (never lengthen).

    [2, 12], 6 -> [1, 5]; stages with 0 epochs stay 0."""
    epochs = [int(e) for e in epochs]
    if total >= sum(epochs):
        return epochs
    used = [1 if e > 0 else 0 for e in epochs]
    if total < sum(used):
        raise ValueError(f"cannot fit {sum(used)} stages into {total} epochs")
    extra, left = [max(e - 1, 0) for e in epochs], total - sum(used)
    exact = [x * left / sum(extra) for x in extra]
    add = [int(x) for x in exact]
    for i in sorted(range(len(add)), key=lambda i: exact[i] - add[i], reverse=True)[: left - sum(add)]:
        add[i] += 1
    return [u + a for u, a in zip(used, add)]


def max_total_epochs(stage_epochs: Sequence[int], space: Mapping[str, Param], cap: int | None) -> int:
    """The most epochs any trial can train: stage epochs at their searched maximum, then the cap."""
    epochs = [int(e) for e in stage_epochs]
    for i in range(len(epochs)):
        p = space.get(f"stages.{i}.epochs")
        if p is not None and p.largest is not None:
            epochs[i] = max(epochs[i], int(p.largest))
    total = max(sum(epochs), 1)
    return min(total, cap) if cap else total
