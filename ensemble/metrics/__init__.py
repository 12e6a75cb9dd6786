"""Metric registry over scikit-learn, and the competition metric bound once to its classes.

Every metric is called as ``metric(y_true, probs)`` with ``y_true`` (N,) int class indices and
``probs`` (N, C) probabilities; "label" metrics score ``probs.argmax(1)``. Folds in which some classes
are absent are fine: label metrics use the classes that occur, roc_auc averages the classes that
have both positives and negatives, log_loss uses ``labels=range(C)``. Undefined scores are NaN.

A metric is named by a name, a spec text such as ``roc_auc[classes=MEL,NV]``, a mapping or a
``MetricSpec`` (see ``ensemble.metric_spec``); ``bind_metric`` checks it once against the registry and
the competition's classes and returns a ``BoundMetric`` (``.score``, ``.score_labels``,
``.higher_is_better``, ``.per_class``), which training, tuning and vote score with. Metrics registered
with ``per_class`` accept ``classes`` and ``weights``: the score is then the weighted mean of the
per-class scores (classes undefined in the rows are left out and the weights renormalised). Other
parameters are passed to the metric function as keywords.

A metric of your own, in a file given to ``--plugin`` (train, tune, vote):

    from ensemble.metrics import register_metric

    @register_metric("sens_at_spec", greater_is_better=True, needs="proba")
    def sens_at_spec(y, probs, n_classes, specificity=0.9):   # {name: sens_at_spec, specificity: 0.95}
        ...
"""
from ensemble.metrics import builtin  # noqa: F401 (registers the built-in metrics)
from ensemble.metrics.arrays import confusion, ordinal_labels, output_labels, per_class_recall
from ensemble.metrics.bound import (AUC_METRICS, BoundMetric, MetricLike, bind_metric, get_metric, is_better,
                                    metric_text, parse_metric, score, score_labels)
from ensemble.metrics.registered import METRICS, Metric, register_metric

__all__ = ["AUC_METRICS", "BoundMetric", "METRICS", "Metric", "MetricLike", "bind_metric", "confusion", "get_metric",
           "is_better", "metric_text", "ordinal_labels", "output_labels", "parse_metric", "per_class_recall",
           "register_metric", "score", "score_labels"]
