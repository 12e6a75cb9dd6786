"""Vote the runs of a competition into a validated submission, with honest CV scores.

    python -m ensemble.vote --competition ham10000                       # every method, best written
    python -m ensemble.vote --competition ham10000 --method hillclimb --bias on
    python -m ensemble.vote --runs 'runs/ham10000/resnet*' --exclude '*debug*' --method weighted --weights 2,1
    python -m ensemble.vote --check submissions/ham10000/x.csv --competition ham10000
    python -m ensemble.vote --competition aptos --plugin my_metric.py     # a metric registered by a plugin
"""
from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble.vote import methods as V
from ensemble.artifacts import atomic_write_json, file_hash, read_metrics
from ensemble.plugins import add_plugin_argument, load_plugins
from ensemble.vote.runs import Runs, RunsError, competition_cfg, find_runs, load_runs
from ensemble.vote.submission import (SubmissionError, build_frame, check_file, detect_format, problems, read_sample,
                         write_frame)
from ensemble.artifacts.paths import CompetitionPaths


CLASS_BALANCED_METRICS = ("balanced_accuracy", "macro_f1")


def make_objective(metric, n_classes: int, classes: Sequence[str] | None = None) -> V.Objective:
    """metric: a name, spec text (e.g. 'roc_auc[classes=MEL,NV]') or MetricSpec; classes: the class
    names it is bound to (needed when it names classes)."""
    from ensemble import metrics as M
    spec = M.bind_metric(metric, classes) if classes is not None else M.parse_metric(metric)
    return V.Objective(lambda y, p: M.score(spec, y, p), lambda y, l: M.score_labels(spec, y, l, n_classes),
                       M.get_metric(spec).greater_is_better, n_classes, spec.name in CLASS_BALANCED_METRICS)


def decodes_grades(metric, ordinal: bool) -> bool:
    """Class-probability runs scored by a grade metric (QWK) also get expected-grade variants."""
    from ensemble import metrics as M
    return not ordinal and M.get_metric(metric).grades


