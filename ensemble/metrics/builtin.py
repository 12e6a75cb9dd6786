"""Metric registry over scikit-learn.

Every metric is called as ``metric(y_true, probs)`` with ``y_true`` (N,) int class indices and
``probs`` (N, C) probabilities; "label" metrics score ``probs.argmax(1)``. Folds in which some classes
are absent are fine: label metrics use the classes that occur, roc_auc averages the classes that
have both positives and negatives, log_loss uses ``labels=range(C)``. Undefined scores are NaN.

Wherever a metric is named (``score``, ``score_outputs``, ``is_better``, ``get_metric``) it may be a
name, a spec text such as ``roc_auc[classes=MEL,NV]``, a mapping or a ``MetricSpec`` (see
``ensemble.metric_spec``). Metrics registered with ``per_class`` accept ``classes`` and ``weights``:
the score is then the weighted mean of the per-class scores (classes undefined in the rows are left
out and the weights renormalised). Other parameters are passed to the metric function as keywords.

A metric of your own, in a file given to ``--plugin`` (train, tune, vote):

    from ensemble.metrics import register_metric

    @register_metric("sens_at_spec", greater_is_better=True, needs="proba")
    def sens_at_spec(y, probs, n_classes, specificity=0.9):   # {name: sens_at_spec, specificity: 0.95}
        ...
"""
from __future__ import annotations

import inspect
import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping, Union

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from ensemble.registry import Registry
from ensemble.metric_spec import CLASS_PARAMS, NAME, MetricSpec, check_param_type, parse as parse_spec, trial_call

MetricLike = Union[str, Mapping, MetricSpec]
logger = logging.getLogger(__name__)
AUC_METRICS = ("roc_auc",)  # default to the sample submission's classes when it scores a subset


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


