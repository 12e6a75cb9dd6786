"""The fuzz test's tiny competition, its runner and its oracle (tests/test_fuzz.py holds the mutations).

A Workspace is one copy of a tiny valid competition (3 classes, 24 train / 8 test images, 16 px) with
its two config files. `run_pipeline` trains (test_resnet at 8 px, 2 folds, 1 epoch) and votes it
in-process through the commands' main(argv); `judge` holds the outcome against an Expect: a valid
submission (checked by `vote --check` and independently here) or exit 2 with one stderr line naming
the file, never a traceback, another exit code or a wrong submission.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from conftest import make_competition

CLASSES = ("cat", "dog", "fox")
BASE_YAML = {
    "competition": {"name": "tiny", "id_col": "id", "label_col": "label", "ext": ".jpg", "metric": "accuracy"},
    "folds": {"n": 2, "seed": 1},
    "input": {"size": 8},
    "train": {"batch_size": 32, "num_workers": 0, "seed": 0, "device": "cpu"},
    "output": {"tensorboard": False, "progress": False, "plots": False},
    "augment": {"train": "none"},
}
MODEL_YAML = {
    "base": "base.yaml", "name": "fuzz",
    "model": {"backbone": "test_resnet", "pretrained": False},
    "loss": {"name": "ce"},
    "optim": {"name": "adamw", "lr": {"backbone": 1.0e-3, "head": 3.0e-3}},
    "schedule": {"name": "cosine"},
    "predict": {"tta": ["none"]},
    "stages": [{"epochs": 1, "train": "all"}],
}
CONFIG_FILE = {k: "base.yaml" for k in BASE_YAML} | {k: "model.yaml" for k in MODEL_YAML}


def build_base(root: Path, variant: str) -> Path:
    """The valid competition of `variant`: 'probs' (sample id,cat,dog,fox) or 'label' (sample id,label)."""
    comp = make_competition(root / "comp", classes=CLASSES, n_per_class=8, n_test=8, size=16)
    if variant == "probs":
        ids = [r[0] for r in read_rows(comp / "sample_submission.csv")[1:]]
        write_rows(comp / "sample_submission.csv", [["id", *CLASSES]] + [[i, "0.3333", "0.3333", "0.3334"] for i in ids])
    return root


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f)]


def write_rows(path: Path, rows: list[list[str]], newline: str = "\n", bom: bool = False) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))


@dataclass
class Workspace:
    root: Path
    variant: str

    @property
    def comp(self) -> Path:
        return self.root / "comp"

    @property
    def train_csv(self) -> Path:
        return self.comp / "train.csv"

    @property
    def sample_csv(self) -> Path:
        return self.comp / "sample_submission.csv"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def subs(self) -> Path:
        return self.root / "subs"

    def image(self, split: str, rid: str) -> Path:
        return self.comp / split / f"{rid}.jpg"

    def config(self) -> dict[str, dict]:
        base = yaml.safe_load((self.root / "base.yaml").read_text())
        model = yaml.safe_load((self.root / "model.yaml").read_text())
        return {"base.yaml": base, "model.yaml": model}

    def write_config(self, files: dict[str, dict]) -> None:
        for name, data in files.items():
            (self.root / name).write_text(yaml.safe_dump(data, sort_keys=False))

    def reset_config(self) -> None:
        base = {**BASE_YAML, "competition": {**BASE_YAML["competition"], "root": str(self.comp)},
                "output": {**BASE_YAML["output"], "runs_dir": str(self.runs)}}
        self.write_config({"base.yaml": base, "model.yaml": MODEL_YAML})


def rows_of(ws: Workspace, path: Path | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV of the workspace (train.csv by default)."""
    rows = read_rows(path or ws.train_csv)
    return rows[0], rows[1:]


def pick(rng: random.Random, rows: list, k: int) -> list[int]:
    """k distinct row indices, sorted."""
    return sorted(rng.sample(range(len(rows)), k))


def workspace(base_root: Path, dest: Path, variant: str) -> Workspace:
    shutil.copytree(base_root / "comp", dest / "comp")
    ws = Workspace(dest, variant)
    ws.reset_config()
    return ws


@dataclass
class Expect:
    """ok: must succeed; error: must exit 2; either: one or the other. `names`: on exit 2 the line must
    contain one of them (the file, or the class for too-small classes); `classes`: of a successful run."""
    outcome: str
    names: tuple[str, ...] = ()
    classes: tuple[str, ...] = CLASSES
    config: bool = False  # a config mutation: refused before anything is written, so the fix reruns as is
    shown_classes: bool = False  # classes inferred from the labels: any set, but the run must print them
    what: str = ""  # the mutation, for the summary


@dataclass
class Step:
    cmd: str
    rc: int | None  # None: an exception escaped main() (a traceback for the user)
    out: str
    err: str
    crash: str = ""


@dataclass
class Outcome:
    steps: list[Step] = field(default_factory=list)
    submissions: list[Path] = field(default_factory=list)
    classes: list[str] | None = None

    @property
    def summary(self) -> str:
        last = self.steps[-1]
        if last.rc is None:
            return f"{last.cmd}: traceback {last.crash}"
        lines = [s for s in last.err.splitlines() if s.strip()]
        return f"{last.cmd}: exit {last.rc}" + (f" {lines[-1][:160]!r}" if lines and last.rc else "")


