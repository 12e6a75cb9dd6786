"""Acquisition-shift benchmark: a fold's held-out rows scored plain and under fixed camera-like shifts.

Per test-time adaptation and per run, so what helps on a test set taken differently is decided on labels you have.

    python scripts/shift_bench.py --competition chest_xray --runs efficientnet_lite0-t60m \\
        --max-rows 600 --threads 1 --out shift_bench.md
    python scripts/shift_bench.py --competition chest_xray --runs-dir runs --runs efficientnet_lite0-t60m \\
        --cfg configs/chest_xray/efficientnet_lite0.yaml --train-dir bench-runs --adapt none,bn \\
        --set 'stages=[{epochs: 2, train: head, augment: false}, {epochs: 4, train: 5}]' \\
        --train plain= --train 'mix=augment.mix={mixup_alpha: 0.2, cutmix_alpha: 1.0}' \\
        --train 'ema=train.ema={decay: 0.999}'

Each run's fold k model (fold<k>/best.pt, built from the run's config.yaml as training built it) predicts
fold k's validation rows of folds.csv, which it never trained on (--max-rows: a class-stratified subsample).
Every image takes the path of a test image: decoded (ensemble.data.images.decode), then shifted at its
original resolution as a camera would, resized to the run's input size (images.resize), the eval
augmentation, the run's TTA views (ensemble.train.engine.predict) and, per --adapt mode, the test-time
adaptation of predict.adapt (ensemble.train.adapt.adapt_model with the run's batch size), adapted on the
shifted held-out images themselves as it would be on a test set. Unshifted and unadapted, the bench thus
reproduces the fold's stored validation predictions (the report says by how much).

--train VARIANT=KEY=VALUE;KEY=VALUE first trains fold k of --cfg with these overrides (and every --set)
into <train-dir>/<competition>/<config name>-VARIANT through the normal train_run (resumable), on the
folds.csv of --runs-dir (copied into --train-dir when it has none), so variants are compared on the same
held-out rows with the same epochs. The tables (markdown, stdout and --out) give per run and per metric
(the competition's, then --also) a row per shift and a column per adaptation, each cell with its
difference to the plain unadapted score, then the mean and the worst over the shifts.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import torch  # noqa: E402

from ensemble import metrics as M  # noqa: E402
from ensemble.artifacts import CompetitionPaths, FoldPaths, RunPaths, atomic_path, atomic_write_text, file_hash  # noqa: E402
from ensemble.cli import Parser, add_verbosity, int_at_least, setup_logging  # noqa: E402
from ensemble.config import ConfigError, load_config  # noqa: E402
from ensemble.config.loader import parse_overrides  # noqa: E402
from ensemble.data.augment import build_transforms  # noqa: E402
from ensemble.data.competition import load_competition  # noqa: E402
from ensemble.data.datasets import CachedDataset, make_loader  # noqa: E402
from ensemble.data.folds import read_folds  # noqa: E402
from ensemble.data.images import ImageError, decode, resize  # noqa: E402
from ensemble.models import build_model  # noqa: E402
from ensemble.models.weights import load_torch  # noqa: E402
from ensemble.registry import Registry  # noqa: E402
from ensemble.train.adapt import ADAPTERS, Adaptation, adapt_model  # noqa: E402
from ensemble.train.engine import predict, resolve_device, resolve_precision  # noqa: E402
from ensemble.train.plan import build_fold_plan  # noqa: E402
from ensemble.train.setup import model_kwargs  # noqa: E402

logger = logging.getLogger("ensemble.shift_bench")


# ---------------------------------------------------------------- the shifts
@dataclass(frozen=True)
class Shift:
    """One acquisition shift: a label for the table and the albumentations transform (fixed parameters:
    the same image always gives the same output) applied to the decoded (H, W, 3) uint8 RGB image."""
    label: str
    make: Callable[[], A.BasicTransform | None]


SHIFTS: Registry[Shift] = Registry("shift")
PLAIN = "plain"
_SCALE = {"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}
SHIFTS.register(PLAIN, Shift("plain", lambda: None))
for _g in (0.7, 1.5):  # output = input ** gamma on 0..1: 0.7 brightens the mid-tones, 1.5 darkens them
    SHIFTS.register(f"gamma{_g}", Shift(f"gamma {_g}", lambda g=_g: A.RandomGamma((g * 100, g * 100), p=1)))
for _c in (0.7, 1.4):  # deviations from the mean grey level scaled (torchvision's contrast): the mean stays
    SHIFTS.register(f"contrast{_c}", Shift(f"contrast x{_c}", lambda c=_c: A.ColorJitter(
        brightness=(1, 1), contrast=(c, c), saturation=(1, 1), hue=(0, 0), p=1)))
for _s in (1, 2):  # sigma in pixels of the original image; the kernel size follows from sigma
    SHIFTS.register(f"blur{_s}", Shift(f"Gaussian blur sigma {_s}", lambda s=_s: A.GaussianBlur(
        blur_limit=0, sigma_limit=(s, s), p=1)))
for _q in (30, 10):
    SHIFTS.register(f"jpeg{_q}", Shift(f"JPEG quality {_q}", lambda q=_q: A.ImageCompression(
        quality_range=(q, q), p=1)))
for _f in (0.5, 0.25):  # a lower-resolution sensor: down (area), then back up (bilinear)
    SHIFTS.register(f"downup{_f}", Shift(f"down x{_f} then up", lambda f=_f: A.Downscale(
        scale_range=(f, f), interpolation_pair=_SCALE, p=1)))
for _p in (10, 20):  # tighter framing: the share of the height and width cut from each border, resized back
    SHIFTS.register(f"crop{_p}", Shift(f"border crop {_p}%", lambda p=_p: A.CropAndPad(
        percent=-p / 100, keep_size=True, sample_independently=False, p=1)))


def apply_shift(name: str, img: np.ndarray) -> np.ndarray:
    """A decoded (H, W, 3) uint8 RGB image under shift `name` (same shape and dtype)."""
    tf = SHIFTS.get(name).make()
    return img if tf is None else tf(image=img)["image"]


def shifted_images(paths: Sequence[str], shift: str, sizes: Sequence[int]) -> dict[int, np.ndarray]:
    """Each image decoded as training decodes it, shifted, resized to every size. -> {size: (N, S, S, 3) uint8}.
    An unreadable file is an ImageError naming it (its row is a validation row of the fold)."""
    tf = SHIFTS.get(shift).make()
    out = {s: np.empty((len(paths), s, s, 3), np.uint8) for s in sizes}
    for i, p in enumerate(paths):
        img = decode(p)[0]
        img = img if tf is None else tf(image=img)["image"]
        for s in sizes:
            out[s][i] = resize(img, s)
    return out


# ---------------------------------------------------------------- second views
SHARE_GAP = "share_gap"


def share_gap(y: np.ndarray, probs: np.ndarray) -> float:
    """Half the L1 distance between the predicted (argmax) and the true class shares of (N,) labels and
    (N, C) probabilities: 0 when every class is predicted as often as it occurs, 1 when only absent classes
    are. A steady AUC beside a growing gap is a shifted threshold (what priors or a bias fix), not lost ranking."""
    c = probs.shape[1]
    return 0.5 * float(np.abs(np.bincount(probs.argmax(1), minlength=c) - np.bincount(y, minlength=c)).sum()) / len(y)


def check_view(name: str) -> None:
    """A second view is share_gap or a registered metric (ValueError listing them otherwise)."""
    if name != SHARE_GAP:
        M.get_metric(name)


def greater_is_better(name: str) -> bool:
    return name != SHARE_GAP and M.get_metric(name).greater_is_better


# ---------------------------------------------------------------- runs and rows
@dataclass
class BenchModel:
    """Fold k of one run, as its training predicted its validation rows."""
    name: str
    run_dir: Path
    fold: int
    model: torch.nn.Module
    size: int
    eval_tf: object  # albumentations Compose (augment.eval)
    tta: list[str]
    adapt: Adaptation  # the run's predict.adapt settings (batch size, Tent steps and LR); the method is overridden
    eval_batch: int
    task: str  # classification | ordinal
    activation: str  # softmax | identity
    prec: object  # engine.Precision


def load_bench_model(run_dir: Path, k: int, competition: str, n_classes: int, folds_hash: str,
                     device: str = "auto") -> BenchModel:
    """The run's model (config.yaml: backbone, head, drop rates as training built it) with fold k's best.pt,
    eval mode. Raises ValueError naming the file: not a run of `competition`, trained on another folds.csv
    (run.json's folds_hash differs from `folds_hash`), or fold k without a best checkpoint."""
    paths = RunPaths(run_dir)
    if not paths.config.is_file():
        raise ValueError(f"{run_dir}: not a run (no config.yaml)")
    cfg = load_config(paths.config)
    if cfg.competition.name != competition:
        raise ValueError(f"{paths.config}: a run of '{cfg.competition.name}', not of '{competition}'")
    if not paths.state.is_file() or json.loads(paths.state.read_text()).get("folds_hash") != folds_hash:
        raise ValueError(f"{paths.state}: the run was trained on another folds.csv than the one the held-out rows "
                         f"come from (folds_hash differs): fold {k}'s rows would not be held out")
    best = FoldPaths(paths.fold_dir(k)).best
    if not best.is_file():
        raise ValueError(f"{best}: missing (fold {k} of run '{run_dir.name}' has no best checkpoint yet)")
    plan = build_fold_plan(cfg)
    dev = resolve_device(device)
    prec = resolve_precision(dev, cfg.train.amp, cfg.train.channels_last)
    out_dim = 1 if plan.task == "ordinal" else n_classes
    model = build_model(cfg.model.backbone, out_dim, **{**model_kwargs(cfg), "pretrained": False})
    model.load_state_dict(load_torch(best, map_location="cpu")["model"], strict=True)
    model = model.to(dev).eval()
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return BenchModel(run_dir.name, run_dir, k, model, cfg.input.size, build_transforms(cfg.augment.eval),
                      list(plan.tta), plan.adapt, plan.eval_batch_size or 2 * plan.batch_size, plan.task,
                      plan.activation, prec)


def held_out_rows(folds: np.ndarray, y: np.ndarray, k: int, max_rows: int | None, seed: int = 0) -> np.ndarray:
    """(V,) sorted train rows of fold k; with max_rows, a subsample keeping the class shares (stratified)."""
    rows = np.flatnonzero(folds == k)
    if not len(rows):
        raise ValueError(f"fold {k} has no rows in folds.csv")
    if max_rows is None or max_rows >= len(rows):
        return rows
    from sklearn.model_selection import train_test_split
    counts = np.bincount(y[rows])
    strat = y[rows] if counts[counts > 0].min() >= 2 else None
    keep, _ = train_test_split(rows, train_size=max_rows, stratify=strat, random_state=seed)
    return np.sort(keep)


def fold_predictions(bm: BenchModel, images: np.ndarray, modes: Sequence[str]) -> dict[str, np.ndarray]:
    """{mode: (N, C) probabilities (or (N, 1) scores)} of `images` (N, S, S, 3): the model adapted by each
    mode on these images, in its adaptation batches (as fold training adapts to the test images), then
    predicted with the run's TTA views."""
    ds = CachedDataset(images, np.arange(len(images)), None, bm.eval_tf)
    batches = lambda: make_loader(ds, bm.adapt.batch_size, shuffle=False, num_workers=0, pin_memory=False)
    out = {}
    for mode in modes:
        net = adapt_model(bm.model, batches, replace(bm.adapt, method=mode), bm.prec, bm.activation)
        loader = make_loader(ds, bm.eval_batch, shuffle=False, num_workers=0, pin_memory=False)
        out[mode] = predict(net, loader, bm.prec, tta=bm.tta, activation=bm.activation)
    return out


# ---------------------------------------------------------------- the bench
@dataclass
class RunTable:
    """Scores of one run: scores[metric][shift][mode]."""
    model: BenchModel
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    recorded: float | None = None  # fold k's score on all its rows as training recorded it (result.json)
    reproduced: float | None = None  # max |p - stored p| of plain / none vs the fold's preds.npz rows
    seconds: float = 0.0


@dataclass
class BenchResult:
    competition: str
    fold: int
    rows: np.ndarray  # (V,) train rows scored
    of_rows: int  # the fold's validation rows before subsampling
    class_counts: dict[str, int]
    metrics: list[str]  # the competition metric's text, then the second views
    shifts: list[str]
    modes: list[str]
    tables: list[RunTable]


def _stored(run_dir: Path, k: int, rows: np.ndarray) -> np.ndarray | None:
    """The fold's stored validation predictions of `rows` (preds.npz), or None before the fold finished."""
    path = FoldPaths(RunPaths(run_dir).fold_dir(k)).preds
    if not path.is_file():
        return None
    with np.load(path) as z:
        where = {int(r): i for i, r in enumerate(z["val_idx"])}
        if not all(int(r) in where for r in rows):
            return None
        return z["val"][[where[int(r)] for r in rows]]


def _recorded(run_dir: Path, k: int) -> float | None:
    path = FoldPaths(RunPaths(run_dir).fold_dir(k)).result
    return json.loads(path.read_text()).get("tta_score") if path.is_file() else None


def run_bench(competition: str, run_dirs: Sequence[Path], folds_csv: Path, *, fold: int = 0,
              modes: Sequence[str] = ("none", "bn", "tent"), shifts: Sequence[str] | None = None,
              also: Sequence[str] = ("roc_auc", SHARE_GAP), max_rows: int | None = None, seed: int = 0,
              device: str = "auto") -> BenchResult:
    """Score fold `fold`'s held-out rows of every run, plain and under every shift, per adaptation mode.
    Everything is checked (runs, checkpoints, folds, names) before the first image is decoded."""
    shifts = list(shifts or SHIFTS)
    if PLAIN not in shifts:
        shifts.insert(0, PLAIN)
    for name in shifts:
        SHIFTS.get(name)
    for name in modes:
        ADAPTERS.get(name)
    for name in also:
        check_view(name)
    if not run_dirs:
        raise ValueError("no runs to benchmark")
    first = RunPaths(run_dirs[0]).config
    if not first.is_file():
        raise ValueError(f"{run_dirs[0]}: not a run (no config.yaml)")
    comp = load_competition(load_config(first).competition)
    n_classes = len(comp.classes)
    if not folds_csv.is_file():
        raise ValueError(f"{folds_csv}: missing (the held-out rows are a fold of the runs' folds.csv)")
    folds = read_folds(folds_csv, comp.train["id"].to_numpy())
    if not 0 <= fold <= int(folds.max()):
        raise ValueError(f"--fold {fold}: {folds_csv} has folds 0..{int(folds.max())}")
    digest = file_hash(folds_csv)
    models = [load_bench_model(Path(d), fold, competition, n_classes, digest, device) for d in run_dirs]
    ordinal = [bm.name for bm in models if bm.activation != "softmax"]
    if ordinal and "tent" in modes:
        raise ValueError(f"run '{ordinal[0]}' regresses a score: tent minimises the entropy of class probabilities "
                         f"(use --adapt none,bn)")
    also = [] if ordinal else list(also)
    y = comp.train["y"].to_numpy()
    rows = held_out_rows(folds, y, fold, max_rows, seed)
    metric = comp.metric
    names = [str(metric), *also]
    tables = [RunTable(bm, {m: {} for m in names}, _recorded(bm.run_dir, fold)) for bm in models]
    paths, yv = comp.train["path"].to_numpy()[rows].tolist(), y[rows]
    sizes = sorted({bm.size for bm in models})
    logger.info(f"shift bench: {len(rows)} held-out rows of fold {fold} ({int((folds == fold).sum())} in all), "
                f"{len(models)} run(s), {len(shifts)} shifts x {len(modes)} adaptations")
    for shift in shifts:
        t0 = time.perf_counter()
        images = shifted_images(paths, shift, sizes)
        for t in tables:
            t1 = time.perf_counter()
            outs = fold_predictions(t.model, images[t.model.size], modes)
            for mode, out in outs.items():
                t.scores[names[0]].setdefault(shift, {})[mode] = metric.score_outputs(t.model.task, yv, out)
                for m in also:
                    t.scores[m].setdefault(shift, {})[mode] = share_gap(yv, out) if m == SHARE_GAP else M.score(
                        m, yv, out)
            if shift == PLAIN and "none" in outs:
                stored = _stored(t.model.run_dir, fold, rows)
                t.reproduced = None if stored is None else float(np.abs(stored - outs["none"]).max())
            t.seconds += time.perf_counter() - t1
            logger.info(f"{shift:>10s} {t.model.name}: " + " ".join(
                f"{mode} {t.scores[names[0]][shift][mode]:.4f}" for mode in modes) + f" ({time.perf_counter() - t1:.0f}s)")
        logger.debug(f"{shift}: {time.perf_counter() - t0:.1f}s")
    counts = {c: int((yv == i).sum()) for i, c in enumerate(comp.classes)}
    return BenchResult(competition, fold, rows, int((folds == fold).sum()), counts, names, shifts, list(modes), tables)


# ---------------------------------------------------------------- the tables
def _cell(v: float, ref: float, same: bool) -> str:
    return f"{v:.4f}" if same else f"{v:.4f} ({v - ref:+.4f})"


def format_tables(res: BenchResult, command: str = "") -> str:
    """Markdown: per run and metric, a row per shift and a column per adaptation (with the difference to
    plain / none), then the mean and the worst over the shifts other than plain. command: shown under the title."""
    shifted = [s for s in res.shifts if s != PLAIN]
    counts = ", ".join(f"{c} {n}" for c, n in res.class_counts.items())
    out = [f"# Acquisition-shift bench: {res.competition}, fold {res.fold}", "",
           *([f"`{command}`", ""] if command else []),
           f"{len(res.rows)} of the fold's {res.of_rows} held-out rows ({counts}); shifts applied to the decoded "
           f"image before the resize; every adaptation adapts on the shifted held-out images themselves. "
           f"Cells: score (difference to plain / none).", ""]
    for t in res.tables:
        bm = t.model
        out += [f"## {bm.name}", "",
                f"{bm.size} px, TTA {'+'.join(bm.tta)}, adaptation batches of {bm.adapt.batch_size} "
                f"(tent: {bm.adapt.steps} steps at lr {bm.adapt.lr:g}); {t.seconds:.0f}s."]
        if t.recorded is not None:
            out[-1] += f" Fold {res.fold}'s score on all its rows as training recorded it: {t.recorded:.4f}."
        if t.reproduced is not None:
            out[-1] += f" Plain / none reproduces the fold's stored predictions of these rows: max |dp| {t.reproduced:.1e}."
        for metric in res.metrics:
            sc = t.scores[metric]
            ref = sc[PLAIN].get("none", sc[PLAIN][res.modes[0]])
            better = greater_is_better(metric)
            out += ["", f"**{metric}**", "", "| shift | " + " | ".join(res.modes) + " |",
                    "|---|" + "---|" * len(res.modes)]
            for s in res.shifts:
                out.append(f"| {SHIFTS[s].label} | " + " | ".join(
                    _cell(sc[s][m], ref, s == PLAIN and m == "none") for m in res.modes) + " |")
            if shifted:
                means = {m: float(np.mean([sc[s][m] for s in shifted])) for m in res.modes}
                worst = {m: (min if better else max)(sc[s][m] for s in shifted) for m in res.modes}
                top = (max if better else min)(means.values())
                out.append(f"| **mean of {len(shifted)} shifts** | " + " | ".join(
                    ("**" + _cell(means[m], ref, False) + "**") if means[m] == top else _cell(means[m], ref, False)
                    for m in res.modes) + " |")
                out.append("| worst shift | " + " | ".join(_cell(worst[m], ref, False) for m in res.modes) + " |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- training variants
def parse_variant(text: str) -> tuple[str, dict]:
    """'mix=augment.mix={mixup_alpha: 0.2};train.seed=1' -> ('mix', {'augment.mix': {...}, 'train.seed': 1})."""
    name, sep, sets = text.partition("=")
    name = name.strip()
    if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--train: expected VARIANT=KEY=VALUE;KEY=VALUE (VARIANT: letters, digits, - or _; "
                          f"nothing after = for the config as it is), got {text!r}")
    return name, parse_overrides([s for s in sets.split(";") if s.strip()])


def train_variants(cfg_path: str | Path, variants: Sequence[tuple[str, dict]], shared: dict, fold: int,
                   competition: str, train_dir: Path, folds_csv: Path) -> list[Path]:
    """Train fold `fold` of `cfg_path` once per variant (its overrides after `shared`) into
    <train_dir>/<competition>/<config name>-<variant> (train_run, resumed where interrupted; a finished fold
    is kept), on the folds of `folds_csv`. -> the run folders. Every config is checked first."""
    cfgs = []
    for name, sets in variants:
        base = load_config(cfg_path, {**shared, **sets})
        if base.competition.name != competition:
            raise ConfigError(f"{cfg_path}: a config of '{base.competition.name}', not of '{competition}'")
        cfgs.append(load_config(cfg_path, {**shared, **sets, "output.runs_dir": str(train_dir),
                                           "name": f"{base.run_name}-{name}"}))
    if fold >= cfgs[0].folds.n:
        raise ConfigError(f"--fold {fold}: {cfg_path} has folds.n={cfgs[0].folds.n} (folds 0..{cfgs[0].folds.n - 1})")
    names = [c.run_name for c in cfgs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--train: two variants give the same run name ({', '.join(names)})")
    dest = CompetitionPaths(Path(train_dir) / competition).folds
    if dest.resolve() != folds_csv.resolve():
        if not folds_csv.is_file():
            raise ConfigError(f"{folds_csv}: missing; the variants train on the held-out fold of the runs' folds.csv")
        if dest.is_file() and file_hash(dest) != file_hash(folds_csv):
            raise ConfigError(f"{dest} differs from {folds_csv}: the variants would hold out other rows")
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                shutil.copyfile(folds_csv, tmp)
            logger.info(f"copied {folds_csv} to {dest}: variants train on the same folds")
    from ensemble.train.run import train_run
    out = []
    for cfg in cfgs:
        logger.info(f"training variant {cfg.run_name}, fold {fold}")
        out.append(train_run(cfg, folds=[fold], resume=True).run_dir)
    return out


# ---------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python scripts/shift_bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--competition", required=True)
    p.add_argument("--runs", default="", help="runs to score, comma-separated names under RUNS_DIR/<competition>/")
    p.add_argument("--runs-dir", default="runs", help="where the runs and folds.csv are (only read; default runs)")
    p.add_argument("--fold", type=int_at_least(0), default=0, help="the held-out fold (default 0)")
    p.add_argument("--adapt", default="none,bn,tent", help="adaptation modes, comma-separated (default none,bn,tent)")
    p.add_argument("--shifts", default="", help=f"shifts to score beside plain (default all: {', '.join(list(SHIFTS)[1:])})")
    p.add_argument("--also", default=f"roc_auc,{SHARE_GAP}",
                   help=f"second views, comma-separated: metrics, or {SHARE_GAP} (how far the predicted class shares "
                        f"are from the true ones); default roc_auc,{SHARE_GAP}; '' for none; dropped for ordinal runs")
    p.add_argument("--max-rows", type=int_at_least(2), help="score a class-stratified subsample of the fold's rows")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-rows subsample")
    p.add_argument("--threads", type=int_at_least(1), help="torch and OpenCV CPU threads")
    p.add_argument("--device", default="auto")
    p.add_argument("--cfg", help="model config that --train variants start from")
    p.add_argument("--train", action="append", default=[], metavar="VARIANT=KEY=VALUE;...",
                   help="train fold --fold of --cfg with these overrides first, then score it too (repeatable)")
    p.add_argument("--set", dest="shared", action="append", default=[], metavar="KEY=VALUE",
                   help="an override of every --train variant (e.g. the stages, train.time_limit=null)")
    p.add_argument("--train-dir", help="runs dir the variants are trained into (default --runs-dir)")
    p.add_argument("--out", help="also write the markdown tables to this file")
    add_verbosity(p)
    return p


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    setup_logging(a.verbose - a.quiet)
    if a.threads:
        torch.set_num_threads(a.threads)
        cv2.setNumThreads(a.threads)
    try:
        comp_dir = Path(a.runs_dir) / a.competition
        runs = [comp_dir / r for r in _names(a.runs)]
        missing = [str(r) for r in runs if not r.is_dir()]
        if missing:
            raise ValueError(f"run folder not found: {missing[0]}")
        for name in [*_names(a.shifts), PLAIN]:
            SHIFTS.get(name)
        for name in _names(a.adapt) or ["none"]:
            ADAPTERS.get(name)
        for name in _names(a.also):
            check_view(name)
        variants = [parse_variant(v) for v in a.train]
        if variants and not a.cfg:
            raise ValueError("--train needs --cfg (the config the variants start from)")
        if not runs and not variants:
            raise ValueError("nothing to score: give --runs and/or --train")
        folds_csv = CompetitionPaths(comp_dir).folds
        if variants:
            runs += train_variants(a.cfg, variants, parse_overrides(a.shared), a.fold, a.competition,
                                   Path(a.train_dir or a.runs_dir), folds_csv)
        res = run_bench(a.competition, runs, folds_csv, fold=a.fold, modes=_names(a.adapt) or ["none"],
                        shifts=_names(a.shifts) or None, also=_names(a.also), max_rows=a.max_rows, seed=a.seed,
                        device=a.device)
    except (ValueError, FileNotFoundError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = format_tables(res, " ".join(["python scripts/shift_bench.py", *map(shlex.quote, argv or sys.argv[1:])]))
    print(text)
    if a.out:
        atomic_write_text(a.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
