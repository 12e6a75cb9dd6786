"""configs/<competition>/compete.yaml: its schema and every check of it, run when it loads (before
anything is written or trained).

    builder: digits                     # makes the competition folder when missing (BUILDERS)
    budgets:                            # --budget NAME: fixed models and recipes
      cpu:
        models: [mobilenetv3.yaml, {cfg: resnet18.yaml, name: r18, set: [optim.lr.head=3e-3]}]
        set: [input.size=64, "stages=[{epochs: 8, train: all}]"]    # applied to every model
        tune: {trials: 12, folds: "0", timeout: 1800}                # optional: tune each model first
        dups: true                                                   # near-duplicates before folds
        shift: embeddings                                            # train/test shift: embeddings|stats|off
        vote: {bias: "on", methods: "hillclimb,mean"}                # VoteOptions fields
        pseudo: {labels: soft, weight: 0.5, precision: 0.95}        # optional: a pseudo-label round
    time:                               # --time 60m: candidates the planner chooses from (timeplan)
      candidates:
        - {cfg: efficientnet_lite0.yaml, sizes: [128, 160], head_epochs: 2, train: 5}
        - {cfg: efficientnet_lite0.yaml, name: efficientnet_lite0-scratch, twin: efficientnet_lite0}
      twins: required                 # plan every twin (default optional: a twin only when time is left)
      pseudo: true                     # the pseudo-label round, planned into the budget (PseudoSpec)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

from ensemble.config import ConfigError, build, load_config, read_yaml
from ensemble.config.checks import check_fields, stage_count
from ensemble.config.ranges import (NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, UNIT_LEFT_OPEN, UNIT_OPEN, int_at_least,
                                    not_empty)
from ensemble.registry import Registry
from ensemble.vote.options import VoteOptionError, VoteOptions

ShiftCheck = Literal["embeddings", "stats", "off"]  # stats: image statistics only (seconds, for tiny budgets)


def _vote_section(value):
    """compete.yaml's `vote:` is a mapping of VoteOptions fields; the flag list of older files is named."""
    if isinstance(value, list):
        raise ValueError(f"expected a mapping of vote options such as {{bias: \"on\", methods: \"mean,hillclimb\"}}, "
                         f"got the flag list {value!r}")
    return value


VOTE = {"parse": _vote_section}
SHIFT = {"parse": lambda v: "off" if v is False else v}  # YAML 1.1 reads an unquoted `off` as false
PSEUDO = {"parse": lambda v: {} if v is True else (None if v is False else v)}  # `pseudo: true`: the defaults
PSEUDO_SUFFIX = "-pseudo"  # a second-round model's name: <model>-pseudo (its run: <first run>-pseudo)


@dataclass(frozen=True)
class PseudoSpec:
    """`pseudo:` of a budget or of `time:`: after the first vote, the test rows the chosen ensemble labels
    with OOF precision >= `precision` (per class) join every fold's training part of a second round
    (`models`, retrained as <model>-pseudo), then everything is voted again. labels: the ensemble's
    probabilities (soft) or its class (hard); weight: each pseudo row's weight in the loss; max_fraction:
    at most this share of the test rows (the most confident)."""

    labels: Literal["soft", "hard"] = "soft"  # soft: the ensemble's probabilities; hard: one-hot of its class
    weight: float = field(default=0.5, metadata={"range": POSITIVE})  # each pseudo-labelled row's weight in the loss
    # per class: the lowest confidence threshold whose OOF rows reach this precision
    precision: float = field(default=0.95, metadata={"range": UNIT_LEFT_OPEN})
    # at most this share of the test rows (the most confident first)
    max_fraction: float = field(default=1.0, metadata={"range": UNIT_LEFT_OPEN})
    models: Literal["all"] | list[str] = "all"  # the models trained again with the pseudo-labelled rows

    def chosen(self, names: Sequence[str]) -> list[str]:
        """The models of `names` that get a second round, in their order."""
        return list(names) if self.models == "all" else [n for n in names if n in self.models]




@dataclass(frozen=True)
class ModelEntry:
    cfg: str  # a model config file in the competition's folder
    set: list[str] = field(default_factory=list)  # overrides of this model (KEY=VALUE, as --set)
    name: str | None = None  # run name stem (default: the config file's stem)

    @property
    def label(self) -> str:
        return self.name or Path(self.cfg).name.split(".")[0]


@dataclass(frozen=True)
class TuneBudget:
    trials: int = 20  # finished trials each model's study should have (as tune --trials)
    folds: str | None = None  # folds each trial trains, e.g. "0" (as tune --folds; default: all)
    timeout: float | None = None  # seconds per model after which no new trial starts (as tune --timeout)


