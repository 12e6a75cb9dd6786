"""export_bundle: a submission's manifest + the runs it voted -> one self-contained bundle folder.

    result = export_bundle("ham10000")                       # the newest manifest in submissions/ham10000/
    result.path                                              # bundles/ham10000/<submission name>/

Every run must be as it was when the vote read it (its test predictions' sha256 is in the manifest),
so the bundle's models are the ones behind the submission. Each fold's best.pt becomes a safetensors
file of the weights alone (no optimizer state, nothing pickled); the bundle is written into a
temporary folder beside its destination and renamed when complete.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ensemble.artifacts import FoldPaths, RunPaths, atomic_path, atomic_write_json, atomic_write_text, file_hash
from ensemble.artifacts.provenance import from_root, git_state, versions
from ensemble.config import load_config
from ensemble.models import build_model, resolve_backbone
from ensemble.models.weights import load_torch
from ensemble.predict.bundle import (BUNDLE_JSON, FORMAT, FORMAT_VERSION, README, BundleError, read_bundle,
                                     readme_text, state_to_safetensors)
from ensemble.train.plan import build_fold_plan

logger = logging.getLogger(__name__)


@dataclass
class ExportResult:
    path: Path  # the bundle folder
    zip_path: Path | None
    manifest: Path
    nbytes: int  # weights bytes


def newest_manifest(competition: str, submissions_dir: str | Path = "submissions") -> Path:
    """The most recent submission manifest of a competition (by its created_utc, then file time)."""
    folder = Path(submissions_dir) / competition
    found = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not found:
        raise BundleError(f"no submission manifests in {folder} (vote first: python -m ensemble.vote "
                          f"--competition {competition})")

    def stamp(p: Path):
        try:
            return str(json.loads(p.read_text()).get("created_utc", "")), p.stat().st_mtime
        except (OSError, json.JSONDecodeError):
            return "", p.stat().st_mtime
    return max(found, key=stamp)


def _read_manifest(path: Path) -> dict:
    if path.suffix == ".csv":  # the submission itself: its manifest sits beside it
        path = path.with_suffix(".json")
    if not path.is_file():
        raise BundleError(f"submission manifest not found: {path}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or "runs" not in manifest:
        raise BundleError(f"{path}: not a submission manifest (no 'runs')")
    if "recipe" not in manifest:
        raise BundleError(f"{path}: the manifest has no vote recipe (voted before bundles existed); vote again "
                          f"(python -m ensemble.vote --competition {manifest.get('competition', 'NAME')}) and "
                          f"export the new submission")
    return manifest


def _check_run(entry: dict, where: Path) -> Path:
    """The run directory of a manifest entry, unchanged since the vote (test predictions' sha256)."""
    run_dir = from_root(entry["dir"])
    paths = RunPaths(run_dir)
    test = from_root(entry["test"]["path"])
    if not paths.metrics.is_file() or not test.is_file():
        raise BundleError(f"{where}: run '{entry['name']}' not found at {run_dir} (the manifest's paths are relative to the "
                          f"repository root)")
    if file_hash(test) != entry["test"]["sha256"]:
        raise BundleError(f"{where}: run '{entry['name']}' changed since the vote ({test} sha256 differs): its "
                          f"models are not those of the submission; vote again and export the new submission")
    return run_dir


def _submission_format(manifest: dict, where: Path) -> dict:
    """{kind, id_col, columns} of the submission (from its CSV's header)."""
    sub = from_root(manifest["submission"]["path"])
    if not sub.is_file():
        raise BundleError(f"{where}: the submission {sub} is missing (its header gives the submission format)")
    with open(sub, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    return {"kind": manifest["submission"]["format"], "id_col": header[0], "columns": header[1:]}


def _model_entry(name: str, run_dir: Path, fold_weights: dict | None, dest: Path, half: bool) -> dict:
    """Write one run's fold weights into dest/<name>/ and describe the model as the run built it."""
    cfg = load_config(RunPaths(run_dir).config)
    metrics = json.loads(RunPaths(run_dir).metrics.read_text())
    plan = build_fold_plan(cfg)
    n_classes = len(metrics["classes"])
    build = {"backbone": resolve_backbone(cfg.model.backbone), "out_dim": 1 if plan.task == "ordinal" else n_classes,
             "head_hidden": list(cfg.model.head.hidden), "head_batchnorm": cfg.model.head.batchnorm,
             "head_dropout": cfg.model.head.dropout, "head_activation": cfg.model.head.activation,
             "drop_rate": cfg.model.drop_rate, "drop_path_rate": cfg.model.drop_path_rate}
    if not fold_weights:
        folds = sorted(metrics.get("cv_folds") or {}, key=int)
        fold_weights = {k: 1.0 / len(folds) for k in folds}
    (dest / name).mkdir(parents=True, exist_ok=True)
    model = build_model(**build, pretrained=False)
    entries = []
    for k, weight in sorted(fold_weights.items(), key=lambda kv: int(kv[0])):
        best = FoldPaths(RunPaths(run_dir).fold_dir(int(k))).best
        if not best.is_file():
            raise BundleError(f"{best}: missing (run '{name}' fold {k}); the bundle needs every fold's best weights")
        state = load_torch(best)["model"]
        model.load_state_dict(state, strict=True)  # the weights fit the model predict will build
        rel = f"{name}/fold{k}.safetensors"
        nbytes = state_to_safetensors(state, dest / rel, half)
        entries.append({"fold": int(k), "weight": float(weight), "file": rel, "bytes": nbytes,
                        "sha256": file_hash(dest / rel)})
    return {"name": name, "backbone": cfg.model.backbone, "build": build, "input_size": cfg.input.size,
            "activation": plan.activation, "tta": list(plan.tta), "eval_augment": cfg.augment.eval,
            "adapt": plan.adapt.to_dict(), "mean": (model.mean.flatten() / 255).tolist(),
            "std": (model.std.flatten() / 255).tolist(), "dtype": "float16" if half else "float32",
            "cv": metrics.get("cv"), "cv_std": metrics.get("cv_std"), "metric": metrics.get("metric"),
            "folds": entries, "run": {"dir": str(run_dir), "config_sha256": file_hash(RunPaths(run_dir).config)}}


def _priors(run_dir: Path) -> list[float]:
    """Class shares of the training rows (the rows of the OOF confusion matrix)."""
    counts = np.asarray(json.loads(RunPaths(run_dir).metrics.read_text())["confusion"], np.float64).sum(axis=1)
    return (counts / counts.sum()).tolist()


def export_bundle(competition: str, submission: str | Path | None = None, out: str | Path | None = None, *,
                  make_zip: bool = False, half: bool = False, submissions_dir: str | Path = "submissions",
                  bundles_dir: str | Path = "bundles", overwrite: bool = False) -> ExportResult:
    """Write the bundle of a submission (default: the competition's newest) into `out` (default
    bundles/<competition>/<submission name>/); make_zip: also <out>.zip; half: weights in fp16."""
    where = Path(submission) if submission else newest_manifest(competition, submissions_dir)
    where = where.with_suffix(".json") if where.suffix == ".csv" else where
    manifest = _read_manifest(where)
    if manifest.get("competition") != competition:
        raise BundleError(f"{where}: a submission of '{manifest.get('competition')}', not of '{competition}'")
    out = Path(out) if out else Path(bundles_dir) / competition / where.stem
    if out.exists() and not overwrite:
        raise BundleError(f"{out} exists; remove it, choose another --out or pass --overwrite")
    run_dirs = [_check_run(r, where) for r in manifest["runs"]]
    recipe = manifest["recipe"]
    fold_weights = recipe.get("fold_weights") or {}
    fmt = _submission_format(manifest, where)
    ref = load_config(RunPaths(run_dirs[0]).config).competition
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        models = [_model_entry(r["name"], d, fold_weights.get(r["name"]), tmp, half)
                  for r, d in zip(manifest["runs"], run_dirs)]
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": where.stem, "competition": competition,
                "task": ref.task, "metric": manifest.get("metric"), "classes": recipe["classes"],
                "priors": _priors(run_dirs[0]), "id_col": ref.id_col, "image_ext": ref.ext, "submission": fmt,
                "cv": manifest.get("cv"), "recipe": recipe, "models": models,
                "provenance": {"manifest": {"path": str(where), "sha256": file_hash(where)},
                               "submission": manifest.get("submission"), "command": manifest.get("command"),
                               "git": manifest.get("git"), "versions": manifest.get("versions"),
                               "exported_utc": datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"),
                               "exported_with": {"versions": versions(), "git": git_state()}}}
        atomic_write_json(tmp / BUNDLE_JSON, meta)
        atomic_write_text(tmp / README, readme_text(meta))
        read_bundle(tmp)  # what predict will check, before the bundle takes its name
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    zip_path = None
    if make_zip:
        zip_path = out.parent / f"{out.name}.zip"
        with atomic_path(zip_path) as tmp_zip:
            made = shutil.make_archive(str(tmp_zip), "zip", root_dir=out.parent, base_dir=out.name)
            os.replace(made, tmp_zip)
    nbytes = sum(f["bytes"] for m in models for f in m["folds"])
    logger.info(f"bundle {out}: {len(models)} model(s), {sum(len(m['folds']) for m in models)} weights files, "
                f"{nbytes / 2**20:.1f} MB{' (fp16)' if half else ''}" + (f"; zipped to {zip_path}" if zip_path else ""))
    return ExportResult(out, zip_path, where, nbytes)
