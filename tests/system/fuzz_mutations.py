"""The fuzz test's CSV mutation families (labels, ids, columns, encodings, sample submission) and the
table of all families. Each takes a fresh Workspace, a seeded RNG and its instance number, breaks
(or harmlessly varies) one thing and returns what must happen (an Expect)."""
from __future__ import annotations

from fuzz_competition import CLASSES, Expect, pick as _pick, read_rows, rows_of as _rows, write_rows
from fuzz_file_mutations import (cfg_huge_lr, cfg_name_typo, cfg_negative, cfg_paths, cfg_pretrained_not_path,
                                 cfg_unknown_key, cfg_wrong_type, img_broken, img_odd_format, img_truncated,
                                 img_wrong_place)

TRAIN, SAMPLE = "train.csv", "sample_submission.csv"


# ----------------------------------------------------------------------------- labels
def labels_unknown(ws, rng, i):
    header, rows = _rows(ws)
    bad = rng.choice(["Cat", "kat", "bird", "cat dog", "?", "3", "fox_", "DOG"])
    for i in _pick(rng, rows, rng.randint(1, 3)):
        rows[i][1] = bad
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def labels_empty(ws, rng, i):
    header, rows = _rows(ws)
    for i in _pick(rng, rows, rng.randint(1, 3)):
        rows[i][1] = rng.choice(["", " ", "  \t"])
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def labels_nan(ws, rng, i):
    header, rows = _rows(ws)
    value = rng.choice(["nan", "NaN", "NA", "null", "None", "N/A"])
    for k in _pick(rng, rows, 1 if i % 4 < 2 else 3):  # 3 rows: enough to become a class of its own
        rows[k][1] = value
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def labels_whitespace(ws, rng, i):
    header, rows = _rows(ws)
    for i in _pick(rng, rows, rng.randint(1, 6)):
        rows[i][1] = rng.choice([" ", "\t", "  "]) + rows[i][1] + rng.choice(["", " ", "\t"])
    write_rows(ws.train_csv, [header] + rows)
    return Expect("ok")


def labels_numeric(ws, rng, i):
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


def labels_one_row(ws, rng, i):
    """A class left with 1 row: 2 folds cannot both hold it."""
    header, rows = _rows(ws)
    c = rng.choice(CLASSES)
    keep = rng.choice([r[0] for r in rows if r[1] == c])
    write_rows(ws.train_csv, [header] + [r for r in rows if r[1] != c or r[0] == keep])
    return Expect("error", (f"'{c}'", c))


def labels_stray_inferred(ws, rng, i):
    """Label sample (classes come from the labels): a stray label is a 4th class, and the run must say so."""
    header, rows = _rows(ws)
    stray = rng.choice(["bird", "Cat", "wolf"])
    for k in _pick(rng, rows, 2):
        rows[k][1] = stray
    write_rows(ws.train_csv, [header] + rows)
    found = tuple(sorted({r[1] for r in rows}))
    return Expect("either", (TRAIN,), classes=found, shown_classes=True)


# ----------------------------------------------------------------------------- ids
def ids_dup_train(ws, rng, i):
    header, rows = _rows(ws)
    i, j = rng.sample(range(len(rows)), 2)
    rows[j][0] = rows[i][0]
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def ids_dup_sample(ws, rng, i):
    header, rows = _rows(ws, ws.sample_csv)
    i, j = rng.sample(range(len(rows)), 2)
    rows[j][0] = rows[i][0]
    write_rows(ws.sample_csv, [header] + rows)
    return Expect("error", (SAMPLE,))


def ids_empty(ws, rng, i):
    path = (ws.train_csv, ws.sample_csv)[i % 2]
    header, rows = _rows(ws, path)
    rows[rng.randrange(len(rows))][0] = ""
    write_rows(path, [header] + rows)
    return Expect("error", (path.name,))


def ids_blank(ws, rng, i):
    """An id of only whitespace: a blank cell of the CSV, not an image named ' .jpg'."""
    path = (ws.train_csv, ws.sample_csv)[i % 2]
    header, rows = _rows(ws, path)
    rows[rng.randrange(len(rows))][0] = rng.choice([" ", "  ", "\t"])
    write_rows(path, [header] + rows)
    return Expect("error", (path.name,))


