"""train_run: K-fold training of one model config -> a finished run (RunResult).

    result = train_run(load_config("configs/demo/resnet18.yaml"), folds=[0])
    result.run_dir, result.metrics          # metrics None until every fold is trained

Writes runs/<competition>/<run>/ (see docs/artifacts.md and ensemble.artifacts.paths):
config.yaml, fold<k>/, oof + test probabilities, metrics.json, confusion.png, curves.png, and the
competition's folds.csv and labels.csv.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ensemble.artifacts import RunPaths
from ensemble.config import Config, ConfigError, dump_config, to_dict
from ensemble.config.checks import check_argument
from ensemble.config.ranges import BOOL, fold_numbers
from ensemble.data.augment import build_transforms
from ensemble.data.competition import check_single_rows, load_competition
from ensemble.data.imagefiles import check_image_files
from ensemble.models import build_model, model_flops, resolve_backbone, resolve_pretrained
from ensemble.train.assemble import assemble_run, missing_folds
from ensemble.train.distributed import SINGLE, DistEnv, barrier, rank_device
from ensemble.train.engine import resolve_precision
from ensemble.train.fold import FoldInputs, FoldTrainer
from ensemble.train.plan import build_fold_plan
from ensemble.train.ranks import start_ranks
from ensemble.train.setup import (check_device, check_disk, check_resumable, check_run_dir, check_weights,
                                  image_cache_dir, load_images, model_kwargs, open_run_dir, plan_competition_folds,
                                  run_folder, write_labels)
from ensemble.train.targets import SoftInputs


logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What train_run did: the run directory, the folds it trained (fold -> result dict: best score
    and epoch, TTA score, seconds) and metrics.json's dict once every fold is done (else None)."""
    run_dir: Path
    folds: dict[int, dict] = field(default_factory=dict)
    metrics: dict | None = None

    @property
    def complete(self) -> bool:
        return self.metrics is not None


def seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parse_folds(text: str | None, n: int) -> list[int]:
    if not text:
        return list(range(n))
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--folds expected comma-separated fold numbers like 0,1, got {text!r}") from None
    bad = [k for k in ks if not 0 <= k < n]
    if bad:
        raise ConfigError(f"--folds: fold {bad[0]} does not exist (folds.n={n}: 0..{n - 1})")
    return ks


def train(cfg: Config, **kwargs) -> dict | None:
    """train_run(...).metrics: metrics.json's dict, or None while other folds are still missing."""
    return train_run(cfg, **kwargs).metrics


def _check_loss(cfg: Config, comp) -> None:
    """The loss settings that depend on the class count (class_weights, focal alpha), checked before
    folds.csv, the cache or the run folder are written."""
    try:  # the loss exactly as every fold builds it; class counts of 1 stand for classes without rows
        build_fold_plan(cfg).make_loss(np.maximum(comp.class_counts, 1))
    except ValueError as e:
        raise ConfigError(f"loss ({cfg.loss.name}): {e}; the competition has {len(comp.classes)} classes: "
                          f"{', '.join(comp.classes[:20])}") from None


def _soft_inputs(cfg: Config, comp) -> SoftInputs:
    """train.extra_rows and train.soft_targets, read and checked against the competition's classes
    and rows (ConfigError naming the key and file)."""
    try:
        return SoftInputs.read(cfg.train.extra_rows, cfg.train.soft_targets, comp)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None


def _check_arguments(cfg: Config, folds, flags: dict[str, bool]) -> None:
    """train_run's arguments, checked before anything is read or written (ConfigError)."""
    if not isinstance(cfg, Config):
        raise ConfigError(f"train_run: argument 'cfg' expected a Config (load_config(path)), "
                          f"got {type(cfg).__name__} {cfg!r}")
    check_argument("train_run", "folds", folds, fold_numbers(cfg.folds.n))
    for name, value in flags.items():
        check_argument("train_run", name, value, BOOL)


