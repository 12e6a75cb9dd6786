"""Measure the near-duplicate confirmation on real images (ensemble/data/dups_confirm.py, dups_geometry.py).

    HF_HUB_OFFLINE=1 python scripts/measure_dups.py [--datasets ../shared/datasets] [--n-pos 40]
        [--n-framed 400] [--max-pairs 300] [--no-embed] [--pairs-csv pairs.csv]
    python scripts/measure_dups.py --from-csv pairs.csv   # the report again, e.g. after changing a threshold

Three families of pairs per set (ham10000, chest_xray; training images only):
- positives: n-pos images, each against a byte copy, a 160 px resize, a JPEG q70 re-encode, a 3%
  crop, +20 brightness and crop + q70 (pos); the same six copies of the image put in a fundus
  camera's frame (pos_framed), and in that frame with the camera's artefacts (pos_camera);
- negatives: every pHash candidate pair (distance <= threshold) between different lesions
  (ham10000: lesion_id) or different patients (chest_xray: patient);
- look-alikes: n-framed images of different lesions/patients, each cropped into one identical
  fundus camera frame (a black surround, a circular field with a notch), then every pHash candidate
  pair among them, topped up with the next closest pairs by pHash distance to max-pairs (random
  among ties): different pictures sharing one layout
  (lookalike); and the same images with the camera's artefacts as well (lookalike_camera): content
  dimmed to 30% contrast (a fundus photograph's dim retina), one vignetting and the same 12 dust
  specks on the optics in every picture, which is what a detail correlation cannot tell apart.
Prints each score's distribution per family, the precision and recall of the correlation rule
(thumbnail, detail, embedding cosine) with and without the geometry check, and the geometry's cost.
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
from ensemble.data import dups  # noqa: E402
from ensemble.data import dups_confirm  # noqa: E402
from ensemble.data import dups_geometry  # noqa: E402

SETS = {"ham10000": ("image", "lesion_id", ".jpg"), "chest_xray": ("id", "patient", ".jpeg")}
FAMILIES = ("pos", "pos_framed", "pos_camera", "neg", "lookalike", "lookalike_camera")
CAMERA = {"pos_framed": False, "pos_camera": True, "lookalike": False, "lookalike_camera": True}
LOW_GATE = 0.8  # a lower --min-corr: every 3% crop fails the default 0.98 thumbnail gate


def fundus_frame(img: np.ndarray, size: int = 224, artefacts: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): the image's centre 90% inside a fundus camera's frame, the
    same for every image: black outside a centred disc of radius 0.46 x size, with a square notch
    cut into the rim at the upper right (where many fundus cameras put theirs). artefacts: also the
    camera's own marks, the same in every picture: content at 30% contrast, a radial vignetting and
    12 dark dust specks (fixed positions)."""
    h, w = img.shape[:2]
    m = round(min(h, w) * 0.05)
    content = cv2.resize(img[m:h - m, m:w - m], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    c, r = size // 2, size * 0.46
    cv2.circle(mask, (c, c), round(r), 255, -1)
    x, y, n = round(c + r * np.cos(np.pi / 4.5)), round(c - r * np.sin(np.pi / 4.5)), max(2, size // 32)
    cv2.rectangle(mask, (x - n, y - n), (x + n, y + n), 0, -1)
    inside = mask[..., None] > 0
    if artefacts:
        mean = content[inside[..., 0]].mean(0)
        yy, xx = np.mgrid[:size, :size]
        vignette = np.clip(1 - 0.6 * (np.hypot(xx - c, yy - c) / r) ** 2, 0.3, 1)[..., None]
        specks = np.zeros((size, size), np.float32)
        rng = np.random.default_rng(1)  # one camera: the same specks in every picture
        for _ in range(12):
            sx, sy = rng.integers(round(0.18 * size), round(0.82 * size), 2)
            cv2.circle(specks, (int(sx), int(sy)), int(rng.integers(1, 4)), 1.0, -1)
        content = (mean + (content - mean) * 0.3) * vignette - 50 * cv2.GaussianBlur(specks, (0, 0), 1.0)[..., None]
    return np.clip(np.where(inside, content, 0), 0, 255).astype(np.uint8)


def variants(src: Path, out: Path, img: np.ndarray | None = None) -> dict[str, Path]:
    """Six copies of src (or of img, first written to out as a q95 JPEG): -> {name: path}."""
    if img is not None:
        cv2.imwrite(str(out / f"{src.stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        src = out / f"{src.stem}.jpg"
    img = cv2.imread(str(src))
    h, w = img.shape[:2]
    c = max(1, round(0.03 * h)), max(1, round(0.03 * w))
    crop = cv2.resize(img[c[0]:h - c[0], c[1]:w - c[1]], (w, h), interpolation=cv2.INTER_AREA)
    made = {"copy": None, "resize160": cv2.resize(img, (160, 160), interpolation=cv2.INTER_AREA),
            "jpeg70": img, "crop3": crop, "bright20": np.clip(img.astype(np.int16) + 20, 0, 255).astype(np.uint8),
            "crop3_jpeg70": crop}
    paths = {"source": src}
    for name, arr in made.items():
        p = out / f"{src.stem}_{name}.jpg"
        if arr is None:
            shutil.copyfile(src, p)
        else:
            cv2.imwrite(str(p), arr, [cv2.IMWRITE_JPEG_QUALITY, 70 if "jpeg70" in name else 95])
        paths[name] = p
    return paths


def score(paths: list[str], i: np.ndarray, j: np.ndarray, embed, family: str, kinds, seconds: dict) -> pd.DataFrame:
    """Every check's score of pairs (paths[i], paths[j]) -> one row per pair."""
    h = dups.hash_images(paths, "phash", workers=1)
    det, cos = dups_confirm.pair_scores(paths, i, j, embed, workers=1)
    t = time.perf_counter()
    inl, ratio, kp = dups_geometry.geometry_scores(paths, i, j, workers=1)
    seconds["geometry"] += time.perf_counter() - t
    seconds["pairs"] += len(i)
    return pd.DataFrame({"family": family, "kind": kinds, "a": np.asarray(paths)[i], "b": np.asarray(paths)[j],
                         "grey32": dups.thumb_corr(h.thumbs, i, j), "detail": det, "cos": cos, "inliers": inl,
                         "ratio": ratio, "keypoints": kp})


def measure_set(root: Path, id_col: str, group_col: str, ext: str, args, embed, tmp: Path, rng,
                seconds: dict) -> list[pd.DataFrame]:
    df = pd.read_csv(root / "train.csv", dtype=str)
    if args.max_images:
        df = df.head(args.max_images)
    paths = [str(root / "train" / f"{i}{ext}") for i in df[id_col]]
    grp = df[group_col].to_numpy()
    out = []
    t0 = time.perf_counter()
    h = dups.hash_images(paths, "phash", workers=1)
    i, j, _, _ = dups.near_pairs(h.hashes, args.threshold, h.ok)
    keep = (grp[i] != grp[j]) & (h.sha1[i] != h.sha1[j])
    rows = np.unique(np.concatenate([i[keep], j[keep]]))  # score the candidates only: index them anew
    at = {int(r): k for k, r in enumerate(rows)}
    sub = [paths[r] for r in rows]
    ii, jj = np.array([at[int(a)] for a in i[keep]], np.int64), np.array([at[int(b)] for b in j[keep]], np.int64)
    out.append(score(sub, ii, jj, embed, "neg", "", seconds))
    print(f"{root.name}: {len(paths)} images hashed, {int(keep.sum())} negatives (pHash <= {args.threshold}, "
          f"different {group_col}s) scored in {time.perf_counter() - t0:.0f} s")
    from ensemble.data.images import decode
    for src in rng.choice(len(paths), min(args.n_pos, len(paths)), replace=False) if args.n_pos else []:
        for family in ("pos", "pos_framed", "pos_camera"):
            framed = (cv2.cvtColor(fundus_frame(decode(paths[src])[0], artefacts=CAMERA[family]), cv2.COLOR_RGB2BGR)
                      if family in CAMERA else None)
            made = variants(Path(paths[src]), tmp / family, framed)
            vp = [str(p) for p in made.values()]
            n = len(vp) - 1
            out.append(score(vp, np.zeros(n, np.int64), np.arange(1, n + 1), embed, family, list(made)[1:], seconds))
    # look-alikes: one image per lesion/patient, framed alike, then the pairs a pHash proposes
    pick = rng.permutation(np.flatnonzero(~pd.Series(grp).duplicated().to_numpy()))[:args.n_framed]
    for family in ("lookalike", "lookalike_camera"):
        fp = []
        for r in pick:
            p = tmp / family / f"{Path(paths[r]).stem}.jpg"
            cv2.imwrite(str(p), cv2.cvtColor(fundus_frame(decode(paths[r])[0], artefacts=CAMERA[family]),
                                             cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            fp.append(str(p))
        hf = dups.hash_images(fp, "phash", workers=1)
        i, j, d, _ = dups.near_pairs(hf.hashes, 64, hf.ok)
        k = np.lexsort((rng.random(len(d)), d))[:args.max_pairs]  # the closest pairs first, ties at random
        print(f"{root.name}: {len(fp)} {family} images of different {group_col}s: {int((d <= args.threshold).sum())} "
              f"of {len(d)} pairs within pHash {args.threshold}; scoring the {len(k)} closest (distance "
              f"{d[k].min() if len(k) else '-'}..{d[k].max() if len(k) else '-'})")
        out.append(score(fp, i[k], j[k], embed, family, [f"phash{x}" for x in d[k]], seconds))
    for frame in out:
        frame.insert(0, "set", root.name)
    return out


def describe(name: str, x: np.ndarray) -> str:
    x = x[~np.isnan(x)]
    if not len(x):
        return f"    {name}: none"
    q = np.percentile(x, [0, 1, 5, 50, 95, 99, 100])
    return (f"    {name:8s} min {q[0]:7.3f} p1 {q[1]:7.3f} p5 {q[2]:7.3f} median {q[3]:7.3f} p95 {q[4]:7.3f} "
            f"p99 {q[5]:7.3f} max {q[6]:7.3f}")


def rules(p: pd.DataFrame, embedded: bool) -> dict[str, np.ndarray]:
    """Each rule's verdict per pair: the confirmation before (detail, cosine) and now (+ geometry),
    the geometry alone, and the whole pipeline (the 32 px thumbnail gate first) before and now."""
    cos = p["cos"].to_numpy() if embedded else np.full(len(p), np.nan)
    corr = dups_confirm.confirmed(p["detail"].to_numpy(), cos)
    geo = dups_geometry.geometry_confirmed(p["inliers"].to_numpy(), p["ratio"].to_numpy(), p["keypoints"].to_numpy())
    gate = p["grey32"].to_numpy() >= dups.DEFAULT_MIN_CORR
    low = p["grey32"].to_numpy() >= LOW_GATE
    return {"detail" + ("+cos" if embedded else "") + " (before)": corr, "geometry alone": geo,
            "detail" + ("+cos" if embedded else "") + "+geometry (now)": corr & geo,
            "pipeline before (thumbnail gate)": gate & corr, "pipeline now (thumbnail gate)": gate & corr & geo,
            f"pipeline now, --min-corr {LOW_GATE}": low & corr & geo}


def report(p: pd.DataFrame, embedded: bool, seconds: dict | None) -> None:
    print("\nscore distributions per family:")
    for fam in FAMILIES:
        q = p[p["family"] == fam]
        print(f"  {fam} (n={len(q)}):")
        for col in ("grey32", "detail", "cos", "inliers", "ratio", "keypoints"):
            print(describe(col, q[col].to_numpy(np.float64)))
    print("\nweakest positive per copy kind (detail, inliers, ratio):")
    for (fam, kind), q in p[p["family"].str.startswith("pos")].groupby(["family", "kind"]):
        print(f"  {fam:10s} {kind:12s} detail {q['detail'].min():.3f}  inliers {q['inliers'].min():4d}  "
              f"ratio {q['ratio'].min():.3f}")
    fam = p["family"].to_numpy()
    pos = np.char.startswith(fam.astype(str), "pos")
    negs = [f for f in FAMILIES if not f.startswith("pos")]
    print(f"\nrules (thumbnail >= {dups.DEFAULT_MIN_CORR}, detail >= {dups_confirm.DEFAULT_MIN_DETAIL}"
          + (f", cosine >= {dups_confirm.DEFAULT_MIN_COS}" if embedded else "")
          + f"; geometry: inliers >= {dups_geometry.DEFAULT_MIN_INLIERS} and ratio >= {dups_geometry.DEFAULT_MIN_INLIER_RATIO}); "
          f"positives confirmed (recall), negatives confirmed, precision over all pairs:")
    print(f"  {'rule':34s} {'recall':>16s}  " + "  ".join(f"{f:>16s}" for f in negs) + f"  {'precision':>9s}")
    for name, ok in rules(p, embedded).items():
        tp, fp = int((ok & pos).sum()), int((ok & ~pos).sum())
        cells = "  ".join(f"{int((ok & (fam == f)).sum()):>7d}/{int((fam == f).sum()):<8d}" for f in negs)
        prec = f"{tp / (tp + fp):9.3f}" if tp + fp else f"{'-':>9s}"
        print(f"  {name:34s} {tp:5d}/{int(pos.sum()):<4d} {tp / max(int(pos.sum()), 1):.3f}  {cells}  {prec}")
    if seconds is None:
        return
    print(f"\ngeometry cost: {seconds['geometry']:.1f} s for {seconds['pairs']} pairs, decoding included "
          f"({1000 * seconds['geometry'] / max(seconds['pairs'], 1):.0f} ms per pair, 1 thread)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--n-pos", type=int, default=40, help="images per set copied six ways (twice: plain, framed)")
    ap.add_argument("--n-framed", type=int, default=400, help="images per set put in one frame for look-alikes")
    ap.add_argument("--max-pairs", type=int, default=300, help="look-alike pairs scored per set (random subset)")
    ap.add_argument("--max-images", type=int, default=0, help="hash only the first N train images per set (0: all)")
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--threshold", type=int, default=dups.DEFAULT_THRESHOLD, help="pHash distance of candidates")
    ap.add_argument("--seed", type=int, default=0, help="which images are copied and framed (0: the figures' draw)")
    ap.add_argument("--pairs-csv", help="also write every pair's scores here")
    ap.add_argument("--from-csv", help="print the report from a --pairs-csv file of an earlier run (no scoring)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    embed = None
    if not args.no_embed:
        from ensemble.shift.features import embed_images
        embed = lambda x: embed_images(x, "efficientnet_lite0", pretrained=True)  # noqa: E731
    if args.from_csv:
        p = pd.read_csv(args.from_csv)
        report(p, bool(p["cos"].notna().any()), None)
        return 0
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp())
    for sub in FAMILIES:
        (tmp / sub).mkdir()
    seconds = {"geometry": 0.0, "pairs": 0}
    frames = []
    try:
        for name, (id_col, group_col, ext) in SETS.items():
            root = Path(args.datasets) / name
            if not root.is_dir():
                print(f"skip {name}: {root} not found")
                continue
            frames += measure_set(root, id_col, group_col, ext, args, embed, tmp, rng, seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not frames:
        print("error: no dataset found", file=sys.stderr)
        return 2
    p = pd.concat(frames, ignore_index=True)
    if args.pairs_csv:
        p.to_csv(args.pairs_csv, index=False)
    report(p, embed is not None, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
