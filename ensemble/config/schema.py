"""The config schema: one frozen dataclass per YAML section (see README, "Config").

Fields with their own syntax carry a `parse` hook in their metadata (metric text, TTA views,
registry-backed names); ensemble.config.loader applies it while building the dataclasses. Numbers and
choices carry their `range` (or `items`: each list item's) in their metadata (ensemble.config.ranges),
checked once the config is built (ensemble.config.checks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ensemble.config.ranges import (CLASS_WEIGHTS, DEVICE, FOCAL_ALPHA, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE,
                                    POSITIVE_INT, STAGE_TRAIN, UNIT_CLOSED, UNIT_INTERIOR, UNIT_LEFT_OPEN, UNIT_OPEN,
                                    int_at_least, not_empty)


class ConfigError(ValueError):
    """A bad config file, key or value."""


# ---------------------------------------------------------------- schema
def _metric_field(value) -> str:
    """`metric: roc_auc` or `metric: {name: roc_auc, classes: [MEL, NV]}` -> the canonical text form,
    checked against the metric registry (plugins are loaded before configs)."""
    from ensemble.metrics import metric_text
    return metric_text(value)


def _tta_field(value) -> list[str]:
    """`tta: [d4, scale1.25]` -> the expanded, checked list of views."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of TTA view names, got {value!r}")
    from ensemble.registry import validate
    return validate("TTA views", value)


def _lr_field(value):
    """A learning rate: a number > 0 (strings like 1e-3 are numbers; other types: the type check)."""
    try:
        lr = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        return value
    if lr is not None and not (lr > 0 and lr < float("inf")):
        raise ValueError(f"a learning rate must be > 0, got {value!r}")
    return value


def _augment_field(value):
    """A preset name or a list of transforms, checked by building the pipeline once."""
    if isinstance(value, (str, list)):
        from ensemble.registry import validate
        validate("augmentation", value)
    return value


def _names(kind: str):
    from ensemble.registry import names
    return names(kind)


@dataclass(frozen=True)
class CompetitionCfg:
    name: str
    root: str
    train_csv: str = "train.csv"
    sample_submission: str = "sample_submission.csv"
    train_dir: str = "train"
    test_dir: str = "test"
    id_col: str = "id"
    label_col: str = "label"
    group_col: str | None = None
    ext: str = ""
    layout: Literal["csv", "folders"] = "csv"
    classes: list[str] | None = None
    metric: str = field(default="accuracy", metadata={"parse": _metric_field})  # name, text or mapping
    task: Literal["classification", "ordinal"] = "classification"


@dataclass(frozen=True)
class FoldsCfg:
    n: int = field(default=5, metadata={"range": int_at_least(
        2, "an integer >= 2 (K-fold cross-validation needs at least 2 folds)")})
    seed: int = 42
    dups: bool = True
    strategy: Literal["stratified", "test_like"] = "stratified"  # test_like: fold 0 = most test-like rows (shift)


@dataclass(frozen=True)
class InputCfg:
    size: int = field(default=128, metadata={"range": POSITIVE_INT})
    bad_images: Literal["fail", "skip"] = "fail"
    cache: bool = True
    # images whose header declares more pixels are not decoded (unreadable); Pillow's decompression-bomb
    # threshold (~9459 x 9459); null: no limit
    max_pixels: int | None = field(default=89_478_485, metadata={"range": POSITIVE_INT})


@dataclass(frozen=True)
class HeadCfg:
    hidden: list[int] = field(default_factory=list, metadata={"items": POSITIVE_INT})
    batchnorm: bool = False
    dropout: float = field(default=0.0, metadata={"range": UNIT_OPEN})
    activation: str = field(default="relu", metadata={"parse": _names("activation")})


@dataclass(frozen=True)
class ModelCfg:
    backbone: str = field(default="resnet18", metadata={"parse": _names("backbone")})  # friendly or timm name
    pretrained: bool | str = False
    # how a `pretrained` file's keys map to timm's (ensemble.models.weights.KEY_MAPPINGS)
    weights_map: str = field(default="identity", metadata={"parse": _names("weights_map")})
    drop_rate: float = field(default=0.0, metadata={"range": UNIT_OPEN})
    drop_path_rate: float = field(default=0.0, metadata={"range": UNIT_OPEN})
    head: HeadCfg = field(default_factory=HeadCfg)


@dataclass(frozen=True)
class LossCfg:
    name: str = field(default="ce", metadata={"parse": _names("loss")})
    label_smoothing: float = field(default=0.0, metadata={"range": UNIT_OPEN})
    class_weights: str | list[float] | None = field(default=None, metadata={"range": CLASS_WEIGHTS})
    gamma: float = field(default=2.0, metadata={"range": NON_NEGATIVE})
    alpha: float | list[float] | None = field(default=None, metadata={"range": FOCAL_ALPHA})


@dataclass(frozen=True)
class LRCfg:
    backbone: float = field(default=1e-4, metadata={"parse": _lr_field})
    head: float = field(default=1e-3, metadata={"parse": _lr_field})


@dataclass(frozen=True)
class OptimCfg:
    name: str = field(default="adamw", metadata={"parse": _names("optimizer")})
    lr: LRCfg = field(default_factory=LRCfg)
    weight_decay: float = field(default=1e-4, metadata={"range": NON_NEGATIVE})
    momentum: float = field(default=0.9, metadata={"range": UNIT_OPEN})
    nesterov: bool = False
    layer_decay: float | None = field(default=None, metadata={"range": UNIT_LEFT_OPEN})


