"""Vote flags written down ahead of time (compete.yaml's `vote: [--bias, "on"]`), checked as soon as
the file that holds them loads: a typo must not wait until every model has trained.

    check_vote_flags(["--bias", "onn"], "configs/demo/compete.yaml: budgets.smoke.vote")
    -> ValueError: configs/demo/compete.yaml: budgets.smoke.vote: argument --bias: invalid choice: 'onn' ...
"""
from __future__ import annotations

import contextlib
import io
from typing import Sequence


def check_vote_flags(flags: Sequence[str], where: str) -> None:
    """Parse `flags` exactly as `python -m ensemble.vote` would and check the method names; ValueError
    (one line: `where`, then what is wrong) on the first problem."""
    from ensemble.vote import methods as V
    from ensemble.vote.__main__ import parse_args
    if not isinstance(flags, (list, tuple)) or not all(isinstance(f, str) for f in flags):
        raise ValueError(f"{where}: expected a list of vote flags as strings (e.g. [--bias, 'on']), got {flags!r}")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parse_args(["--runs", "-", *flags])
    except SystemExit:
        lines = [s for s in err.getvalue().splitlines() if s.strip()]
        message = lines[-1].split("error: ", 1)[-1] if lines else "not valid vote flags"
        raise ValueError(f"{where}: {message.split(' (python -m ensemble.vote --help')[0]}") from None
    if args.method != "all":
        for name in (s.strip() for s in args.method.split(",") if s.strip()):
            try:
                V.get_method(name)
            except ValueError as e:
                raise ValueError(f"{where}: --method: {e}") from None