@dataclass(frozen=True)
class Budget:
    models: list[str | ModelEntry]  # model config files (or {cfg, name, set}); runs are named <model>-<budget>
    set: list[str] = field(default_factory=list)  # overrides of every model (KEY=VALUE, as --set)
    tune: TuneBudget | None = None  # tune each model before training it; null: no tuning
    dups: bool = True  # find near-duplicates (python -m ensemble.dups) before folds.csv is written
    # the train/test shift check: embeddings, stats or off
    shift: ShiftCheck = field(default="embeddings", metadata=SHIFT)
    vote: VoteOptions = field(default_factory=VoteOptions, metadata=VOTE)  # how the runs are voted
    # a pseudo-label round after the vote (true: its defaults)
    pseudo: PseudoSpec | None = field(default=None, metadata=PSEUDO)

    def entries(self) -> list[ModelEntry]:
        return [m if isinstance(m, ModelEntry) else ModelEntry(m) for m in self.models]


@dataclass(frozen=True)
class Candidate:
    """One model the --time planner may use: its config file, overrides, sizes and recipe."""

    cfg: str  # a model config file in the competition's folder
    name: str | None = None  # run name stem (default: the config file's stem)
    set: list[str] = field(default_factory=list)  # overrides of this candidate (KEY=VALUE, as --set)
    # image sizes to choose from, smallest first
    sizes: list[int] = field(default_factory=lambda: [128], metadata={"range": not_empty("at least one image size"),
                                                                       "items": POSITIVE_INT})
    # head-only epochs on cached frozen features (pretrained backbones)
    head_epochs: int = field(default=0, metadata={"range": NON_NEGATIVE_INT})
    partial: int | None = None  # then one epoch training the last `partial` backbone stages (train: k)
    train: int | str = "all"  # what the fine-tuning epochs train: all, or the last k backbone stages
    twin: str | None = None  # train at this candidate's size, in at most its time (equal-time comparison)

    @property
    def label(self) -> str:
        return self.name or self.cfg.split("/")[-1].split(".")[0]


@dataclass(frozen=True)
class TimeSpec:
    """`time:` in compete.yaml: what `--time 60m` may choose from (see ensemble.compete.timeplan)."""

    # in priority order: the planner takes the most that fit
    candidates: list[Candidate] = field(metadata={"range": not_empty("at least one candidate")})
    set: list[str] = field(default_factory=list)  # overrides of every candidate (KEY=VALUE, as --set)
    vote: VoteOptions = field(default_factory=VoteOptions, metadata=VOTE)  # how the runs are voted
    dups: bool = True  # find near-duplicates before folds.csv is written (its time comes out of the budget)
    shift: ShiftCheck = field(default="embeddings", metadata=SHIFT)  # the shift check: embeddings, stats or off
    # fold counts to try in order (default: the config's)
    folds: list[int] = field(default_factory=list, metadata={"items": int_at_least(2, "fold counts >= 2")})
    # a model is planned only when it gets at least this many epochs
    min_epochs: int = field(default=2, metadata={"range": POSITIVE_INT})
    # the largest size at which this many epochs fit is chosen
    target_epochs: int = field(default=5, metadata={"range": POSITIVE_INT})
    max_epochs: int = field(default=15, metadata={"range": POSITIVE_INT})  # no model trains more epochs than this
    max_models: int = field(default=4, metadata={"range": POSITIVE_INT})  # at most this many candidates are planned
    # share of the budget kept free (the plan never uses it)
    reserve: float = field(default=0.08, metadata={"range": UNIT_OPEN})
    twins: Literal["optional", "required"] = "optional"  # required: the plan keeps room for every twin
    pseudo: PseudoSpec | None = field(default=None, metadata=PSEUDO)  # a pseudo-label round, planned into the budget


@dataclass(frozen=True)
class CompeteFile:
    budgets: dict[str, Budget] = field(default_factory=dict)  # --budget NAME: fixed models and recipes
    builder: str | None = None  # makes the competition folder when missing (BUILDERS)
    time: TimeSpec | None = None  # --time: the candidates the planner chooses from


def _build_digits(root: Path) -> None:
    from ensemble.data.digits import build_demo
    build_demo(root)


BUILDERS: Registry[Callable[[Path], None]] = Registry("builder")  # compete.yaml `builder:` -> makes the folder
BUILDERS.register("digits", _build_digits)


def check_candidate(c: Candidate, key: str, backbone: str, stages: int) -> None:
    """`train:` (all or k) and `partial:` (k) of a time candidate, k in 1..`stages` of its backbone.
    key: where it is, e.g. 'configs/x/compete.yaml: time.candidates[2]'. Raises ValueError."""
    for name, value, allowed in (("train", c.train, "'all'"), ("partial", c.partial, "null")):
        if value is None or (value == "all" and name == "train"):
            continue
        k = int(value) if isinstance(value, str) and value.isdigit() else value
        if isinstance(k, bool) or not isinstance(k, int):
            raise ValueError(f"{key}.{name} {value!r} is unknown; expected {allowed} or the number k of last "
                             f"backbone stages to train (1..{stages} for {backbone})")
        if not 1 <= k <= stages:
            raise ValueError(f"{key}.{name} {k} is out of range for {backbone} (1..{stages} stages or {allowed})")


