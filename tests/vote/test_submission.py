"""Submission formats: detection, building, validation (the --check logic) and round trips."""
import numpy as np
import pandas as pd
import pytest

from ensemble.artifacts import atomic_write_csv
from ensemble.vote.submission import (SubmissionError, build_frame, check_file, detect_format, problems,
                                 read_sample)

IDS = ["007", "NA", "c3", "d4"]  # leading zero and 'NA' must survive as ids
PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]], dtype=np.float32)


def sample_file(tmp_path, header, value):
    path = tmp_path / "sample_submission.csv"
    path.write_text(",".join(header) + "\n" + "".join(f"{i}," + ",".join([value] * (len(header) - 1)) + "\n"
                                                      for i in IDS))
    return read_sample(path)


@pytest.mark.parametrize("header, value, classes, kind", [
    (["image", "mel", "akiec", "bcc"], "0.3", ["akiec", "bcc", "mel"], "probs"),  # sample's own column order
    (["image_id", "melanoma", "seborrheic_keratosis"], "0.5", ["melanoma", "nevus", "seborrheic_keratosis"],
     "probs-subset"),
    (["id", "label"], "PNEUMONIA", ["NORMAL", "PNEUMONIA"], "label-name"),
    (["id", "diagnosis"], "0", ["mild", "severe"], "label-index"),
    (["id", "diagnosis"], "0", ["0", "1", "2"], "label-name"),  # integer class names stay names
])
def test_each_format_round_trips_through_check(tmp_path, header, value, classes, kind):
    sample = sample_file(tmp_path, header, value)
    fmt = detect_format(sample, classes)
    assert fmt.kind == kind and fmt.header == header
    probs = PROBS[:, : len(classes)] / PROBS[:, : len(classes)].sum(1, keepdims=True)
    frame = build_frame(fmt, sample[fmt.id_col].to_numpy(object), probs)
    assert problems(frame, sample, fmt) == []
    atomic_write_csv(tmp_path / "sub.csv", frame, float_format="%.7g")
    assert check_file(tmp_path / "sub.csv", sample, fmt) == []
    back = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    assert back[header[0]].tolist() == IDS
    if kind == "probs":
        np.testing.assert_allclose(back["mel"].astype(float), probs[:, 2], rtol=1e-6)
    if kind.startswith("label"):
        expected = np.asarray(fmt.labels())[probs.argmax(1)]
        assert back[header[1]].tolist() == expected.tolist()


def test_ordinal_labels_and_rank_scores_build_valid_frames(tmp_path):
    sample = sample_file(tmp_path, ["id", "a", "b", "c"], "0.3")
    fmt = detect_format(sample, ["a", "b", "c"])
    onehot = build_frame(fmt, np.array(IDS, dtype=object), np.array([2, 0, 1, 1]))
    assert onehot["c"].tolist() == [1, 0, 0, 0] and problems(onehot, sample, fmt) == []
    ranks = build_frame(fmt, np.array(IDS, dtype=object), PROBS * 3)  # not a distribution: renormalised
    assert problems(ranks, sample, fmt) == []


def test_without_classes_probability_columns_are_the_classes(tmp_path):
    assert detect_format(sample_file(tmp_path, ["id", "x", "y"], "0.5")).classes == ("x", "y")
    with pytest.raises(SubmissionError, match=r"^sample_submission.csv: one prediction column 'label': its "
                                              r"classes are unknown \(pass --classes"):
        detect_format(sample_file(tmp_path, ["id", "label"], "cat"))


@pytest.mark.parametrize("header, value, classes, message", [
    (["id"], "", ["a"], "sample_submission.csv: no prediction column besides the id column 'id'"),
    (["id", "label"], "zebra", ["cat", "dog"],
     "sample_submission.csv: label column 'label' holds ['zebra']: neither class names (cat, dog) nor indices 0..1"),
    (["id", "p1", "p2"], "0.5", ["cat", "dog"],
     "sample_submission.csv: columns 'p1', 'p2' are not classes of the competition (cat, dog): expected "
     "probability columns named by class, or one label column"),
])
def test_undetectable_formats(tmp_path, header, value, classes, message):
    path = tmp_path / "s.csv"
    path.write_text(",".join(header) + "\n" + "".join(f"{i}" + f",{value}" * (len(header) - 1) + "\n" for i in IDS))
    with pytest.raises(SubmissionError) as e:
        detect_format(read_sample(path), classes)
    assert str(e.value) == message


