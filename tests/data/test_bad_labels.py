"""Issue 11, items 1, 2 and 9: a label outside the known classes, an empty label and too few rows
for the folds are one clear error (exit 2 from the commands) before anything is written."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_competition, write_configs
from ensemble.config import CompetitionCfg
from ensemble.data.competition import DataError, load_competition
from ensemble.data.folds import FoldsError, assign_folds

TUNE_SPACE = """tune:
  trials: 1
  space:
    optim.lr.head: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""
PROBS = "id,cat,dog,fox\nt000,0.3,0.3,0.4\n"  # a probability-per-class sample: the classes are known


def relabel(rows: dict[int, str]):
    """A mutation of train.csv: data row i (0-based; CSV line i + 2) gets the label rows[i]."""
    def edit(root):
        df = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
        for i, label in rows.items():
            df.loc[i, "label"] = label
        df.to_csv(root / "train.csv", index=False)
    return edit


def sample(text: str):
    def edit(root):
        (root / "sample_submission.csv").write_text(text)
    return edit


def lines(change):
    """A mutation of train.csv's text lines."""
    def edit(root):
        path = root / "train.csv"
        path.write_text("\n".join(change(path.read_text().splitlines())) + "\n")
    return edit


def both(*edits):
    def edit(root):
        for e in edits:
            e(root)
    return edit


HINT = "list every class under competition.classes if the sample scores only some of them"
CASES = [  # (mutation, config classes, expected message; {train}, {sample}: their paths)
    (both(sample(PROBS), relabel({0: "wolf", 1: "wolf"})), None,
     "{train}: 2 rows have labels not in the 3 classes: line 2 'wolf', line 3 'wolf'; expected one of: cat, dog, fox "
     f"(the sample_submission.csv columns); {HINT}"),
    (sample("id,cat,dog\nt000,0.5,0.5\n"), None,  # a subset sample without competition.classes
     "{train}: 8 rows have labels not in the 2 classes: line 18 'fox', line 19 'fox', line 20 'fox', line 21 'fox', "
     f"line 22 'fox', ...; expected one of: cat, dog (the sample_submission.csv columns); {HINT}"),
    (relabel({3: "Cat"}), ["cat", "dog", "fox"],
     "{train}: 1 row has a label not in the 3 classes: line 5 'Cat'; expected one of: cat, dog, fox (competition.classes)"),
    (both(sample(PROBS), relabel({5: "NA", 6: "nan"})), None,  # missing-value markers, not classes
     "{train}: 2 rows have an empty or missing-value label: line 7 (id 'cat_005') 'NA', line 8 (id 'cat_006') 'nan' "
     "(<NA>, N/A, NA, NULL, NaN, None, n/a, nan, null mean a missing value; list it under competition.classes if "
     "it is a real class)"),
    (relabel({2: "", 9: ""}), None, "{train}: 2 rows have an empty label: line 4 (id 'cat_002'), line 11 (id 'dog_001')"),
    (relabel({2: "   "}), ["cat", "dog", "fox"], "{train}: 1 row has an empty label: line 4 (id 'cat_002')"),
    (lambda root: (root / "train.csv").write_text("id,label\n"), None,
     "{train}: no data rows (expected a header line and one row per training image)"),
    (both(sample(PROBS), relabel({i: "" for i in range(7)})), None,
     "{train}: 7 rows have an empty label: line 2 (id 'cat_000'), line 3 (id 'cat_001'), line 4 (id 'cat_002'), "
     "line 5 (id 'cat_003'), line 6 (id 'cat_004'), ..."),
    (both(relabel({4: ""}), lines(lambda t: t[:2] + [""] + t[2:])), None,  # line numbers count a blank line
     "{train}: 1 row has an empty label: line 7 (id 'cat_004')"),
    (both(relabel({4: ""}), lines(lambda t: ["id,label,note", 'cat_000,cat,"two', 'lines"']
                                  + [x + "," for x in t[2:]])), None,  # ... and a quoted cell spanning two lines
     "{train}: 1 row has an empty label: line 7 (id 'cat_004')"),
    (sample("id,cat,wolf\nt000,0.5,0.5\n"), ["cat", "dog", "fox"],
     "{sample}: 1 column not among the 3 classes of competition.classes: 'wolf'; expected probability "
     "columns named after classes (cat, dog, fox)"),
]


