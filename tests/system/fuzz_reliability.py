"""The fuzz test's families for what must be refused before anything is written (see
fuzz_mutations.FAMILIES): ids and links leaving the competition folder, link loops, image headers over
the pixel limit, unsafe run names, a Latin-1 config, an absent device, bad weights files, labels that
differ from a class only in case."""
from __future__ import annotations

import os

import torch

from conftest import evil_pickle, png_header
from fuzz_competition import Expect, pick as _pick, rows_of as _rows, write_rows
from fuzz_file_mutations import _image_target, _set


def ids_escape(ws, rng, i):
    """A train or sample id that leaves the image folder ('../x', an absolute path)."""
    path = (ws.train_csv, ws.sample_csv)[i % 2]
    header, rows = _rows(ws, path)
    rows[rng.randrange(len(rows))][0] = rng.choice(["../x", "../../etc/passwd", "/etc/passwd", "a/../../b"])
    write_rows(path, [header] + rows)
    return Expect("error", (path.name,), what="id leaving the folder")


def img_link_out(ws, rng, i):
    """An image replaced by a symbolic link to a copy outside the competition folder, or by a loop."""
    path = _image_target(ws, rng)
    data = path.read_bytes()
    path.unlink()
    if i % 2:
        os.symlink(path.name, path)
        what = "loop"
    else:
        (ws.root / "outside.jpg").write_bytes(data)
        os.symlink(ws.root / "outside.jpg", path)
        what = "link out"
    return Expect("error", (f"id '{path.stem}'",), what=what)


def img_huge_header(ws, rng, i):
    """A PNG (under the .jpg name) whose header declares 20000 x 20000 (or 12000 x 9000) pixels."""
    path = _image_target(ws, rng)
    path.write_bytes(png_header(*[(20000, 20000), (12000, 9000)][i % 2]))
    return Expect("error", (path.name,), what="pixel bomb")


def cfg_name_unsafe(ws, rng, i):
    key, value = [("name", "../.."), ("name", ".."), ("name", "."), ("name", "x/../y"), ("name", "a b"),
                  ("competition.name", "../other")][i % 6]
    return _set(ws, key, value)


def cfg_latin1(ws, rng, i):
    """A config file saved as Latin-1 (an accented comment)."""
    name = ("model.yaml", "base.yaml")[i % 2]
    path = ws.root / name
    path.write_bytes(path.read_bytes() + "# réglages du modèle\n".encode("latin-1"))
    return Expect("error", (name,), config=True, what="latin-1")


def cfg_device_absent(ws, rng, i):
    e = _set(ws, "train.device", ["cuda:7", "mps"][i % 2])
    return Expect("error", ("train.device",), config=True, what=e.what)


def cfg_weights_file(ws, rng, i):
    """model.pretrained names a file with pickled code, of other shapes, or cut short."""
    kind = ["pickle", "shape", "cut"][i % 3]
    path = ws.root / f"{kind}.pt"
    if kind == "pickle":
        evil_pickle(path)
    elif kind == "shape":
        torch.save({"conv1.weight": torch.zeros(3, 3)}, path)
    else:
        path.write_bytes(b"PK\x03\x04" + bytes(rng.getrandbits(8) for _ in range(64)))
    _set(ws, "model.pretrained", str(path))
    return Expect("error", (str(path),), config=True, what=kind)


def cfg_max_pixels(ws, rng, i):
    """input.max_pixels below the images' 16 x 16: every image is over it."""
    e = _set(ws, "input.max_pixels", [100, 255][i % 2])
    return Expect("error", (str(ws.comp / "train"),), config=True, what=e.what)


def labels_case_variant(ws, rng, i):
    """Classes from the labels: 'Cat' / 'cat ' / 'c-at' beside 'cat' is a typo, refused naming train.csv."""
    header, rows = _rows(ws)
    cls = rng.choice(["cat", "dog", "fox"])
    variant = rng.choice([cls.upper(), cls.capitalize(), f"{cls}_", f"{cls[0]}-{cls[1:]}"])
    for k in _pick(rng, [r for r in rows if r[1] == cls], rng.randint(1, 3)):
        [r for r in rows if r[1] == cls][k][1] = variant
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", ("train.csv",), what=f"{variant!r} beside {cls!r}")


# name -> (mutation, instances, variants it applies to)
RELIABILITY_FAMILIES = {
    "ids_escape": (ids_escape, 4, ("probs", "label")),
    "img_link_out": (img_link_out, 4, ("probs", "label")),
    "img_huge_header": (img_huge_header, 2, ("probs", "label")),
    "cfg_name_unsafe": (cfg_name_unsafe, 6, ("probs",)),
    "cfg_latin1": (cfg_latin1, 2, ("probs",)),
    "cfg_device_absent": (cfg_device_absent, 2, ("probs",)),
    "cfg_weights_file": (cfg_weights_file, 3, ("probs",)),
    "cfg_max_pixels": (cfg_max_pixels, 2, ("probs",)),
    "labels_case_variant": (labels_case_variant, 3, ("label",)),
}
