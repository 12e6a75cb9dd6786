"""A metric resolved once: ``BoundMetric`` (the registered metric, its parameters and the competition's
classes) and the functions that resolve names, spec texts, mappings and MetricSpecs into one.

    metric = bind_metric("roc_auc[classes=MEL,NV]", classes)    # when the competition loads
    metric.score(y, probs), metric.score_labels(y, labels), metric.higher_is_better, metric.per_class(y, probs)

Training, tuning and vote all score through the bound object; the free functions below (``score``,
``score_labels``, ``is_better``) resolve their argument on every call and are for
one-off use (a notebook, a test).
"""
from __future__ import annotations

import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning

from ensemble.metric_spec import CLASS_PARAMS, MetricSpec, check_param_type, parse, trial_call
from ensemble.metrics.arrays import check_labels, check_probs, ordinal_labels
from ensemble.metrics.registered import METRICS, Metric

MetricLike = Union[str, Mapping, MetricSpec]
logger = logging.getLogger(__name__)
AUC_METRICS = ("roc_auc",)  # default to the sample submission's classes when it scores a subset


@contextmanager
def quiet():
    """Silence sklearn's harmless warnings for folds with absent classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", category=RuntimeWarning, message="invalid value encountered")
        yield


def _resolve(metric: MetricLike) -> tuple[MetricSpec, Metric]:
    if isinstance(metric, BoundMetric):
        return metric.spec, metric.entry
    spec = parse(metric)
    m = METRICS.get(spec.name)
    accepted = m.params if spec.params else ()
    if spec.params and "*" not in accepted:
        for key in spec.params:
            if key not in accepted:
                why = " (it has no per-class scores)" if key in CLASS_PARAMS else ""
                raise ValueError(f"metric '{spec.name}' takes no parameter '{key}'{why}; "
                                 f"parameters: {', '.join(accepted) or 'none'}")
    for key, value in spec.kwargs.items():
        check_param_type(spec.name, m.fn, key, value)
    return spec, m


def get_metric(metric: MetricLike) -> Metric:
    """The registered metric of a name, spec text, mapping or MetricSpec (parameters are checked)."""
    return _resolve(metric)[1]


def parse_metric(metric: MetricLike) -> MetricSpec:
    """Name, text or mapping -> MetricSpec, checked against the registry (not bound to classes)."""
    return _resolve(metric)[0]


def metric_text(metric: MetricLike) -> str:
    """The canonical one-line form (what configs and metrics.json store)."""
    return parse_metric(metric).text


def _apply(spec: MetricSpec, m: Metric, y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """The metric function, or the weighted mean of per-class scores when the spec has class params."""
    w = spec.class_weights(n_classes)
    with quiet():
        if w is None:
            return float(m.fn(y, pred, n_classes, **spec.kwargs))
        per = np.asarray(m.per_class(y, pred, n_classes), dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    ok = np.isfinite(per) & (w > 0)
    return float(np.sum(w[ok] * per[ok]) / np.sum(w[ok])) if ok.any() else math.nan


def _score_probs(spec: MetricSpec, m: Metric, y_true, probs) -> float:
    y, p, n_classes = check_probs(y_true, probs)
    return _apply(spec, m, y, p.argmax(axis=1) if m.needs == "label" else p, n_classes)


def _score_labels(spec: MetricSpec, m: Metric, y_true, y_pred, n_classes: int | None) -> float:
    if m.needs != "label":
        label_names = ", ".join(k for k, v in METRICS.items() if v.needs == "label")
        raise ValueError(f"metric '{spec.name}' needs probabilities; score_labels supports: {label_names}")
    y, pred = check_labels(y_true, "y_true", n_classes), check_labels(y_pred, "y_pred", n_classes)
    if len(y) != len(pred):
        raise ValueError(f"y_true has {len(y)} rows but y_pred has {len(pred)}")
    if len(y) == 0:
        raise ValueError("cannot score an empty set (0 rows)")
    if n_classes is None:
        n_classes = len(spec.classes) if spec.bound else int(max(y.max(), pred.max())) + 1
    return _apply(spec, m, y, pred, n_classes)


def _better(greater_is_better: bool, a: float, b: float | None) -> bool:
    if a is None or math.isnan(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a > b if greater_is_better else a < b


@dataclass(frozen=True)
class BoundMetric:
    """The competition's metric, checked and bound to its classes once (``bind_metric``): what every
    score of a run, a trial or a vote goes through. ``str(metric)`` is its text form (logs, metrics.json)."""

    spec: MetricSpec  # bound: spec.classes are the competition's classes, in class-index order
    entry: Metric  # the registered metric

    def __str__(self) -> str:
        return self.spec.text

    @property
    def text(self) -> str:
        return self.spec.text

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def n_classes(self) -> int:
        return len(self.spec.classes)

    @property
    def higher_is_better(self) -> bool:
        return self.entry.greater_is_better

    @property
    def needs(self) -> str:
        """'label' (scores argmax labels) or 'proba' (scores probabilities)."""
        return self.entry.needs

    @property
    def grades(self) -> bool:
        """The classes are ordered grades (QWK): vote also tries expected grades."""
        return self.entry.grades

    @property
    def balanced(self) -> bool:
        """Every class weighs the same (balanced accuracy, macro F1)."""
        return self.entry.balanced

    def score(self, y_true, probs) -> float:
        """y_true (N,) class indices, probs (N, C) -> the score; label metrics use ``probs.argmax(1)``."""
        return _score_probs(self.spec, self.entry, y_true, probs)

    def score_labels(self, y_true, y_pred) -> float:
        """Hard labels (N,) scored by a "label" metric (ValueError for a metric of probabilities)."""
        return _score_labels(self.spec, self.entry, y_true, y_pred, self.n_classes)

    def score_outputs(self, task: str, y_true, out: np.ndarray) -> float:
        """A model's outputs: probabilities (N, C), or (N, 1) ordinal scores cut at k + 0.5."""
        if task == "ordinal":
            return self.score_labels(y_true, ordinal_labels(out[:, 0], None, self.n_classes))
        return self.score(y_true, out)

    def per_class(self, y_true, probs) -> np.ndarray:
        """(C,) the metric of each class on its own (NaN: undefined in these rows), for metrics
        registered with per-class scores; ValueError for the others."""
        if self.entry.per_class is None:
            have = ", ".join(k for k, v in METRICS.items() if v.per_class is not None)
            raise ValueError(f"metric '{self.name}' has no per-class scores; metrics that have: {have}")
        y, p, n_classes = check_probs(y_true, probs)
        with quiet():
            return np.asarray(self.entry.per_class(y, p.argmax(axis=1) if self.needs == "label" else p, n_classes),
                              dtype=np.float64)

    def is_better(self, a: float, b: float | None) -> bool:
        """True if score ``a`` is strictly better than ``b`` (``b`` None or NaN: any finite ``a`` wins)."""
        return _better(self.higher_is_better, a, b)


