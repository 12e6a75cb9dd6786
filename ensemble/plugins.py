"""Python files named on the command line (``--plugin FILE.py``, repeatable) that extend a registry.

A plugin is imported from its path with importlib before any config is read, so the names it
registers (e.g. a metric: ``@register_metric("my_metric", ...)`` from ``ensemble.metrics``) are known
when the config is validated. Plugins are code the user chose to run; a YAML file never names one.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

logger = logging.getLogger(__name__)
_LOADED: dict[Path, ModuleType] = {}  # resolved path -> module: a second load of one file is a no-op


class PluginError(ValueError):
    """A plugin file that is missing, not Python, or fails when imported."""


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """The shared ``--plugin FILE.py`` option (repeatable) of train, tune and vote."""
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="import this Python file first (e.g. to register a metric); repeatable")


def load_plugin(path: str | Path) -> ModuleType:
    """Import one plugin file. Raises PluginError naming the file and what went wrong."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"--plugin {path}: file not found")
    if path.suffix != ".py":
        raise PluginError(f"--plugin {path}: expected a Python file ending in .py")
    key = path.resolve()
    if key in _LOADED:
        return _LOADED[key]
    name = f"ensemble_plugin_{path.stem}_{hashlib.sha256(str(key).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, key)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # anything the user's file raises, SyntaxError included
        del sys.modules[name]
        raise PluginError(f"--plugin {path}: import failed: {type(e).__name__}: {e}") from e
    _LOADED[key] = module
    return module


def load_plugins(paths: Sequence[str | Path]) -> list[ModuleType]:
    """Import every plugin file in order (each file once per process) and log what they registered."""
    from ensemble.metrics import METRICS
    before = set(METRICS)
    modules = [load_plugin(p) for p in paths]
    added = [n for n in METRICS if n not in before]
    if added:
        logger.info("plugins registered metric(s): %s", ", ".join(added))
    return modules