def ids_no_image(ws, rng, i):
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


def ids_unicode(ws, rng, i):
    return _rename_ids(ws, rng, lambda r, n: r.choice(["café", "猫", "Ölbild", "snow☃", "a b"]) + f"_{n}")


def ids_leading_zeros(ws, rng, i):
    return _rename_ids(ws, rng, lambda r, n: "0" * r.randint(1, 3) + str(7 + n))


def ids_numeric_all(ws, rng, i):
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
def cols_train_renamed(ws, rng, i):
    header, rows = _rows(ws)
    k = rng.randrange(2)
    header[k] = rng.choice(["Label", "class", "diagnosis", "image_id", "ID", "id "]) if k else rng.choice(["image_id", "ID", "Id"])
    write_rows(ws.train_csv, [header] + rows)
    return Expect("error", (TRAIN,))


def cols_train_dropped(ws, rng, i):
    header, rows = _rows(ws)
    k = rng.randrange(2)
    write_rows(ws.train_csv, [[c for j, c in enumerate(header) if j != k]] + [[v for j, v in enumerate(r) if j != k] for r in rows])
    return Expect("error", (TRAIN,))


def cols_train_reordered_extra(ws, rng, i):
    header, rows = _rows(ws)
    extra = rng.choice(["age", "patient", "notes", "label2"])
    vals = [rng.choice(["", "NA", "3", "x,y", "ü"]) for _ in rows]
    if rng.random() < 0.5:
        write_rows(ws.train_csv, [[extra, header[1], header[0]]] + [[v, r[1], r[0]] for v, r in zip(vals, rows)])
    else:
        write_rows(ws.train_csv, [header + [extra]] + [r + [v] for v, r in zip(vals, rows)])
    return Expect("ok")


def csv_encoding(ws, rng, i):
    """A BOM and/or CRLF line ends in train.csv or the sample (Excel on Windows)."""
    path = rng.choice([ws.train_csv, ws.sample_csv])
    rows = read_rows(path)
    bom, crlf = rng.choice([(True, False), (False, True), (True, True)])
    write_rows(path, rows, newline="\r\n" if crlf else "\n", bom=bom)
    return Expect("ok")


