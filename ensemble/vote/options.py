"""VoteOptions: how `vote_runs` votes and what it writes, one typed object for every caller.

    vote_runs(run_dirs, VoteOptions(methods="hillclimb,mean", bias="on"))

`python -m ensemble.vote` parses its flags into one; compete.yaml's `vote:` section is one (checked
when compete.yaml loads, so a typo fails before any model trains); a notebook builds one directly.
`check()` raises a VoteOptionError naming the field, what it expects and what it got.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, Sequence

from ensemble.vote.methods import METHODS

BIAS = ("auto", "on", "off")
SELECT = ("cv", "weighted", "test_like")
WRITE = ("best", "all", "none")


class VoteOptionError(ValueError):
    """One bad field of VoteOptions: `field` (its name), `expected` (text), `value` (what it got) and,
    when a registry said it (an unknown method), `detail`: its whole message."""

    def __init__(self, name: str, expected: str, value, detail: str | None = None):
        self.field, self.expected, self.value, self.detail = name, expected, value, detail
        super().__init__(detail or f"vote option '{name}' expected {expected}, got {value!r}")

    @property
    def flag(self) -> str:
        """The `python -m ensemble.vote` flag of the field ('max_iter' -> '--max-iter')."""
        return FLAGS.get(self.field, "--" + self.field.replace("_", "-"))

    def where(self, key: str, typed: bool = False) -> str:
        """The message for the field found at `key` (a flag, or a compete.yaml key: typed, as the config
        loader says it: "got int 0")."""
        got = f"{type(self.value).__name__} {self.value!r}" if typed else repr(self.value)
        return f"{key}: {self.detail}" if self.detail else f"{key} expected {self.expected}, got {got}"


def _on_off(value):
    """YAML 1.1 reads an unquoted `on`/`off` as true/false: take them as the words the field means."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


@dataclass(frozen=True)
class VoteOptions:
    """methods: 'all' or comma-separated vote methods; weights: for 'weighted' ('2,1' in run order or
    'runA=2,runB=1'); bias: also fit per-class bias / ordinal thresholds on OOF (auto: thresholds only);
    max_iter: hill-climbing steps; stack_c: stacking's inverse L2 strength; select: choose the ensemble
    by cv, importance-weighted CV or the test-like fifth's CV; priors: the submission's class priors
    (train, estimated or one number per class); write: which ensembles get a submission file under
    out_dir/<competition>/; kaggle: the competition slug of the printed command (default: the
    competition's name); message: the Kaggle submission message (default: method, CV and runs);
    calibrate: temperature-scale the chosen ensemble's probabilities (for metrics scored on probabilities),
    fitted nested on its held-out OOF rows and applied only when the nested CV does not get worse."""

    methods: str = "all"  # 'all' or comma-separated vote methods
    weights: str | None = None  # for 'weighted': '2,1' in run order or 'runA=2,runB=1'
    # also fit per-class bias / ordinal thresholds on OOF (auto: thresholds only)
    bias: Literal["auto", "on", "off"] = field(default="auto", metadata={"parse": _on_off})
    max_iter: int = 100  # hill-climbing steps (>= 1)
    stack_c: float = 1.0  # stacking's inverse L2 strength (> 0)
    select: Literal["cv", "weighted", "test_like"] = "cv"  # choose by CV, importance-weighted or test-like CV
    priors: str = "train"  # the submission's class priors: train, estimated, or one number per class
    write: Literal["best", "all", "none"] = "best"  # which ensembles get a submission file
    out_dir: str = "submissions"  # submissions go to out_dir/<competition>/
    kaggle: str | None = None  # the Kaggle slug of the printed submit command (default: the competition's name)
    message: str | None = None  # the Kaggle submission message (default: method, CV and runs)
    calibrate: bool = False  # temperature-scale the chosen ensemble when its nested CV does not get worse

    def check(self) -> "VoteOptions":
        """Raise VoteOptionError on the first bad field (methods are looked up in the method registry,
        so plugins must be loaded first). -> self."""
        names = method_names(self.methods) if isinstance(self.methods, str) else None
        if not names:
            raise VoteOptionError("methods", "'all' or comma-separated vote methods", self.methods)
        for name in names:
            try:
                METHODS.get(name)
            except ValueError as e:
                raise VoteOptionError("methods", "'all' or registered vote methods", name, str(e)) from None
        for name, choices in (("bias", BIAS), ("select", SELECT), ("write", WRITE)):
            if getattr(self, name) not in choices:
                raise VoteOptionError(name, "one of " + ", ".join(choices), getattr(self, name))
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise VoteOptionError("max_iter", "an integer >= 1", self.max_iter)
        c = self.stack_c
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
            raise VoteOptionError("stack_c", "a number > 0", c)
        if self.weights is not None and not _numbers(self.weights):
            raise VoteOptionError("weights", "numbers in run order ('2,1') or run=number ('runA=2,runB=1')",
                                  self.weights)
        if self.priors not in ("train", "estimated") and not _numbers(self.priors):
            raise VoteOptionError("priors", "'train', 'estimated' or one number per class ('0.3,0.7' or "
                                  "'NORMAL=0.3,PNEUMONIA=0.7')", self.priors)
        if not isinstance(self.calibrate, bool):
            raise VoteOptionError("calibrate", "true or false", self.calibrate)
        for name in ("out_dir", "kaggle", "message"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, Path)):
                raise VoteOptionError(name, "a string", value)
        return self

    def flags(self) -> list[str]:
        """The `python -m ensemble.vote` flags that give these options (defaults left out)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is True and f.default is False:  # a switch: the flag alone
                out.append(FLAGS.get(f.name, "--" + f.name.replace("_", "-")))
            elif value != f.default and value is not None:
                out += [FLAGS.get(f.name, "--" + f.name.replace("_", "-")), str(value)]
        return out

    def command(self, run_dirs: Sequence[str | Path]) -> str:
        """The vote command that repeats this vote (a manifest's "command")."""
        return "python -m ensemble.vote " + shlex.join(["--runs", *map(str, run_dirs), *self.flags()])


FLAGS = {"methods": "--method", "message": "-m"}  # fields whose flag is not --<field-with-dashes>


def method_names(methods: str) -> list[str]:
    """'all' -> every registered vote method; else the comma-separated names, in order."""
    if methods == "all":
        return list(METHODS)
    return [s.strip() for s in methods.split(",") if s.strip()]


def _numbers(text: str) -> bool:
    """'2,1' or 'a=2,b=1': comma-separated numbers, all plain or all name=number."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    named = all("=" in s for s in items)
    try:
        [float(s.split("=", 1)[1] if named else s) for s in items]
    except ValueError:
        return False
    return bool(items)
