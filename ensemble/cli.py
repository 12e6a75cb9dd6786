"""What every `python -m ensemble.<cmd>` shares: -q/-v and the log format.

The library logs through `logging.getLogger(__name__)` (one logger per module, under "ensemble");
only the commands decide where messages go: plain lines on stdout, as the commands always printed.
"""
from __future__ import annotations

import argparse
import logging
import sys

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


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="count", default=0, help="fewer messages (warnings and errors only)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages (debug)")


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
