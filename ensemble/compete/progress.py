"""One progress line for a whole compete plan: step k of n, elapsed, ETA.

    [compete 2/4] train resnet18-t60m | elapsed 12m 04s | ETA 31m 10s

Shown as a tqdm line (stderr, when it is a terminal) above the per-epoch bars, refreshed after every
epoch; lines printed meanwhile are written with the bars cleared and redrawn after, so the line
stays in place. Every step start is also an info log line (compete -q: no bars and, as for every
command, warnings only). The ETA uses the plan's estimated seconds per step, scaled by how the
finished steps of at least a minute compared with their estimates (a setup step planned at a second
that took a minute says nothing about the training speed); without estimates, the mean time per
finished step (fractions of a step counted by epochs).
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

RATE_MIN_EST_S = 60.0       # finished steps estimated shorter than this do not scale the ETA
RATE_RANGE = (0.25, 4.0)    # how far the finished steps may scale the rest


def clock(seconds: float | None) -> str:
    """75 -> '1m 15s', 3725 -> '1h 02m', None -> '?'."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


class PlanProgress:
    """steps: [(label, estimated seconds or None)]. bar: draw the live tqdm line (else log lines only)."""

    def __init__(self, steps: Sequence[tuple[str, float | None]], *, bar: bool = True, log: Callable | None = None,
                 name: str = "compete", stream=None, done_before: float = 0.0):
        self.labels = [s[0] for s in steps]
        self.est = [s[1] for s in steps]
        self.n, self.log, self.name = len(steps), log or logger.info, name
        self.t0 = time.perf_counter() - done_before
        self.k, self.frac = 0, 0.0  # current step (0-based) and the fraction of it done
        self.step_t0 = self.t0
        self.actual: dict[int, float] = {}
        self._bar = None
        self._stream = stream or sys.stderr
        # redirected to a file (`compete ... > log 2>&1`), a redrawn line would fill the log with
        # carriage returns: the step lines are logged anyway
        self.bar_enabled = bar and (stream is not None or _is_terminal(sys.stderr))

    # ------------------------------------------------------------ numbers
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def eta(self) -> float | None:
        """Seconds left: estimates scaled by actual/estimate of finished steps, else the mean step time."""
        now_in_step = time.perf_counter() - self.step_t0
        known = all(e is not None for e in self.est)
        if known and sum(self.est) > 0:
            done = [i for i in self.actual if (self.est[i] or 0.0) >= RATE_MIN_EST_S]
            ratio = sum(self.actual[i] for i in done) / sum(self.est[i] for i in done) if done else 1.0
            ratio = min(max(ratio, RATE_RANGE[0]), RATE_RANGE[1])
            cur = self.est[self.k] * ratio if self.k < self.n else 0.0
            rest = sum(self.est[self.k + 1:]) * ratio
            return max(0.0, cur - now_in_step, cur * (1 - self.frac)) + rest if self.k < self.n else 0.0
        steps_done = len(self.actual) + self.frac
        if steps_done <= 0:
            return None
        per_step = (sum(self.actual.values()) + now_in_step) / steps_done
        return max(0.0, per_step * (self.n - steps_done))

    def line(self) -> str:
        k = min(self.k + 1, self.n)
        label = self.labels[self.k] if self.k < self.n else "done"
        pct = f" {100 * self.frac:.0f}%" if 0 < self.frac < 1 else ""
        return (f"[{self.name} {k}/{self.n}] {label}{pct} | elapsed {clock(self.elapsed())} | "
                f"ETA {clock(self.eta())}")

    # ------------------------------------------------------------ events
    def start(self, k: int) -> None:
        """Step k (0-based) begins."""
        self.k, self.frac, self.step_t0 = k, 0.0, time.perf_counter()
        self.log(f"== {self.line()}")
        self.refresh()

    def add(self, steps: Sequence[tuple[str, float | None]], at: int | None = None) -> None:
        """More steps (compete --time's top-up), inserted at index `at` (default: before the last one)."""
        at = self.n - 1 if at is None else at
        self.labels[at:at] = [s[0] for s in steps]
        self.est[at:at] = [s[1] for s in steps]
        self.n = len(self.labels)
        self.refresh()

    def advance(self, fraction: float) -> None:
        """The current step is `fraction` done (e.g. epochs trained / epochs planned)."""
        self.frac = min(max(fraction, 0.0), 0.99)
        self.refresh()

    def finish(self, k: int) -> None:
        self.actual[k] = time.perf_counter() - self.step_t0
        self.k, self.frac = k + 1, 0.0
        self.step_t0 = time.perf_counter()
        self.refresh()

    def refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_description_str(self.line(), refresh=True)

    def epoch_counter(self, total_epochs: int) -> Callable:
        """An on_epoch(fold, global_epoch, score) callback for ensemble.train that advances the step."""
        seen = [0]

        def on_epoch(fold: int, global_epoch: int, score: float) -> None:
            seen[0] += 1
            self.advance(seen[0] / max(1, total_epochs))

        return on_epoch

    # ------------------------------------------------------------ the live line
    @contextlib.contextmanager
    def shown(self):
        """While inside: the line sits above the per-epoch bars; printed lines go above it."""
        if not self.bar_enabled:
            yield self
            return
        from tqdm import tqdm
        self._bar = tqdm(total=0, bar_format="{desc}", position=0, leave=True, file=self._stream,
                         dynamic_ncols=True)
        try:
            with contextlib.redirect_stdout(_AboveBars(sys.stdout, self._bar)):
                self.refresh()
                yield self
        finally:
            self.refresh()
            self._bar.close()
            self._bar = None


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class _AboveBars:
    """A stdout that clears the progress bars before each complete line and redraws them after."""

    def __init__(self, out, bar):
        self.out, self.bar, self.buf = out, bar, ""

    def write(self, text: str) -> int:
        self.buf += text
        if "\n" in self.buf:
            lines, self.buf = self.buf.rsplit("\n", 1)
            from tqdm import tqdm
            with tqdm.external_write_mode(file=self.bar.fp):
                self.out.write(lines + "\n")
                self.out.flush()
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def __getattr__(self, name):
        return getattr(self.out, name)


def epochs_of(cfg) -> int:
    """Epochs a run trains in all: folds x the stages' epochs (the denominator of a step's fraction)."""
    return max(1, cfg.folds.n * sum(s.epochs for s in cfg.stages))
