"""Fit a whole compete job into a wall-clock budget: measure each candidate's speed, then choose
models, image sizes and epochs (like AutoGluon's ``time_limit``).

    speeds = {c.name: measure_speed(cfg) for c, cfg in ...}          # a few batches each
    plan = make_plan(candidates, speeds, Workload(...), budget_s=3600)
    print(format_plan(plan))

The cost model of one model, per fold (seconds, rates at size s scaled from the measured size by
pixel count, which slightly overestimates large sizes):
    features  (n_train + n_val) / eval_rate          once, when there are head-only epochs
    epoch     n_train / train_rate + n_val / eval_rate
    predict   (n_val + n_test) * views / eval_rate
times ``overhead`` (loaders, augmentation, checkpoints). Allocation: the most candidates (in
priority order, up to ``max_models``) that each get ``min_epochs`` at their smallest size in an
equal share; each then takes the largest size at which ``target_epochs`` still fit, and as many
epochs as fit (at most ``max_epochs``). A twin (same backbone, e.g. scratch vs pretrained) gets its
twin's size and as many epochs as fit in its twin's time, so the two compare at equal time (a
pretrained model that fine-tunes only its last stages, ``train: k``, runs more epochs than the
scratch twin that must train every layer).
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import torch

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*")


def parse_duration(text: str | float | int) -> float:
    """'60m', '1.5h', '90s', '3600' -> seconds."""
    m = _DURATION.fullmatch(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--time expected a positive duration like 60m, 1.5h or 900s, got {text!r}")
    unit = {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    return float(m.group(1)) * unit


@dataclass(frozen=True)
class Candidate:
    """One model the planner may use: its config file, overrides, sizes and recipe."""

    cfg: str
    name: str | None = None
    set: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=lambda: [128])
    head_epochs: int = 0  # head-only epochs on cached frozen features (pretrained backbones)
    partial: int | None = None  # then one epoch training the last `partial` backbone stages (train: k)
    train: int | str = "all"  # what the fine-tuning epochs train: all, or the last k backbone stages
    twin: str | None = None  # train at this candidate's size, in at most its time (equal-time comparison)

    @property
    def label(self) -> str:
        return self.name or self.cfg.split("/")[-1].split(".")[0]


def check_candidate(c: Candidate, key: str, backbone: str, stages: int) -> None:
    """`train:` (all or k) and `partial:` (k) of a time candidate, k in 1..`stages` of its backbone.
    key: where it is, e.g. 'configs/x/compete.yaml: time.candidates[2]'. Raises ValueError."""
    for name, value, allowed in (("train", c.train, "'all'"), ("partial", c.partial, "null")):
        if value is None or (value == "all" and name == "train"):
            continue
        k = int(value) if isinstance(value, str) and value.isdigit() else value
        if isinstance(k, bool) or not isinstance(k, int):
            raise ValueError(f"{key}.{name} {value!r} is unknown; expected {allowed} or the number k of last "
                             f"backbone stages to train (1..{stages} for {backbone})")
        if not 1 <= k <= stages:
            raise ValueError(f"{key}.{name} {k} is out of range for {backbone} (1..{stages} stages or {allowed})")


@dataclass(frozen=True)
class Speed:
    """Measured images/second at ``size``: a training step (fwd + bwd + step) and inference."""

    size: int
    train: float
    eval: float

    def at(self, size: int) -> "Speed":
        scale = (self.size / size) ** 2
        return Speed(size, self.train * scale, self.eval * scale)


@dataclass(frozen=True)
class Workload:
    n_train: int  # labelled rows (all folds)
    n_test: int
    folds: int
    views: int = 1  # TTA views at prediction
    overhead: float = 1.15

    @property
    def n_val(self) -> float:
        return self.n_train / self.folds

    @property
    def n_fit(self) -> float:
        return self.n_train - self.n_val


@dataclass(frozen=True)
class Entry:
    """One planned model: what to train and how long it should take."""

    name: str
    cfg: str
    set: list[str]
    size: int
    head_epochs: int
    epochs: int
    est_seconds: float  # all folds, predictions included
    fold_limit: float  # train.time_limit per fold (seconds of epochs)
    folds: int = 5
    partial: int | None = None  # the first of `epochs` trains only the last `partial` stages
    train: int | str = "all"  # what the (other) fine-tuning epochs train

    def overrides(self) -> list[str]:
        stages = [f"{{epochs: {self.head_epochs}, train: head, augment: false}}"] if self.head_epochs else []
        if self.partial and self.epochs > 1:
            stages.append(f"{{epochs: 1, train: {self.partial}}}")
        stages.append(f"{{epochs: {self.epochs - (1 if self.partial and self.epochs > 1 else 0)}, train: {self.train}}}")
        return [*self.set, f"folds.n={self.folds}", f"input.size={self.size}", f"stages=[{', '.join(stages)}]",
                f"train.time_limit={self.fold_limit:.0f}"]


@dataclass(frozen=True)
class Plan:
    budget_s: float
    available_s: float  # after the reserve for setup, vote and report
    entries: list[Entry]
    speeds: dict[str, dict]

    @property
    def est_seconds(self) -> float:
        return sum(e.est_seconds for e in self.entries)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(d["budget_s"], d["available_s"], [Entry(**e) for e in d["entries"]], d["speeds"])

    def entry(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)


def fold_cost(speed: Speed, w: Workload, head_epochs: int, epochs: int) -> tuple[float, float]:
    """-> (seconds of one fold, of which seconds in training epochs)."""
    feats = (w.n_fit + w.n_val) / speed.eval if head_epochs else 0.0
    head = head_epochs * (w.n_fit / (50 * speed.eval) + 1.0)  # a small MLP on cached features
    epoch = w.n_fit / speed.train + w.n_val / speed.eval
    predict = (w.n_val + w.n_test) * w.views / speed.eval
    train = head + epochs * epoch
    return (feats + train + predict) * w.overhead, train * w.overhead


def _fit(c: Candidate, speed: Speed, w: Workload, share: float, target: int, max_epochs: int
         ) -> tuple[int, int]:
    """-> (size, epochs) for one candidate in ``share`` seconds (all folds)."""
    def epochs_at(size: int) -> int:
        sp = speed.at(size)
        fixed = fold_cost(sp, w, c.head_epochs, 0)[0]
        per_epoch = fold_cost(sp, w, c.head_epochs, 1)[0] - fixed
        return min(max_epochs, int((share / w.folds - fixed) // per_epoch))
    sizes = sorted(c.sizes)
    for size in reversed(sizes):
        e = epochs_at(size)
        if e >= target:
            return size, e
    return sizes[0], max(epochs_at(sizes[0]), 0)


def make_plan(candidates: list[Candidate], speeds: dict[str, Speed], w: Workload, budget_s: float, *,
              folds: Sequence[int] = (), reserve: float = 0.08, reserve_s: float = 30.0, min_epochs: int = 2,
              target_epochs: int = 5, max_epochs: int = 15, max_models: int = 4, limit_slack: float = 1.05,
              twin_time: dict[str, tuple[int, float]] | None = None, fallback: bool = True) -> Plan:
    """Choose folds, models, sizes and epochs that fit ``budget_s`` (see the module docstring).

    folds: fold counts to try in order (default: w.folds); the first with which the first
    candidate gets ``target_epochs`` at its smallest size wins, else the last.
    twin_time: {name: (size, seconds)} of models planned before, for twins of theirs.
    fallback: when no candidate gets ``min_epochs``, plan the first with what fits (else nothing).
    """
    available = budget_s * (1 - reserve) - reserve_s
    if available <= 0:
        raise ValueError(f"a budget of {budget_s:.0f}s leaves no time to train after the reserve "
                         f"({budget_s * reserve + reserve_s:.0f}s for setup, vote and report)")
    options = list(folds) or [w.folds]
    for n in options:
        w = replace(w, folds=n)
        c = candidates[0]
        if _fit(c, speeds[c.label], w, available, target_epochs, max_epochs)[1] >= target_epochs:
            break
    return _allocate(candidates, speeds, w, available, budget_s, min_epochs, target_epochs, max_epochs,
                     max_models, limit_slack, twin_time or {}, fallback)


def _allocate(candidates, speeds, w: Workload, available: float, budget_s: float, min_epochs: int,
              target_epochs: int, max_epochs: int, max_models: int, limit_slack: float,
              twin_time: dict[str, tuple[int, float]], fallback: bool) -> Plan:
    chosen: list[tuple[Candidate, int, int]] = []
    for m in range(min(len(candidates), max_models), 0, -1):
        share = available / m
        chosen = []
        for c in candidates[:m]:
            twin = next((x for x in chosen if x[0].label == c.twin), None)
            if twin is not None or c.twin in twin_time:  # the twin's size, and the epochs that fit in its time
                if twin is not None:
                    size = twin[1]
                    twin_s = w.folds * fold_cost(speeds[twin[0].label].at(size), w, twin[0].head_epochs, twin[2])[0]
                else:
                    size, twin_s = twin_time[c.twin]
                e = max_epochs
                while e > 0 and w.folds * fold_cost(speeds[c.label].at(size), w, c.head_epochs, e)[0] > min(share, twin_s):
                    e -= 1
            else:
                size, e = _fit(c, speeds[c.label], w, share, target_epochs, max_epochs)
            if e < min_epochs:
                break
            chosen.append((c, size, e))
        if len(chosen) == m:
            break
    if not chosen and not fallback:
        return Plan(budget_s, available, [], {k: asdict(v) for k, v in speeds.items()})
    if not chosen:  # not even one model gets min_epochs: the first one, with what fits
        c = candidates[0]
        size, e = _fit(c, speeds[c.label], w, available, target_epochs, max_epochs)
        chosen = [(c, size, max(e, 1))]
    entries = []
    for c, size, e in chosen:
        total, train = fold_cost(speeds[c.label].at(size), w, c.head_epochs, e)
        entries.append(Entry(c.label, c.cfg, list(c.set), size, c.head_epochs, e, total * w.folds,
                             math.ceil(train * limit_slack), w.folds, c.partial, c.train))
    return Plan(budget_s, available, entries, {k: asdict(v) for k, v in speeds.items()})


def top_up(plan: Plan, candidates: list[Candidate], actual_s: dict[str, float], w: Workload, remaining_s: float,
           **kw) -> list[Entry]:
    """Models to add when the plan ran faster than estimated and ``remaining_s`` is left.

    The measured speeds are corrected by how the trained entries actually ran (estimated /
    actual seconds, within 0.5..4), then the candidates not in the plan are planned into the
    remaining time (``make_plan``'s keywords); a twin of a trained model gets that model's actual
    time. Returns [] when nothing gets ``min_epochs``.
    """
    done = [e for e in plan.entries if actual_s.get(e.name)]
    left = [c for c in candidates if plan.entry(c.label) is None]
    if not done or not left or remaining_s <= 0:
        return []
    ratio = min(4.0, max(0.5, sum(e.est_seconds for e in done) / sum(actual_s[e.name] for e in done)))
    speeds = {c.label: replace(Speed(**plan.speeds[c.label]), train=plan.speeds[c.label]["train"] * ratio,
                               eval=plan.speeds[c.label]["eval"] * ratio) for c in left}
    twins = {e.name: (e.size, actual_s[e.name]) for e in done}
    sub = make_plan(left, speeds, replace(w, folds=done[0].folds), remaining_s, reserve=0.0, reserve_s=0.0,
                    twin_time=twins, fallback=False, **kw)
    return sub.entries


def format_plan(plan: Plan) -> str:
    rows = [["model", "size", "folds", "epochs (head+partial+rest)", "rest trains", "train img/s", "fold limit s",
             "est. min"]]
    for e in plan.entries:
        sp = Speed(**plan.speeds[e.name]).at(e.size)
        partial = 1 if e.partial and e.epochs > 1 else 0
        rows.append([e.name, str(e.size), str(e.folds), f"{e.head_epochs}+{partial}+{e.epochs - partial}",
                     "all" if e.train == "all" else f"last {e.train}", f"{sp.train:.1f}",
                     f"{e.fold_limit:.0f}", f"{e.est_seconds / 60:.1f}"])
    rows.append(["total", "", "", "", "", "", "", f"{plan.est_seconds / 60:.1f} of {plan.budget_s / 60:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in rows)


# ----------------------------------------------------------------------------- measuring

def measure_speed(model: torch.nn.Module, size: int, batch_size: int, *, device: torch.device,
                  channels_last: bool = True, steps: int = 3, warmup: int = 1, ema: bool = False,
                  mix=None, train: bool = True) -> Speed:
    """Images/second of AdamW training steps and of inference at ``size`` on random uint8 batches.
    ema: each step also updates a weight EMA (train.ema); mix: a MixSpec (augment.mix) mixing each
    batch, so a candidate's speed includes what they cost; train False: inference only (train = nan)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch_size, 3, size, size), generator=gen, dtype=torch.uint8).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.out_dim, (batch_size,), generator=gen).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    loss_fn = torch.nn.CrossEntropyLoss()
    from ensemble.train.ema import WeightEma
    from ensemble.train.mix import BatchMixer
    averager = WeightEma(model) if ema and train else None
    mixer = BatchMixer(mix, model.out_dim) if mix is not None else None
    soft = torch.nn.functional.one_hot(y, model.out_dim).float()

    def timed(fn, n: int) -> float:
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return n * batch_size / (time.perf_counter() - t0)

    def train_step():
        opt.zero_grad(set_to_none=True)
        xb, yb = mixer(x.clone(), soft) if mixer is not None else (x, y)
        loss_fn(model(xb), yb).backward()
        opt.step()
        if averager is not None:
            averager.update()

    @torch.no_grad()
    def eval_step():
        model(x)

    model.train()  # the better of two rounds: less noise from one-off allocations and other processes
    rate = max(timed(train_step, steps) for _ in range(2)) if train else float("nan")
    model.eval()
    ev = max(timed(eval_step, steps) for _ in range(2))
    return Speed(size, float(rate), float(ev))