@pytest.mark.parametrize("mutate, classes, message", CASES)
def test_bad_labels_table(tmp_path, mutate, classes, message):
    root = make_competition(tmp_path / "c", n_per_class=8, n_test=2, size=8)
    mutate(root)
    with pytest.raises(DataError) as e:
        load_competition(CompetitionCfg(name="t", root=str(root), ext=".jpg", classes=classes))
    assert str(e.value) == message.format(train=root / "train.csv", sample=root / "sample_submission.csv")


def test_folders_layout_names_the_images(tmp_path):
    root = tmp_path / "f"
    for c in ("NORMAL", "PNEUMONIA", "COVID"):
        (root / "train" / c).mkdir(parents=True)
        (root / "train" / c / f"{c[0]}0.jpeg").write_bytes(b"x")
    (root / "sample_submission.csv").write_text("id,NORMAL,PNEUMONIA\nq1,0.5,0.5\n")
    with pytest.raises(DataError) as e:
        load_competition(CompetitionCfg(name="f", root=str(root), layout="folders", ext=".jpeg"))
    assert str(e.value) == (f"{root / 'train'}: 1 image has a label not in the 2 classes: "
                            f"{root / 'train' / 'COVID' / 'C0.jpeg'}; expected one of: NORMAL, PNEUMONIA "
                            f"(the sample_submission.csv columns); {HINT}")


def test_where_the_classes_come_from(tmp_path):
    root = make_competition(tmp_path / "c", n_per_class=2, n_test=2, size=8)
    cfg = CompetitionCfg(name="t", root=str(root), ext=".jpg")
    relabel({4: "wolf", 5: "wolf"})(root)
    comp = load_competition(cfg)
    assert comp.classes == ["cat", "dog", "wolf"] and comp.classes_inferred
    assert comp.describe_classes() == "classes (from train.csv labels): cat, dog, wolf"
    assert comp.train["y"].tolist() == [0, 0, 1, 1, 2, 2]
    relabel({4: "NA", 5: "NA"})(root)  # fox rows -> a class literally named 'NA': it must be named somewhere
    with pytest.raises(DataError, match="2 rows have an empty or missing-value label"):
        load_competition(cfg)
    sample("id,fox,dog,cat,NA\nt000,0.25,0.25,0.25,0.25\n")(root)  # a superset: a class with no rows
    with pytest.raises(DataError) as e:
        load_competition(cfg)
    assert str(e.value) == (f"{root / 'sample_submission.csv'}: 1 column 'fox' has no training rows in the labels; "
                            "expected probability columns named after the labels (NA, cat, dog); list every class "
                            "under competition.classes if some truly have no examples")
    comp = load_competition(CompetitionCfg(name="t", root=str(root), ext=".jpg", classes=["fox", "dog", "cat", "NA"]))
    assert comp.classes == ["fox", "dog", "cat", "NA"] and not comp.classes_inferred
    assert comp.classes_from == "competition.classes" and list(comp.class_counts) == [0, 2, 2, 2]
    sample("id,dog,cat\nt000,0.5,0.5\n")(root)  # scores 2 of 3 (ISIC 2017): competition.classes lists all
    comp = load_competition(CompetitionCfg(name="t", root=str(root), ext=".jpg", classes=["cat", "dog", "NA"]))
    assert comp.classes == ["cat", "dog", "NA"] and comp.classes_from == "competition.classes"
    assert str(comp.metric) == "accuracy" and comp.train["y"].tolist() == [0, 0, 1, 1, 2, 2]