def parse_weights(text: str | None, names: list[str]) -> np.ndarray | None:
    """'2,1,1' (run order) or 'runA=2,runB=1' (others 0) -> (M,) normalised weights."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    named = all("=" in s for s in items)
    try:
        pairs = {k.strip(): float(v) for k, v in (s.split("=", 1) for s in items)} if named else {}
        w = [pairs.get(n, 0.0) for n in names] if named else [float(s) for s in items]
    except ValueError:
        raise ValueError(f"--weights: expected numbers or run=number, got {text!r}") from None
    unknown = sorted(set(pairs) - set(names))
    if unknown:
        raise ValueError(f"--weights: unknown run {unknown[0]!r}; runs: {', '.join(names)}")
    try:
        return V.check_weights(w, len(names))
    except ValueError as e:
        raise ValueError(f"--weights: {e} ({', '.join(names)})") from None


def build_specs(method: str, weights, bias: str, ordinal: bool, max_iter: int, stack_c: float,
                grades: bool = False):
    """-> (specs, notes). method: 'all' or comma-separated names. grades: also add expected-grade
    variants (+grade, +grade+thr as --bias allows) that compete with argmax by nested CV."""
    names = list(V.METHODS) if method == "all" else [s.strip() for s in method.split(",") if s.strip()]
    specs, notes = [], []
    for name in names:
        m = V.get_method(name)
        if ordinal and not m.ordinal:
            if method == "all":
                continue
            ok = ", ".join(n for n, x in V.METHODS.items() if x.ordinal)
            raise ValueError(f"method '{name}' does not support ordinal (score) runs; use one of: {ok}")
        if m.needs_weights and weights is None:
            if method == "all":
                notes.append(f"'{name}' skipped: no --weights")
                continue
            raise ValueError(f"method '{name}' needs --weights")
        opts = {"weighted": {"weights": weights}, "hillclimb": {"max_iter": max_iter},
                "stacking": {"C": stack_c}}.get(name, {})
        tune = {"on": [False, True], "off": [False], "auto": [False, True] if ordinal else [False]}[bias]
        specs += [V.Spec(name, opts, t) for t in tune]
        if grades:  # thresholds as for ordinal runs: auto/on -> also fitted ones
            specs += [V.Spec(name, opts, t, grade=True) for t in ([False] if bias == "off" else [False, True])]
    if ordinal and method == "all":
        notes.append("skipped for ordinal runs: " + ", ".join(n for n, x in V.METHODS.items() if not x.ordinal))
    return specs, notes


def _fmt_table(rows: list[list[str]], header: list[str]) -> str:
    width = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, width)))
    return "\n".join([line(header)] + [line(r) for r in rows])


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def report(data: Runs, objective: V.Objective, singles, results, best: int) -> str:
    """Scores of single models and ensembles, error correlations and the chosen weights."""
    names, ordinal = data.names, data.ordinal
    rows = [[n, f"{s.score:.4f}", f"{s.std:.4f}", "fold mean", "", _num(r.metrics.get("cv"))]
            for n, s, r in zip(names, singles, data.runs)]
    for i, (spec, cv, _) in enumerate(results):
        rows.append([("* " if i == best else "  ") + spec.name(ordinal), f"{cv.score:.4f}", f"{cv.std:.4f}",
                     "nested" if spec.fits else "fold mean", "" if cv.in_sample is None else f"{cv.in_sample:.4f}", ""])
    direction = "higher" if objective.greater_is_better else "lower"
    out = [f"{data.competition}: {len(names)} runs, {len(np.unique(data.folds))} folds, OOF {len(data.y)} rows, "
           f"test {data.test.shape[1]} rows; {data.metric} ({direction} is better)",
           "cv = mean of per-fold scores; nested = fitted on K-1 folds, scored on the held-out fold; "
           "in-sample = fitted on all OOF (optimistic)",
           _fmt_table(rows, ["run / ensemble (* best)", "cv", "std", "cv is", "in-sample", "metrics.json cv"])]
    corr = V.error_correlation(data.oof, data.y)
    short = [n[:14] for n in names]
    out += ["", "OOF error correlation",
            _fmt_table([[s] + [f"{v:.2f}" for v in row] for s, row in zip(short, corr)], ["run"] + short)]
    wcols = [(spec, fitted) for spec, _, fitted in results if "weights" in fitted.state]
    if wcols:
        rows = [[n] + [f"{f.state['weights'][i]:.3f}" for _, f in wcols] for i, n in enumerate(names)]
        out += ["", "weights (methods not listed: equal; stacking: share of |coef|)",
                _fmt_table(rows, ["run"] + [s.name(ordinal) for s, _ in wcols])]
    for spec, _, fitted in results:
        if fitted.post is not None:
            labels = [f"t{k}" for k in range(len(fitted.post))] if ordinal or spec.grade else data.classes
            out.append(f"{spec.name(ordinal)}: " + " ".join(f"{c}={v:+.2f}" for c, v in zip(labels, fitted.post)))
    return "\n".join(out)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "scikit-learn", "pyarrow", "ensemble"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_submission(data: Runs, spec: V.Spec, cv: V.CVScore, fitted: V.Fitted, out_dir: Path,
                     stamp: str, slug: str, argv: Sequence[str]) -> tuple[Path, str]:
    """Predict test, validate against the sample, write CSV + manifest atomically. -> (path, kaggle cmd)."""
    fmt = detect_format(data.sample, data.classes, data.id_col, data.sample_path.name)
    values = fitted.finish(fitted.predict(data.test), len(data.classes))
    frame = build_frame(fmt, data.sample[fmt.id_col], values)
    issues = problems(frame, data.sample, fmt, data.sample_path.name)
    if issues:
        raise SubmissionError(f"{spec.name(data.ordinal)}: submission failed validation: " + "; ".join(issues))
    name = spec.name(data.ordinal)
    path = out_dir / data.competition / f"{name}-cv{cv.score:.4f}-{stamp}.csv"
    write_frame(path, frame)
    weights = fitted.state.get("weights", np.full(len(data.runs), 1 / len(data.runs)))
    manifest = {
        "competition": data.competition, "method": name, "metric": data.metric,
        "cv": {"score": cv.score, "std": cv.std, "folds": cv.folds, "in_sample": cv.in_sample, "nested": spec.fits},
        "weights": dict(zip(data.names, np.asarray(weights, float).round(6).tolist())),
        "options": {k: v for k, v in spec.options.items() if k != "weights"},
        ("thresholds" if data.ordinal or spec.grade else "bias"): None if fitted.post is None else fitted.post.tolist(),
        "runs": [{"name": r.name, "dir": str(r.paths.root), "cv": r.metrics.get("cv"),
                  "oof": {"path": str(r.paths.oof), "sha256": file_hash(r.paths.oof)},
                  "test": {"path": str(r.paths.test), "sha256": file_hash(r.paths.test)},
                  "metrics_sha256": file_hash(r.paths.metrics)} for r in data.runs],
        "folds_hash": data.folds_hash,
        "sample_submission": {"path": str(data.sample_path), "sha256": file_hash(data.sample_path)},
        "submission": {"path": str(path), "sha256": file_hash(path), "rows": len(frame), "format": fmt.kind},
        "created_utc": stamp, "command": "python -m ensemble.vote " + shlex.join(argv), "versions": _versions(),
    }
    atomic_write_json(path.with_suffix(".json"), manifest)
    cmd = (f"kaggle competitions submit -c {slug} -f {shlex.quote(str(path))} "
           f"-m {shlex.quote(f'{name} cv {cv.score:.4f} ({len(data.runs)} runs)')}")
    return path, cmd


def run_vote(args, argv: Sequence[str]) -> int:
    t0 = time.perf_counter()
    data = load_runs(find_runs(args.runs_dir, args.competition, args.runs, args.exclude))
    t1 = time.perf_counter()
    print(f"loaded {len(data.runs)} runs in {t1 - t0:.1f} s (OOF {data.oof.shape[1]} x {data.oof.shape[2]}, "
          f"test {data.test.shape[1]} x {data.test.shape[2]})")
    objective = make_objective(data.metric, len(data.classes), data.classes)
    weights = parse_weights(args.weights, data.names)
    specs, notes = build_specs(args.method, weights, args.bias, data.ordinal, args.max_iter, args.stack_c,
                               decodes_grades(data.metric, data.ordinal))
    singles = V.model_scores(data.oof, data.y, data.folds, objective)
    results = [(s, *V.cross_validate(s, data.oof, data.y, data.folds, objective)) for s in specs]
    sign = 1 if objective.greater_is_better else -1
    best = int(np.argmax([np.nan_to_num(sign * cv.score, nan=-np.inf) for _, cv, _ in results]))
    print(report(data, objective, singles, results, best))
    for n in notes:
        print(f"note: {n}")
    t2 = time.perf_counter()
    todo = {"best": [best], "all": range(len(results)), "none": []}[args.write]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for i in todo:
        path, cmd = write_submission(data, *results[i], Path(args.out_dir), stamp,
                                     args.kaggle or data.competition, argv)
        print(f"wrote {path} (+ .json manifest)\n  {cmd}")
    print(f"timings: load {t1 - t0:.1f} s, scores {t2 - t1:.1f} s, submission {time.perf_counter() - t2:.1f} s")
    return 0


def run_check(args) -> int:
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    sample_path, id_col = (Path(args.sample) if args.sample else None), None
    if args.competition and (sample_path is None or classes is None):
        base = Path(args.runs_dir) / args.competition
        runs = CompetitionPaths(base).runs()
        if runs:
            classes = classes or [str(c) for c in read_metrics(runs[0])["classes"]]
            cfg = competition_cfg(runs[0])
            id_col = cfg.id_col
            sample_path = sample_path or Path(cfg.root) / cfg.sample_submission
    if sample_path is None:
        raise ValueError(f"--check needs --sample PATH or runs under {Path(args.runs_dir) / (args.competition or 'NAME')}")
    sample = read_sample(sample_path, id_col)
    fmt = detect_format(sample, classes, id_col, sample_path.name)
    issues = check_file(args.check, sample, fmt, sample_path.name)
    if issues:
        print(f"{args.check}: INVALID against {sample_path} ({len(issues)} problems)")
        for s in issues:
            print(f"  - {s}")
        return 1
    print(f"{args.check}: OK ({len(sample)} rows, format {fmt.kind}, matches {sample_path})")
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ensemble.vote", description=__doc__.split("\n")[0])
    p.add_argument("--competition", metavar="NAME", help="vote every run under RUNS_DIR/NAME")
    p.add_argument("--runs-dir", default="runs", help="default: runs")
    p.add_argument("--runs", nargs="+", metavar="RUN", help="run names or paths (globs allowed)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="RUN", help="run names or paths to drop (globs)")
    p.add_argument("--method", default="all", help=f"'all' or comma-separated: {', '.join(V.METHODS)}")
    p.add_argument("--weights", help="for 'weighted': '2,1,1' in run order or 'runA=2,runB=1'")
    p.add_argument("--bias", choices=["auto", "on", "off"], default="auto",
                   help="also fit per-class bias (ordinal runs and QWK's expected grade: thresholds) on OOF; "
                        "auto = thresholds only")
    p.add_argument("--max-iter", type=int, default=100, help="hill-climbing steps")
    p.add_argument("--stack-c", type=float, default=1.0, help="stacking: inverse L2 strength")
    p.add_argument("--write", choices=["best", "all", "none"], default="best",
                   help="which ensembles get a submission file")
    p.add_argument("--out-dir", default="submissions", help="default: submissions (+ /NAME/)")
    p.add_argument("--kaggle", metavar="SLUG", help="Kaggle competition slug for the printed command (default: NAME)")
    p.add_argument("--check", metavar="FILE", help="validate FILE against the sample submission and exit")
    p.add_argument("--sample", metavar="PATH", help="sample_submission.csv for --check (default: from the runs' config)")
    p.add_argument("--classes", help="comma-separated classes for --check when there are no runs")
    add_plugin_argument(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        load_plugins(args.plugin)
        return run_check(args) if args.check else run_vote(args, argv)
    except (RunsError, SubmissionError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
