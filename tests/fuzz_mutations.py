"""The fuzz test's mutation families: each takes a fresh Workspace and a seeded RNG, breaks (or
harmlessly varies) one thing and returns what must happen (an Expect)."""
from __future__ import annotations

import random

import cv2
import numpy as np

from fuzz_competition import CLASSES, CONFIG_FILE, Expect, Workspace, read_rows, write_rows

TRAIN, SAMPLE = "train.csv", "sample_submission.csv"


def _rows(ws: Workspace, path=None):
    rows = read_rows(path or ws.train_csv)
    return rows[0], rows[1:]


def _pick(rng: random.Random, rows: list, k: int) -> list[int]:
    return sorted(rng.sample(range(len(rows)), k))


# ----------------------------------------------------------------------------- labels
def labels_unknown(ws, rng):
    header, rows = _rows(ws)
    bad = rng.choice(["Cat", "kat", "bird", "cat dog", "?", "3", "fox_", "DOG"])
    for i in _pick(rng, rows, rng.randint(1, 3)):
        rows[i][1] = bad
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def labels_empty(ws, rng):
    header, rows = _rows(ws)
    for i in _pick(rng, rows, rng.randint(1, 3)):
        rows[i][1] = rng.choice(["", " ", "  \t"])
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def labels_nan(ws, rng):
    header, rows = _rows(ws)
    for i in _pick(rng, rows, rng.randint(1, 2)):
        rows[i][1] = rng.choice(["nan", "NaN", "NA", "null", "None", "N/A"])
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def labels_whitespace(ws, rng):
    header, rows = _rows(ws)
    for i in _pick(rng, rows, rng.randint(1, 6)):
        rows[i][1] = rng.choice([" ", "\t", "  "]) + rows[i][1] + rng.choice(["", " ", "\t"])
    write_rows(ws.train_csv, [header] + rows)
    return Expect("ok")


def labels_numeric(ws, rng):
    """Classes named 0, 1, 2 (or 10, 20, 30: numeric order) in train.csv and the sample."""
    names = rng.choice([("0", "1", "2"), ("1", "2", "3"), ("2", "10", "30")])
    code = dict(zip(CLASSES, names))
    header, rows = _rows(ws)
    write_rows(ws.train_csv, [header] + [[r[0], code[r[1]]] for r in rows])
    sh, srows = _rows(ws, ws.sample_csv)
    if ws.variant == "probs":
        sh = [sh[0], *(code[c] for c in sh[1:])]
    else:
        srows = [[r[0], names[0]] for r in srows]
    write_rows(ws.sample_csv, [sh] + srows)
    return Expect("ok", classes=names)


def labels_one_row(ws, rng):
    """A class left with 1 row: 2 folds cannot both hold it."""
    header, rows = _rows(ws)
    c = rng.choice(CLASSES)
    keep = rng.choice([r[0] for r in rows if r[1] == c])
    write_rows(ws.train_csv, [header] + [r for r in rows if r[1] != c or r[0] == keep])
    return Expect("error", (f"'{c}'", c))


def labels_stray_inferred(ws, rng):
    """Label sample (classes come from the labels): a stray label is a 4th class, and the run must say so."""
    header, rows = _rows(ws)
    for i in _pick(rng, rows, 2):
        rows[i][1] = rng.choice(["bird", "Cat", "wolf"])
    write_rows(ws.train_csv, [header] + rows)
    found = tuple(sorted({r[1] for r in rows}))
    return Expect("either", (TRAIN,), classes=found, shown_classes=True)


# ----------------------------------------------------------------------------- ids
def ids_dup_train(ws, rng):
    header, rows = _rows(ws)
    i, j = rng.sample(range(len(rows)), 2)
    rows[j][0] = rows[i][0]
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def ids_dup_sample(ws, rng):
    header, rows = _rows(ws, ws.sample_csv)
    i, j = rng.sample(range(len(rows)), 2)
    rows[j][0] = rows[i][0]
    write_rows(ws.sample_csv, [header] + rows)
    return Expect("error", (SAMPLE,))


def ids_empty(ws, rng):
    path = rng.choice([ws.train_csv, ws.sample_csv])
    header, rows = _rows(ws, path)
    rows[rng.randrange(len(rows))][0] = rng.choice(["", " "])
    write_rows(path, [header] + rows)
    return Expect("error", (path.name,))