FOLD_CASES = [  # (per-class counts, folds.n, groups, message)
    ([10, 3], 5, None, "folds.n=5 but class 'DF' has only 3 rows (stratified folds need >= 5 rows per class): "
                       "use folds.n <= 3, or merge class 'DF' into another class or drop its rows"),
    ([10, 1], 5, None, "folds.n=5 but class 'DF' has only 1 row (stratified folds need >= 5 rows per class): "
                       "merge class 'DF' into another class or drop its row (1 row cannot be split into folds)"),
    ([10, 1, 3], 5, None, "folds.n=5 but 2 classes have fewer than 5 rows: 'DF' 1, 'VASC' 3 (stratified folds "
                          "need >= 5 rows per class): merge class 'DF' into another class or drop its row "
                          "(1 row cannot be split into folds), then use folds.n <= 3"),
    ([10, 3, 2], 5, None, "folds.n=5 but 2 classes have fewer than 5 rows: 'VASC' 2, 'DF' 3 (stratified folds "
                          "need >= 5 rows per class): use folds.n <= 2, or merge those classes into others or "
                          "drop their rows"),
    ([1, 1], 2, None, "folds.n=2 but 2 classes have fewer than 2 rows: 'NV' 1, 'DF' 1 (stratified folds need "
                      ">= 2 rows per class): merge classes 'NV', 'DF' into others or drop their rows "
                      "(1 row cannot be split into folds)"),
    ([0, 4, 4], 4, None, None),  # a class with no rows is not in the way
    ([6, 6], 4, np.arange(12) % 3, "folds.n=4 but the rows form only 3 groups (a group stays in one fold): "
                                   "use folds.n <= 3"),
    ([2, 2], 2, np.zeros(4), "folds.n=2 but the rows form only 1 group (a group stays in one fold): no folds "
                             "can be made; check competition.group_col (and dups.csv)"),
    ([6, 6], 1, None, "folds.n must be >= 2, got 1"),
]


@pytest.mark.parametrize("counts, n, groups, message", FOLD_CASES)
def test_too_few_rows_for_the_folds_table(counts, n, groups, message):
    y = np.repeat(np.arange(len(counts)), counts)
    classes = ["NV", "DF", "VASC"][: len(counts)]
    if message is None:
        fold = assign_folds(y, n, 0, groups, classes)
        assert sorted(set(fold)) == list(range(n))
        return
    with pytest.raises(FoldsError) as e:
        assign_folds(y, n, 0, groups, classes)
    assert str(e.value) == message


@pytest.fixture
def cli(tmp_path):
    """(config path, competition root, runs dir) of a tiny competition for the commands."""
    root = make_competition(tmp_path / "comp", n_per_class=4, n_test=2, size=8)
    return write_configs(tmp_path / "configs", root, tmp_path / "runs", extra=TUNE_SPACE), root, tmp_path / "runs"


@pytest.mark.parametrize("command", ["train", "tune"])
@pytest.mark.parametrize("mutate, sets, message", [
    (both(sample("id,cat,dog,fox\nt000,0.3,0.3,0.4\nt001,0.3,0.3,0.4\n"), relabel({0: "wolf", 1: "wolf"})), [],
     "{train}: 2 rows have labels not in the 3 classes: line 2 'wolf', line 3 'wolf'; expected one of: cat, dog, "
     f"fox (the sample_submission.csv columns); {HINT}"),
    (relabel({2: "", 9: ""}), [], "{train}: 2 rows have an empty label: line 4 (id 'cat_002'), line 11 (id 'fox_001')"),
    (relabel({}), ["folds.n=5"], "folds.n=5 but 3 classes have fewer than 5 rows: 'cat' 4, 'dog' 4, 'fox' 4 "
                                 "(stratified folds need >= 5 rows per class): use folds.n <= 4, or merge those "
                                 "classes into others or drop their rows"),
])
def test_commands_exit_2_with_one_line_before_writing(cli, capsys, command, mutate, sets, message):
    cfg_path, root, runs = cli
    mutate(root)
    if command == "train":
        from ensemble.train.__main__ import main
        argv = ["--cfg", str(cfg_path)]
    else:
        from ensemble.tune.__main__ import main
        argv = ["--cfg", str(cfg_path), "--trials", "1"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 2
    out = capsys.readouterr()
    assert out.err == f"error: {message.format(train=root / 'train.csv')}\n"
    assert not runs.exists()  # no folds.csv, cache, run directory or study to refuse the corrected rerun
    if sets:  # classes from the labels: said at the start of the run
        assert "classes (from train.csv labels): cat, dog, fox\n" in out.out