def train_run(cfg: Config, *, folds: Sequence[int] | None = None, resume: bool = False, fresh: bool = False,
              assemble_only: bool = False, on_epoch=None, dist: DistEnv = SINGLE) -> RunResult:
    """Train the given folds (default all) of `cfg` and assemble the run when every fold is done.

    folds: fold numbers (another process may train the others); resume: continue interrupted folds
    from last.pt, skip finished ones; fresh: delete the run directory first; assemble_only: train
    nothing, only assemble oof/test/metrics. on_epoch(fold, global_epoch, score) is called after each
    epoch (tuning reports/prunes there). dist: under torchrun, every rank calls this; rank 0 alone
    writes files and broadcasts what the others need (ensemble.train.ranks), so nodes need not share runs/.
    """
    _check_arguments(cfg, folds, {"resume": resume, "fresh": fresh, "assemble_only": assemble_only})

    def log_(msg: str) -> None:
        if dist.is_main:
            logger.info(msg)
    comp = load_competition(cfg.competition)
    if comp.classes_inferred:  # no config classes or probability sample: say what the labels made of them
        log_(comp.describe_classes())
    n_classes = len(comp.classes)
    # every check that can fail, before the first file is written (a corrected rerun is never "another config")
    check_single_rows(comp)
    check_image_files(comp)
    _check_loss(cfg, comp)
    device = check_device(rank_device(dist, cfg.train.device))
    params = check_weights(cfg.model.backbone, cfg.model.pretrained, cfg.model.weights_map)
    soft = _soft_inputs(cfg, comp)  # read and checked before anything is written
    todo = [] if assemble_only else list(folds if folds is not None else range(cfg.folds.n))
    if resume:
        check_resumable(cfg.run_dir, todo)
    comp_dir, runs_dir = cfg.competition_dir, Path(cfg.output.runs_dir)
    run_folder(runs_dir, cfg.run_dir)  # inside runs/, whatever the names or links say (--fresh deletes it)
    folds_plan = None

    def make_folds():  # rank 0 only: plan the folds and check the run folder and disk; nothing written yet
        nonlocal folds_plan
        folds_plan = plan_competition_folds(comp, comp_dir, cfg.folds.n, cfg.folds.seed,
                                            grouped=bool(cfg.competition.group_col), use_dups=cfg.folds.dups,
                                            strategy=cfg.folds.strategy)
        check_run_dir(cfg.run_dir, to_dict(cfg), folds_plan.path, folds_plan.hash, todo, resume, fresh)
        check_disk(cfg.run_dir, comp, comp_dir, cfg.input.size, cfg.input.cache, params, len(todo))
        return folds_plan.fold, folds_plan.hash

    def build_images():  # every rank its own cache (in its own runs/ when the nodes do not share one)
        return load_images(comp, comp_dir, cfg.input.size, keep=cfg.input.cache, policy=cfg.input.bad_images,
                           workers=max(2, cfg.train.num_workers), progress=cfg.output.progress,
                           max_pixels=cfg.input.max_pixels)

    def write_run(folds_hash: str):  # rank 0 only: folds.csv, labels.csv, the run folder -> (run dir, finished)
        folds_plan.write()
        write_labels(comp, comp_dir)
        run_dir = open_run_dir(cfg.run_dir, runs_dir, dump_config(cfg), folds_hash, fresh)
        return run_dir, [k for k in todo if resume and RunPaths(run_dir).preds(k).exists()]

    setup = start_ranks(dist, comp, make_folds, build_images, write_run, cfg.run_dir)  # others learn from rank 0
    fold_of, folds_hash, run_dir, tr, te = setup.fold_of, setup.folds_hash, setup.run_dir, setup.train, setup.test
    targets, extra_x, extra_t = soft.fold_inputs(  # extra rows' images: the test cache or the same cache
        comp.train["y"].to_numpy(), n_classes, comp.test["path"].tolist(), te, cfg.input.size,
        image_cache_dir(comp_dir, cfg.input.cache), policy=cfg.input.bad_images,
        workers=max(2, cfg.train.num_workers), progress=cfg.output.progress) if todo else (None, None, None)
    metric = comp.metric  # bound to the competition's classes when it loaded (config.yaml keeps the text)
    log_(f"run {run_dir}: {len(comp.train)} train / {len(comp.test)} test images, {n_classes} classes, "
         f"{cfg.folds.n} folds, metric {metric}")
    prec = resolve_precision(device, cfg.train.amp, cfg.train.channels_last)
    if dist.enabled:
        t = cfg.train
        scale = {"none": "not scaled", "linear": f"scaled x{dist.world_size} (linear)",
                 "sqrt": f"scaled x{dist.world_size ** 0.5:.2f} (sqrt)"}[t.lr_scaling]
        log_(f"DDP: {dist.world_size} ranks, effective batch size {t.batch_size * dist.world_size * t.accum_steps} "
             f"({dist.world_size} ranks x {t.batch_size} x {t.accum_steps} accum steps); LRs {scale} "
             f"(train.lr_scaling); SyncBN {'on' if t.sync_bn else 'off'}")
    out_dim = 1 if cfg.competition.task == "ordinal" else n_classes
    model_kw = model_kwargs(cfg)
    train_tf, eval_tf = build_transforms(cfg.augment.train), build_transforms(cfg.augment.eval)
    y = comp.train["y"].to_numpy()
    plan = build_fold_plan(cfg, metric, dist.world_size)
    result = RunResult(run_dir)
    for k in todo:
        if k in setup.finished:
            log_(f"fold {k}: already finished, skipped")
            continue
        seed_everything(cfg.train.seed * 1000 + k)
        model = build_model(cfg.model.backbone, out_dim, **model_kw, log=log_).to(device)
        if dist.enabled and cfg.train.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if prec.channels_last:
            model = model.to(memory_format=torch.channels_last)
        data = FoldInputs(train_images=tr.array, test_images=te.array,
                          train_idx=np.flatnonzero((fold_of != k) & tr.ok),
                          val_idx=np.flatnonzero((fold_of == k) & tr.ok), test_idx=np.arange(len(comp.test)),
                          y=y, n_classes=n_classes, train_tf=train_tf, eval_tf=eval_tf, targets=targets,
                          extra_images=extra_x, extra_targets=extra_t)
        log_(f"fold {k}: {len(data.train_idx)} train / {len(data.val_idx)} val rows on {device} "
            f"(amp {prec.dtype or 'off'}, channels_last {prec.channels_last})")
        info = FoldTrainer(plan, k, model, data, prec, RunPaths(run_dir).fold_dir(k), on_epoch, dist).run(resume=resume)
        result.folds[k] = info
        log_(f"fold {k}: best {metric} {info['best_score']:.4f} at epoch {info['best_epoch'] + 1} "
            f"(with TTA {info['tta_score']:.4f}), {info['seconds']:.0f}s")
    barrier(dist)
    if not dist.is_main:
        return result
    gone = missing_folds(run_dir, cfg.folds.n)
    if gone and not assemble_only:
        logger.info(f"run {run_dir}: fold(s) {', '.join(map(str, gone))} still to train; assembles when all are done")
        return result
    prior = np.bincount(y[tr.ok], minlength=n_classes) / max(int(tr.ok.sum()), 1)
    fallback = prior if cfg.competition.task != "ordinal" else np.array([float(prior @ np.arange(n_classes))])
    flops_model = build_model(cfg.model.backbone, out_dim, **{**model_kw, "pretrained": False})
    weights = resolve_pretrained(resolve_backbone(cfg.model.backbone), cfg.model.pretrained, cfg.model.weights_map)[0]
    extra = {"run": cfg.run_name, "competition": cfg.competition.name, "backbone": cfg.model.backbone,
             "input_size": cfg.input.size, "weights": weights,
             "params_m": sum(p.numel() for p in flops_model.parameters()) / 1e6,
             "gflops": model_flops(flops_model, cfg.input.size), **soft.provenance()}
    bad_test = [comp.test["id"].iat[i] for i in np.flatnonzero(~te.ok)]
    if bad_test:
        logger.warning(f"warning: {len(bad_test)} test images could not be read; their rows average the folds' predictions "
            f"of a blank image: {', '.join(bad_test[:5])}")
    metrics = assemble_run(run_dir, fmt=cfg.output.format, ids=comp.train["id"].to_numpy(),
                           test_ids=comp.test["id"].to_numpy(), y=y, folds=fold_of, classes=comp.classes,
                           metric=metric, task=cfg.competition.task, folds_hash=folds_hash,
                           fallback=fallback, skipped=[comp.train["id"].iat[i] for i in np.flatnonzero(~tr.ok)],
                           extra=extra, plots=cfg.output.plots)
    recall = " ".join(f"{c}={'n/a' if r is None else f'{r:.2f}'}" for c, r in metrics["per_class_recall"].items())
    logger.info(f"run {run_dir}: CV {metric} {metrics['cv']:.4f} "
                f"(folds {' '.join(f'{v:.4f}' for v in metrics['cv_folds'].values())}; std {metrics['cv_std']:.4f})\n"
                f"  per-class recall: {recall}")
    result.metrics = metrics
    return result
