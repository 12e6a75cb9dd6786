"""What a config number or choice may be, declared next to its field in the schema:

    size: int = field(default=128, metadata={"range": POSITIVE_INT})          # the value
    hidden: list[int] = field(default_factory=list, metadata={"items": POSITIVE_INT})   # each list item

A `Range` is a test and the words for the message; ensemble.config.checks reads the metadata of every
field of a built config (a None value of an optional key is never checked) and fails as
`<file>: key 'folds.n' expected an integer >= 2 (...), got int 1`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Range:
    """ok(value) -> bool, and what a good value is ("an integer >= 1") for the message."""

    ok: Callable[[Any], bool]
    expected: str


def number(v) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(n: int, expected: str | None = None) -> Range:
    return Range(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n, expected or f"an integer >= {n}")


def fold_numbers(n: int) -> Range:
    """Folds of a config with folds.n = n: distinct integers 0..n-1."""
    ok = lambda v: (isinstance(v, Sequence) and not isinstance(v, str) and len(set(v)) == len(v)
                    and all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < n for k in v))
    return Range(ok, f"distinct fold numbers 0..{n - 1} (folds.n={n})")


def not_empty(expected: str) -> Range:
    """A list with at least one item ("at least one stage")."""
    return Range(lambda v: len(v) > 0, expected)


BOOL = Range(lambda v: isinstance(v, bool), "true or false")
INTEGER = Range(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
POSITIVE_INT = int_at_least(1)
NON_NEGATIVE_INT = int_at_least(0)
NON_NEGATIVE = Range(lambda v: number(v) and v >= 0, "a number >= 0")
POSITIVE = Range(lambda v: number(v) and v > 0, "a number > 0")
UNIT_OPEN = Range(lambda v: number(v) and 0 <= v < 1, "a number in [0, 1)")
UNIT_CLOSED = Range(lambda v: number(v) and 0 <= v <= 1, "a number in [0, 1]")
UNIT_LEFT_OPEN = Range(lambda v: number(v) and 0 < v <= 1, "a number in (0, 1]")
UNIT_INTERIOR = Range(lambda v: number(v) and 0 < v < 1, "a number in (0, 1)")


def _stage_train(v) -> bool:
    """`train:` of a stage: all, head, or the last k >= 0 backbone stage groups (k <= the backbone's
    stage count: ensemble.config.checks)."""
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    return v in ("all", "head") or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


STAGE_TRAIN = Range(_stage_train, "'all', 'head' or an integer k >= 0 (the last k backbone stages)")
CLASS_WEIGHTS = Range(lambda v: v == "auto" or (isinstance(v, list) and all(number(w) and w >= 0 for w in v)),
                      "'auto' or a list of numbers >= 0 (one per class)")
FOCAL_ALPHA = Range(lambda v: UNIT_CLOSED.ok(v) or (isinstance(v, list) and all(number(w) and w >= 0 for w in v)),
                    "a number in [0, 1] or a list of numbers >= 0 (one per class)")
# what torch.device accepts for the kinds of device training runs on (checked without importing torch)
DEVICE = Range(lambda v: isinstance(v, str) and re.fullmatch(r"auto|(cpu|cuda|mps|xpu)(:\d+)?", v) is not None,
               "auto, cpu, cuda, cuda:N or mps")
