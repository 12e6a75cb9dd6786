"""What a --time plan is made of: durations, measured speeds, the workload, a plan's entries and the
plan itself (saved in compete-<label>.json to resume), and the error when no plan fits. Data only;
ensemble.compete.timeplan makes the plans.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from ensemble.compete.spec import PSEUDO_SUFFIX

MAX_BUDGET_S = 30 * 24 * 3600.0  # a month: the largest budget searched for one that holds every twin
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*")


def parse_duration(text: str | float | int) -> float:
    """'60m', '1.5h', '90s', '3600' -> seconds."""
    m = _DURATION.fullmatch(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--time expected a positive duration like 60m, 1.5h or 900s, got {text!r}")
    unit = {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    return float(m.group(1)) * unit


def duration_text(seconds: float) -> str:
    """Seconds -> a --time value at least that long: 37.2 -> '38s', 60 -> '1m', 250 -> '5m', 5000 -> '1.4h'."""
    if 0 < seconds <= 2 * 3600 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds <= 120:
        return f"{math.ceil(seconds)}s"
    if seconds <= 2 * 3600:
        return f"{math.ceil(seconds / 60)}m"
    return f"{math.ceil(seconds / 360) / 10:g}h"


@dataclass(frozen=True)
class Speed:
    """Measured images/second at ``size``: a training step (fwd + bwd + step) and inference."""

    size: int
    train: float
    eval: float

    def at(self, size: int) -> "Speed":
        scale = (self.size / size) ** 2
        return Speed(size, self.train * scale, self.eval * scale)


@dataclass(frozen=True)
class Workload:
    n_train: int  # labelled rows (all folds)
    n_test: int
    folds: int
    views: int = 1  # TTA views at prediction
    overhead: float = 1.15
    cache_s: float = 0.0  # decoding + resizing every image into the cache of one image size
    cached: tuple[int, ...] = ()  # image sizes whose cache exists already
    extra: float = 0.0  # rows that join every fold's training part (pseudo-labelled test images)

    @property
    def n_val(self) -> float:
        return self.n_train / self.folds

    @property
    def n_fit(self) -> float:
        return self.n_train - self.n_val + self.extra


@dataclass(frozen=True)
class Entry:
    """One planned model: what to train and how long it should take."""

    name: str
    cfg: str
    set: list[str]
    size: int
    head_epochs: int
    epochs: int  # fine-tuning epochs (0: head epochs on cached features only)
    est_seconds: float  # all folds, predictions (and the image cache of its size when it pays it) included
    fold_limit: float  # train.time_limit per fold (seconds of epochs)
    folds: int = 5
    partial: int | None = None  # the first of `epochs` trains only the last `partial` stages
    train: int | str = "all"  # what the (other) fine-tuning epochs train

    def overrides(self) -> list[str]:
        stages = [f"{{epochs: {self.head_epochs}, train: head, augment: false}}"] if self.head_epochs else []
        if self.partial and self.epochs > 1:
            stages.append(f"{{epochs: 1, train: {self.partial}}}")
        rest = self.epochs - (1 if self.partial and self.epochs > 1 else 0)
        if rest > 0 or not stages:
            stages.append(f"{{epochs: {max(rest, 1)}, train: {self.train}}}")
        return [*self.set, f"folds.n={self.folds}", f"input.size={self.size}", f"stages=[{', '.join(stages)}]",
                f"train.time_limit={self.fold_limit:.0f}"]


@dataclass(frozen=True)
class Rerun:
    """A second round to plan (pseudo-labels): the planned models named in ``models`` (None: all) train
    again with their recipe and up to ``extra`` more rows in every fold's training part, as
    ``<name><suffix>``; ``steps``: the round's other steps (step -> seconds: labelling, the second vote)."""

    extra: float
    models: tuple[str, ...] | None = None
    steps: dict[str, float] = field(default_factory=dict)
    suffix: str = PSEUDO_SUFFIX


@dataclass(frozen=True)
class Plan:
    budget_s: float
    available_s: float  # for the models: after setup, vote, report and the reserve
    entries: list[Entry]
    speeds: dict[str, dict]
    setup: dict[str, float] = field(default_factory=dict)  # step -> estimated seconds, before the models
    tail: dict[str, float] = field(default_factory=dict)  # step -> estimated seconds, after them (vote, report)
    rerun: list[Entry] = field(default_factory=list)  # the second round's models (pseudo-labels)
    rerun_steps: dict[str, float] = field(default_factory=dict)  # its other steps: labelling, the second vote

    @property
    def est_seconds(self) -> float:
        """The (first round's) models' estimated seconds."""
        return sum(e.est_seconds for e in self.entries)

    @property
    def rerun_seconds(self) -> float:
        """The second round's estimated seconds: its models and steps."""
        return sum(e.est_seconds for e in self.rerun) + sum(self.rerun_steps.values())

    @property
    def total_seconds(self) -> float:
        """Everything the plan estimates: setup, models, vote, report and a second round."""
        return sum(self.setup.values()) + self.est_seconds + sum(self.tail.values()) + self.rerun_seconds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(d["budget_s"], d["available_s"], [Entry(**e) for e in d["entries"]], d["speeds"],
                   d.get("setup", {}), d.get("tail", {}), [Entry(**e) for e in d.get("rerun", [])],
                   d.get("rerun_steps", {}))

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)


ADVISED_MARGIN = 1.15  # the smallest budget comes from speeds measured now; a rerun measures again


class BudgetError(ValueError):
    """Not even the smallest plan fits: ``needed_s`` is the smallest budget that works with the speeds
    measured now; the message advises 15% more (a rerun under other load measures other speeds)."""

    def __init__(self, budget_s: float, needed_s: float, smallest: Entry, fixed_s: float):
        self.budget_s, self.needed_s, self.smallest = budget_s, needed_s, smallest
        what = f"{smallest.name} at {smallest.size}px, {smallest.folds} folds, " + (
            f"{smallest.head_epochs} head epochs on cached features" if smallest.head_epochs and not smallest.epochs
            else f"{smallest.epochs} epoch{'s' if smallest.epochs > 1 else ''}")
        super().__init__(f"a budget of {duration_text(budget_s)} is too short: the smallest plan ({what}, with "
                         f"{fixed_s:.0f}s of setup, vote, report and reserve) needs {duration_text(needed_s)} at the speeds "
                         f"measured now; use --time {duration_text(needed_s * ADVISED_MARGIN)} or more")