def bind_metric(metric: MetricLike | BoundMetric, classes: Sequence, scored: Sequence | None = None) -> BoundMetric:
    """Checked and bound to the competition's classes (once: a BoundMetric of the same classes comes
    back as it is). ``scored``: the classes the submission holds (the sample submission's probability
    columns); an AUC metric without class parameters is restricted to them when they are a strict
    subset of ``classes``."""
    classes = [str(c) for c in classes]
    if isinstance(metric, BoundMetric) and list(metric.classes) == classes and scored is None:
        return metric
    spec, entry = _resolve(metric)
    if scored is not None and spec.name in AUC_METRICS and not spec.params:
        cols = [str(c) for c in scored]
        if cols and set(cols) < set(classes) and len(set(cols)) == len(cols):
            spec = MetricSpec(spec.name, {"classes": [c for c in classes if c in cols]})
            logger.info("metric %s: the sample submission scores only %s; using %s",
                        spec.name, ", ".join(cols), spec.text)
    spec = spec.bind(classes)
    trial_call(spec, len(classes), score)
    return BoundMetric(spec, entry)


# ---------------------------------------------------------------- one-off scoring (resolves every call)
def score(metric: MetricLike, y_true, probs) -> float:
    """Score probabilities (N, C) against y_true (N,); label metrics use ``probs.argmax(1)``."""
    return _score_probs(*_resolve(metric), y_true, probs)


def score_labels(metric: MetricLike, y_true, y_pred, n_classes: int | None = None) -> float:
    """Score hard labels (N,) with a "label" metric; ``n_classes`` defaults to max label + 1."""
    return _score_labels(*_resolve(metric), y_true, y_pred, n_classes)


def is_better(metric: MetricLike, a: float, b: float | None) -> bool:
    """True if score ``a`` is strictly better than ``b`` (``b`` None or NaN: any finite ``a`` wins)."""
    return _better(get_metric(metric).greater_is_better, a, b)
