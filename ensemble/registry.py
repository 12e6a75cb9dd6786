"""One registry type for every pluggable name: backbones, weight sources, losses, metrics, optimizers,
schedulers, augmentation presets, TTA views, vote methods (and pruners, hashes, activations, weights maps).

    LOSSES = Registry("loss")

    @LOSSES.register("focal")
    def _focal(n_classes, weight, label_smoothing, gamma, alpha): ...

    LOSSES.get("focall")   # ValueError: unknown loss 'focall'; available: ce, focal, ... (did you mean 'focal'?)

A Registry is a read-only Mapping (name -> object, in registration order); a name is registered
once (a plugin cannot silently replace a built-in) unless `override=True`. The config loader checks
every name field against its registry through :func:`names`, before anything is written.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_MISSING = object()


def did_you_mean(word: str, choices, n: int = 1, cutoff: float = 0.6, ignore_case: bool = False) -> list[str]:
    """The closest choices to `word` (difflib), best first; [] when none is close."""
    choices = [str(c) for c in choices]
    if not ignore_case:
        return difflib.get_close_matches(str(word), choices, n=n, cutoff=cutoff)
    lower = {c.lower(): c for c in choices}
    return [lower[c] for c in difflib.get_close_matches(str(word).lower(), list(lower), n=n, cutoff=cutoff)]


class Registry(Mapping, Generic[T]):
    """Named objects of one kind: `register` (decorator or call), `get` (with "did you mean"), listing."""

    def __init__(self, kind: str, *, hint: str | Callable[[str], str] = ""):
        """kind: what one entry is called in messages ("loss", "TTA view"); hint: text (or name -> text)
        appended to the unknown-name message, e.g. "(a metric of your own: --plugin FILE.py)"."""
        self.kind = kind
        self._hint = hint
        self._items: dict[str, T] = {}

    # ------------------------------------------------------------ Mapping
    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"

    # ------------------------------------------------------------ registering
    def register(self, name: str, obj: Any = _MISSING, *, override: bool = False):
        """`REG.register("x", obj)` or `@REG.register("x")`. A second registration of a name is an
        error unless it is the same object or `override=True`. -> obj (the decorated function)."""
        def add(o):
            if name in self._items and self._items[name] is not o and not override:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o
        return add if obj is _MISSING else add(obj)

    def unregister(self, name: str) -> None:
        """Remove a name (tests and plugins that replace an entry)."""
        self._items.pop(name, None)

    def clear(self) -> None:
        """Remove every entry (with `update`: restore a snapshot taken with dict(registry))."""
        self._items.clear()

    def update(self, entries: Mapping[str, T]) -> None:
        """Register every entry of a mapping (same duplicate rule as `register`)."""
        for name, obj in entries.items():
            self.register(name, obj)

    # ------------------------------------------------------------ lookup
    def unknown(self, name) -> ValueError:
        """The error for a name that is not registered: the choices, and the closest one if any."""
        hint = self._hint(name) if callable(self._hint) else self._hint
        close = did_you_mean(str(name), self._items) if isinstance(name, str) else []
        return ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self._items)}"
                          + (f" {hint}" if hint else "") + (f" (did you mean {close[0]!r}?)" if close else ""))

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The object registered as `name`; an unknown name raises ValueError listing the choices
        (unless a default is given, as for Mapping.get)."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            if default is not _MISSING:
                return default
            raise self.unknown(name) from None

    def check(self, name: str) -> str:
        """`name` if registered, else the unknown-name ValueError."""
        self.get(name)
        return name

    def names(self) -> list[str]:
        return list(self._items)


# Where each registry lives, under its own kind (Registry(kind)): the config loader imports the owning
# module only when it checks a name (config/ itself imports no torch).
_OWNERS = {
    "backbone": ("ensemble.models.backbones", "BACKBONES"),
    "activation": ("ensemble.models.heads", "ACTIVATIONS"),
    "weights_map": ("ensemble.models.weights", "KEY_MAPPINGS"),
    "loss": ("ensemble.train.losses", "LOSSES"),
    "optimizer": ("ensemble.train.optim", "OPTIMIZERS"),
    "scheduler": ("ensemble.train.optim", "SCHEDULERS"),
    "preset": ("ensemble.data.augment", "PRESETS"),
    "metric": ("ensemble.metrics", "METRICS"),
    "TTA view": ("ensemble.train.tta", "TTA_VIEWS"),
    "vote method": ("ensemble.vote.methods", "METHODS"),
    "adaptation": ("ensemble.train.adapt", "ADAPTERS"),
}


def lookup(kind: str) -> Registry:
    """The registry of `kind` (one of the keys of _OWNERS, spelt as the registry names itself in
    messages), importing its module on first use."""
    module, attr = _OWNERS[kind]
    return getattr(importlib.import_module(module), attr)


# Checks that are more than a name lookup: a backbone may be any timm name, TTA groups expand,
# an augmentation list is built once.
_CHECKS = {
    "backbone": ("ensemble.models.backbones", "resolve_backbone", lambda fn, v: fn(v)),
    "TTA views": ("ensemble.train.tta", "expand_tta", lambda fn, v: fn(v)),
    "augmentation": ("ensemble.data.augment", "build_transforms", lambda fn, v: fn(v, where="spec")),
}


def validate(kind: str, value: Any) -> Any:
    """Check a config value of `kind` against its registry (importing the owner on first use).
    -> the value, or what the check makes of it (TTA groups expanded). Raises ValueError."""
    if kind in _CHECKS:
        module, attr, call = _CHECKS[kind]
        out = call(getattr(importlib.import_module(module), attr), value)
        return out if kind == "TTA views" else value
    if isinstance(value, str):
        lookup(kind).check(value)
    return value


def names(kind: str) -> Callable[[Any], Any]:
    """A config `parse` hook: the value unchanged when it is a registered `kind` name (a backbone
    may also be any timm model name); else the registry's unknown-name ValueError."""
    def check(value):
        return validate(kind, value) if isinstance(value, str) else value
    check.__doc__ = f"a registered {kind} name"
    check.kind = kind  # the registry a docs generator lists (scripts/gen_config_docs.py)
    return check
