"""The config schema: one frozen dataclass per YAML section (docs/config.md is generated from it:
scripts/gen_config_docs.py reads each field's comment as its meaning).

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
    name: str  # the competition's name: its folders runs/<name>/ and submissions/<name>/
    root: str  # the competition's folder (train.csv, sample submission, images), relative to the working directory
    train_csv: str = "train.csv"  # the labelled rows, inside root
    sample_submission: str = "sample_submission.csv"  # inside root: its ids are the test images, its header the submission format
    train_dir: str = "train"  # training images, inside root
    test_dir: str = "test"  # test images, inside root
    id_col: str = "id"  # the id column of train.csv and the sample submission (an image is <dir>/<id><ext>)
    label_col: str = "label"  # the label column of train.csv
    group_col: str | None = None  # rows sharing a value stay in one fold (patient, lesion); null: none
    ext: str = ""  # image file extension added to the ids, e.g. .jpg ("" when the ids carry it)
    layout: Literal["csv", "folders"] = "csv"  # csv: train.csv + train/<id><ext>; folders: train/<class>/<image>
    # class names in order; default: the sample submission's probability columns when it has 2 or more, else the
    # sorted labels (numeric when labels are integers); a sample with some classes only needs every class listed
    classes: list[str] | None = None
    # the competition's metric: a name, `name[param=value]` text or a mapping {name, classes, weights, ...}
    metric: str = field(default="accuracy", metadata={"parse": _metric_field, "names": "metric"})
    task: Literal["classification", "ordinal"] = "classification"  # ordinal: one regressed grade (a `score` column)


@dataclass(frozen=True)
class FoldsCfg:
    # K of K-fold cross-validation
    n: int = field(default=5, metadata={"range": int_at_least(
        2, "an integer >= 2 (K-fold cross-validation needs at least 2 folds)")})
    seed: int = 42  # seed of the fold split (folds.csv is written once per competition)
    dups: bool = True  # keep each near-duplicate group of runs/<competition>/dups.csv in one fold
    strategy: Literal["stratified", "test_like"] = "stratified"  # test_like: fold 0 = most test-like rows (shift)


@dataclass(frozen=True)
class InputCfg:
    # images are resized to size x size once, into the image cache
    size: int = field(default=128, metadata={"range": POSITIVE_INT})
    # an unreadable or missing image: stop listing them all, or drop its rows
    bad_images: Literal["fail", "skip"] = "fail"
    cache: bool = True  # keep the decoded image cache in runs/<competition>/cache/ (false: a temporary one)
    # images whose header declares more pixels are not decoded (unreadable); Pillow's decompression-bomb
    # threshold (~9459 x 9459); null: no limit
    max_pixels: int | None = field(default=89_478_485, metadata={"range": POSITIVE_INT})


@dataclass(frozen=True)
class HeadCfg:
    # widths of the head's hidden layers; []: one linear layer
    hidden: list[int] = field(default_factory=list, metadata={"items": POSITIVE_INT})
    batchnorm: bool = False  # BatchNorm1d after each hidden layer's linear layer
    # dropout after each hidden layer (before the final linear layer when there is none)
    dropout: float = field(default=0.0, metadata={"range": UNIT_OPEN})
    activation: str = field(default="relu", metadata={"parse": _names("activation")})  # of the hidden layers


@dataclass(frozen=True)
class ModelCfg:
    backbone: str = field(default="resnet18", metadata={"parse": _names("backbone")})  # friendly or timm name
    # false, true (ImageNet weights: the hub, its cache, the weights folder, weight packages) or a local
    # .safetensors/.pth file (must exist when the config loads)
    pretrained: bool | str = False
    # how a `pretrained` file's keys map to timm's (ensemble.models.weights.KEY_MAPPINGS)
    weights_map: str = field(default="identity", metadata={"parse": _names("weights_map")})
    # timm's dropout before the backbone's classifier
    drop_rate: float = field(default=0.0, metadata={"range": UNIT_OPEN})
    drop_path_rate: float = field(default=0.0, metadata={"range": UNIT_OPEN})  # timm's stochastic depth rate
    head: HeadCfg = field(default_factory=HeadCfg)  # the MLP head on the pooled backbone features


@dataclass(frozen=True)
class LossCfg:
    name: str = field(default="ce", metadata={"parse": _names("loss")})  # ce, focal; smooth_l1, mse for ordinal
    # share of each target spread over all classes
    label_smoothing: float = field(default=0.0, metadata={"range": UNIT_OPEN})
    # null, auto (inverse class frequency) or one weight per class
    class_weights: str | list[float] | None = field(default=None, metadata={"range": CLASS_WEIGHTS})
    gamma: float = field(default=2.0, metadata={"range": NON_NEGATIVE})  # focal: the focusing exponent
    # focal: one weight per class, or the positive class's for 2 classes
    alpha: float | list[float] | None = field(default=None, metadata={"range": FOCAL_ALPHA})


@dataclass(frozen=True)
class LRCfg:
    backbone: float = field(default=1e-4, metadata={"parse": _lr_field})  # LR of the backbone's parameters (> 0)
    head: float = field(default=1e-3, metadata={"parse": _lr_field})  # LR of the head's parameters (> 0)


@dataclass(frozen=True)
class OptimCfg:
    name: str = field(default="adamw", metadata={"parse": _names("optimizer")})  # the optimizer
    lr: LRCfg = field(default_factory=LRCfg)  # learning rates of the two parameter groups
    # not applied to norm and bias parameters
    weight_decay: float = field(default=1e-4, metadata={"range": NON_NEGATIVE})
    momentum: float = field(default=0.9, metadata={"range": UNIT_OPEN})  # sgd's momentum
    nesterov: bool = False  # sgd: Nesterov momentum (needs momentum > 0)
    # layer-wise LR decay over timm's layer groups (each group toward the input x this)
    layer_decay: float | None = field(default=None, metadata={"range": UNIT_LEFT_OPEN})


@dataclass(frozen=True)
class ScheduleCfg:
    name: str = field(default="cosine", metadata={"parse": _names("scheduler")})  # per stage: a fresh schedule
    # linear warmup at the start of each stage (fractions of an epoch allowed)
    warmup_epochs: float = field(default=0.0, metadata={"range": NON_NEGATIVE})
    # cosine, onecycle, plateau: the lowest LR as a fraction of the stage's LR
    min_lr_ratio: float = field(default=0.01, metadata={"range": UNIT_CLOSED})
    step_size: int = field(default=5, metadata={"range": POSITIVE_INT})  # step: epochs between LR drops
    gamma: float = field(default=0.1, metadata={"range": UNIT_LEFT_OPEN})  # step: the LR's factor at each drop
    # plateau: epochs without improvement before the LR drops
    patience: int = field(default=2, metadata={"range": NON_NEGATIVE_INT})
    factor: float = field(default=0.5, metadata={"range": UNIT_INTERIOR})  # plateau: the LR's factor at each drop


@dataclass(frozen=True)
class StageCfg:
    epochs: int = field(metadata={"range": POSITIVE_INT})  # epochs of this stage
    # head, all, or k: the last k backbone stage groups (k <= the backbone's groups)
    train: int | str = field(default="all", metadata={"range": STAGE_TRAIN})
    lr: LRCfg | None = None  # this stage's learning rates (default: optim.lr)
    augment: bool = True  # train augmentation; false with train: head computes the frozen features once
    mix: bool = True  # augment.mix in this stage (never on cached features: head-only epochs without augment)


@dataclass(frozen=True)
class EmaCfg:
    decay: float = field(default=0.999, metadata={"range": UNIT_INTERIOR})  # the average's decay per optimizer step
    warmup: bool = True  # timm's decay warmup: 1 - (1 + step)^(-2/3), capped at decay


@dataclass(frozen=True)
class SoftTargetsCfg:
    file: str  # CSV: id + one probability column per class for every training row (e.g. a teacher's OOF)
    alpha: float = field(default=1.0, metadata={"range": UNIT_CLOSED})  # target = alpha * these probabilities + (1 - alpha) * one-hot label


@dataclass(frozen=True)
class TrainCfg:
    batch_size: int = field(default=32, metadata={"range": POSITIVE_INT})  # training batch size (per rank under DDP)
    # validation and test batch size (default: 2 x batch_size)
    eval_batch_size: int | None = field(default=None, metadata={"range": POSITIVE_INT})
    # batches per optimizer step (gradient accumulation)
    accum_steps: int = field(default=1, metadata={"range": POSITIVE_INT})
    # clip the gradient norm to this; null: no clipping
    clip_grad: float | None = field(default=None, metadata={"range": POSITIVE})
    # mixed precision on CUDA; auto: bf16 when supported, else fp16
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True  # channels_last memory format on CUDA
    # stop a stage after this many epochs without a better score; null: never
    early_stopping: int | None = field(default=None, metadata={"range": POSITIVE_INT})
    time_limit: float | None = field(default=None, metadata={"range": POSITIVE})  # seconds of training epochs per fold: no epoch starts that would end past it
    num_workers: int = field(default=2, metadata={"range": NON_NEGATIVE_INT})  # data loader worker processes
    seed: int = 0  # seed of weight initialisation, shuffling and augmentation
    # auto (CUDA when available), cpu, cuda, cuda:N, mps
    device: str = field(default="auto", metadata={"range": DEVICE})
    sync_bn: bool = False  # DDP: convert BatchNorm to SyncBatchNorm (CUDA)
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"  # DDP: scale the LRs by the number of ranks
    ema: EmaCfg | None = None  # validation, best.pt and predictions use the EMA weights
    extra_rows: str | None = None  # CSV: id, path, one probability column per class, weight; joins every fold's training part
    soft_targets: SoftTargetsCfg | None = None  # distillation: every training row's target mixed with these probabilities
    keep_last: bool = False  # keep fold<k>/last.pt (optimizer state) once the fold is finished

    @property
    def eval_batch(self) -> int:
        """The batch size of validation and test predictions (and of test-time adaptation)."""
        return self.eval_batch_size or 2 * self.batch_size


@dataclass(frozen=True)
class MixCfg:
    # MixUp's Beta(alpha, alpha) mixing weight; 0: no MixUp
    mixup_alpha: float = field(default=0.2, metadata={"range": NON_NEGATIVE})
    # CutMix's Beta(alpha, alpha) box area; 0: no CutMix
    cutmix_alpha: float = field(default=1.0, metadata={"range": NON_NEGATIVE})
    prob: float = field(default=1.0, metadata={"range": UNIT_CLOSED})  # share of training batches that are mixed
    # share of mixed batches that use CutMix when both alphas are > 0
    switch_prob: float = field(default=0.5, metadata={"range": UNIT_CLOSED})
    label_smoothing: float = field(default=0.0, metadata={"range": UNIT_OPEN})  # label smoothing of the mixed targets


@dataclass(frozen=True)
class AugmentCfg:
    # a preset (medical, dermoscopy, light, none) or a list of albumentations transforms {name: Affine, p: 0.5, ...}
    train: str | list[dict[str, Any]] = field(default="medical", metadata={"parse": _augment_field,
                                                                           "names": "preset"})
    # the same for validation and test images
    eval: str | list[dict[str, Any]] = field(default="none", metadata={"parse": _augment_field,
                                                                       "names": "preset"})
    mix: MixCfg | None = None  # MixUp/CutMix (timm) in stages with `mix: true`


@dataclass(frozen=True)
class PredictCfg:
    # views (none, hflip, vflip, rot90, rot180, rot270, transpose, antitranspose, scaleF, a+b) or groups (d4, flips)
    tta: list[str] = field(default_factory=lambda: ["none"], metadata={"parse": _tta_field, "names": "TTA view"})
    # test-time adaptation of each fold model to the test images: none, bn (AdaBN), tent (ensemble.train.adapt)
    adapt: str = field(default="none", metadata={"parse": _names("adaptation")})


@dataclass(frozen=True)
class OutputCfg:
    runs_dir: str = "runs"  # where runs/<competition>/ lives
    format: Literal["csv", "parquet"] = "csv"  # the oof and test probability files
    tensorboard: bool = True  # TensorBoard scalars in every fold<k>/
    plots: bool = True  # confusion.png and curves.png
    progress: bool = True  # per-epoch progress bars, drawn when stderr is a terminal


@dataclass(frozen=True)
class Config:
    competition: CompetitionCfg  # the competition (usually from base.yaml)
    name: str | None = None  # the run's name: runs/<competition>/<name>/ (default: the backbone)
    folds: FoldsCfg = field(default_factory=FoldsCfg)  # how folds.csv is made
    input: InputCfg = field(default_factory=InputCfg)  # image size and decoding
    model: ModelCfg = field(default_factory=ModelCfg)  # backbone and head
    loss: LossCfg = field(default_factory=LossCfg)  # the training loss
    optim: OptimCfg = field(default_factory=OptimCfg)  # the optimizer
    schedule: ScheduleCfg = field(default_factory=ScheduleCfg)  # the LR schedule of every stage
    # in order; each gets a fresh optimizer
    stages: list[StageCfg] = field(default_factory=lambda: [StageCfg(epochs=10)],
                                   metadata={"range": not_empty("at least one stage")})
    train: TrainCfg = field(default_factory=TrainCfg)  # the training loop
    augment: AugmentCfg = field(default_factory=AugmentCfg)  # augmentation, MixUp/CutMix
    predict: PredictCfg = field(default_factory=PredictCfg)  # test-time augmentation and adaptation
    output: OutputCfg = field(default_factory=OutputCfg)  # what a run writes besides the artifact contract
    # the Optuna search of python -m ensemble.tune (checked by ensemble.tune.space)
    tune: dict[str, Any] = field(default_factory=dict, metadata={"keys": "ensemble.tune.space:TuneSpec"})

    @property
    def run_name(self) -> str:
        return self.name or self.model.backbone

    @property
    def run_dir(self) -> Path:
        return Path(self.output.runs_dir) / self.competition.name / self.run_name

    @property
    def competition_dir(self) -> Path:
        return Path(self.output.runs_dir) / self.competition.name