@contextmanager
def _quiet():
    """Silence sklearn's harmless warnings for folds with absent classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", category=RuntimeWarning, message="invalid value encountered")
        yield


def _recall_per_class(y, pred, n_classes):
    """(C,) recall; NaN for a class absent from y."""
    return per_class_recall(y, pred, n_classes)


def _f1_per_class(y, pred, n_classes):
    """(C,) F1 (0 when undefined); NaN for a class in neither y nor pred."""
    f1 = skm.f1_score(y, pred, labels=np.arange(n_classes), average=None, zero_division=0)
    seen = np.isin(np.arange(n_classes), np.concatenate([y, pred]))
    return np.where(seen, f1, np.nan)


def _auc_per_class(y, probs, n_classes):
    """(C,) one-vs-rest AUC of probs[:, c]; NaN for a class without both outcomes in y."""
    return np.array([skm.roc_auc_score(y == c, probs[:, c]) if 0 < np.sum(y == c) < len(y) else np.nan
                     for c in range(n_classes)])


@register_metric("accuracy", greater_is_better=True, needs="label")
def _accuracy(y, pred, n_classes):
    return skm.accuracy_score(y, pred)


@register_metric("balanced_accuracy", greater_is_better=True, needs="label", per_class=_recall_per_class,
                 balanced=True)
def _balanced_accuracy(y, pred, n_classes):
    """Mean recall over the classes present in ``y``."""
    return skm.balanced_accuracy_score(y, pred)


@register_metric("macro_f1", greater_is_better=True, needs="label", per_class=_f1_per_class, balanced=True)
def _macro_f1(y, pred, n_classes):
    """Macro F1 over the classes present in ``y`` or ``pred``."""
    return skm.f1_score(y, pred, average="macro", zero_division=0)


@register_metric("qwk", greater_is_better=True, needs="label", grades=True)
def _qwk(y, pred, n_classes):
    """Quadratic weighted kappa; ``labels=range(C)`` keeps grade distances right when a grade is absent."""
    return skm.cohen_kappa_score(y, pred, labels=np.arange(n_classes), weights="quadratic")


@register_metric("roc_auc", greater_is_better=True, needs="proba", per_class=_auc_per_class)
def _roc_auc(y, probs, n_classes):
    """Binary: AUC of probs[:, 1]. Multiclass: one-vs-rest macro over classes with both outcomes present."""
    if n_classes == 2:
        return skm.roc_auc_score(y, probs[:, 1]) if len(np.unique(y)) == 2 else math.nan
    aucs = [skm.roc_auc_score(y == c, probs[:, c]) for c in range(n_classes) if 0 < np.sum(y == c) < len(y)]
    return float(np.mean(aucs)) if aucs else math.nan


@register_metric("log_loss", greater_is_better=False, needs="proba")
def _log_loss(y, probs, n_classes):
    sums = probs.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError(f"probs rows must sum to > 0 for log_loss; row(s) {np.flatnonzero(sums[:, 0] <= 0)[:5].tolist()} sum to 0")
    p = probs / sums  # float32 rows that sum to 1 +- 1e-7 would trip sklearn's check
    return skm.log_loss(y, p, labels=np.arange(n_classes))


# ---------------------------------------------------------------- specs
def get_metric(metric: MetricLike) -> Metric:
    """The registered metric of a name, spec text, mapping or MetricSpec (parameters are checked)."""
    return _resolve(metric)[1]


def _resolve(metric: MetricLike) -> tuple[MetricSpec, Metric]:
    spec = parse_spec(metric)
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


def parse_metric(metric: MetricLike) -> MetricSpec:
    """Name, text or mapping -> MetricSpec, checked against the registry (not bound to classes)."""
    return _resolve(metric)[0]


def metric_text(metric: MetricLike) -> str:
    """The canonical one-line form (what configs and metrics.json store)."""
    return parse_metric(metric).text


def bind_metric(metric: MetricLike, classes, scored=None) -> MetricSpec:
    """Checked and bound to the competition's classes. ``scored``: the classes the submission holds
    (the sample submission's probability columns); an AUC metric without class parameters is
    restricted to them when they are a strict subset of ``classes``."""
    spec = parse_metric(metric)
    classes = [str(c) for c in classes]
    if scored is not None and spec.name in AUC_METRICS and not spec.params:
        cols = [str(c) for c in scored]
        if cols and set(cols) < set(classes) and len(set(cols)) == len(cols):
            spec = MetricSpec(spec.name, {"classes": [c for c in classes if c in cols]})
            logger.info("metric %s: the sample submission scores only %s; using %s",
                        spec.name, ", ".join(cols), spec.text)
    spec = spec.bind(classes)
    trial_call(spec, len(classes), score)
    return spec


def _labels(y, what: str, n_classes: int | None = None) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-d class indices (N,), got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
            raise ValueError(f"{what} must be integer class indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if n_classes is not None and a.size and (a.min() < 0 or a.max() >= n_classes):
        bad = sorted(set(a[(a < 0) | (a >= n_classes)].tolist()))[:5]
        raise ValueError(f"{what} has class indices outside [0, {n_classes}): {bad}")
    return a


def _probs(y_true, probs) -> tuple[np.ndarray, np.ndarray, int]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2, got {p.shape}")
    y = _labels(y_true, "y_true", p.shape[1])
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but probs has {len(p)}")
    if len(y) == 0:
        raise ValueError("cannot score an empty set (0 rows)")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and >= 0")
    return y, p, p.shape[1]


def _apply(spec: MetricSpec, m: Metric, y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """The metric function, or the weighted mean of per-class scores when the spec has class params."""
    w = spec.class_weights(n_classes)
    with _quiet():
        if w is None:
            return float(m.fn(y, pred, n_classes, **spec.kwargs))
        per = np.asarray(m.per_class(y, pred, n_classes), dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    ok = np.isfinite(per) & (w > 0)
    return float(np.sum(w[ok] * per[ok]) / np.sum(w[ok])) if ok.any() else math.nan


def score(metric: MetricLike, y_true, probs) -> float:
    """Score probabilities (N, C) against y_true (N,); label metrics use ``probs.argmax(1)``."""
    spec, m = _resolve(metric)
    y, p, n_classes = _probs(y_true, probs)
    return _apply(spec, m, y, p.argmax(axis=1) if m.needs == "label" else p, n_classes)


def score_labels(metric: MetricLike, y_true, y_pred, n_classes: int | None = None) -> float:
    """Score hard labels (N,) with a "label" metric; ``n_classes`` defaults to max label + 1."""
    spec, m = _resolve(metric)
    if m.needs != "label":
        label_names = ", ".join(k for k, v in METRICS.items() if v.needs == "label")
        raise ValueError(f"metric '{spec.name}' needs probabilities; score_labels supports: {label_names}")
    y, pred = _labels(y_true, "y_true", n_classes), _labels(y_pred, "y_pred", n_classes)
    if len(y) != len(pred):
        raise ValueError(f"y_true has {len(y)} rows but y_pred has {len(pred)}")
    if len(y) == 0:
        raise ValueError("cannot score an empty set (0 rows)")
    if n_classes is None:
        n_classes = len(spec.classes) if spec.bound else int(max(y.max(), pred.max())) + 1
    return _apply(spec, m, y, pred, n_classes)


def confusion(y_true, pred, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    y, p = _labels(y_true, "y_true", n_classes), _labels(pred, "pred", n_classes)
    return skm.confusion_matrix(y, p, labels=np.arange(n_classes))


def per_class_recall(y_true, pred, n_classes: int) -> np.ndarray:
    """(C,) recall per class; NaN for a class with no true samples."""
    cm = confusion(y_true, pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def is_better(metric: MetricLike, a: float, b: float | None) -> bool:
    """True if score ``a`` is strictly better than ``b`` (``b`` None or NaN: any finite ``a`` wins)."""
    m = get_metric(metric)
    if a is None or math.isnan(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a > b if m.greater_is_better else a < b


def ordinal_labels(scores: np.ndarray, thresholds: np.ndarray | None, n_classes: int) -> np.ndarray:
    """(N,) or (N, 1) ordinal scores -> (N,) labels in 0..n_classes-1, cut at `thresholds`
    (n_classes - 1,) ascending; default k + 0.5. A score on a cut point goes up (2.5 -> 3).
    The one score -> grade rule: training's CV and vote's submissions both use it."""
    thr = np.arange(n_classes - 1) + 0.5 if thresholds is None else thresholds
    return np.searchsorted(thr, np.ravel(scores), side="right")


def output_labels(task: str, out: np.ndarray, n_classes: int) -> np.ndarray:
    """Model outputs -> class indices: argmax of (N, C) probabilities, or the (N, 1)
    ordinal score cut at k + 0.5 (ordinal_labels)."""
    if task == "ordinal":
        return ordinal_labels(out[:, 0], None, n_classes)
    return out.argmax(1)


def score_outputs(metric: MetricLike, task: str, y_true: np.ndarray, out: np.ndarray, n_classes: int) -> float:
    """The competition metric of a run's outputs (probabilities, or ordinal scores)."""
    if task == "ordinal":
        return score_labels(metric, y_true, output_labels(task, out, n_classes), n_classes)
    return score(metric, y_true, out)
