"""A bundle: one folder holding a voted ensemble, all that predict needs (no runs/, configs, network).

    bundles/<competition>/<submission>/bundle.json
    bundles/<competition>/<submission>/<run>/fold<k>.safetensors     fine-tuned weights, nothing pickled
    bundles/<competition>/<submission>/README.md                     one line per model with its CV

bundle.json: format + format_version, the competition's classes (in order), id column, image file
extension, submission format and train class priors; every model (how to build it: timm name, head,
drop rates; input size, normalisation, eval augmentation, TTA views, test-time adaptation, CV, and
its fold weight files with their sha256 and size); the vote recipe (ensemble.vote.recipe); the
provenance of the submission manifest it came from.

`read_bundle` checks the format version and every weights file (size, then sha256) before a model
is built: a bundle that reads is complete.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ensemble.artifacts import file_hash
from ensemble.vote.recipe import RecipeError, fitted_from_recipe

FORMAT = "ensemble-bundle"
FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
README = "README.md"


class BundleError(ValueError):
    """A bundle that cannot be used: not a bundle, another format version, a missing or corrupt file."""


@dataclass(frozen=True)
class FoldWeights:
    fold: int
    weight: float  # share of this fold in the model's prediction (the folds' mean: 1/K each)
    file: Path  # absolute path of the .safetensors file


@dataclass(frozen=True)
class ModelSpec:
    """One voted model: `build` are build_model's arguments (pretrained weights are never loaded)."""
    name: str
    build: dict
    input_size: int
    activation: str  # softmax (class probabilities) | identity (an ordinal score)
    tta: list[str]
    eval_augment: str | list
    adapt: dict  # ensemble.train.adapt.Adaptation as a dict
    folds: list[FoldWeights]
    cv: float | None = None


@dataclass(frozen=True)
class Bundle:
    root: Path
    meta: dict  # bundle.json as read
    models: list[ModelSpec]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def recipe(self) -> dict:
        return self.meta["recipe"]

    @property
    def priors(self) -> np.ndarray:
        """(C,) class shares of the training rows: what an unreadable image gets with --on-bad-image prior."""
        return np.asarray(self.meta["priors"], np.float64)


def state_to_safetensors(state: dict[str, torch.Tensor], path: Path, half: bool = False) -> int:
    """Save a state dict as .safetensors (floating tensors as fp16 when `half`). -> bytes written."""
    from safetensors.torch import save_file
    out = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous().clone()
           for k, v in state.items()}
    save_file(out, str(path))
    return path.stat().st_size


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A bundle's weights file as float32 tensors (an fp16 bundle is widened; counters stay integers)."""
    from safetensors.torch import load_file
    return {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path), device="cpu").items()}


def _where(root: Path) -> str:
    return str(root / BUNDLE_JSON)


def _unzip(path: Path) -> Path:
    """A zipped bundle extracted into a temporary folder, removed when the process exits."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise BundleError(f"{path}: not a zip file (a bundle is a folder or its .zip)") from None
    dest = Path(tempfile.mkdtemp(prefix="ensemble-bundle-"))
    atexit.register(shutil.rmtree, dest, True)
    with archive:
        archive.extractall(dest)
    hits = sorted(dest.rglob(BUNDLE_JSON))
    if not hits:
        raise BundleError(f"{path}: no {BUNDLE_JSON} inside the zip")
    return hits[0].parent


def _model(root: Path, m: dict, i: int) -> ModelSpec:
    try:
        folds = [FoldWeights(int(f["fold"]), float(f["weight"]), root / f["file"]) for f in m["folds"]]
        return ModelSpec(m["name"], dict(m["build"]), int(m["input_size"]), m["activation"], list(m["tta"]),
                         m["eval_augment"], dict(m["adapt"]), folds, m.get("cv"))
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{_where(root)}: models[{i}] is incomplete ({type(e).__name__}: {e})") from None


def check_weights(root: Path, meta: dict) -> None:
    """Every weights file listed in bundle.json is there with its size and sha256. Raises BundleError."""
    for m in meta["models"]:
        for f in m["folds"]:
            path = root / f["file"]
            if not path.is_file():
                raise BundleError(f"{path}: weights file missing (listed in {_where(root)})")
            size = path.stat().st_size
            if size != f["bytes"] or file_hash(path) != f["sha256"]:
                what = f"{size} bytes, expected {f['bytes']}" if size != f["bytes"] else "sha256 differs"
                raise BundleError(f"{path}: weights file is corrupt or truncated ({what}; see {_where(root)}); "
                                  "copy the bundle again")


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle folder (or its .zip) and check it: format, version, recipe and (verify) every
    weights file's size and sha256. Raises BundleError with one line naming the file."""
    root = Path(path)
    if root.is_file() and root.suffix == ".zip":
        root = _unzip(root)
    meta_path = root / BUNDLE_JSON
    if not meta_path.is_file():
        raise BundleError(f"{root}: not a bundle (no {BUNDLE_JSON}); make one with python -m ensemble.export")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: not an ensemble bundle (format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                          f"expected {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{meta_path}: bundle format version {version!r} is not supported (this ensemble reads "
                          f"version {FORMAT_VERSION}); export the bundle again with this version, or install the "
                          f"ensemble version that wrote it")
    missing = [k for k in ("classes", "models", "recipe", "priors", "id_col", "submission") if k not in meta]
    if missing:
        raise BundleError(f"{meta_path}: missing {', '.join(missing)}")
    try:
        fitted_from_recipe(meta["recipe"])
    except (RecipeError, KeyError, TypeError) as e:
        raise BundleError(f"{meta_path}: {e}") from None
    models = [_model(root, m, i) for i, m in enumerate(meta["models"])]
    if [m.name for m in models] != list(meta["recipe"]["models"]):
        raise BundleError(f"{meta_path}: the models {[m.name for m in models]} are not the vote recipe's "
                          f"{meta['recipe']['models']}")
    if verify:
        check_weights(root, meta)
    return Bundle(root, meta, models)


def readme_text(meta: dict) -> str:
    """The bundle's README.md: what it predicts and one line per model with its CV."""
    cv = meta.get("cv") or {}
    lines = [f"# {meta['name']}", "",
             f"Ensemble bundle of competition `{meta['competition']}`: {len(meta['models'])} model(s) voted with "
             f"`{meta['recipe']['method']}`, CV {meta.get('metric', '')} "
             f"{cv.get('score', float('nan')):.4f} (std {cv.get('std', float('nan')):.4f}).", "",
             f"Classes: {', '.join(map(str, meta['classes']))}", "",
             "```", "python -m ensemble.predict --bundle <this folder> --images <folder> --sample sample_submission.csv "
             "--out submission.csv", "```", "", "| model | backbone | size | TTA | folds | CV |", "|---|---|---|---|---|---|"]
    for m in meta["models"]:
        score = "-" if m.get("cv") is None else f"{m['cv']:.4f} (std {m.get('cv_std') or 0:.4f})"
        lines.append(f"| {m['name']} | {m.get('backbone') or m['build']['backbone']} | {m['input_size']} | {', '.join(m['tta'])} | "
                     f"{len(m['folds'])} | {score} |")
    return "\n".join(lines) + "\n"
