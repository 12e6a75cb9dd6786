"""Issue 11: bad submissions and sample submissions -> exact messages (item 4); a vote of one
run is an ensemble of one whose submission equals the run's test probabilities (item 8)."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ensemble.vote.methods import rank
from ensemble.vote.__main__ import main
from ensemble.vote.submission import SubmissionError, build_frame, check_file, detect_format, read_sample
from test_shift_vote import write_weights
from test_vote_cli import CLASSES, make_competition, make_run, vote

SAMPLE = "id,a,b,c\n007,0.3,0.3,0.4\nNA,0.3,0.3,0.4\nc3,0.3,0.3,0.4\nd4,0.3,0.3,0.4\n"
GOOD = "id,a,b,c\n007,0.7,0.2,0.1\nNA,0.1,0.1,0.8\nc3,0.2,0.5,0.3\nd4,0.3,0.3,0.4\n"
SUBSET = "id,a,c\n007,0.7,0.1\nNA,0.1,0.8\nc3,0.2,0.3\nd4,0.3,0.4\n"  # 2 of the classes a, b, c
LABELS = "id,label\n1,cat\n2,dog\n3,cat\n"
RANGE = "expected a probability in [0, 1]"


def _write(path, text):
    path.write_text(text)
    return path


def _check(tmp_path, sample_text, sub_text, classes):
    sample = read_sample(_write(tmp_path / "sample.csv", sample_text))
    fmt = detect_format(sample, classes)
    return check_file(_write(tmp_path / "sub.csv", sub_text), sample, fmt)


@pytest.mark.parametrize("sample, classes, old, new, expected", [
    # full-class probabilities: every row sums to 1
    (GOOD, "abc", "d4,0.3,0.3,0.4", "d4,0.3,0.3,0.314",
     ["line 5 (id 'd4'): probabilities sum to 0.914, expected 1 (+-0.001)"]),
    (GOOD, "abc", "c3,0.2,0.5,0.3", "c3,0.2,0.5,0.302",
     ["line 4 (id 'c3'): probabilities sum to 1.002, expected 1 (+-0.001)"]),
    (GOOD, "abc", "d4,0.3,0.3,0.4", "d4,0.3,0.3,0.4005", []),  # CSV rounding is tolerated
    (GOOD, "abc", "0.1,0.1,0.8\nc3,0.2,0.5,0.3\nd4,0.3,0.3,0.4", "0.1,0.1,0.7\nc3,0.2,0.4,0.3\nd4,0.3,0.3,0.3",
     ["line 3 (id 'NA'): probabilities sum to 0.9, expected 1 (+-0.001) (2 more rows like this)"]),
    (GOOD, "abc", "0.2,0.5,0.3", "0.2,nan,0.3", [f"line 4 (id 'c3'): column 'b' is empty, NaN or inf, {RANGE}"]),
    (GOOD, "abc", "0.2,0.5,0.3", "0.2,,0.3", [f"line 4 (id 'c3'): column 'b' is empty, NaN or inf, {RANGE}"]),
    (GOOD, "abc", "0.2,0.5,0.3", "0.2,inf,0.3", [f"line 4 (id 'c3'): column 'b' is empty, NaN or inf, {RANGE}"]),
    (GOOD, "abc", "0.2,0.5,0.3", "0.2,0.5 ,0.3x", [f"line 4 (id 'c3'): column 'c' is '0.3x', {RANGE}"]),
    (GOOD, "abc", "0.7,0.2,0.1", "0.9,0.2,-0.1", [f"line 2 (id '007'): column 'c' is -0.1, {RANGE}"]),
    (GOOD, "abc", "0.7,0.2,0.1", "1.5,-0.3,-0.2", [f"line 2 (id '007'): column 'a' is 1.5, {RANGE}",
                                                   f"line 2 (id '007'): column 'b' is -0.3, {RANGE}",
                                                   f"line 2 (id '007'): column 'c' is -0.2, {RANGE}"]),
    (GOOD, "abc", "id,a,b,c\n007,0.7,0.2,0.1\nNA,0.1,0.1,0.8\nc3,0.2,0.5,0.3\nd4,0.3,0.3,0.4",
     ",id,a,b,c\n0,007,0.7,0.2,0.1\n1,NA,0.1,0.1,0.8\n2,c3,0.2,0.5,0.3\n3,d4,0.3,0.3,0.4",
     ["header differs from sample_submission.csv: expected id,a,b,c, got Unnamed: 0,id,a,b,c (a DataFrame index "
      "was written: use to_csv(..., index=False))"]),
    (GOOD, "abc", "id,a,b,c", "id,a,c,b", ["header differs from sample_submission.csv: expected id,a,b,c, got id,a,c,b"]),
    # classes taken from the sample (no runs, no --classes): the same check, with a hint
    (GOOD, None, "d4,0.3,0.3,0.4", "d4,0.3,0.3,0.3",
     ["line 5 (id 'd4'): probabilities sum to 0.9, expected 1 (+-0.001); if these columns are only some of "
      "the classes, pass --classes"]),
    # a subset of the classes: rows sum to at most 1
    (SUBSET, "abc", "NA,0.1,0.8", "NA,0.3,0.8",
     ["line 3 (id 'NA'): probabilities sum to 1.1, expected at most 1 (+0.001): the columns are 2 of the 3 classes"]),
    (SUBSET, "abc", "NA,0.1,0.8", "NA,0.2,0.8", []),
    (SUBSET, "abc", "NA,0.1,0.8", "NA,0.1,NaN", [f"line 3 (id 'NA'): column 'c' is empty, NaN or inf, {RANGE}"]),
    (SUBSET, "abc", "007,0.7,0.1", "007,-0.7,0.1", [f"line 2 (id '007'): column 'a' is -0.7, {RANGE}"]),
    # label columns hold valid labels
    (LABELS, ["cat", "dog"], "2,dog", "2,", ["line 3 (id '2'): column 'label' is '', expected one of: cat, dog"]),
    (LABELS, ["cat", "dog"], "2,dog", "2,Dog", ["line 3 (id '2'): column 'label' is 'Dog', expected one of: cat, dog"]),
    (LABELS, ["cat", "dog"], "1,cat\n2,dog\n3,cat", "1,fox\n2,dog\n3,fox",
     ["line 2 (id '1'): column 'label' is 'fox', expected one of: cat, dog (1 more row like this)"]),
    ("id,label\n1,0\n2,1\n3,0\n", ["cat", "dog"], "2,1", "2,2",
     ["line 3 (id '2'): column 'label' is '2', expected one of: 0, 1"]),
    ("id,label\n1,0\n2,1\n3,0\n", ["cat", "dog"], "2,1", "2,1.0",
     ["line 3 (id '2'): column 'label' is '1.0', expected one of: 0, 1"]),
])
def test_bad_submission_values(tmp_path, sample, classes, old, new, expected):
    classes = list(classes) if classes else None
    assert _check(tmp_path, sample, sample, classes) == []
    assert old in sample
    assert _check(tmp_path, sample, sample.replace(old, new), classes) == expected


@pytest.mark.parametrize("sample, classes, message", [
    ("id,a,x\n1,0.5,0.5\n", "abc",
     "sample_submission.csv: column 'x' is not a class of the competition (a, b, c): expected probability "
     "columns named by class, or one label column"),
    ("id,a,b,c,cat\n1,0.2,0.2,0.3,0.3\n", "abc",
     "sample_submission.csv: column 'cat' is not a class of the competition (a, b, c): expected probability "
     "columns named by class, or one label column"),
    ("id,x,y\n1,0.5,0.5\n", "abc",
     "sample_submission.csv: columns 'x', 'y' are not classes of the competition (a, b, c): expected "
     "probability columns named by class, or one label column"),
    ("id,label\n1,zebra\n", "abc",
     "sample_submission.csv: label column 'label' holds ['zebra']: neither class names (a, b, c) nor indices 0..2"),
])
def test_bad_sample_submission(tmp_path, sample, classes, message):
    with pytest.raises(SubmissionError) as e:
        detect_format(read_sample(_write(tmp_path / "s.csv", sample)), list(classes))
    assert str(e.value) == message


def test_subset_format_only_for_a_real_subset(tmp_path):
    full = detect_format(read_sample(_write(tmp_path / "f.csv", "id,c,a,b\n1,0.3,0.3,0.4\n")), list("abc"))
    sub = detect_format(read_sample(_write(tmp_path / "s.csv", SUBSET)), list("abc"))
    assert (full.kind, sub.kind) == ("probs", "probs-subset")


def test_subset_rank_scores_keep_each_columns_order(tmp_path):
    sample = read_sample(_write(tmp_path / "s.csv", SUBSET))
    fmt = detect_format(sample, list("abc"))
    rng = np.random.default_rng(0)
    scores = rank(rng.dirichlet(np.ones(3), (2, 4)).astype(np.float32), {})  # rows sum to ~1.5, not 1
    frame = build_frame(fmt, sample["id"], scores)
    assert check_file(_write(tmp_path / "sub.csv", frame.to_csv(index=False)), sample, fmt) == []
    top = scores[:, [0, 2]].sum(1).max()
    assert top > 1 and frame[["a", "c"]].sum(1).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(frame[["a", "c"]].to_numpy(), scores[:, [0, 2]] / top, rtol=1e-6)


def test_check_cli_prints_the_line_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "s.csv", SAMPLE)
    _write(tmp_path / "bad.csv", GOOD.replace("d4,0.3,0.3,0.4", "d4,0.3,0.3,0.314"))
    assert main(["--check", "bad.csv", "--sample", "s.csv", "--classes", "a,b,c"]) == 1
    assert capsys.readouterr().out == ("bad.csv: INVALID against s.csv (1 problem)\n"
                                       "  - line 5 (id 'd4'): probabilities sum to 0.914, expected 1 (+-0.001)\n")
    assert main(["--check", "bad.csv", "--sample", "s.csv", "--classes", "a,b"]) == 2
    assert capsys.readouterr().err == ("error: s.csv: column 'c' is not a class of the competition (a, b): expected "
                                       "probability columns named by class, or one label column\n")
    assert main(["--check", "none.csv", "--sample", "s.csv"]) == 2
    assert capsys.readouterr().err == "error: submission file not found: none.csv\n"


# ---------------------------------------------------------------- runs with bad probabilities: one line, nothing written
@pytest.fixture
def one_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny")
    runs = tmp_path / "runs"
    make_run(runs, comp, "good", 2.5, seed=0)
    return tmp_path, comp, runs


@pytest.mark.parametrize("which, row, value, message", [
    ("test", 3, "nan", "error: run 'good': runs/tiny/good/test.csv: line 5 (id '{id}'): column 'bcc' is nan, "
                       "expected a probability in [0, 1] (1 bad value in the column)"),
    ("oof", 0, "1.5", "error: run 'good': runs/tiny/good/oof.csv: line 2 (id 'tr000'): column 'bcc' is 1.5, "
                      "expected a probability in [0, 1] (1 bad value in the column)"),
    ("oof", 0, "abc", "error: run 'good': runs/tiny/good/oof.csv: could not convert string to float: 'abc'"),
    ("test", 0, "0.9", "error: run 'good': runs/tiny/good/test.csv: line 2 (id '{id}'): probabilities sum to "
                       "{sum:.6g}, expected 1 (+-0.001) (1 row like this)"),
])
def test_bad_run_probabilities_are_one_line_and_write_nothing(one_run, capsys, which, row, value, message):
    tmp, _, runs = one_run
    path = runs / "tiny" / "good" / f"{which}.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, "bcc"] = value
    df.to_csv(path, index=False)
    assert vote("--method", "mean") == 2
    total = pd.to_numeric(df.loc[row, CLASSES], errors="coerce").sum()
    assert capsys.readouterr().err == message.format(id=df["id"][row], sum=total) + "\n"
    assert not (tmp / "subs").exists()


# ---------------------------------------------------------------- item 8: one run is an ensemble of one
def _submission(tmp):
    [csv] = (tmp / "subs" / "tiny").glob("*.csv")
    assert main(["--check", str(csv), "--competition", "tiny"]) == 0
    return csv, pd.read_csv(csv, dtype={"image": str}).set_index("image")


def _run_test(runs):
    return pd.read_csv(runs / "tiny" / "good" / "test.csv", dtype={"id": str}).set_index("id")[CLASSES]


@pytest.mark.parametrize("flags", [["--method", "mean"], ["--method", "weighted", "--weights", "1"],
                                   ["--method", "geometric"], ["--method", "hillclimb"]])
def test_one_run_submission_equals_its_probabilities(one_run, capsys, flags):
    tmp, _, runs = one_run
    assert vote(*flags) == 0
    out = capsys.readouterr().out
    assert "tiny: 1 run, 3 folds, OOF 60 rows, test 12 rows" in out and "OOF error correlation" not in out
    assert ("note: one run ('good'): an ensemble of one; mean, weighted, geometric and hillclimb submit its "
            "probabilities, the other methods transform them") in out
    csv, sub = _submission(tmp)
    want = _run_test(runs)
    np.testing.assert_allclose(sub.loc[want.index, CLASSES].to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-7)
    manifest = json.loads(csv.with_suffix(".json").read_text())
    assert manifest["weights"] == {"good": 1.0} and manifest["kaggle_command"].endswith("(1 run)'")


@pytest.mark.parametrize("method, expected", [
    ("rank", lambda p: rank(p[None], {})),
    ("majority", lambda p: np.eye(3)[p.argmax(1)] + p),
    ("stacking", None),
])
def test_one_run_other_methods(one_run, method, expected):
    tmp, _, runs = one_run
    assert vote("--method", method) == 0
    _, sub = _submission(tmp)
    want = _run_test(runs)
    got = sub.loc[want.index, CLASSES].to_numpy()
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    if expected is not None:
        e = expected(want.to_numpy(np.float32))
        np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("flags", [[], ["--bias", "on", "--write", "all"], ["--select", "weighted"],
                                   ["--select", "test_like"], ["--priors", "estimated"]])
def test_one_run_every_method_and_selection(one_run, capsys, flags):
    tmp, _, runs = one_run
    if "--select" in flags:
        write_weights(runs, lambda i: 5.0 if i % 3 == 2 else 0.5)
    assert vote(*flags) == 0
    out = capsys.readouterr().out
    for name in ["mean", "geometric", "rank", "majority", "hillclimb", "stacking", "'weighted' skipped: no --weights"]:
        assert name in out
    csvs = sorted((tmp / "subs" / "tiny").glob("*.csv"))
    assert len(csvs) == (12 if "all" in flags else 1)
    for csv in csvs:
        assert main(["--check", str(csv), "--competition", "tiny"]) == 0


def test_one_ordinal_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    comp = make_competition(tmp_path / "data" / "tiny", sample="label")
    make_run(tmp_path / "runs", comp, "good", 2.5, seed=0, ordinal=True, metric="qwk")
    assert vote("--bias", "on", "--write", "all") == 0
    csvs = sorted((tmp_path / "subs" / "tiny").glob("*.csv"))
    assert len(csvs) == 4  # mean, mean+thr, hillclimb, hillclimb+thr
    for csv in csvs:
        assert main(["--check", str(csv), "--competition", "tiny"]) == 0


def _subset_competition(tmp_path, declared: bool):
    """Two runs of the 3 classes; the sample scores akiec and mel only."""
    comp = make_competition(tmp_path / "data" / "tiny")
    sample = pd.read_csv(comp / "sample_submission.csv", dtype=str)[["image", "akiec", "mel"]]
    sample.to_csv(comp / "sample_submission.csv", index=False)
    runs = tmp_path / "runs"
    for i, (name, strength) in enumerate([("good", 2.5), ("ok", 1.5)]):
        cfg_file = make_run(runs, comp, name, strength, seed=i) / "config.yaml"
        cfg = yaml.safe_load(cfg_file.read_text())
        cfg["competition"]["classes"] = CLASSES if declared else None
        cfg_file.write_text(yaml.safe_dump(cfg))
    return comp, runs


def test_subset_sample_without_declared_classes_is_an_error(tmp_path, monkeypatch, capsys):
    """Classes from the labels and a sample without one of them: an unknown label became a class."""
    monkeypatch.chdir(tmp_path)
    comp, _ = _subset_competition(tmp_path, declared=False)
    message = ("sample_submission.csv has 2 of the 3 classes as columns; not in it: 'bcc' (20 train rows). Declare "
               "competition.classes in the config if the sample really scores only some classes; otherwise those "
               "labels are not classes of the competition: fix the train labels and retrain")
    assert vote() == 2
    assert capsys.readouterr().err == f"error: run 'good': {message}\n"
    assert not (tmp_path / "subs").exists()
    _write(tmp_path / "sub.csv", (comp / "sample_submission.csv").read_text())
    assert main(["--check", "sub.csv", "--competition", "tiny"]) == 2
    assert capsys.readouterr().err == "error: " + message.replace(" (20 train rows)", "") + "\n"
    assert main(["--check", "sub.csv", "--competition", "tiny", "--classes", ",".join(CLASSES)]) == 0


def test_subset_competition_vote_writes_valid_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    comp, runs = _subset_competition(tmp_path, declared=True)
    assert vote("--method", "mean,rank,stacking", "--write", "all") == 0
    csvs = sorted((tmp_path / "subs" / "tiny").glob("*.csv"))
    assert [c.name.split("-cv")[0] for c in csvs] == ["mean", "rank", "stacking"]
    for csv in csvs:
        assert main(["--check", str(csv), "--competition", "tiny"]) == 0
        sub = pd.read_csv(csv, dtype={"image": str})
        assert list(sub.columns) == ["image", "akiec", "mel"] and sub[["akiec", "mel"]].sum(1).max() <= 1 + 1e-6
    mean = pd.read_csv(csvs[0], dtype={"image": str}).set_index("image")
    want = sum(pd.read_csv(runs / "tiny" / r / "test.csv", dtype={"id": str}).set_index("id") for r in ("good", "ok")) / 2
    np.testing.assert_allclose(mean.loc[want.index, ["akiec", "mel"]].to_numpy(), want[["akiec", "mel"]].to_numpy(),
                               rtol=1e-5)
