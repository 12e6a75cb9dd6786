"""Train one fold through its stages, with checkpoints, resume, early stopping and predictions.

fold<k>/last.pt   model + optimizer + schedule + position, written after every epoch (resume)
fold<k>/best.pt   weights of the best epoch by the competition metric
fold<k>/history.csv, TensorBoard events, preds.npz (val rows, val + test predictions)
"""
from __future__ import annotations

import dataclasses
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble import metrics as M
from ensemble.artifacts import atomic_path, atomic_write_csv, atomic_write_json
from ensemble.config import Config
from ensemble.data.datasets import CachedDataset, make_loader
from ensemble.train.distributed import SINGLE, DistEnv, barrier, gather_rows, shard, wrap_model
from ensemble.train.engine import FeatureLoader, Precision, extract_features, predict, train_one_epoch
from ensemble.train.losses import build_loss
from ensemble.models.backbones import backbone_frozen, set_trainable
from ensemble.train.optim import build_optimizer, build_scheduler, current_lrs, param_groups
from ensemble.artifacts.paths import FoldPaths


@dataclass
class FoldInputs:
    """Everything a fold needs besides the config: cached images and row indices."""

    train_images: np.ndarray  # (N, S, S, 3) uint8
    test_images: np.ndarray  # (T, S, S, 3) uint8
    train_idx: np.ndarray  # rows of train_images used for training
    val_idx: np.ndarray  # rows used for validation
    test_idx: np.ndarray  # rows of test_images to predict
    y: np.ndarray  # (N,) class index of every train row
    n_classes: int
    train_tf: object  # albumentations Compose (augmentation)
    eval_tf: object  # albumentations Compose (evaluation)


