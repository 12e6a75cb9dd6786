import numpy as np
import pytest

from conftest import make_competition
from ensemble.data.competition import DataError, load_competition, sort_labels
from ensemble.config import CompetitionCfg


def cfg(root, **kw):
    return CompetitionCfg(name="t", root=str(root), ext=".jpg", **kw)


def test_csv_layout_classes_ids_and_paths(tmp_path):
    root = make_competition(tmp_path / "c")
    comp = load_competition(cfg(root))
    assert comp.classes == ["cat", "dog", "fox"]  # sorted labels
    assert len(comp.train) == 24 and comp.train["y"].tolist()[:9] == [0] * 8 + [1]
    assert comp.test["id"].tolist() == [f"t{i:03d}" for i in range(6)]
    assert comp.train["path"].iat[0] == str(root / "train" / "cat_000.jpg")
    assert list(comp.class_counts) == [8, 8, 8]


def test_class_order_from_config_and_from_probability_sample(tmp_path):
    root = make_competition(tmp_path / "c")
    assert load_competition(cfg(root, classes=["fox", "cat", "dog"])).classes == ["fox", "cat", "dog"]
    (root / "sample_submission.csv").write_text("id,fox,dog,cat\nt000,0.3,0.3,0.4\n")
    assert load_competition(cfg(root)).classes == ["fox", "dog", "cat"]


def test_integer_labels_sort_numerically():
    assert sort_labels(["10", "2", "1"]) == ["1", "2", "10"]
    assert sort_labels(["b", "a"]) == ["a", "b"]


def test_folder_layout(tmp_path):
    root = tmp_path / "f"
    for c in ("NORMAL", "PNEUMONIA"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(3):
            (root / "train" / c / f"{c[0]}{i}.jpeg").write_bytes(b"x")
    (root / "sample_submission.csv").write_text("id,label\nq1,NORMAL\n")
    comp = load_competition(CompetitionCfg(name="f", root=str(root), layout="folders", ext=".jpeg"))
    assert comp.classes == ["NORMAL", "PNEUMONIA"]
    assert comp.train["id"].tolist() == ["N0", "N1", "N2", "P0", "P1", "P2"]
    assert comp.test["path"].iat[0] == str(root / "test" / "q1.jpeg")


def test_unknown_label_message(tmp_path):
    root = make_competition(tmp_path / "c")
    with pytest.raises(DataError) as e:
        load_competition(cfg(root, classes=["cat", "dog"]))
    assert str(e.value) == (f"{root / 'train.csv'}: 8 rows have labels not in the 2 classes: line 18 'fox', "
                            f"line 19 'fox', line 20 'fox', line 21 'fox', line 22 'fox', ...; expected one of: "
                            f"cat, dog (competition.classes)")


def test_missing_column_message(tmp_path):
    root = make_competition(tmp_path / "c")
    with pytest.raises(DataError) as e:
        load_competition(cfg(root, group_col="patient"))
    assert str(e.value) == f"{root / 'train.csv'}: missing column 'patient' (columns: id, label)"


def test_duplicate_id_and_missing_files(tmp_path):
    root = make_competition(tmp_path / "c")
    text = (root / "train.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join(text + [text[1]]) + "\n")
    with pytest.raises(DataError, match=r"train\.csv: row 25: duplicate id 'cat_000'$"):
        load_competition(cfg(root))
    with pytest.raises(DataError, match="root folder not found"):
        load_competition(cfg(tmp_path / "nowhere"))
    (root / "sample_submission.csv").unlink()
    (root / "train.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"^file not found: .*sample_submission\.csv$"):
        load_competition(cfg(root))
