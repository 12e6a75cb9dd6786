"""The metric registry: ``Metric`` (a registered scoring function and what it needs) and
``register_metric``, the decorator that adds one (built-ins: ensemble.metrics.builtin; a metric of
your own: a file given to ``--plugin``)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from ensemble.metric_spec import CLASS_PARAMS, NAME
from ensemble.registry import Registry


@dataclass(frozen=True)
class Metric:
    """``fn(y_true (N,), pred, n_classes, **params) -> float``; ``pred`` is labels (N,) or probs (N, C)
    per ``needs``. ``per_class(y_true, pred, n_classes) -> (C,)`` scores (NaN: undefined) enables the
    ``classes`` and ``weights`` parameters. ``grades``: classes are ordered grades 0..C-1, so vote
    also tries the expected grade sum_k p_k k cut by fitted thresholds."""

    name: str
    fn: Callable[..., float]
    greater_is_better: bool
    needs: str  # "label" | "proba"
    per_class: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None
    grades: bool = False
    balanced: bool = False  # weighs every class equally (balanced accuracy, macro F1): vote tries per-class bias

    def __call__(self, y_true, probs) -> float:
        from ensemble.metrics.bound import score  # scoring builds on the registry, not the other way round
        return score(self.name, y_true, probs)

    @cached_property
    def params(self) -> tuple[str, ...]:
        """The parameter names this metric accepts ('*': any keyword)."""
        sig = list(inspect.signature(self.fn).parameters.values())[3:]
        names = tuple(CLASS_PARAMS) if self.per_class else ()
        if any(p.kind is p.VAR_KEYWORD for p in sig):
            return names + ("*",)
        return names + tuple(p.name for p in sig if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


METRICS: Registry[Metric] = Registry("metric", hint="(a metric of your own: --plugin FILE.py)")


def register_metric(name: str, *, greater_is_better: bool, needs: str, per_class: Callable | None = None,
                    grades: bool = False, balanced: bool = False) -> Callable:
    """Decorator adding ``fn(y_true, pred, n_classes, **params) -> float`` to the registry as ``name``.

    needs: "label" (fn gets argmax labels (N,)) or "proba" (probabilities (N, C)). Keyword
    parameters after the first three become the metric's config parameters. A name can be
    registered once (a plugin cannot silently replace a built-in)."""
    if needs not in ("label", "proba"):
        raise ValueError(f"metric needs must be 'label' or 'proba', got '{needs}'")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"metric name must start with a letter or _ and hold only letters, digits, _ . -, "
                         f"got {name!r}")

    def deco(fn):
        if name in METRICS and METRICS[name].fn is not fn:
            raise ValueError(f"metric '{name}' is already registered (by {METRICS[name].fn.__module__}); "
                             f"choose another name")
        if len([p for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) < 3:
            raise ValueError(f"metric '{name}': {fn.__name__} must take (y_true, pred, n_classes, **params)")
        METRICS.register(name, Metric(name, fn, greater_is_better, needs, per_class, grades, balanced), override=True)
        return fn

    return deco
