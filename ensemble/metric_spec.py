"""A metric with parameters, as data: ``MetricSpec(name, params)`` and its one-line text form.

    roc_auc                                   name only
    roc_auc[classes=MEL,NV]                   mean AUC over two classes
    macro_f1[weights=MEL:2,NV:1]              weighted per-class F1 (unlisted classes weigh 0)
    balanced_accuracy[weights=2,1,1,1,1,1,1]  one weight per class, in class order
    my_metric[beta=2;eps=0.1]                 keyword parameters of a plugin metric

The same metric written as a YAML mapping, ``{name: roc_auc, classes: [MEL, NV]}``, gives the same
spec and the same text (keys sorted, numbers in shortest form), so the text is stable for logs,
file names, metrics.json and run-to-run comparison. Parameters that name classes are bound to the
competition's class list with ``bind``; which parameters a metric accepts is checked by
``ensemble.metrics`` (this module knows no registry).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

RESERVED = "[];=,:"  # the text form's separators: not allowed inside names and values
CLASS_PARAMS = ("classes", "weights")  # parameters about classes, handled for every per-class metric
NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")  # a registrable metric name
_TEXT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(?:\[(.*)\])?\s*$", re.S)
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric's name, its parameters and (once bound) the competition's classes."""

    name: str
    params: dict = field(default_factory=dict)  # normalised: see parse(); treat as read-only
    classes: tuple[str, ...] | None = None  # the competition's classes, in class-index order (bind)

    def __str__(self) -> str:
        return self.text

    def __hash__(self) -> int:
        return hash((self.text, self.classes))

    @property
    def text(self) -> str:
        """``name`` or ``name[key=value;...]`` with keys sorted; parse(text) gives this spec back."""
        if not self.params:
            return self.name
        return f"{self.name}[{';'.join(f'{k}={_fmt_value(v)}' for k, v in sorted(self.params.items()))}]"

    @property
    def kwargs(self) -> dict:
        """The parameters that are not about classes (passed to the metric function)."""
        return {k: v for k, v in self.params.items() if k not in CLASS_PARAMS}

    @property
    def bound(self) -> bool:
        return self.classes is not None

    def bind(self, classes: Sequence[str]) -> "MetricSpec":
        """Check class names in ``classes``/``weights`` against the competition's classes and put
        ``classes`` (with a weight list) in class order."""
        classes = tuple(str(c) for c in classes)
        known = set(classes)
        listed = self.params.get("classes")
        weights = self.params.get("weights")
        for what, names in (("classes", listed or ()), ("weights", weights if isinstance(weights, dict) else ())):
            for c in names:
                if c not in known:
                    raise ValueError(f"metric '{self.text}': unknown class '{c}' in {what}; "
                                     f"classes: {', '.join(classes)}")
        if isinstance(weights, list):
            _check_weight_count(self, len(weights), listed or classes)
        params = dict(self.params)
        if listed:  # class order, so one metric has one text whichever order the config listed
            order = sorted(range(len(listed)), key=lambda j: classes.index(listed[j]))
            params["classes"] = [listed[j] for j in order]
            if isinstance(weights, list):
                params["weights"] = [weights[j] for j in order]
        return MetricSpec(self.name, params, classes)

    def class_weights(self, n_classes: int) -> "list[float] | None":
        """(C,) weight of each class index, or None when the spec has no class parameters."""
        listed, weights = self.params.get("classes"), self.params.get("weights")
        if listed is None and weights is None:
            return None
        needs_names = listed is not None or isinstance(weights, dict)
        if needs_names and self.classes is None:
            raise ValueError(f"metric '{self.text}' names classes: bind it to the competition's classes first "
                             f"(MetricSpec.bind or metrics.bind_metric)")
        if self.classes is not None and len(self.classes) != n_classes:
            raise ValueError(f"metric '{self.text}' is bound to {len(self.classes)} classes but the "
                             f"predictions have {n_classes}")
        index = {c: i for i, c in enumerate(self.classes or ())}
        chosen = [index[c] for c in listed] if listed is not None else list(range(n_classes))
        if isinstance(weights, dict):
            w = [0.0] * n_classes
            for c, v in weights.items():
                w[index[c]] = v
            return w
        if isinstance(weights, list):
            _check_weight_count(self, len(weights), listed or self.classes or range(n_classes))
        w = [0.0] * n_classes
        for j, i in enumerate(chosen):
            w[i] = weights[j] if isinstance(weights, list) else 1.0
        return w


def _check_weight_count(spec: MetricSpec, got: int, classes) -> None:
    classes = list(classes)
    if got != len(classes):
        names = ", ".join(map(str, classes))
        raise ValueError(f"metric '{spec.text}': weights has {got} values, expected {len(classes)} "
                         f"(one per class: {names})")


def check_param_type(name: str, fn, key: str, value) -> None:
    """A parameter's value must have the type of its default in the metric function `fn` (a number for
    beta=2.0), so a typo fails when the config loads, not when the first epoch is scored."""
    import inspect
    param = inspect.signature(fn).parameters.get(key)
    default = None if param is None else param.default
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        return
    if not ok:
        raise ValueError(f"metric '{name}': parameter '{key}' expected {what} (its default is {default!r}), "
                         f"got {type(value).__name__} {value!r}")


