"""Measure the near-duplicate confirmation scores on real images (ensemble/data/dups_confirm.py).

    HF_HUB_OFFLINE=1 python scripts/measure_dups.py [--datasets ../shared/datasets] [--n-pos 60]

Negatives: every pHash candidate pair (distance <= 4) between different lesions (ham10000:
lesion_id) or different patients (chest_xray: patient) of the training set, i.e. what dups
used to confirm on the grey-thumbnail correlation alone. Positives: n-pos images per set, each
against a byte copy, a 160 px resize, a JPEG q70 re-encode, a 3% crop, +20 brightness and
crop + q70. Prints the score distributions and the thresholds that separate them.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ensemble.data import dups as D  # noqa: E402
from ensemble.data import dups_confirm as C  # noqa: E402

SETS = {"ham10000": ("image", "lesion_id", ".jpg"), "chest_xray": ("id", "patient", ".jpeg")}


def variants(src: Path, out: Path) -> dict[str, Path]:
    img = cv2.imread(str(src))
    h, w = img.shape[:2]
    c = max(1, round(0.03 * h)), max(1, round(0.03 * w))
    crop = cv2.resize(img[c[0]:h - c[0], c[1]:w - c[1]], (w, h), interpolation=cv2.INTER_AREA)
    made = {"copy": None, "resize160": cv2.resize(img, (160, 160), interpolation=cv2.INTER_AREA),
            "jpeg70": img, "crop3": crop, "bright20": np.clip(img.astype(np.int16) + 20, 0, 255).astype(np.uint8),
            "crop3_jpeg70": crop}
    paths = {}
    for name, arr in made.items():
        p = out / f"{src.stem}_{name}.jpg"
        if arr is None:
            shutil.copyfile(src, p)
        else:
            cv2.imwrite(str(p), arr, [cv2.IMWRITE_JPEG_QUALITY, 70 if "jpeg70" in name else 95])
        paths[name] = p
    return paths


def describe(name: str, x: np.ndarray) -> str:
    x = x[~np.isnan(x)]
    if not len(x):
        return f"  {name}: none"
    q = np.percentile(x, [0, 1, 5, 50, 95, 99, 100])
    return f"  {name} (n={len(x)}): min {q[0]:.3f} p1 {q[1]:.3f} p5 {q[2]:.3f} median {q[3]:.3f} p95 {q[4]:.3f} p99 {q[5]:.3f} max {q[6]:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--n-pos", type=int, default=60)
    ap.add_argument("--max-images", type=int, default=0, help="hash only the first N train images per set (0: all)")
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--threshold", type=int, default=D.DEFAULT_THRESHOLD, help="pHash distance of the negatives")
    args = ap.parse_args()
    embed = None
    if not args.no_embed:
        from ensemble.shift.features import embed_images
        embed = lambda x: embed_images(x, "efficientnet_lite0", pretrained=True)  # noqa: E731
    pos = {"detail": [], "cos": [], "grey32": []}
    neg = {"detail": [], "cos": [], "grey32": []}
    kinds = []
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    for name, (id_col, group_col, ext) in SETS.items():
        root = Path(args.datasets) / name
        if not root.is_dir():
            print(f"skip {name}: {root} not found")
            continue
        df = pd.read_csv(root / "train.csv", dtype=str)
        if args.max_images:
            df = df.head(args.max_images)
        paths = [str(root / "train" / f"{i}{ext}") for i in df[id_col]]
        t0 = time.perf_counter()
        h = D.hash_images(paths, "phash", workers=2)
        i, j, d, _ = D.near_pairs(h.hashes, args.threshold, h.ok)
        grp = df[group_col].to_numpy()
        keep = (grp[i] != grp[j]) & (h.sha1[i] != h.sha1[j])
        i, j = i[keep], j[keep]
        g32 = D.thumb_corr(h.thumbs, i, j)
        det, cos = C.pair_scores(paths, i, j, embed)
        print(f"{name}: {len(paths)} images hashed in {time.perf_counter() - t0:.0f} s; {len(i)} candidate pairs "
              f"(pHash <= {args.threshold}) between different {group_col}s, {int((g32 >= D.DEFAULT_MIN_CORR).sum())} "
              f"of them pass grey32 >= {D.DEFAULT_MIN_CORR}")
        for k, v in (("detail", det), ("cos", cos), ("grey32", g32)):
            neg[k].append(v)
        for src in rng.choice(paths, min(args.n_pos, len(paths)), replace=False) if args.n_pos else []:
            made = variants(Path(src), tmp)
            vp = [str(src)] + [str(p) for p in made.values()]
            a = np.zeros(len(made), np.int64)
            b = np.arange(1, len(made) + 1)
            hh = D.hash_images(vp, "phash", workers=2)
            det, cos = C.pair_scores(vp, a, b, embed)
            pos["detail"].append(det)
            pos["cos"].append(cos)
            pos["grey32"].append(D.thumb_corr(hh.thumbs, a, b))
            kinds += [f"{name}:{k}" for k in made]
    shutil.rmtree(tmp, ignore_errors=True)
    P = {k: np.concatenate(v) if v else np.zeros(0) for k, v in pos.items()}
    N = {k: np.concatenate(v) if v else np.zeros(0) for k, v in neg.items()}
    kinds = np.array(kinds)
    print("positives (true copies):")
    for k in P:
        print(describe(k, P[k]))
    for kind in sorted(set(k.split(":")[1] for k in kinds)):
        m = np.char.endswith(kinds, ":" + kind)
        print(f"    {kind}: detail min {P['detail'][m].min():.3f}, cos min {np.nanmin(P['cos'][m]) if embed else float('nan'):.3f}")
    print("negatives (pHash candidates, different lesion/patient):")
    for k in N:
        print(describe(k, N[k]))
    fp = C.confirmed(N["detail"], N["cos"] if embed else np.full(len(N["detail"]), np.nan))
    tp = C.confirmed(P["detail"], P["cos"] if embed else np.full(len(P["detail"]), np.nan))
    print(f"chosen: min_detail {C.DEFAULT_MIN_DETAIL}, min_cos {C.DEFAULT_MIN_COS}: positives confirmed "
          f"{int(tp.sum())}/{len(tp)}, negatives confirmed {int(fp.sum())}/{len(fp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
