"""Train one fold through the stages of a FoldPlan, with checkpoints, resume, early stopping, predictions.

fold<k>/last.pt   model (+ its EMA) + optimizer + schedule + position after every epoch (resume; removed when done
                  unless train.keep_last)
fold<k>/best.pt   weights of the best epoch by the competition metric (the EMA weights with train.ema)
fold<k>/history.csv, TensorBoard events, preds.npz (val rows, val + test predictions)
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset

from ensemble.artifacts import FoldPaths, atomic_write_csv, atomic_write_json
from ensemble.data.datasets import CachedDataset, make_loader
from ensemble.train.adapt import adapt_model
from ensemble.train.files import save_npz, save_torch, val_loss
from ensemble.train.distributed import (SINGLE, DistEnv, broadcast_module, broadcast_object, gather_rows, shard,
                                        wrap_model)
from ensemble.train.engine import (FeatureLoader, NonFiniteLossError, Precision, check_diverged, divergence_hint,
                                   extract_features, predict, train_one_epoch)
from ensemble.train.inputs import FoldInputs  # noqa: F401 (FoldInputs is part of the fold trainer's API)
from ensemble.models import backbone_frozen, set_trainable
from ensemble.models.weights import load_torch
from ensemble.train.mix import BatchMixer
from ensemble.train.optim import current_lrs
from ensemble.train.plan import FoldPlan, Stage


logger = logging.getLogger(__name__)


@dataclass
class _Progress:
    """Where a fold is: the next stage/epoch to train, the best epoch so far, epochs without improvement."""
    stage: int = 0
    epoch: int = 0
    best: dict | None = None  # {"score", "epoch" (global)}
    bad: int = 0
    global_epoch: int = 0
    ckpt: dict | None = None  # last.pt being resumed (optimizer + schedule state for its stage)


class FoldTrainer:
    """Trains fold `k` of a run through `plan.stages`; `run()` -> dict with best score and timings.

    model: a Classifier (backbone + head) on `prec.device`; data: the fold's cached images and rows;
    fold_dir: fold<k>/ (checkpoints, history, predictions).
    on_epoch(fold, global_epoch, score): called after every epoch's validation; it may raise (e.g.
    optuna.TrialPruned) to stop the fold, after the epoch's checkpoint is saved.
    dist: under torchrun every rank runs this; rank 0 alone writes files and logs.
    """

    def __init__(self, plan: FoldPlan, k: int, model: torch.nn.Module, data: FoldInputs,
                 prec: Precision, fold_dir: Path, on_epoch=None, dist: DistEnv = SINGLE):
        self.plan, self.k, self.model, self.data, self.prec = plan, k, model, data, prec
        self.on_epoch, self.dist = on_epoch, dist
        self.dir = Path(fold_dir)
        self.paths = FoldPaths(self.dir)
        self.task, self.metric, self.activation = plan.task, plan.bound_metric(data.n_classes), plan.activation
        self.loss_fn = plan.make_loss(np.bincount(data.y[data.train_idx], minlength=data.n_classes)).to(prec.device)
        self.targets = torch.as_tensor(data.train_targets(), device=prec.device)  # (M + E, C)
        self.ema = plan.make_ema(model) if plan.make_ema else None
        self.history: list[dict] = []
        self.scaler = prec.make_scaler()
        self.writer = None
        if plan.tensorboard and dist.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.dir))

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            logger.info(msg)

    # ------------------------------------------------------------ loaders
    def _loader(self, images, idx, labels, tf, shuffle: bool, seed: int = 0, extra=None):
        """Train loaders (shuffle=True) are per epoch, so their workers are not kept alive; they never
        end in a batch of one row. extra: a dataset appended to the rows (the extra training rows)."""
        p = self.plan
        bs = p.batch_size if shuffle else (p.eval_batch_size or 2 * p.batch_size)
        ds = CachedDataset(images, idx, labels, tf)
        if extra is not None:
            ds = ConcatDataset([ds, extra])
        sampler = None
        if shuffle and self.dist.enabled:  # each rank a disjoint, per-epoch reshuffled share
            from torch.utils.data.distributed import DistributedSampler
            sampler = DistributedSampler(ds, self.dist.world_size, self.dist.rank, shuffle=True, seed=seed)
        return make_loader(ds, bs, shuffle=shuffle, num_workers=p.num_workers, seed=seed, sampler=sampler,
                           pin_memory=self.prec.device.type == "cuda", persistent_workers=not shuffle,
                           no_single=shuffle)

    def _predict(self, net, images, idx, tf, forward=None, tta=("none",)) -> np.ndarray:
        """Predictions for rows `idx` in order; under DDP each rank predicts its shard, then gather."""
        loader = self._loader(images, shard(idx, self.dist), None, tf, False)
        out = predict(net, loader, self.prec, tta=tta, activation=self.activation, forward=forward)
        return gather_rows(out, self.dist)

    def _stage_loaders(self, stage: Stage):
        """-> (train loader factory: seed -> loader, validate: net -> (V, C) outputs, forward or None).

        Training rows are the fold's training part (M,) and the extra rows (E,); the loaders' labels
        are their rows in self.targets. A frozen backbone without augmentation trains the head on
        features computed once (the same head inputs as the full forward pass; single process
        only). Train loaders are rebuilt per epoch from an epoch seed, so order and augmentation do
        not depend on where a run resumed. Validation is on the fold's own val rows only.
        """
        d = self.data
        m, rows = len(d.train_idx), torch.arange(len(self.targets))
        n_extra = len(self.targets) - m
        augment = stage.augment and len(d.train_tf.transforms) > 0
        if backbone_frozen(self.model) and not augment and not self.dist.enabled:
            feats = [extract_features(self.model, self._loader(d.train_images, i, None, d.eval_tf, False), self.prec)
                     for i in (d.train_idx, d.val_idx)]
            if n_extra:
                feats[0] = torch.cat([feats[0], extract_features(
                    self.model, self._loader(d.extra_images, np.arange(n_extra), None, d.eval_tf, False), self.prec)])
            rows_t = rows.to(self.prec.device)
            val = FeatureLoader(feats[1], torch.zeros(len(d.val_idx), device=self.prec.device), 4096, False)
            self.log(f"fold {self.k}: backbone frozen, no augmentation: head trains on cached features "
                     f"{tuple(feats[0].shape)}")
            return ((lambda seed: FeatureLoader(feats[0], rows_t, self.plan.batch_size, True, seed)),
                    (lambda net: predict(net, val, self.prec, activation=self.activation, forward=net.forward_head)),
                    self.model.forward_head)
        tf = d.train_tf if stage.augment else d.eval_tf
        extra = CachedDataset(d.extra_images, np.arange(n_extra), m + np.arange(n_extra), tf) if n_extra else None
        return ((lambda seed: self._loader(d.train_images, d.train_idx, rows[:m].numpy(), tf, True, seed, extra)),
                (lambda net: self._predict(net, d.train_images, d.val_idx, d.eval_tf)), None)

    # ------------------------------------------------------------ main loop
    def run(self, resume: bool = False) -> dict:
        """Train every stage (or what is left of it after `resume` from last.pt), then predict.

        Per stage: trainable parameters by `stage.train`, a fresh optimizer + schedule, epochs until
        `stage.epochs`, early stopping or the time limit. Every epoch is validated on the fold's
        val rows (V,) and checkpointed (last.pt; best.pt when the metric improved). -> the fold's
        result dict (best score and epoch, TTA score, seconds, train img/s).
        """
        if self.dist.is_main:  # the other ranks write nothing (their runs/ may be another node's)
            self.dir.mkdir(parents=True, exist_ok=True)
        progress = self._start(resume)
        for s, stage in enumerate(self.plan.stages):
            if s < progress.stage or (s == progress.stage and progress.epoch >= stage.epochs):
                continue
            if self._stage(s, stage, progress):
                break
        if self.writer:
            self.writer.close()
        return self._finish(progress.best)

    def _start(self, resume: bool) -> _Progress:
        """Fresh progress, or the position, best score, history and RNG state of last.pt (rank 0's,
        broadcast to the other ranks)."""
        ckpt = broadcast_object(self._load_last(), self.dist) if resume else None
        if ckpt is None:
            return _Progress()
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.history = list(ckpt["history"])
        torch.set_rng_state(ckpt["rng"].cpu())
        if self.scaler and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        stage, epoch = ckpt["stage"], ckpt["epoch"] + 1
        self.log(f"fold {self.k}: resuming at stage {stage + 1} epoch {epoch + 1}")
        return _Progress(stage, epoch, ckpt["best"], ckpt["bad_epochs"],
                         sum(st.epochs for st in self.plan.stages[:stage]) + epoch, ckpt)

    def _stage(self, s: int, stage: Stage, progress: _Progress) -> bool:
        """Train stage `s` from its first epoch (or progress.epoch when resuming it): each epoch is
        one pass over the train rows (N_train,) and a validation of the val rows (V,).
        -> True when the time limit stopped the fold (no later stage runs)."""
        p, k = self.plan, self.k
        set_trainable(self.model, stage.train)
        seed = p.seed * 1000 + k
        make_train, validate, forward = self._stage_loaders(stage)
        net = self.model if forward is not None else wrap_model(self.model, self.dist, self.prec.device)
        mixer = BatchMixer(p.mix, self.data.n_classes) if p.mix and stage.mix and forward is None else None
        if p.mix and stage.mix and forward is not None:
            self.log(f"fold {k} stage {s + 1}: no MixUp/CutMix on cached features")
        optimizer = p.make_optimizer(self.model, stage.lrs)
        schedule = p.make_schedule(optimizer, stage.epochs, math.ceil(len(make_train(seed)) / p.accum_steps),
                                   self.metric.higher_is_better)
        resuming = progress.ckpt is not None and s == progress.stage
        first = progress.epoch if s == progress.stage else 0
        if resuming:
            optimizer.load_state_dict(progress.ckpt["optimizer"])
            schedule.load_state_dict(progress.ckpt["schedule"])
        progress.bad = progress.bad if s == progress.stage else 0
        y_val = self.data.y[self.data.val_idx]
        for e in range(first, stage.epochs):
            if self._out_of_time(s, stage):
                return True
            t0 = time.perf_counter()
            epoch_seed = seed * 1000 + progress.global_epoch
            if mixer is not None:
                mixer.reseed(epoch_seed)
            try:  # nothing of a diverged epoch is saved: last.pt stays at the epoch before
                tr = train_one_epoch(net, make_train(epoch_seed), self.loss_fn, optimizer,
                                     self.prec, schedule=schedule, scaler=self.scaler, accum_steps=p.accum_steps,
                                     clip_grad=p.clip_grad, forward=forward, targets=self.targets, mix=mixer,
                                     ema=self.ema, progress=p.progress and self.dist.is_main,
                                     desc=f"fold {k} s{s + 1} e{e + 1}/{stage.epochs}")
                out = validate(self.ema.module if self.ema is not None else net)  # EMA weights when set
                check_diverged(self.model, out)  # the weights first, then the outputs
            except NonFiniteLossError as err:
                raise NonFiniteLossError(f"fold {k}, stage {s + 1}, epoch {e + 1}: {err}; "
                                         f"{divergence_hint(stage.lrs, p.clip_grad, self.prec.dtype is not None)}"
                                         ) from None
            score = self.metric.score_outputs(self.task, y_val, out)
            improved = progress.best is None or self.metric.is_better(score, progress.best["score"])
            row = {"fold": k, "stage": s, "epoch": e, "global_epoch": progress.global_epoch,
                   "train_loss": tr["loss"], "val_loss": val_loss(self.task, y_val, out), "score": score,
                   "img_s": tr["img_s"] * self.dist.world_size, "cached_features": forward is not None,
                   "seconds": time.perf_counter() - t0,
                   **{f"lr_{g}": v for g, v in current_lrs(optimizer).items()}}
            self.history.append(row)
            progress.bad = 0 if improved else progress.bad + 1
            if improved:
                progress.best = {"score": score, "epoch": progress.global_epoch}
            schedule.step_epoch(score)
            self._checkpoint(s, e, optimizer, schedule, progress, improved, score)
            self._log_epoch(row, stage, improved)
            if self.on_epoch is not None:
                self.on_epoch(k, progress.global_epoch, score)
            progress.global_epoch += 1
            if p.early_stopping and progress.bad >= p.early_stopping:
                self.log(f"fold {k}: early stop in stage {s + 1} after {progress.bad} epochs without improvement")
                progress.global_epoch += stage.epochs - e - 1
                break
        return False

    # ------------------------------------------------------------ checkpointing
    def _load_last(self) -> dict | None:
        """last.pt (rank 0; on the CPU under DDP, to be broadcast), or None."""
        path = self.paths.last
        if not self.dist.is_main or not path.exists():
            return None
        return load_torch(path, map_location="cpu" if self.dist.enabled else self.prec.device)

    def _checkpoint(self, s: int, e: int, optimizer, schedule, progress: _Progress, improved: bool,
                    score: float) -> None:
        """After epoch `e` of stage `s` (rank 0): best.pt when the metric improved, last.pt (model,
        optimizer, schedule, position, RNG: enough to resume bit for bit), history.csv."""
        if not self.dist.is_main:
            return
        if improved:  # the weights that were validated: the EMA's when set
            best = self.ema.module if self.ema is not None else self.model
            save_torch({"model": best.state_dict(), "score": score, "epoch": progress.global_epoch},
                       self.paths.best)
        save_torch({"model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "stage": s, "epoch": e, "best": progress.best,
                    "bad_epochs": progress.bad, "history": self.history, "rng": torch.get_rng_state(),
                    "scaler": self.scaler.state_dict() if self.scaler else None},
                   self.paths.last)
        atomic_write_csv(self.paths.history, pd.DataFrame(self.history))

    def _out_of_time(self, s: int, stage: Stage) -> bool:
        """True when plan.time_limit is set and the next epoch of stage `s` (estimated by this
        stage's last epoch, else the last epoch that trained as much of the backbone) would end past it."""
        limit = self.plan.time_limit
        if not limit or not self.history:
            return False
        spent = sum(r["seconds"] for r in self.history)
        same = [r["seconds"] for r in self.history if r["stage"] == s]
        alike = [r["seconds"] for r in self.history if r["cached_features"] == (stage.train == "head" and not stage.augment)]
        estimate = (same or alike or [0.0])[-1]
        if spent + estimate <= limit:
            return False
        self.log(f"fold {self.k}: time limit {limit:.0f}s reached ({spent:.0f}s trained, next epoch ~{estimate:.0f}s): "
                 f"stopping in stage {s + 1} with the best checkpoint")
        return True

    def _log_epoch(self, row: dict, stage: Stage, improved: bool) -> None:
        lrs = " ".join(f"{k[3:]}={v:.1e}" for k, v in row.items() if k.startswith("lr_"))
        self.log(f"fold {self.k} stage {row['stage'] + 1} epoch {row['epoch'] + 1}/{stage.epochs} "
                 f"train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
                 f"{self.metric} {row['score']:.4f}{' *' if improved else '  '} lr {lrs} "
                 f"{row['img_s']:.0f} img/s {row['seconds']:.1f}s")
        if self.writer:
            for key in ("train_loss", "val_loss", "score", "img_s"):
                self.writer.add_scalar(key if key != "score" else f"val/{self.metric}", row[key], row["global_epoch"])
            for k, v in row.items():
                if k.startswith("lr_"):
                    self.writer.add_scalar(f"lr/{k[3:]}", v, row["global_epoch"])

    # ------------------------------------------------------------ finish
    def _test_model(self) -> torch.nn.Module:
        """The best weights adapted to all test images by plan.adapt (every rank; batches as in predict)."""
        d, adapt = self.data, self.plan.adapt
        batches = lambda: make_loader(CachedDataset(d.test_images, d.test_idx, None, d.eval_tf), adapt.batch_size,
                                      shuffle=False, num_workers=0, pin_memory=False)
        return adapt_model(self.model, batches, adapt, self.prec, self.activation)

    def _finish(self, best: dict | None) -> dict:
        """Reload the best weights (rank 0 from best.pt, broadcast to the others), predict the val rows
        (V, C) and test rows (T, C) with the plan's TTA views (the test rows after test-time adaptation,
        if any), save preds.npz (val_idx, val, test) and result.json, remove last.pt unless plan.keep_last
        (rank 0). -> the result dict."""
        if best is None:
            raise RuntimeError(f"fold {self.k}: no epoch was trained (all stages have 0 epochs?)")
        if self.dist.is_main:
            self.model.load_state_dict(load_torch(self.paths.best, map_location=self.prec.device)["model"])
        broadcast_module(self.model, self.dist)  # rank 0's best weights on every rank, without reading its files
        t0, d, tta = time.perf_counter(), self.data, list(self.plan.tta)
        val_out = self._predict(self.model, d.train_images, d.val_idx, d.eval_tf, tta=tta)
        test_out = self._predict(self._test_model(), d.test_images, d.test_idx, d.eval_tf, tta=tta)
        full = [r["img_s"] for r in self.history if not r["cached_features"]]
        info = {"best_score": float(best["score"]), "best_epoch": int(best["epoch"]),
                "tta_score": self.metric.score_outputs(self.task, d.y[d.val_idx], val_out),
                # epochs (kept in history across resumes) + final predictions
                "seconds": sum(r["seconds"] for r in self.history) + time.perf_counter() - t0,
                "train_img_s": float(np.median(full)) if full else float("nan")}
        if self.dist.is_main:
            save_npz(self.paths.preds, val_idx=d.val_idx, val=val_out, test=test_out)
            atomic_write_json(self.paths.result, info)
            if not self.plan.keep_last:  # a finished fold resumes from preds.npz; predict needs best.pt only
                self.paths.last.unlink(missing_ok=True)
        return info