def _check_vote(options: VoteOptions, key: str, path: Path) -> None:
    try:
        options.check()
    except VoteOptionError as e:
        raise ConfigError(f"{path}: " + e.where(f"key '{key}.{e.field}'", typed=True)) from None


def _first_repeat(names: Sequence[str]) -> str | None:
    return next((n for i, n in enumerate(names) if n in names[:i]), None)


def _check_pseudo(p: PseudoSpec | None, key: str, names: Sequence[str], path: Path) -> None:
    """The models of `pseudo:` (names of the budget's models or time candidates; its numbers are checked
    with the rest of the section by check_fields); a second-round name (<model>-pseudo) may not be a model
    of its own."""
    if p is None:
        return
    unknown = [m for m in (p.models if p.models != "all" else []) if m not in names]
    if unknown:
        raise ConfigError(f"{path}: key '{key}.models': unknown model '{unknown[0]}'; models: {', '.join(names)}")
    clash = next((n for n in p.chosen(names) if n + PSEUDO_SUFFIX in names), None)
    if clash:
        raise ConfigError(f"{path}: '{clash}{PSEUDO_SUFFIX}' is a model and the name of {clash}'s pseudo-label "
                          f"round; rename it")


def _check_budgets(spec: CompeteFile, path: Path) -> None:
    for name, b in spec.budgets.items():
        check_fields(b, lambda key: str(path), f"budgets.{name}")
        _check_vote(b.vote, f"budgets.{name}.vote", path)
        labels = [e.label for e in b.entries()]
        twice = _first_repeat(labels)
        if twice:
            raise ConfigError(f"{path}: budgets.{name}: two models are named '{twice}' (they would train into "
                              f"one run); give one a name:")
        _check_pseudo(b.pseudo, f"budgets.{name}.pseudo", labels, path)


def _check_time(spec: CompeteFile, folder: Path, path: Path) -> None:
    check_fields(spec.time, lambda key: str(path), "time")
    t = spec.time
    if not t.min_epochs <= t.target_epochs <= t.max_epochs:
        raise ConfigError(f"{path}: time: expected min_epochs <= target_epochs <= max_epochs, got "
                          f"{t.min_epochs}, {t.target_epochs}, {t.max_epochs}")
    _check_vote(t.vote, "time.vote", path)
    names = [c.label for c in t.candidates]
    twice = _first_repeat(names)
    if twice:
        raise ConfigError(f"{path}: two time candidates are named '{twice}'; give one a name:")
    _check_pseudo(t.pseudo, "time.pseudo", names, path)
    for i, c in enumerate(t.candidates):
        if c.twin and c.twin not in names[:i]:
            raise ConfigError(f"{path}: candidate '{c.label}' names twin '{c.twin}', which is not a candidate "
                              f"listed before it")
        if c.train != "all" or c.partial is not None:  # k needs the backbone's stage count
            backbone = load_config(folder / c.cfg, [*t.set, *c.set]).model.backbone
            try:
                n = stage_count(backbone)
            except ValueError as e:
                raise ConfigError(f"{path}: time.candidates[{i}].train: {e}") from None
            try:
                check_candidate(c, f"{path}: time.candidates[{i}]", backbone, n)
            except ValueError as e:
                raise ConfigError(str(e)) from None


def load_compete_file(competition: str, configs_dir: str | Path = "configs") -> tuple[Path, CompeteFile]:
    """-> (configs/<competition>/, its validated compete.yaml). Errors name the file and key."""
    folder = Path(configs_dir) / competition
    path = folder / "compete.yaml"
    if not path.is_file():
        raise ConfigError(f"--competition {competition}: {path} not found (it lists the models and budgets)")
    spec = build(CompeteFile, read_yaml(path), "", lambda key: str(path))
    if spec.builder is not None and spec.builder not in BUILDERS:
        raise ConfigError(f"{path}: unknown builder '{spec.builder}'; available: {', '.join(BUILDERS)}")
    _check_budgets(spec, path)
    if spec.time is not None:
        _check_time(spec, folder, path)
    return folder, spec


def load_budget(competition: str, budget: str, configs_dir: str | Path = "configs"
                ) -> tuple[Path, Budget, str | None]:
    """-> (configs/<competition>/, the validated budget, builder). Errors name the file and key."""
    folder, spec = load_compete_file(competition, configs_dir)
    path = folder / "compete.yaml"
    if budget not in spec.budgets:
        raise ConfigError(f"{path}: unknown budget '{budget}'; available: {', '.join(spec.budgets)}")
    return folder, spec.budgets[budget], spec.builder


def time_spec(competition: str, configs_dir: str | Path = "configs") -> tuple[Path, TimeSpec, str | None]:
    """-> (configs/<competition>/, the validated time: section, builder). Errors name the file."""
    folder, spec = load_compete_file(competition, configs_dir)
    if spec.time is None:
        raise ConfigError(f"{folder / 'compete.yaml'}: no 'time:' section (the candidate models for --time)")
    return folder, spec.time, spec.builder