GOOD = "id,a,b,c\n007,0.7,0.2,0.1\nNA,0.1,0.1,0.8\nc3,0.2,0.5,0.3\nd4,0.3,0.3,0.4\n"


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("id,a,b,c", "id,a,c,b"),
     ["header differs from sample_submission.csv: expected id,a,b,c, got id,a,c,b"]),
    (lambda t: t.replace("d4,0.3,0.3,0.4\n", ""), ["1 ids of sample_submission.csv are missing (e.g. 'd4')"]),
    (lambda t: t.replace("d4,", "zz,"), ["1 ids of sample_submission.csv are missing (e.g. 'd4')",
                                         "1 ids are not in sample_submission.csv (e.g. 'zz')"]),
    (lambda t: t.replace("d4,", "c3,"), ["1 duplicate ids (e.g. 'c3')",
                                         "1 ids of sample_submission.csv are missing (e.g. 'd4')"]),
    (lambda t: t.replace("c3,0.2,0.5,0.3\nd4,0.3,0.3,0.4", "d4,0.3,0.3,0.4\nc3,0.2,0.5,0.3"),
     ["ids are not in the order of sample_submission.csv: line 4 has 'd4', expected 'c3'"]),
    (lambda t: t.replace("0.5,0.3", "abc,0.3"),
     ["line 4 (id 'c3'): column 'b' is 'abc', expected a probability in [0, 1]"]),
    (lambda t: t.replace("0.5,0.3", ",0.3").replace("0.3,0.4", "inf,0.4"),
     ["line 4 (id 'c3'): column 'b' is empty, NaN or inf, expected a probability in [0, 1] (1 more row like this)"]),
    (lambda t: t.replace("0.7,0.2,0.1", "1.2,-0.1,-0.1"),
     ["line 2 (id '007'): column 'a' is 1.2, expected a probability in [0, 1]",
      "line 2 (id '007'): column 'b' is -0.1, expected a probability in [0, 1]",
      "line 2 (id '007'): column 'c' is -0.1, expected a probability in [0, 1]"]),
    (lambda t: t.replace("0.3,0.3,0.4", "0.3,0.3,0.3"), ["line 5 (id 'd4'): probabilities sum to 0.9, expected 1 (+-0.001)"]),
    (lambda t: "", ["not a readable CSV"]),
])
def test_check_file_reports_each_problem(tmp_path, edit, expected):
    sample = read_sample(_write(tmp_path / "sample.csv", GOOD))
    fmt = detect_format(sample, ["a", "b", "c"])
    assert check_file(_write(tmp_path / "good.csv", GOOD), sample, fmt) == []
    got = check_file(_write(tmp_path / "bad.csv", edit(GOOD)), sample, fmt, "sample_submission.csv")
    if expected == ["not a readable CSV"]:
        assert len(got) == 1 and "not a readable CSV" in got[0]
    else:
        assert got == expected


def test_unknown_labels(tmp_path):
    sample = read_sample(_write(tmp_path / "sample.csv", "id,label\n1,cat\n2,cat\n"))
    fmt = detect_format(sample, ["cat", "dog"])
    assert check_file(_write(tmp_path / "s.csv", "id,label\n1,dog\n2,Dog\n"), sample, fmt) == [
        "line 3 (id '2'): column 'label' is 'Dog', expected one of: cat, dog"]
    fmt_idx = detect_format(read_sample(_write(tmp_path / "i.csv", "id,label\n1,0\n2,0\n")), ["cat", "dog"])
    assert check_file(_write(tmp_path / "t.csv", "id,label\n1,1\n2,2\n"), sample, fmt_idx) == [
        "line 3 (id '2'): column 'label' is '2', expected one of: 0, 1"]


def _write(path, text):
    path.write_text(text)
    return path
