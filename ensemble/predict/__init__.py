"""Predict anywhere: a voted ensemble exported as one bundle (export), loaded and applied to new images
(Predictor, `python -m ensemble.predict`). Imports models, data, train's prediction and adaptation
code and vote's recipe; never tune or compete."""
from ensemble.predict.bundle import Bundle, BundleError, read_bundle
from ensemble.predict.export import ExportResult, export_bundle
from ensemble.predict.predictor import Predictions, Predictor

__all__ = ["Bundle", "BundleError", "ExportResult", "Predictions", "Predictor", "export_bundle", "read_bundle"]