def ids_no_image(ws, rng):
    """A train row or a sample id whose image is not there (input.bad_images=fail)."""
    split = rng.choice(["train", "test"])
    header, rows = _rows(ws, ws.train_csv if split == "train" else ws.sample_csv)
    rid = rows[rng.randrange(len(rows))][0]
    ws.image(split, rid).unlink()
    return Expect("error", (f"{rid}.jpg",))


def _rename_ids(ws, rng, make):
    """Rename k train and k test ids (rows and image files) with make(rng, i)."""
    for split, path in (("train", ws.train_csv), ("test", ws.sample_csv)):
        header, rows = _rows(ws, path)
        for n, i in enumerate(_pick(rng, rows, rng.randint(1, 4))):
            new = make(rng, n) + ("t" if split == "test" else "")
            ws.image(split, rows[i][0]).rename(ws.image(split, new))
            rows[i][0] = new
        write_rows(path, [header] + rows)
    return Expect("ok")


def ids_unicode(ws, rng):
    return _rename_ids(ws, rng, lambda r, n: r.choice(["café", "猫", "Ölbild", "snow☃", "a b"]) + f"_{n}")


def ids_leading_zeros(ws, rng):
    return _rename_ids(ws, rng, lambda r, n: "0" * r.randint(1, 3) + str(7 + n))


def ids_numeric_all(ws, rng):
    """Every id an integer, test ids with leading zeros ('0001'): must stay text end to end."""
    for split, path, fmt in (("train", ws.train_csv, "{}"), ("test", ws.sample_csv, "{:04d}")):
        header, rows = _rows(ws, path)
        for n, r in enumerate(rows):
            new = fmt.format(n + 1)
            ws.image(split, r[0]).rename(ws.image(split, new))
            r[0] = new
        write_rows(path, [header] + rows)
    return Expect("ok")


# ----------------------------------------------------------------------------- columns
def cols_train_renamed(ws, rng):
    header, rows = _rows(ws)
    k = rng.randrange(2)
    header[k] = rng.choice(["Label", "class", "diagnosis", "image_id", "ID", "id "]) if k else rng.choice(["image_id", "ID", "Id"])
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def cols_train_dropped(ws, rng):
    header, rows = _rows(ws)
    k = rng.randrange(2)
    write_rows(ws.train_csv, [[c for j, c in enumerate(header) if j != k]] + [[v for j, v in enumerate(r) if j != k] for r in rows])
    return Expect("error", (TRAIN,))


def cols_train_reordered_extra(ws, rng):
    header, rows = _rows(ws)
    extra = rng.choice(["age", "patient", "notes", "label2"])
    vals = [rng.choice(["", "NA", "3", "x,y", "ü"]) for _ in rows]
    if rng.random() < 0.5:
        write_rows(ws.train_csv, [[extra, header[1], header[0]]] + [[v, r[1], r[0]] for v, r in zip(vals, rows)])
    else:
        write_rows(ws.train_csv, [header + [extra]] + [r + [v] for v, r in zip(vals, rows)])
    return Expect("ok")


def csv_encoding(ws, rng):
    """A BOM and/or CRLF line ends in train.csv or the sample (Excel on Windows)."""
    path = rng.choice([ws.train_csv, ws.sample_csv])
    rows = read_rows(path)
    bom, crlf = rng.choice([(True, False), (False, True), (True, True)])
    write_rows(path, rows, newline="\r\n" if crlf else "\n", bom=bom)
    return Expect("ok")


def csv_empty(ws, rng):
    path = rng.choice([ws.train_csv, ws.sample_csv])
    rows = read_rows(path)
    kind = rng.choice(["zero", "header", "blank"])
    path.write_bytes(b"" if kind == "zero" else (b"\n\n" if kind == "blank" else (",".join(rows[0]) + "\n").encode()))
    return Expect("error", (path.name,))


# ----------------------------------------------------------------------------- sample submission
def sample_dropped_class(ws, rng):
    """A sample with 2 of the 3 classes' columns (ISIC 2017 style): a valid subset."""
    header, rows = _rows(ws, ws.sample_csv)
    k = rng.randint(1, len(header) - 1)
    write_rows(ws.sample_csv, [[c for j, c in enumerate(header) if j != k]] + [[v for j, v in enumerate(r) if j != k] for r in rows])
    return Expect("ok")


