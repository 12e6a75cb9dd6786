"""The fuzz test's image-byte and config mutation families (see fuzz_mutations.FAMILIES)."""
from __future__ import annotations

import cv2
import numpy as np

from fuzz_competition import CONFIG_FILE, Expect, rows_of as _rows


# ----------------------------------------------------------------------------- image bytes
def _image_target(ws, rng):
    split = rng.choice(["train", "test"])
    _, rows = _rows(ws, ws.train_csv if split == "train" else ws.sample_csv)
    return ws.image(split, rows[rng.randrange(len(rows))][0])


def img_broken(ws, rng, i):
    """Zero bytes, garbage, an HTML error page: unreadable (input.bad_images=fail)."""
    path = _image_target(ws, rng)
    kind = ["zero", "garbage", "html"][i % 3]
    path.write_bytes({"zero": b"", "garbage": bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 500))),
                      "html": b"<html><body>403 Forbidden</body></html>"}[kind])
    return Expect("error", (path.name,), what=kind)


def img_truncated(ws, rng, i):
    """Cut short: repaired and trained on, or refused naming the file."""
    path = _image_target(ws, rng)
    data = path.read_bytes()
    path.write_bytes(data[: rng.randint(len(data) // 5, len(data) - 3)])
    return Expect("either", (path.name,))


def img_odd_format(ws, rng, i):
    """Decodable but unusual: grey, RGBA, 16-bit, PNG/BMP bytes under .jpg, extreme aspect ratios, 1x1."""
    path = _image_target(ws, rng)
    g = np.random.default_rng(rng.randrange(1 << 30))
    kind = ["gray", "rgba", "png16", "bmp", "wide", "tall", "1x1"][i % 7]
    shape = {"gray": (16, 16), "rgba": (16, 16, 4), "wide": (3, 500, 3), "tall": (700, 2, 3), "1x1": (1, 1, 3)}.get(kind, (16, 16, 3))
    dtype = np.uint16 if kind == "png16" else np.uint8
    img = g.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    ext = {"rgba": ".png", "png16": ".png", "bmp": ".bmp"}.get(kind, ".jpg")
    path.write_bytes(cv2.imencode(ext, img)[1].tobytes())
    return Expect("ok", what=kind)


# ----------------------------------------------------------------------------- config
def _typo(rng, name: str) -> str:
    i = rng.randrange(len(name))
    ops = [name[:i] + name[i + 1:], name[:i] + name[i] + name[i:], name[:i] + "x" + name[i + 1:], name.upper()]
    return next(t for t in rng.sample(ops, len(ops)) if t != name and t)


def _set(ws, key: str, value) -> Expect:
    files = ws.config()
    where = CONFIG_FILE.get(key.split(".")[0], "model.yaml")  # an unknown section goes to the model file
    node = files[where]
    *path, last = key.split(".")
    for p in path:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    ws.write_config(files)
    return Expect("error", (where,), config=True, what=f"{key}={value!r}")


NAME_KEYS = {"model.backbone": "test_resnet", "loss.name": "ce", "optim.name": "adamw", "schedule.name": "cosine",
             "competition.metric": "accuracy", "predict.tta.0": "none", "augment.train": "none",
             "model.head.activation": "relu"}


def cfg_name_typo(ws, rng, i):
    key = sorted(NAME_KEYS)[i % len(NAME_KEYS)]
    return _set(ws, key, _typo(rng, NAME_KEYS[key]) + ("x" if key == "loss.name" else ""))


NEGATIVE = [("optim.lr.backbone", -1e-3), ("optim.lr.head", -3e-3), ("train.batch_size", -8), ("stages.0.epochs", -1),
            ("folds.n", -2), ("folds.n", 1), ("input.size", -8), ("loss.label_smoothing", -0.1),
            ("optim.weight_decay", -1.0), ("schedule.warmup_epochs", -1.0), ("model.drop_rate", -0.5),
            ("train.accum_steps", 0)]


def cfg_negative(ws, rng, i):
    return _set(ws, *NEGATIVE[i % len(NEGATIVE)])


WRONG_TYPE = {"optim.lr.backbone": "fast", "train.batch_size": [8], "folds.n": "two", "stages.0.epochs": 1.5,
              "input.size": {"w": 8}, "input.cache": "yes please", "predict.tta": "hflip,vflip",
              "loss.label_smoothing": "0.1.2", "train.seed": None}


def cfg_wrong_type(ws, rng, i):
    key = sorted(WRONG_TYPE)[i % len(WRONG_TYPE)]
    return _set(ws, key, WRONG_TYPE[key])


def cfg_unknown_key(ws, rng, i):
    key = ["optim.lrr", "trian.epochs", "model.backbon", "input.sizee", "stages.0.epoch", "loss.gama"][i % 6]
    return _set(ws, key, 1)


def cfg_pretrained_not_path(ws, rng, i):
    """model.pretrained is false/true/'hub'/a file path: a number or a list is no path."""
    return _set(ws, "model.pretrained", [3, 0.5, [1]][i % 3])


def cfg_paths(ws, rng, i):
    """The config points at what is not there: the root, train.csv, the sample, an image folder."""
    key, value = [("competition.root", str(ws.root / "nope")), ("competition.train_csv", "trian.csv"),
                  ("competition.sample_submission", "sample_sub.csv"), ("competition.train_dir", "imgs")][i % 4]
    e = _set(ws, key, value)
    return Expect("error", (value if key != "competition.root" else "nope",), what=e.what)


def cfg_huge_lr(ws, rng, i):
    """LR 1e6 with a few steps an epoch: the weights blow up (not always in the loss first)."""
    files = ws.config()
    files["model.yaml"]["optim"] = {"name": ["sgd", "adamw"][i % 2], "lr": {"backbone": 1e6, "head": 1e6}}
    files["base.yaml"]["train"]["batch_size"] = 4
    ws.write_config(files)
    return Expect("either", ("fold",), what=f"optim {files['model.yaml']['optim']}, batch_size 4")


def img_wrong_place(ws, rng, i):
    """The image saved under another extension (x.JPG, x.png, x.jpeg) or a folder where the image should be."""
    path = _image_target(ws, rng)
    kind = [".JPG", ".png", ".jpeg", "dir"][i % 4]
    if kind == "dir":
        path.unlink()
        path.mkdir()
    else:
        path.rename(path.with_suffix(kind))
    return Expect("error", (path.name,), what=kind)