def csv_empty(ws, rng, i):
    path = (ws.train_csv, ws.sample_csv)[i % 2]
    rows = read_rows(path)
    kind = ["zero", "header", "blank"][i // 2 % 3]
    path.write_bytes(b"" if kind == "zero" else (b"\n\n" if kind == "blank" else (",".join(rows[0]) + "\n").encode()))
    return Expect("error", (path.name,), what=kind)


# ----------------------------------------------------------------------------- sample submission
def sample_dropped_class(ws, rng, i):
    """A sample with 2 of the 3 classes' columns (ISIC 2017 style): valid when competition.classes lists
    all three; without that list the labels of the dropped class are refused, naming train.csv."""
    header, rows = _rows(ws, ws.sample_csv)
    k = rng.randint(1, len(header) - 1)
    write_rows(ws.sample_csv, [[c for j, c in enumerate(header) if j != k]] + [[v for j, v in enumerate(r) if j != k] for r in rows])
    if i % 2:
        return Expect("error", (TRAIN,))
    files = ws.config()
    files["base.yaml"]["competition"]["classes"] = header[1:]
    ws.write_config(files)
    return Expect("ok")


def sample_stranger_column(ws, rng, i):
    """A probability column that is no class: added or a class column misspelt."""
    header, rows = _rows(ws, ws.sample_csv)
    name = rng.choice(["wolf", "Cat", "dog ", "fox2", "other"])
    if rng.random() < 0.5:
        header, rows = header + [name], [r + ["0"] for r in rows]
    else:
        header[rng.randint(1, 3)] = name
    write_rows(ws.sample_csv, [header] + rows)
    return Expect("error", (SAMPLE,))


def sample_id_only(ws, rng, i):
    header, rows = _rows(ws, ws.sample_csv)
    write_rows(ws.sample_csv, [header[:1]] + [r[:1] for r in rows])
    return Expect("error", (SAMPLE,))


def sample_shuffled_renamed(ws, rng, i):
    """Sample rows in another order, its id column named otherwise, its class columns reordered."""
    header, rows = _rows(ws, ws.sample_csv)
    rng.shuffle(rows)
    if rng.random() < 0.5:
        header[0] = rng.choice(["image_id", "Id", "name"])
    if ws.variant == "probs":
        order = [0] + rng.sample(range(1, len(header)), len(header) - 1)
        header, rows = [header[j] for j in order], [[r[j] for j in order] for r in rows]
    else:
        rows = [[r[0], rng.choice(CLASSES)] for r in rows]
    write_rows(ws.sample_csv, [header] + rows)
    return Expect("ok")


def sample_label_placeholder(ws, rng, i):
    """A label sample whose placeholder values are neither class names nor indices: the format cannot be
    told (refused naming the sample) or it is read as indices."""
    header, rows = _rows(ws, ws.sample_csv)
    fill = [["", "x"], ["0", "x"], ["?"], ["-1"]][i % 4]
    write_rows(ws.sample_csv, [header] + [[r[0], rng.choice(fill)] for r in rows])
    return Expect("either", (SAMPLE,), what=f"label values {fill}")


def csv_latin1(ws, rng, i):
    """train.csv or the sample saved as Latin-1 with an accented id (its image named in UTF-8)."""
    path, split = ((ws.train_csv, "train"), (ws.sample_csv, "test"))[i % 2]
    header, rows = _rows(ws, path)
    k = rng.randrange(len(rows))
    new = rng.choice(["café", "naïve", "Ångström"]) + str(i)
    ws.image(split, rows[k][0]).rename(ws.image(split, new))
    rows[k][0] = new
    write_rows(path, [header] + rows)
    path.write_bytes(path.read_bytes().decode("utf-8").encode("latin-1"))
    return Expect("error", (path.name,), what=f"{path.name} latin-1, id {new!r}")


def sample_dup_column(ws, rng, i):
    """A class column twice in the sample header."""
    header, rows = _rows(ws, ws.sample_csv)
    k = rng.randint(1, len(header) - 1)
    write_rows(ws.sample_csv, [header + [header[k]]] + [r + [r[k]] for r in rows])
    return Expect("error", (SAMPLE,), what=f"column {header[k]!r} twice")


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
    "ids_empty": (ids_empty, 4, ("probs", "label")),
    "ids_blank": (ids_blank, 4, ("probs", "label")),
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
    "sample_shuffled_renamed": (sample_shuffled_renamed, 3, ("probs", "label")),
    "sample_label_placeholder": (sample_label_placeholder, 4, ("label",)),
    "img_broken": (img_broken, 10, ("probs", "label")),
    "img_truncated": (img_truncated, 5, ("probs", "label")),
    "img_odd_format": (img_odd_format, 8, ("probs", "label")),
    "cfg_name_typo": (cfg_name_typo, 12, ("probs",)),
    "cfg_negative": (cfg_negative, 14, ("probs",)),
    "cfg_wrong_type": (cfg_wrong_type, 14, ("probs",)),
    "cfg_unknown_key": (cfg_unknown_key, 6, ("probs",)),
    "cfg_pretrained_not_path": (cfg_pretrained_not_path, 3, ("probs",)),
    "cfg_paths": (cfg_paths, 4, ("probs",)),
    "cfg_huge_lr": (cfg_huge_lr, 2, ("probs",)),
    "csv_latin1": (csv_latin1, 4, ("probs", "label")),
    "sample_dup_column": (sample_dup_column, 3, ("probs",)),
    "img_wrong_place": (img_wrong_place, 6, ("probs", "label")),
}

from fuzz_reliability import RELIABILITY_FAMILIES  # noqa: E402 (refused before anything is written)
FAMILIES.update(RELIABILITY_FAMILIES)
