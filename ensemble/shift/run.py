"""Run the shift check of a competition and write runs/<competition>/shift/{shift.json, weights.csv}.

    res = run_shift(load_competition(cfg.competition), Path("runs/ham10000"))

weights.csv: id, split (train/test), label, path, p_test (out-of-fold p(test | x)), weight (train:
importance weight, mean 1, clipped; test: empty), test_like (train rows in the most test-like fifth).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import atomic_write_csv, atomic_write_json
from .adversarial import (adversarial_cv, class_shift, density_weights, effective_sample_size, stat_differences,
                          verdict)
from .features import STATS, cached_embeddings, image_stats
from .scores import TEST_LIKE_FRACTION, WEIGHTS_FILE, shift_dir

logger = logging.getLogger(__name__)

N_SHOWN = 8  # most / least test-like training images listed (and shown in the report)


def _pca(x: np.ndarray, n: int = 64, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA
    n = min(n, x.shape[1], len(x) - 1)
    return PCA(n, random_state=seed).fit_transform(x.astype(np.float64)) if n >= 1 else x


def run_shift(comp, comp_dir: str | Path, *, size: int = 128, backbone: str | None = "efficientnet_lite0",
              pretrained=True, classifier: str = "logreg", folds: int = 5, clip: float = 10.0, seed: int = 0,
              n_boot: int = 200, device: str = "cpu", workers: int = 2, progress: bool = False,
              quiet: bool = False) -> dict:
    """Embed + describe every train and test image, cross-validate train-vs-test, write shift/. -> shift.json.

    The summary is logged at INFO (at DEBUG with quiet=True: compete prints its one line instead)."""
    log = logger.debug if quiet else logger.info
    from ..data.imagefiles import check_image_files
    from ..data.images import build_cache
    t0 = time.perf_counter()
    comp_dir = Path(comp_dir)
    tr_paths, te_paths = comp.train["path"].tolist(), comp.test["path"].tolist()
    check_image_sets(comp)
    check_image_files(comp)
    kw = dict(policy="skip", workers=workers, progress=progress)
    tr = build_cache(tr_paths, size, comp_dir / "cache", **kw)
    te = build_cache(te_paths, size, comp_dir / "cache", **kw)
    t_cache = time.perf_counter()
    s_tr, s_te = image_stats(tr_paths, tr.array, tr.ok), image_stats(te_paths, te.array, te.ok)
    t_stats = time.perf_counter()
    sets = {"stats": (s_tr, s_te)}
    reused = None
    if backbone and backbone != "none":
        try:
            e_tr, r1 = cached_embeddings(tr_paths, tr.array, comp_dir / "cache", backbone, pretrained, size,
                                         device=device, stamp=tr.stamp)
        except RuntimeError as e:  # no pretrained weights offline: statistics alone still measure the shift
            logger.warning("warning: no embeddings (%s); using image statistics only", e)
            backbone = "none"
    if backbone and backbone != "none":
        e_te, r2 = cached_embeddings(te_paths, te.array, comp_dir / "cache", backbone, pretrained, size, device=device,
                                     stamp=te.stamp)
        reused = r1 and r2
        z = _pca(np.vstack([e_tr, e_te]), seed=seed)
        sets["embedding"] = (z[:len(e_tr)], z[len(e_tr):])
        sets["all"] = (np.hstack([s_tr, sets["embedding"][0]]), np.hstack([s_te, sets["embedding"][1]]))
    t_embed = time.perf_counter()
    results = {name: adversarial_cv(a, b, classifier, folds, seed, n_boot) for name, (a, b) in sets.items()}
    main = "all" if "all" in results else "stats"
    adv = results[main]
    t_fit = time.perf_counter()

    y = comp.train["y"].to_numpy()
    w = density_weights(adv.p_train, len(tr_paths), len(te_paths), clip)
    cut = np.quantile(adv.p_train, 1 - TEST_LIKE_FRACTION)
    like = adv.p_train >= cut
    order = np.argsort(-adv.p_train, kind="stable")

    def rows(idx):
        return [{"id": str(comp.train["id"].iat[i]), "label": str(comp.train["label"].iat[i]),
                 "path": str(comp.train["path"].iat[i]), "p_test": round(float(adv.p_train[i]), 4),
                 "weight": round(float(w[i]), 3)} for i in idx]

    n_tr, n_te = len(tr_paths), len(te_paths)
    frame = pd.DataFrame({
        "id": np.r_[comp.train["id"].to_numpy(object), comp.test["id"].to_numpy(object)],
        "split": ["train"] * n_tr + ["test"] * n_te,
        "label": np.r_[comp.train["label"].to_numpy(object), np.full(n_te, "", object)],
        "p_test": np.r_[adv.p_train, adv.p_test].round(5),
        "weight": np.r_[w.round(5), np.full(n_te, np.nan)],
        "test_like": np.r_[like, np.zeros(n_te, bool)],
        "path": np.r_[np.asarray(tr_paths, object), np.asarray(te_paths, object)]})
    out = shift_dir(comp_dir)
    atomic_write_csv(out / WEIGHTS_FILE, frame)
    e = effective_sample_size(w)
    summary = {
        "competition": comp.name, "n_train": n_tr, "n_test": n_te, "size": size,
        "backbone": backbone or "none", "classifier": classifier, "folds": folds, "features": main,
        "auc": round(adv.auc, 4), "ci": [round(v, 4) for v in adv.ci], "pm": round(adv.pm, 4),
        "fold_aucs": [round(v, 4) for v in adv.fold_aucs], "verdict": verdict(adv.auc),
        "by_features": {k: {"auc": round(r.auc, 4), "ci": [round(v, 4) for v in r.ci],
                            "n_features": int(sets[k][0].shape[1])} for k, r in results.items()},
        "weights": {"clip": clip, "ess": round(e, 1), "ess_frac": round(e / n_tr, 4), "max": round(float(w.max()), 3),
                    "min": round(float(w.min()), 4), "clipped": int(np.sum(w >= w.max() - 1e-9)) if w.max() > 1 else 0},
        "test_like": {"fraction": TEST_LIKE_FRACTION, "n": int(like.sum()), "p_cut": round(float(cut), 4)},
        "stats": stat_differences(s_tr, s_te, STATS),
        "classes": class_shift(adv.p_train, adv.p_test, w, y, comp.classes),
        "most_test_like": rows(order[:N_SHOWN]), "least_test_like": rows(order[::-1][:N_SHOWN]),
        "unreadable": {**tr.bad, **te.bad}, "embeddings_reused": reused,
        "stamps": {"train": tr.stamp, "test": te.stamp},  # the images measured (size + mtime of every file)
        "seconds": {"cache": round(t_cache - t0, 1), "stats": round(t_stats - t_cache, 1),
                    "embed": round(t_embed - t_stats, 1), "classifier": round(t_fit - t_embed, 1),
                    "total": round(time.perf_counter() - t0, 1)},
    }
    atomic_write_json(out / "shift.json", summary)
    for line in summary_lines(summary):
        log(line)
    log(f"wrote {out / 'shift.json'} and {out / WEIGHTS_FILE} in {summary['seconds']['total']:.1f} s")
    return summary


def check_image_sets(comp) -> None:
    """Both sets must have images to compare: a missing or empty test (or train) folder would be
    measured as blank images and give a made-up AUC. ValueError naming the folder."""
    for paths, folder, what in ((comp.train["path"], comp.image_dirs[0], "train"),
                                (comp.test["path"], comp.image_dirs[1], f"test ({comp.sample_path.name})")):
        if not Path(folder).is_dir():
            raise ValueError(f"{folder}: {what.split()[0]} folder not found; the shift check compares the train "
                             f"images with the test images")
        if not any(Path(p).is_file() for p in paths):
            raise ValueError(f"{folder}: none of the {len(paths)} {what} images is there (e.g. "
                             f"{Path(paths.iat[0]).name}); the shift check compares the train images with the test images")


def one_line(s: dict) -> str:
    """The line compete prints: `train/test shift AUC 0.93 +- 0.01: CV is likely optimistic; ...`."""
    return f"train/test shift AUC {s['auc']:.2f} +- {s['pm']:.2f}: {s['verdict']}"


def summary_lines(s: dict) -> list[str]:
    wt = s["weights"]
    out = [f"{s['competition']}: {s['n_train']} train + {s['n_test']} test images; {s['classifier']} on "
           f"{s['features']} features ({s['backbone']} @ {s['size']}px + image statistics), {s['folds']}-fold CV",
           one_line(s) + f" (95% CI {s['ci'][0]:.3f}-{s['ci'][1]:.3f}; folds "
           + " ".join(f"{v:.3f}" for v in s["fold_aucs"]) + ")",
           "  AUC by features: " + ", ".join(f"{k} {v['auc']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"
                                             for k, v in s["by_features"].items()),
           f"  importance weights p(test|x)/p(train|x): clipped at {wt['clip']:g} x mean, max {wt['max']:.2f}, "
           f"effective sample size {wt['ess']:.0f} of {s['n_train']} ({100 * wt['ess_frac']:.0f}%)",
           "  statistics that differ most (AUC alone, test mean vs train mean):"]
    for d in s["stats"][:6]:
        out.append(f"    {d['stat']:<12} AUC {d['auc']:.3f}  train {d['train_mean']:.4g}  test {d['test_mean']:.4g}  "
                   f"(SMD {d['smd']:+.2f})")
    out.append("  per class (train share -> importance-weighted share, AUC of the class vs test): "
               + ", ".join(f"{c['class']} {c['train_share']:.3f}->{c['weighted_share']:.3f} ({c['auc']:.2f})"
                           for c in s["classes"]))
    out.append("  most test-like train images: " + ", ".join(f"{r['id']} ({r['p_test']:.2f})"
                                                              for r in s["most_test_like"][:5]))
    out.append("  least test-like train images: " + ", ".join(f"{r['id']} ({r['p_test']:.2f})"
                                                               for r in s["least_test_like"][:5]))
    if s["unreadable"]:
        out.append(f"  warning: {len(s['unreadable'])} unreadable images (statistics NaN, imputed)")
    return out


def reusable(cfg, comp=None) -> tuple[dict, bool]:
    """The written shift summary (or {}) and whether it still holds: it has an AUC, its weights file
    exists, and the train and test images' stamps (file stats, nothing decoded) match."""
    from ..data.competition import load_competition
    from ..data.images import cache_stamp
    from .scores import read_summary
    done = read_summary(cfg.competition_dir)
    if done.get("auc") is None or not (shift_dir(cfg.competition_dir) / WEIGHTS_FILE).exists():
        return done, False
    comp = comp or load_competition(cfg.competition)
    size = done.get("size", cfg.input.size)
    now = {"train": cache_stamp(comp.train["path"].tolist(), size),
           "test": cache_stamp(comp.test["path"].tolist(), size)}
    return done, done.get("stamps") == now