@dataclass(frozen=True)
class ScheduleCfg:
    name: str = field(default="cosine", metadata={"parse": _names("scheduler")})
    warmup_epochs: float = field(default=0.0, metadata={"range": NON_NEGATIVE})
    min_lr_ratio: float = field(default=0.01, metadata={"range": UNIT_CLOSED})
    step_size: int = field(default=5, metadata={"range": POSITIVE_INT})
    gamma: float = field(default=0.1, metadata={"range": UNIT_LEFT_OPEN})
    patience: int = field(default=2, metadata={"range": NON_NEGATIVE_INT})
    factor: float = field(default=0.5, metadata={"range": UNIT_INTERIOR})


@dataclass(frozen=True)
class StageCfg:
    epochs: int = field(metadata={"range": POSITIVE_INT})
    train: int | str = field(default="all", metadata={"range": STAGE_TRAIN})
    lr: LRCfg | None = None
    augment: bool = True
    mix: bool = True  # augment.mix in this stage (never on cached features: head-only epochs without augment)


@dataclass(frozen=True)
class EmaCfg:
    decay: float = field(default=0.999, metadata={"range": UNIT_INTERIOR})
    warmup: bool = True  # timm's decay warmup: 1 - (1 + step)^(-2/3), capped at decay


@dataclass(frozen=True)
class SoftTargetsCfg:
    file: str  # CSV: id + one probability column per class for every training row (e.g. a teacher's OOF)
    alpha: float = field(default=1.0, metadata={"range": UNIT_CLOSED})  # target = alpha * these probabilities + (1 - alpha) * one-hot label


@dataclass(frozen=True)
class TrainCfg:
    batch_size: int = field(default=32, metadata={"range": POSITIVE_INT})
    eval_batch_size: int | None = field(default=None, metadata={"range": POSITIVE_INT})
    accum_steps: int = field(default=1, metadata={"range": POSITIVE_INT})
    clip_grad: float | None = field(default=None, metadata={"range": POSITIVE})
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    early_stopping: int | None = field(default=None, metadata={"range": POSITIVE_INT})
    time_limit: float | None = field(default=None, metadata={"range": POSITIVE})  # seconds of training epochs per fold: no epoch starts that would end past it
    num_workers: int = field(default=2, metadata={"range": NON_NEGATIVE_INT})
    seed: int = 0
    device: str = field(default="auto", metadata={"range": DEVICE})
    sync_bn: bool = False
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    ema: EmaCfg | None = None  # validation, best.pt and predictions use the EMA weights
    extra_rows: str | None = None  # CSV: id, path, one probability column per class, weight; joins every fold's training part
    soft_targets: SoftTargetsCfg | None = None
    keep_last: bool = False  # keep fold<k>/last.pt (optimizer state) once the fold is finished

    @property
    def eval_batch(self) -> int:
        """The batch size of validation and test predictions (and of test-time adaptation)."""
        return self.eval_batch_size or 2 * self.batch_size


@dataclass(frozen=True)
class MixCfg:
    mixup_alpha: float = field(default=0.2, metadata={"range": NON_NEGATIVE})
    cutmix_alpha: float = field(default=1.0, metadata={"range": NON_NEGATIVE})
    prob: float = field(default=1.0, metadata={"range": UNIT_CLOSED})
    switch_prob: float = field(default=0.5, metadata={"range": UNIT_CLOSED})
    label_smoothing: float = field(default=0.0, metadata={"range": UNIT_OPEN})


@dataclass(frozen=True)
class AugmentCfg:
    train: str | list[dict[str, Any]] = field(default="medical", metadata={"parse": _augment_field})
    eval: str | list[dict[str, Any]] = field(default="none", metadata={"parse": _augment_field})
    mix: MixCfg | None = None  # MixUp/CutMix (timm) in stages with `mix: true`


@dataclass(frozen=True)
class PredictCfg:
    # views (none, hflip, vflip, rot90, rot180, rot270, transpose, antitranspose, scaleF, a+b) or groups (d4, flips)
    tta: list[str] = field(default_factory=lambda: ["none"], metadata={"parse": _tta_field})
    # test-time adaptation of each fold model to the test images: none, bn (AdaBN), tent (ensemble.train.adapt)
    adapt: str = field(default="none", metadata={"parse": _names("adaptation")})


@dataclass(frozen=True)
class OutputCfg:
    runs_dir: str = "runs"
    format: Literal["csv", "parquet"] = "csv"
    tensorboard: bool = True
    plots: bool = True
    progress: bool = True


@dataclass(frozen=True)
class Config:
    competition: CompetitionCfg
    name: str | None = None
    folds: FoldsCfg = field(default_factory=FoldsCfg)
    input: InputCfg = field(default_factory=InputCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    loss: LossCfg = field(default_factory=LossCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    schedule: ScheduleCfg = field(default_factory=ScheduleCfg)
    stages: list[StageCfg] = field(default_factory=lambda: [StageCfg(epochs=10)],
                                   metadata={"range": not_empty("at least one stage")})
    train: TrainCfg = field(default_factory=TrainCfg)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    predict: PredictCfg = field(default_factory=PredictCfg)
    output: OutputCfg = field(default_factory=OutputCfg)
    tune: dict[str, Any] = field(default_factory=dict)

    @property
    def run_name(self) -> str:
        return self.name or self.model.backbone

    @property
    def run_dir(self) -> Path:
        return Path(self.output.runs_dir) / self.competition.name / self.run_name

    @property
    def competition_dir(self) -> Path:
        return Path(self.output.runs_dir) / self.competition.name
