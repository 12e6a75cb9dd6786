"""What every `python -m ensemble.<cmd>` shares: -q/-v, the log format and the shape of main().

The library logs through `logging.getLogger(__name__)` (one logger per module, under "ensemble");
only the commands decide where messages go: plain lines on stdout, as the commands always printed.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

_handler: logging.Handler | None = None


class _Stdout(logging.StreamHandler):
    """A handler on whatever sys.stdout is at the time of each message (pytest's capture, a
    redirect in a notebook), flushed per line so progress shows in pipes and log files."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it; the property always follows sys.stdout
        pass


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one `error: ...` line (exit 2), as every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help lists the options)\n")


def int_at_least(low: int):
    """An argparse type: an integer >= low ('--max-iter -5' is refused, naming the flag)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 ('--timeout -5', '--stack-c 0' are refused)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535 (0: any free port), got {text!r}")
    return value


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="count", default=0, help="fewer messages (warnings and errors only)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages (debug)")


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                body: Callable[[argparse.Namespace], int | None],
                errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> int:
    """Every command's main(): parse argv, set up logging from -q/-v, run body(args) and return its exit
    code (None: 0). An expected error (one of `errors`) is one `error: ...` line on stderr and exit 2;
    anything else is a bug and keeps its traceback."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    try:
        rc = body(args)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if rc is None else rc


def setup_logging(verbosity: int = 0) -> None:
    """verbosity 0: info (the default messages), < 0: warnings only, > 0: debug."""
    global _handler
    level = logging.INFO if verbosity == 0 else (logging.WARNING if verbosity < 0 else logging.DEBUG)
    root = logging.getLogger("ensemble")
    if _handler is None:
        _handler = _Stdout()
        _handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(_handler)
    root.setLevel(level)
    _handler.setLevel(level)


class _Only(logging.Filter):
    """Passes records of the named loggers (and their children) only."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = names

    def filter(self, record: logging.LogRecord) -> bool:
        return any(record.name == n or record.name.startswith(n + ".") for n in self.names)


@contextlib.contextmanager
def capture_logs(path: str | Path, echo: bool = False, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """Every "ensemble" message while inside goes to the file `path`; the console (setup_logging's
    handler) still shows them when `echo`, else only those of the loggers named in `keep`.
    Used by the tuner: each trial's training messages land in logs/trial-NNNN.log."""
    root = logging.getLogger("ensemble")
    file_handler = logging.FileHandler(path, mode="w")
    file_handler.setFormatter(logging.Formatter("%(message)s"))
    file_handler.setLevel(logging.DEBUG if root.level and root.level < logging.INFO else logging.INFO)
    quiet = None if echo or _handler is None else _Only(keep)
    level = root.level
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)  # the file gets info messages even when the console is quiet
    root.addHandler(file_handler)
    if quiet is not None:
        _handler.addFilter(quiet)
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
        if quiet is not None:
            _handler.removeFilter(quiet)
        root.setLevel(level)