def trial_call(spec: MetricSpec, n_classes: int, score) -> None:
    """score(spec, y, probs) on a made-up set (each class twice, right then wrong), so a parameter the
    metric rejects fails when the competition loads, before anything is written."""
    import numpy as np
    if n_classes < 2:
        return
    y = np.tile(np.arange(n_classes), 2)
    try:
        score(spec, y, np.eye(n_classes)[np.r_[y[:n_classes], np.roll(y[:n_classes], 1)]] * 0.8 + 0.2 / n_classes)
    except Exception as e:  # whatever the plugin's code raises
        raise ValueError(f"metric '{spec.text}' fails when called ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0]})") from None


# ---------------------------------------------------------------- parsing
def parse(value: "str | Mapping | MetricSpec") -> MetricSpec:
    """A metric name, its text form or a mapping ``{name: ..., <param>: ...}`` -> MetricSpec.

    Raises ValueError naming what is wrong. Parameter names are not checked against the metric
    here (see ``ensemble.metrics.check_spec``)."""
    if isinstance(value, MetricSpec):
        return value
    if isinstance(value, Mapping):
        return parse(_mapping_text(value))
    if not isinstance(value, str) or isinstance(value, bool):
        got = "null" if value is None else f"{type(value).__name__} {value!r}"
        raise ValueError(f"expected a metric name or a mapping with 'name' (e.g. {{name: roc_auc, "
                         f"classes: [A, B]}}), got {got}")
    m = _TEXT.match(value)
    if not m:
        raise ValueError(f"metric '{value}' is not a name or name[key=value;...] (e.g. roc_auc[classes=A,B])")
    name, inner = m.group(1), m.group(2)
    params: dict[str, Any] = {}
    for item in (inner.split(";") if inner and inner.strip() else []):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ValueError(f"metric '{value}': parameter {item.strip()!r} is not key=value")
        if key in params:
            raise ValueError(f"metric '{value}': parameter '{key}' given twice")
        params[key] = _param(name, key, raw.strip(), value)
    return MetricSpec(name, params)


def _param(name: str, key: str, raw: str, whole: str):
    """One parameter's text -> its normalised value (classes: list of str; weights: list of float or
    {class: float}; others: a scalar, a list or a mapping of scalars)."""
    def parts(text: str) -> list[str]:
        out = [s.strip() for s in text.split(",")]
        if not all(out):
            raise ValueError(f"metric '{whole}': parameter '{key}' has an empty item in {text!r}")
        return out

    if key == "classes":
        names = parts(raw)
        if any(":" in c for c in names):
            raise ValueError(f"metric '{whole}': classes must be class names, got {raw!r}")
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise ValueError(f"metric '{whole}': class '{dup[0]}' listed twice in classes")
        return names
    if key == "weights":
        if ":" in raw:
            pairs = [p.partition(":") for p in parts(raw)]
            w = {k.strip(): _weight(v.strip(), whole) for k, _, v in pairs}
            if len(w) != len(pairs):
                raise ValueError(f"metric '{whole}': a class is listed twice in weights")
        else:
            w = [_weight(v, whole) for v in parts(raw)]
        values = list(w.values()) if isinstance(w, dict) else w
        if not any(v > 0 for v in values):
            raise ValueError(f"metric '{whole}': weights must not all be 0")
        return w
    if ":" in raw:
        return {k.strip(): _scalar(v.strip()) for k, _, v in (p.partition(":") for p in parts(raw))}
    return [_scalar(v) for v in parts(raw)] if "," in raw else _scalar(raw)


def _weight(text: str, whole: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"metric '{whole}': weights must be numbers, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"metric '{whole}': weights must be finite and >= 0, got {text}")
    return v


def _scalar(text: str):
    if text in ("true", "false"):
        return text == "true"
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _fmt_value(v) -> str:
    if isinstance(v, dict):
        return ",".join(f"{k}:{_fmt_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt_value(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def _check_text(what: str, s: str) -> str:
    bad = [ch for ch in RESERVED if ch in s]
    if bad or not s.strip():
        raise ValueError(f"metric {what} {s!r} cannot be written in the metric's text form "
                         f"(it must be non-empty and contain none of {' '.join(RESERVED)})")
    return s


def _mapping_text(m: Mapping) -> str:
    """{name: roc_auc, classes: [A, B]} -> 'roc_auc[classes=A,B]' (validated, so parse() round-trips)."""
    if "name" not in m:
        raise ValueError(f"a metric mapping needs 'name' (e.g. {{name: roc_auc, classes: [A, B]}}), "
                         f"got keys: {', '.join(map(str, m)) or '(none)'}")
    name = m["name"]
    if not isinstance(name, str):
        raise ValueError(f"metric 'name' expected a string, got {type(name).__name__} {name!r}")
    items = []
    for key, v in m.items():
        if key == "name":
            continue
        key = _check_text("parameter name", str(key))
        items.append(f"{key}={_mapping_value(key, v)}")
    return f"{name}[{';'.join(items)}]" if items else name


def _mapping_value(key: str, v) -> str:
    def one(x, what="value") -> str:
        if isinstance(x, (dict, list, tuple)) or x is None:
            got = "null" if x is None else type(x).__name__
            raise ValueError(f"metric parameter '{key}': expected numbers or strings, got a nested {got}")
        return _check_text(what, _fmt_value(x))

    if key == "classes" and isinstance(v, (str, int)) and not isinstance(v, bool):
        v = [v]
    if isinstance(v, Mapping):
        if not v:
            raise ValueError(f"metric parameter '{key}': empty mapping")
        return ",".join(f"{one(k, 'class name' if key == 'weights' else 'key')}:{one(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError(f"metric parameter '{key}': empty list")
        return ",".join(one(x, "class name" if key == "classes" else "value") for x in v)
    return one(v)
