"""`python -m ensemble.init --data DIR`: a new competition's configs from a Kaggle download, on generated
layouts (csv + probabilities, class folders, an ISIC-style subset sample), ambiguous columns, and
(end to end) a fresh download of the demo data through `compete --time 3m` with no file edited."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from ensemble.config import load_config
from ensemble.data.competition import load_competition
from ensemble.init.__main__ import main

RNG = np.random.default_rng(0)


def image(path: Path, px: int, k: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = RNG.integers(0, 60, size=(px, px + 8, 3), dtype=np.uint8)
    img[..., k % 3] += 150
    cv2.imwrite(str(path), img)


def csv_download(root: Path, classes=("cat", "dog", "fox"), counts=(12, 12, 12), px=80, sample="probs",
                 extra: dict | None = None, id_col="image_name", label_col="diagnosis", ext=".jpg") -> Path:
    """train.csv (+ patient_id groups) + train/<id><ext> + test/<id><ext> + sample_submission.csv."""
    rows = []
    for k, (c, n) in enumerate(zip(classes, counts)):
        for i in range(n):
            rid = f"{c[:3]}{i:03d}"
            image(root / "train" / f"{rid}{ext}", px, k)
            rows.append({id_col: rid, label_col: c, "patient_id": f"p{len(rows) // 2}"})
    df = pd.DataFrame(rows)
    for col, values in (extra or {}).items():
        df[col] = [values[i % len(values)] for i in range(len(df))]
    df.to_csv(root / "train.csv", index=False)
    tids = [f"t{i:03d}" for i in range(6)]
    for i, t in enumerate(tids):
        image(root / "test" / f"{t}{ext}", px, i)
    cols = list(classes) if sample == "probs" else list(sample) if isinstance(sample, (list, tuple)) else None
    frame = (pd.DataFrame({id_col: tids, **{c: 1.0 / len(cols) for c in cols}}) if cols
             else pd.DataFrame({"id": tids, sample: classes[0]}))
    frame.to_csv(root / "sample_submission.csv", index=False)
    return root


def run_init(tmp_path, capsys, *args) -> tuple[int, str, str]:
    rc = main(["--configs-dir", str(tmp_path / "configs"), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def loaded(tmp_path: Path, name: str, model: str):
    cfg = load_config(tmp_path / "configs" / name / model)
    return cfg, load_competition(cfg.competition)


def test_csv_with_probabilities(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_download(tmp_path / "dl" / "skin", counts=(30, 10, 12), extra={"sex": ["m", "f"]})
    rc, out, err = run_init(tmp_path, capsys, "--data", "dl/skin")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "competition 'skin' from dl/skin"
    assert "  layout:      csv (train.csv + train/<id>.jpg); test images test/<id>.jpg" in lines
    assert "  id column:   image_name ('image_name' is unique and names the files in train/)" in lines
    assert "  label:       diagnosis ('diagnosis' holds 3 classes)" in lines
    assert ("  group:       patient_id ('patient_id' repeats (26 values over 52 rows): rows of one patient_id stay in "
            "one fold, so no fold validates on images whose patient_id it trained on)") in lines
    assert "  images:      .jpg, about 80 px (shorter side); 52 train, 6 test" in lines
    assert "  classes (3): cat 30, dog 10, fox 12" in lines
    assert ("  submission:  one probability column per class (sample_submission.csv: image_name + cat, dog, fox)"
            in lines)
    assert lines[8].startswith("  metric:      log_loss (a guess: the sample asks for a probability per class")
    assert "  recipe:      pretrained profile at 128 px, 3 folds" in lines
    assert lines[-2] == (f"wrote {tmp_path / 'configs' / 'skin'}/: base.yaml, compete.yaml, efficientnet_lite0.yaml, "
                         "efficientnet_lite1.yaml, mobilenetv3.yaml")
    assert lines[-1] == (f"next: python -m ensemble.compete --competition skin --configs-dir {tmp_path / 'configs'} "
                         "--time 60m --plan-only")
    base = yaml.safe_load((tmp_path / "configs" / "skin" / "base.yaml").read_text())
    assert base["competition"] == {"name": "skin", "root": "dl/skin", "id_col": "image_name", "label_col": "diagnosis",
                                   "group_col": "patient_id", "ext": ".jpg", "classes": ["cat", "dog", "fox"],
                                   "metric": "log_loss"}
    assert base["folds"]["n"] == 3 and base["input"]["size"] == 128
    cfg, comp = loaded(tmp_path, "skin", "efficientnet_lite0.yaml")
    assert comp.classes == ["cat", "dog", "fox"] and len(comp.train) == 52 and comp.train["group"].nunique() == 26
    assert cfg.model.pretrained is True
    compete = yaml.safe_load((tmp_path / "configs" / "skin" / "compete.yaml").read_text())
    assert [c["cfg"] for c in compete["time"]["candidates"]] == ["efficientnet_lite0.yaml", "efficientnet_lite1.yaml",
                                                                "efficientnet_lite0.yaml", "mobilenetv3.yaml"]


def test_class_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "flowers"
    for k, (c, n) in enumerate((("rose", 9), ("tulip", 30))):
        for i in range(n):
            image(root / "train" / c / f"{c}{i:02d}.png", 24, k)
    for i in range(4):
        image(root / "test_images" / f"x{i}.png", 24, i)
    pd.DataFrame({"file": [f"x{i}" for i in range(4)], "species": "rose"}).to_csv(root / "sample_submission.csv",
                                                                                  index=False)
    rc, out, err = run_init(tmp_path, capsys, "--data", str(root), "--name", "fl")
    assert rc == 0, err
    assert "  layout:      folders (train/<class>/<image>); test images test_images/<id>.png" in out
    assert "  label:       the folder name (one folder per class under train/ (2 folders))" in out
    assert "  classes (2): rose 9, tulip 30" in out
    assert "  submission:  one label column (a class name per test image) (sample_submission.csv: file + species)" in out
    assert "  metric:      balanced_accuracy (a guess: one label per image, classes imbalanced (largest / smallest = 3x)" in out
    assert "  recipe:      small profile at 32 px, 3 folds" in out  # 24 px images; 39 rows: 3 folds
    base = yaml.safe_load((tmp_path / "configs" / "fl" / "base.yaml").read_text())
    assert base["competition"]["layout"] == "folders" and base["competition"]["test_dir"] == "test_images"
    assert base["loss"] == {"name": "ce", "class_weights": "auto"}
    compete = yaml.safe_load((tmp_path / "configs" / "fl" / "compete.yaml").read_text())
    assert compete["time"]["vote"] == {"bias": "on"} and compete["time"]["candidates"][0]["sizes"] == [32]
    _, comp = loaded(tmp_path, "fl", "resnet18.yaml")
    assert comp.classes == ["rose", "tulip"] and list(comp.test["id"]) == ["x0", "x1", "x2", "x3"]
    assert Path(comp.test["path"].iat[0]).is_file()


def test_isic_style_subset_sample(tmp_path, capsys):
    """The sample scores 2 of 3 classes: every class is declared, the metric guess is AUC over those two."""
    classes = ("melanoma", "nevus", "seborrheic_keratosis")
    csv_download(tmp_path / "isic", classes=classes, counts=(8, 20, 8), id_col="image_id", label_col="label",
                 sample=["melanoma", "seborrheic_keratosis"])
    rc, out, err = run_init(tmp_path, capsys, "--data", str(tmp_path / "isic"))
    assert rc == 0, err
    assert ("  submission:  probabilities of some classes only (sample_submission.csv: image_id + melanoma, "
            "seborrheic_keratosis)") in out
    assert "  metric:      roc_auc (a guess: the sample asks for probabilities of only some classes" in out
    base = yaml.safe_load((tmp_path / "configs" / "isic" / "base.yaml").read_text())
    assert base["competition"]["classes"] == ["melanoma", "seborrheic_keratosis", "nevus"]
    _, comp = loaded(tmp_path, "isic", "mobilenetv3.yaml")
    assert str(comp.metric) == "roc_auc[classes=melanoma,seborrheic_keratosis]"


@pytest.mark.parametrize("extra, args, message", [
    ({"dx": ["a", "b", "c"], "site": ["x", "y"]}, [],
     "train.csv: cannot tell the label column: diagnosis, dx, site could all be labels; pass --label-col NAME"),
    ({"image_copy": None}, [],
     "train.csv: cannot tell the id column: image_name, image_copy all name image files; pass --id-col NAME"),
    ({}, ["--label-col", "diagnoses"],
     "train.csv: --label-col 'diagnoses' is not a column (columns: image_name, diagnosis, patient_id)"),
])
def test_ambiguous_columns_ask_by_name(tmp_path, capsys, extra, args, message):
    root = csv_download(tmp_path / "amb", sample="target", px=16)
    df = pd.read_csv(root / "train.csv", dtype=str)
    for col, values in extra.items():
        df[col] = df["image_name"] if values is None else [values[i % len(values)] for i in range(len(df))]
    df.to_csv(root / "train.csv", index=False)
    rc, out, err = run_init(tmp_path, capsys, "--data", str(root), *args)
    assert rc == 2 and out == "" and err == f"error: {root / message}\n"
    assert not (tmp_path / "configs").exists()  # nothing written


def test_naming_the_column_settles_it_and_init_never_overwrites(tmp_path, capsys):
    root = csv_download(tmp_path / "amb", sample="target", px=16, extra={"dx": ["a", "b", "c"]})
    rc, out, err = run_init(tmp_path, capsys, "--data", str(root), "--label-col", "diagnosis")
    assert rc == 0, err
    assert "  label:       diagnosis ('diagnosis' holds 3 classes)" in out
    base = tmp_path / "configs" / "amb" / "base.yaml"
    before = base.read_text()
    base.write_text(before + "# my edit\n")
    rc, out, err = run_init(tmp_path, capsys, "--data", str(root), "--label-col", "diagnosis")
    assert rc == 2 and err == (f"error: {tmp_path / 'configs' / 'amb'}: base.yaml, compete.yaml, mobilenetv3.yaml, "
                               f"resnet18.yaml already exist(s); init never overwrites: pick another --name or move "
                               f"{tmp_path / 'configs' / 'amb'} away\n")
    assert base.read_text() == before + "# my edit\n"


@pytest.mark.parametrize("setup, message", [
    (lambda r: (r / "sample_submission.csv").unlink(),
     "{root}: no sample_submission.csv (a Kaggle download has one: the test ids and the columns a submission must "
     "have); csv files here: train.csv"),
    (lambda r: shutil.rmtree(r / "test"),
     "{root}: cannot find the test images: no folder holds files named after the ids (e.g. 't000' + an image "
     "extension); folders with images: train"),
])
def test_a_download_init_cannot_read_is_one_line(tmp_path, capsys, setup, message):
    root = csv_download(tmp_path / "bad", px=16)
    setup(root)
    rc, out, err = run_init(tmp_path, capsys, "--data", str(root))
    assert rc == 2 and err == f"error: {message.format(root=root)}\n"


def test_fresh_download_of_the_demo_data_to_a_submission_with_no_file_edited(tmp_path, monkeypatch, capsys):
    """init, then `compete --time 3m` on what it wrote: a valid submission and a report."""
    from ensemble.compete.__main__ import main as compete
    from ensemble.data.digits import build_demo
    import ensemble.vote.__main__ as vote
    src = build_demo(tmp_path / "src" / "demo")
    dl = tmp_path / "work" / "downloads" / "digits-recognizer"
    dl.mkdir(parents=True)
    for name in ("train.csv", "sample_submission.csv", "train", "test"):  # what a Kaggle download holds
        (shutil.copytree if (src / name).is_dir() else shutil.copyfile)(src / name, dl / name)  # no solution
    monkeypatch.chdir(tmp_path / "work")
    assert main(["--data", "downloads/digits-recognizer"]) == 0
    out = capsys.readouterr().out
    assert "  recipe:      small profile at 32 px, 3 folds" in out and "  metric:      accuracy (a guess" in out
    assert out.splitlines()[-1] == "next: python -m ensemble.compete --competition digits-recognizer --time 60m --plan-only"
    written = {p: p.read_bytes() for p in (tmp_path / "work" / "configs").rglob("*.yaml")}
    assert compete(["--competition", "digits-recognizer", "--time", "3m", "-q"]) == 0
    subs = sorted((tmp_path / "work" / "submissions" / "digits-recognizer").glob("*.csv"))
    assert len(subs) == 1
    assert vote.main(["--check", str(subs[0]), "--competition", "digits-recognizer"]) == 0
    manifest = json.loads(subs[0].with_suffix(".json").read_text())
    state = json.loads((tmp_path / "work" / "runs" / "digits-recognizer" / "compete-t3m.json").read_text())
    planned = [e["name"] for e in state["plan"]["entries"]]
    assert planned and {r["name"] for r in manifest["runs"]} <= {f"{n}-t3m" for n in planned}
    assert 0 <= manifest["cv"]["score"] <= 1  # (how high depends on the epochs the machine's load leaves)
    assert (tmp_path / "work" / "runs" / "digits-recognizer" / "report" / "index.html").is_file()
    assert {p: p.read_bytes() for p in (tmp_path / "work" / "configs").rglob("*.yaml")} == written