def sample_stranger_column(ws, rng):
    """A probability column that is no class: added or a class column misspelt."""
    header, rows = _rows(ws, ws.sample_csv)
    name = rng.choice(["wolf", "Cat", "dog ", "fox2", "other"])
    if rng.random() < 0.5:
        header, rows = header + [name], [r + ["0"] for r in rows]
    else:
        header[rng.randint(1, 3)] = name
    write_rows(ws.sample_csv, [header] + rows)
    return Expect("error", (SAMPLE,))


def sample_id_only(ws, rng):
    header, rows = _rows(ws, ws.sample_csv)
    write_rows(ws.sample_csv, [header[:1]] + [r[:1] for r in rows])
    return Expect("error", (SAMPLE,))


def sample_shuffled_renamed(ws, rng):
    """Sample rows in another order, its id column named otherwise, its class columns reordered."""
    header, rows = _rows(ws, ws.sample_csv)
    rng.shuffle(rows)
    if rng.random() < 0.5:
        header[0] = rng.choice(["image_id", "Id", "name"])
    if ws.variant == "probs":
        order = [0] + rng.sample(range(1, len(header)), len(header) - 1)
        header, rows = [header[j] for j in order], [[r[j] for j in order] for r in rows]
    else:
        rows = [[r[0], rng.choice(["", "0", "x"])] for r in rows]
    write_rows(ws.sample_csv, [header] + rows)
    return Expect("ok")


# ----------------------------------------------------------------------------- image bytes
def _image_target(ws, rng):
    split = rng.choice(["train", "test"])
    _, rows = _rows(ws, ws.train_csv if split == "train" else ws.sample_csv)
    return ws.image(split, rows[rng.randrange(len(rows))][0])


def img_broken(ws, rng):
    """Zero bytes, garbage, an HTML error page: unreadable (input.bad_images=fail)."""
    path = _image_target(ws, rng)
    kind = rng.choice(["zero", "garbage", "html"])
    path.write_bytes({"zero": b"", "garbage": bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 500))),
                      "html": b"<html><body>403 Forbidden</body></html>"}[kind])
    return Expect("error", (path.name,))