def save_torch(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def save_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _val_loss(task: str, y: np.ndarray, out: np.ndarray) -> float:
    if task == "ordinal":
        return float(np.mean((out[:, 0] - y) ** 2))
    return float(-np.mean(np.log(np.clip(out[np.arange(len(y)), y], 1e-7, 1.0))))


class FoldTrainer:
    """Runs the stages of `cfg` for fold `k`; `run()` -> dict with best score and timings."""

    def __init__(self, cfg: Config, k: int, model: torch.nn.Module, data: FoldInputs,
                 prec: Precision, fold_dir: Path, log=print, on_epoch=None, dist: DistEnv = SINGLE):
        """on_epoch(fold, global_epoch, score): called after every epoch's validation; it may
        raise (e.g. optuna.TrialPruned) to stop the fold, after the epoch's checkpoint is saved.
        dist: under torchrun every rank runs this; rank 0 alone writes files and logs."""
        self.cfg, self.k, self.model, self.data, self.prec = cfg, k, model, data, prec
        self.on_epoch, self.dist = on_epoch, dist
        self.dir, self.log = Path(fold_dir), (log if dist.is_main else (lambda *_: None))
        self.paths = FoldPaths(self.dir)
        self.task = cfg.competition.task
        self.metric = cfg.competition.metric
        self.activation = "identity" if self.task == "ordinal" else "softmax"
        counts = np.bincount(data.y[data.train_idx], minlength=data.n_classes)
        lc = cfg.loss
        self.loss_fn = build_loss(lc.name, class_counts=counts, class_weights=lc.class_weights,
                                  label_smoothing=lc.label_smoothing, gamma=lc.gamma, alpha=lc.alpha).to(prec.device)
        self.history: list[dict] = []
        self.scaler = prec.make_scaler()
        self.writer = None
        if cfg.output.tensorboard and dist.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.dir))

    # ------------------------------------------------------------ loaders
    def _loader(self, images, idx, labels, tf, shuffle: bool, seed: int = 0):
        """Train loaders (shuffle=True) are per epoch, so their workers are not kept alive."""
        t = self.cfg.train
        bs = t.batch_size if shuffle else (t.eval_batch_size or 2 * t.batch_size)
        ds = CachedDataset(images, idx, labels, tf)
        sampler = None
        if shuffle and self.dist.enabled:  # each rank a disjoint, per-epoch reshuffled share
            from torch.utils.data.distributed import DistributedSampler
            sampler = DistributedSampler(ds, self.dist.world_size, self.dist.rank, shuffle=True, seed=seed)
        return make_loader(ds, bs, shuffle=shuffle, num_workers=t.num_workers, seed=seed, sampler=sampler,
                           pin_memory=self.prec.device.type == "cuda", persistent_workers=not shuffle)

    def _predict(self, net, images, idx, tf, forward=None, tta=("none",)) -> np.ndarray:
        """Predictions for rows `idx` in order; under DDP each rank predicts its shard, then gather."""
        loader = self._loader(images, shard(idx, self.dist), None, tf, False)
        out = predict(net, loader, self.prec, tta=tta, activation=self.activation, forward=forward)
        return gather_rows(out, self.dist)

    def _stage_loaders(self, stage):
        """-> (train loader factory: seed -> loader, validate: net -> (V, C) outputs, forward or None).

        A frozen backbone without augmentation trains the head on features computed once
        (the same head inputs as the full forward pass; single process only). Train loaders
        are rebuilt per epoch from an epoch seed, so order and augmentation do not depend on
        where a run resumed.
        """
        d = self.data
        y_tr = d.y[d.train_idx]
        augment = stage.augment and len(d.train_tf.transforms) > 0
        if backbone_frozen(self.model) and not augment and not self.dist.enabled:
            feats = [extract_features(self.model, self._loader(d.train_images, i, None, d.eval_tf, False), self.prec)
                     for i in (d.train_idx, d.val_idx)]
            y_tr_t = torch.as_tensor(y_tr, device=self.prec.device)
            val = FeatureLoader(feats[1], torch.zeros(len(d.val_idx), device=self.prec.device), 4096, False)
            self.log(f"fold {self.k}: backbone frozen, no augmentation: head trains on cached features "
                     f"{tuple(feats[0].shape)}")
            head = self.model.forward_head
            return ((lambda seed: FeatureLoader(feats[0], y_tr_t, self.cfg.train.batch_size, True, seed)),
                    (lambda net: predict(self.model, val, self.prec, activation=self.activation, forward=head)),
                    head)
        tf = d.train_tf if stage.augment else d.eval_tf
        return ((lambda seed: self._loader(d.train_images, d.train_idx, y_tr, tf, True, seed)),
                (lambda net: self._predict(net, d.train_images, d.val_idx, d.eval_tf)), None)

    def _stage_optim(self, stage, steps_per_epoch: int):
        """Fresh optimizer + schedule over the stage's trainable parameters."""
        cfg, o, sc = self.cfg, self.cfg.optim, self.cfg.schedule
        scale = {"none": 1.0, "linear": self.dist.world_size, "sqrt": self.dist.world_size ** 0.5}[cfg.train.lr_scaling]
        lrs = {k: v * scale for k, v in dataclasses.asdict(stage.lr or o.lr).items()}
        groups = param_groups(self.model, lrs, o.weight_decay, o.layer_decay)
        optimizer = build_optimizer(o.name, groups, momentum=o.momentum, nesterov=o.nesterov)
        schedule = build_scheduler(sc.name, optimizer, epochs=stage.epochs, steps_per_epoch=steps_per_epoch,
                                   warmup_epochs=min(sc.warmup_epochs, stage.epochs / 2),
                                   min_lr_ratio=sc.min_lr_ratio, step_size=sc.step_size, gamma=sc.gamma,
                                   patience=sc.patience, factor=sc.factor,
                                   mode="max" if M.get_metric(self.metric).greater_is_better else "min")
        return optimizer, schedule

    # ------------------------------------------------------------ checkpointing
    def _load_last(self) -> dict | None:
        path = self.paths.last
        if not path.exists():
            return None
        return torch.load(path, map_location=self.prec.device, weights_only=True)

    def _save_last(self, s, e, optimizer, schedule, best, bad):
        save_torch({"model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "stage": s, "epoch": e, "best": best,
                    "bad_epochs": bad, "history": self.history, "rng": torch.get_rng_state(),
                    "scaler": self.scaler.state_dict() if self.scaler else None},
                   self.paths.last)

    # ------------------------------------------------------------ main loop
    def run(self, resume: bool = False) -> dict:
        cfg, t = self.cfg, self.cfg.train
        self.dir.mkdir(parents=True, exist_ok=True)
        ckpt = self._load_last() if resume else None
        start_stage, start_epoch, best, bad = 0, 0, None, 0
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.history = list(ckpt["history"])
            torch.set_rng_state(ckpt["rng"].cpu())
            if self.scaler and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            start_stage, start_epoch, best, bad = ckpt["stage"], ckpt["epoch"] + 1, ckpt["best"], ckpt["bad_epochs"]
            self.log(f"fold {self.k}: resuming at stage {start_stage + 1} epoch {start_epoch + 1}")
        y_val = self.data.y[self.data.val_idx]
        global_epoch = sum(s.epochs for s in cfg.stages[:start_stage]) + start_epoch
        for s, stage in enumerate(cfg.stages):
            if s < start_stage or (s == start_stage and start_epoch >= stage.epochs):
                continue
            set_trainable(self.model, stage.train)
            seed = t.seed * 1000 + self.k
            make_train, validate, forward = self._stage_loaders(stage)
            net = self.model if forward is not None else wrap_model(self.model, self.dist, self.prec.device)
            optimizer, schedule = self._stage_optim(stage, math.ceil(len(make_train(seed)) / t.accum_steps))
            first = start_epoch if s == start_stage else 0
            if ckpt is not None and s == start_stage:
                optimizer.load_state_dict(ckpt["optimizer"])
                schedule.load_state_dict(ckpt["schedule"])
            bad = bad if s == start_stage else 0
            stop = False
            for e in range(first, stage.epochs):
                if self._out_of_time(s, stage):
                    stop = True
                    break
                te = time.perf_counter()
                tr = train_one_epoch(net, make_train(seed * 1000 + global_epoch), self.loss_fn, optimizer,
                                     self.prec, schedule=schedule, scaler=self.scaler,
                                     accum_steps=t.accum_steps, clip_grad=t.clip_grad, forward=forward,
                                     progress=cfg.output.progress and self.dist.is_main,
                                     desc=f"fold {self.k} s{s + 1} e{e + 1}/{stage.epochs}")
                out = validate(net)
                score = M.score_outputs(self.metric, self.task, y_val, out, self.data.n_classes)
                improved = best is None or M.is_better(self.metric, score, best["score"])
                row = {"fold": self.k, "stage": s, "epoch": e, "global_epoch": global_epoch,
                       "train_loss": tr["loss"], "val_loss": _val_loss(self.task, y_val, out), "score": score,
                       "img_s": tr["img_s"] * self.dist.world_size, "cached_features": forward is not None,
                       "seconds": time.perf_counter() - te,
                       **{f"lr_{k}": v for k, v in current_lrs(optimizer).items()}}
                self.history.append(row)
                bad = 0 if improved else bad + 1
                if improved:
                    best = {"score": score, "epoch": global_epoch}
                schedule.step_epoch(score)
                if self.dist.is_main:
                    if improved:
                        save_torch({"model": self.model.state_dict(), "score": score, "epoch": global_epoch},
                                   self.paths.best)
                    self._save_last(s, e, optimizer, schedule, best, bad)
                    atomic_write_csv(self.paths.history, pd.DataFrame(self.history))
                self._log_epoch(row, stage, improved)
                if self.on_epoch is not None:
                    self.on_epoch(self.k, global_epoch, score)
                global_epoch += 1
                if t.early_stopping and bad >= t.early_stopping:
                    self.log(f"fold {self.k}: early stop in stage {s + 1} after {bad} epochs without improvement")
                    global_epoch += stage.epochs - e - 1
                    break
            if stop:
                break
        if self.writer:
            self.writer.close()
        barrier(self.dist)  # rank 0's best.pt is complete before every rank reloads it
        return self._finish(best)

    def _out_of_time(self, s: int, stage) -> bool:
        """True when train.time_limit is set and the next epoch of stage `s` (estimated by this
        stage's last epoch, else the last epoch that trained as much of the backbone) would end past it."""
        limit = self.cfg.train.time_limit
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

    def _log_epoch(self, row: dict, stage, improved: bool) -> None:
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

    def _finish(self, best: dict | None) -> dict:
        """Reload the best weights, predict validation + test rows (with TTA), save preds.npz."""
        if best is None:
            raise RuntimeError(f"fold {self.k}: no epoch was trained (all stages have 0 epochs?)")
        state = torch.load(self.paths.best, map_location=self.prec.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        t0, d, tta = time.perf_counter(), self.data, self.cfg.predict.tta
        val_out = self._predict(self.model, d.train_images, d.val_idx, d.eval_tf, tta=tta)
        test_out = self._predict(self.model, d.test_images, d.test_idx, d.eval_tf, tta=tta)
        full = [r["img_s"] for r in self.history if not r["cached_features"]]
        info = {"best_score": float(best["score"]), "best_epoch": int(best["epoch"]),
                "tta_score": M.score_outputs(self.metric, self.task, d.y[d.val_idx], val_out, d.n_classes),
                # epochs (kept in history across resumes) + final predictions
                "seconds": sum(r["seconds"] for r in self.history) + time.perf_counter() - t0,
                "train_img_s": float(np.median(full)) if full else float("nan")}
        if self.dist.is_main:
            save_npz(self.paths.preds, val_idx=d.val_idx, val=val_out, test=test_out)
            atomic_write_json(self.paths.result, info)
        return info
