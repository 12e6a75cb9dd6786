"""The config schema: one frozen dataclass per YAML section (see README, "Config").

Fields with their own syntax carry a `parse` hook in their metadata (metric text, TTA views,
registry-backed names); ensemble.config.loader applies it while building the dataclasses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


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
    n: int = 5
    seed: int = 42
    dups: bool = True
    strategy: Literal["stratified", "test_like"] = "stratified"  # test_like: fold 0 = most test-like rows (shift)


@dataclass(frozen=True)
class InputCfg:
    size: int = 128
    bad_images: Literal["fail", "skip"] = "fail"
    cache: bool = True
    # images whose header declares more pixels are not decoded (unreadable); Pillow's decompression-bomb
    # threshold (~9459 x 9459); null: no limit
    max_pixels: int | None = 89_478_485


@dataclass(frozen=True)
class HeadCfg:
    hidden: list[int] = field(default_factory=list)
    batchnorm: bool = False
    dropout: float = 0.0
    activation: str = field(default="relu", metadata={"parse": _names("activation")})


@dataclass(frozen=True)
class ModelCfg:
    backbone: str = field(default="resnet18", metadata={"parse": _names("backbone")})  # friendly or timm name
    pretrained: bool | str = False
    weights_map: Literal["identity", "by_order"] = "identity"  # how a `pretrained` file's keys map to timm's
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    head: HeadCfg = field(default_factory=HeadCfg)


@dataclass(frozen=True)
class LossCfg:
    name: str = field(default="ce", metadata={"parse": _names("loss")})
    label_smoothing: float = 0.0
    class_weights: str | list[float] | None = None
    gamma: float = 2.0
    alpha: float | list[float] | None = None


@dataclass(frozen=True)
class LRCfg:
    backbone: float = field(default=1e-4, metadata={"parse": _lr_field})
    head: float = field(default=1e-3, metadata={"parse": _lr_field})


@dataclass(frozen=True)
class OptimCfg:
    name: str = field(default="adamw", metadata={"parse": _names("optimizer")})
    lr: LRCfg = field(default_factory=LRCfg)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    layer_decay: float | None = None


@dataclass(frozen=True)
class ScheduleCfg:
    name: str = field(default="cosine", metadata={"parse": _names("schedule")})
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.01
    step_size: int = 5
    gamma: float = 0.1
    patience: int = 2
    factor: float = 0.5


@dataclass(frozen=True)
class StageCfg:
    epochs: int
    train: int | str = "all"
    lr: LRCfg | None = None
    augment: bool = True
    mix: bool = True  # augment.mix in this stage (never on cached features: head-only epochs without augment)


@dataclass(frozen=True)
class EmaCfg:
    decay: float = 0.999
    warmup: bool = True  # timm's decay warmup: 1 - (1 + step)^(-2/3), capped at decay


@dataclass(frozen=True)
class SoftTargetsCfg:
    file: str  # CSV: id + one probability column per class for every training row (e.g. a teacher's OOF)
    alpha: float = 1.0  # target = alpha * these probabilities + (1 - alpha) * one-hot label


@dataclass(frozen=True)
class TrainCfg:
    batch_size: int = 32
    eval_batch_size: int | None = None
    accum_steps: int = 1
    clip_grad: float | None = None
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    early_stopping: int | None = None
    time_limit: float | None = None  # seconds of training epochs per fold: no epoch starts that would end past it
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"
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
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0


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
    stages: list[StageCfg] = field(default_factory=lambda: [StageCfg(epochs=10)])
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