def img_truncated(ws, rng):
    """Cut short: repaired and trained on, or refused naming the file."""
    path = _image_target(ws, rng)
    data = path.read_bytes()
    path.write_bytes(data[: rng.randint(len(data) // 5, len(data) - 3)])
    return Expect("either", (path.name,))


def img_odd_format(ws, rng):
    """Decodable but unusual: grey, RGBA, 16-bit, PNG/BMP bytes under .jpg, extreme aspect ratios, 1x1."""
    path = _image_target(ws, rng)
    g = np.random.default_rng(rng.randrange(1 << 30))
    kind = rng.choice(["gray", "rgba", "png16", "bmp", "wide", "tall", "1x1"])
    shape = {"gray": (16, 16), "rgba": (16, 16, 4), "wide": (3, 500, 3), "tall": (700, 2, 3), "1x1": (1, 1, 3)}.get(kind, (16, 16, 3))
    dtype = np.uint16 if kind == "png16" else np.uint8
    img = g.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    ext = {"rgba": ".png", "png16": ".png", "bmp": ".bmp"}.get(kind, ".jpg")
    path.write_bytes(cv2.imencode(ext, img)[1].tobytes())
    return Expect("ok")


# ----------------------------------------------------------------------------- config
def _typo(rng, name: str) -> str:
    i = rng.randrange(len(name))
    ops = [name[:i] + name[i + 1:], name[:i] + name[i] + name[i:], name[:i] + "x" + name[i + 1:], name.upper()]
    return next(t for t in rng.sample(ops, len(ops)) if t != name and t)


def _set(ws, key: str, value) -> Expect:
    files = ws.config()
    node = files[CONFIG_FILE[key.split(".")[0]]]
    *path, last = key.split(".")
    for p in path:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    ws.write_config(files)
    return Expect("error", (CONFIG_FILE[key.split(".")[0]],), rerun_after_fix=True)


NAME_KEYS = {"model.backbone": "test_resnet", "loss.name": "ce", "optim.name": "adamw", "schedule.name": "cosine",
             "competition.metric": "accuracy", "predict.tta.0": "none", "augment.train": "none",
             "model.head.activation": "relu"}


def cfg_name_typo(ws, rng):
    key = rng.choice(sorted(NAME_KEYS))
    return _set(ws, key, _typo(rng, NAME_KEYS[key]) + ("x" if key == "loss.name" else ""))


NEGATIVE = [("optim.lr.backbone", -1e-3), ("optim.lr.head", -3e-3), ("train.batch_size", -8), ("stages.0.epochs", -1),
            ("folds.n", -2), ("folds.n", 1), ("input.size", -8), ("loss.label_smoothing", -0.1),
            ("optim.weight_decay", -1.0), ("schedule.warmup_epochs", -1.0), ("model.drop_rate", -0.5),
            ("train.accum_steps", 0)]


def cfg_negative(ws, rng):
    return _set(ws, *rng.choice(NEGATIVE))


WRONG_TYPE = {"optim.lr.backbone": "fast", "train.batch_size": [8], "folds.n": "two", "stages.0.epochs": 1.5,
              "input.size": {"w": 8}, "input.cache": "yes please", "model.pretrained": 3, "predict.tta": "hflip,vflip",
              "loss.label_smoothing": "0.1.2", "train.seed": None}


def cfg_wrong_type(ws, rng):
    key = rng.choice(sorted(WRONG_TYPE))
    return _set(ws, key, WRONG_TYPE[key])


def cfg_unknown_key(ws, rng):
    key = rng.choice(["optim.lrr", "trian.epochs", "model.backbon", "input.sizee", "stages.0.epoch", "loss.gama"])
    return _set(ws, key, 1)


# name -> (mutation, instances, variants it applies to)
FAMILIES = {
    "labels_unknown": (labels_unknown, 10, ("probs",)),
    "labels_empty": (labels_empty, 10, ("probs", "label")),
    "labels_nan": (labels_nan, 8, ("probs", "label")),
    "labels_whitespace": (labels_whitespace, 3, ("probs", "label")),
    "labels_numeric": (labels_numeric, 4, ("probs", "label")),
    "labels_one_row": (labels_one_row, 6, ("probs", "label")),
    "labels_stray_inferred": (labels_stray_inferred, 3, ("label",)),
    "ids_dup_train": (ids_dup_train, 6, ("probs", "label")),
    "ids_dup_sample": (ids_dup_sample, 6, ("probs", "label")),
    "ids_empty": (ids_empty, 8, ("probs", "label")),
    "ids_no_image": (ids_no_image, 8, ("probs", "label")),
    "ids_unicode": (ids_unicode, 3, ("probs", "label")),
    "ids_leading_zeros": (ids_leading_zeros, 3, ("probs", "label")),
    "ids_numeric_all": (ids_numeric_all, 2, ("probs", "label")),
    "cols_train_renamed": (cols_train_renamed, 10, ("probs", "label")),
    "cols_train_dropped": (cols_train_dropped, 6, ("probs", "label")),
    "cols_train_reordered_extra": (cols_train_reordered_extra, 3, ("probs", "label")),
    "csv_encoding": (csv_encoding, 4, ("probs", "label")),
    "csv_empty": (csv_empty, 10, ("probs", "label")),
    "sample_dropped_class": (sample_dropped_class, 3, ("probs",)),
    "sample_stranger_column": (sample_stranger_column, 8, ("probs",)),
    "sample_id_only": (sample_id_only, 4, ("probs", "label")),
    "sample_shuffled_renamed": (sample_shuffled_renamed, 4, ("probs", "label")),
    "img_broken": (img_broken, 10, ("probs", "label")),
    "img_truncated": (img_truncated, 5, ("probs", "label")),
    "img_odd_format": (img_odd_format, 8, ("probs", "label")),
    "cfg_name_typo": (cfg_name_typo, 12, ("probs",)),
    "cfg_negative": (cfg_negative, 14, ("probs",)),
    "cfg_wrong_type": (cfg_wrong_type, 14, ("probs",)),
    "cfg_unknown_key": (cfg_unknown_key, 6, ("probs",)),
}