def call(cmd: str, main, argv: list[str]) -> Step:
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread each is faster than contention
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # the user would see a traceback
        return Step(cmd, None, out.getvalue(), err.getvalue(), f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        torch.set_num_threads(threads)
    return Step(cmd, rc, out.getvalue(), err.getvalue())


def run_pipeline(ws: Workspace) -> Outcome:
    from ensemble.train.__main__ import main as train_main
    from ensemble.vote.__main__ import main as vote_main
    o = Outcome()
    o.steps.append(call("train", train_main, ["--cfg", str(ws.root / "model.yaml")]))
    if o.steps[-1].rc != 0:
        return o
    o.steps.append(call("vote", vote_main, ["--competition", "tiny", "--runs-dir", str(ws.runs),
                                            "--out-dir", str(ws.subs), "--method", "mean"]))
    if o.steps[-1].rc != 0:
        return o
    metrics = ws.runs / "tiny" / "fuzz" / "metrics.json"
    o.classes = [str(c) for c in yaml.safe_load(metrics.read_text())["classes"]] if metrics.exists() else None
    o.submissions = sorted((ws.subs / "tiny").glob("*.csv"))
    for sub in o.submissions:
        o.steps.append(call("vote --check", vote_main, ["--check", str(sub), "--competition", "tiny",
                                                        "--runs-dir", str(ws.runs)]))
    return o


def _floats(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def validate(sub: Path, sample: Path, classes: list[str]) -> list[str]:
    """Independently of the project's validator: the sample's header and ids in its order; labels
    among the classes; probabilities finite in [0, 1], columns among the classes, full rows summing to 1."""
    want = list(csv.reader(io.StringIO(sample.read_bytes().decode("utf-8-sig"))))
    got = list(csv.reader(io.StringIO(sub.read_bytes().decode("utf-8"))))
    name, out = sub.name, []
    if not got or got[0] != want[0]:
        return [f"{name}: header {got[0] if got else None} != sample's {want[0]}"]
    if [r[0] for r in got[1:]] != [r[0] for r in want[1:]]:
        out.append(f"{name}: ids differ from the sample's (first: {[r[0] for r in got[1:4]]} vs {[r[0] for r in want[1:4]]})")
    cols = want[0][1:]
    rows = [r[1:] for r in got[1:]]
    if any(len(r) != len(cols) for r in rows):
        return out + [f"{name}: rows with a wrong number of fields"]
    if len(cols) == 1 and cols[0] not in classes:  # a label column: class names or class indices
        sample_vals = [r[1] for r in want[1:]]
        names = all(v in classes for v in sample_vals)
        allowed = classes if names else [str(i) for i in range(len(classes))]
        bad = [r[0] for r in rows if r[0] not in allowed]
        return out + ([f"{name}: {len(bad)} labels not in {allowed} (e.g. {bad[0]!r})"] if bad else [])
    strangers = [c for c in cols if c not in classes]
    if strangers:
        out.append(f"{name}: probability columns {strangers} are not classes of the run ({classes})")
    sums = []
    for r in rows:
        vals = _floats(r)
        if vals is None or not all(math.isfinite(v) and 0 <= v <= 1 for v in vals):
            return out + [f"{name}: a row of probabilities not finite in [0, 1]: {r}"]
        sums.append(sum(vals))
    if set(cols) == set(classes) and any(abs(s - 1) > 1e-3 for s in sums):
        out.append(f"{name}: full-class rows do not sum to 1 (e.g. {next(s for s in sums if abs(s - 1) > 1e-3):.4f})")
    return out


def judge(o: Outcome, expect: Expect, ws: Workspace) -> list[str]:
    """Every way the outcome breaks the promise (empty: it holds)."""
    last = o.steps[-1]
    if last.rc is None:
        return [f"{last.cmd}: traceback: {last.crash}"]
    bad = [f"{s.cmd}: exit {s.rc}, not 0 or 2: {s.err.strip()[-160:]!r}" for s in o.steps if s.rc not in (0, 2)]
    if bad:
        return bad
    if last.rc == 2:
        lines = [s for s in last.err.splitlines() if s.strip()]
        out = []
        if expect.outcome == "ok":
            out.append(f"{last.cmd}: refused a valid competition: {lines[-1] if lines else ''!r}")
        if len(lines) != 1 or not lines[0].startswith("error: "):
            out.append(f"{last.cmd}: exit 2 with {len(lines)} stderr lines, not one 'error: ...' line: {lines[:3]}")
        elif expect.names and not any(n in lines[0] for n in expect.names):
            out.append(f"{last.cmd}: error names none of {list(expect.names)}: {lines[0]!r}")
        written = sorted(str(p.relative_to(ws.runs)) for p in ws.runs.rglob("*") if p.is_file()) if ws.runs.exists() else []
        if expect.config and written:
            out.append(f"config error found after writing {len(written)} files ({', '.join(written[:3])}, ...)")
        return out
    out = []
    if expect.outcome == "error":
        out.append(f"accepted: train+vote exit 0 (classes {o.classes}; {len(o.submissions)} submissions)")
    if not o.submissions:
        out.append("vote exit 0 but wrote no submission")
    classes = list(o.classes or []) if expect.shown_classes else list(expect.classes)
    if o.classes is not None and sorted(o.classes) != sorted(classes):
        out.append(f"wrong classes: run has {o.classes}, competition has {classes}")
    start = o.steps[0].out.split("fold 0:")[0]  # what train prints before the first fold
    if expect.shown_classes and o.classes and not all(re.search(rf"\b{re.escape(c)}\b", start) for c in o.classes):
        out.append(f"classes {o.classes} inferred from the labels are not printed at the start of train: {start.strip()[:200]!r}")
    out += [f"vote --check: exit {s.rc}: {s.out.strip()[-200:]!r}" for s in o.steps if s.cmd == "vote --check" and s.rc]
    for sub in o.submissions:
        out += validate(sub, ws.sample_csv, classes)
    return out