def shift_check(cfg, embeddings: bool = True) -> dict | None:
    """compete's step after duplicates: run the check once per competition (reused when shift.json
    exists) and print one line; a failure is a warning, never the end of the competition.
    embeddings=False: image statistics only (a second or two instead of a pass of a pretrained backbone)."""
    from ..data.competition import load_competition
    comp = load_competition(cfg.competition)
    done, still_holds = reusable(cfg, comp)
    if still_holds:
        logger.info(one_line(done) + f" (from {shift_dir(cfg.competition_dir) / 'shift.json'})")
        return done
    if done.get("auc") is not None:
        logger.info(f"the images changed since {shift_dir(cfg.competition_dir) / 'shift.json'} was written; "
                    "measuring the shift again")
    logger.info(f"== train/test shift ({cfg.competition.name})")
    try:
        s = run_shift(comp, cfg.competition_dir, size=cfg.input.size,
                      backbone="efficientnet_lite0" if embeddings else "none",
                      workers=max(2, cfg.train.num_workers), quiet=True)
    except Exception as e:  # the check is advice; training goes on without it
        logger.warning(f"warning: train/test shift check failed ({type(e).__name__}: {e}); CV is shown without weights")
        return None
    logger.info(one_line(s))
    return s


def runs_table(comp, comp_dir: str | Path) -> list[str]:
    """Plain vs importance-weighted vs test-like CV (pooled OOF, as metrics.json's cv) of every run
    already under comp_dir, read-only: lines to print after the shift check."""
    from ..artifacts import RunPaths, read_metrics, read_probs, split_probs
    from ..metrics import bind_metric
    from .scores import shift_cv
    labels = pd.Series(comp.train["y"].to_numpy(), index=comp.train["id"].astype(str))
    out = []
    for d in sorted(p.parent for p in Path(comp_dir).glob("*/metrics.json")):
        try:
            m = read_metrics(d)
            ids, cols, values, _ = split_probs(read_probs(RunPaths.find(d).oof))
            y = labels.reindex(pd.Index(ids.astype(str)))
            ok = y.notna().to_numpy()
            task = m.get("task", "classification")
            metric = bind_metric(m["metric"], comp.classes)  # the run's own metric (its config may differ)
            s = shift_cv(comp_dir, ids[ok], y[ok].to_numpy(np.int64), values[ok], metric, task)
        except (OSError, ValueError, KeyError) as e:
            out.append(f"  {d.name}: skipped ({type(e).__name__}: {e})")
            continue
        out.append(f"  {d.name:<32} cv {m.get('cv', float('nan')):.4f}  weighted {s['weighted_cv']:.4f}  "
                   f"test-like {s['test_like_cv']:.4f}")
    if out:
        out.insert(0, f"runs under {comp_dir} (metric {comp.metric}): plain vs importance-weighted vs "
                      f"test-like CV (pooled OOF)")
    return out
