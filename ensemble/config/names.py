"""Names that become folder names (runs/<competition>/<run>/, submissions/<competition>/): checked
when the config loads, so no name can reach a path outside its folder (`name: ../..` with `--fresh`
would otherwise delete whatever the path resolves to).

    check_name("resnet18-best")               -> "resnet18-best"
    check_name("tune/resnet18/trial-0001", parts=True)
    check_name("../..")                       -> ValueError
"""
from __future__ import annotations

import re

_PART = re.compile(r"[A-Za-z0-9._-]+")
RULE = "letters, digits, '.', '_' and '-' (not empty, not '.', no '..')"


def name_problem(value, parts: bool = False) -> str | None:
    """What is wrong with `value` as a folder name (None: nothing). parts: '/' may separate several
    names (a run inside a sub-folder, as tuning's trials are), each checked on its own."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__} {value!r}"
    for part in value.split("/") if parts else [value]:
        if not _PART.fullmatch(part) or part == "." or ".." in part:
            return f"expected {RULE}{' in each /-separated part' if parts else ''}, got {value!r}"
    return None


def check_name(value, what: str = "name", parts: bool = False) -> str:
    """`value` when it is a safe folder name, else ValueError(f"{what} ...")."""
    problem = name_problem(value, parts)
    if problem:
        raise ValueError(f"{what} {problem}")
    return value
