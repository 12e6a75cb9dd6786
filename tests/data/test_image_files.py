"""Which image files a competition may read (ensemble.data.imagefiles): links out of the competition
folder or in a loop, ids leaving the image folder, headers declaring more than input.max_pixels, and
labels that look like typos when the classes come from the labels. One line each, naming the row."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import make_competition, png_header
from ensemble.config import CompetitionCfg
from ensemble.data.competition import DataError, check_single_rows, load_competition
from ensemble.data.imagefiles import DEFAULT_MAX_PIXELS, ImageError, decode, image_size, link_problems, pixel_problem


@pytest.mark.parametrize("width, height, limit, message", [
    (20000, 20000, DEFAULT_MAX_PIXELS, "400,000,000 pixels, over input.max_pixels 89,478,485; not decoded"),
    (10000, 9000, DEFAULT_MAX_PIXELS, "10000x9000 = 90,000,000 pixels, over input.max_pixels 89,478,485; not decoded"),
    (300, 200, 50_000, "300x200 = 60,000 pixels, over input.max_pixels 50,000; not decoded"),
    (300, 200, 60_000, None),
    (20000, 20000, None, None),  # no limit
])
def test_pixel_limit_reads_the_header_only(width, height, limit, message):
    assert pixel_problem(png_header(width, height), limit) == message


def test_oversized_image_is_refused_without_decoding(tmp_path, monkeypatch):
    p = tmp_path / "huge.png"
    p.write_bytes(png_header(20000, 20000))
    monkeypatch.setattr(cv2, "imdecode", None)  # never reached
    with pytest.raises(ImageError) as e:
        decode(p)
    assert str(e.value) == f"{p}: 400,000,000 pixels, over input.max_pixels 89,478,485; not decoded"
    q = tmp_path / "small.png"
    cv2.imwrite(str(q), np.zeros((5, 7, 3), np.uint8))
    assert image_size(q.read_bytes()) == (7, 5) and image_size(b"not an image") is None


def test_links_out_of_the_folder_and_loops(tmp_path):
    comp, outside = tmp_path / "comp", tmp_path / "elsewhere"
    (comp / "train" / "sub").mkdir(parents=True)
    outside.mkdir()
    for name in ("a.png", "b.png"):
        (comp / "train" / name).write_bytes(b"x")
    (outside / "o.png").write_bytes(b"x")
    os.symlink(outside / "o.png", comp / "train" / "out.png")           # a link to outside
    os.symlink("a.png", comp / "train" / "in.png")                      # a link inside: fine
    os.symlink("loop.png", comp / "train" / "loop.png")                 # a loop
    os.symlink(comp / "gone.png", comp / "train" / "dangling.png")      # missing: the decoder's message
    os.symlink(outside, comp / "train" / "sub" / "far")                 # a folder on the way leaves
    paths = [str(comp / "train" / n) for n in ("a.png", "out.png", "in.png", "loop.png", "dangling.png")]
    paths.append(str(comp / "train" / "sub" / "far" / "o.png"))
    assert link_problems(paths, [comp]) == {
        paths[1]: f"a symbolic link to {outside / 'o.png'}, outside {comp}",
        paths[3]: "a loop of symbolic links",
        paths[5]: f"in a folder that resolves to {outside}, outside {comp}"}
    # the image folder itself may be a link: the whole set then lives there
    assert link_problems([str(comp / "train" / "sub" / "far" / "o.png")], [comp, comp / "train" / "sub" / "far"]) == {}


def test_a_linked_train_folder_is_accepted(tmp_path):
    data = make_competition(tmp_path / "data", n_per_class=2, n_test=2, size=8)
    comp = tmp_path / "comp"
    comp.mkdir()
    for f in ("train.csv", "sample_submission.csv"):
        (comp / f).write_bytes((data / f).read_bytes())
    os.symlink(data / "train", comp / "train")
    os.symlink(data / "test", comp / "test")
    from ensemble.data.imagefiles import check_image_files
    check_image_files(load_competition(CompetitionCfg(name="c", root=str(comp), ext=".jpg")))


def test_symlink_loop_is_unreadable_not_a_traceback(tmp_path):
    p = tmp_path / "x.png"
    os.symlink("x.png", p)
    with pytest.raises(ImageError) as e:
        decode(p)
    assert str(e.value) == f"{p}: a loop of symbolic links"


def _comp(tmp_path, labels: dict[str, str], sample_ids=("t0", "t1")):
    root = tmp_path / "c"
    (root / "train").mkdir(parents=True)
    pd.DataFrame({"id": list(labels), "label": list(labels.values())}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": list(sample_ids), "label": "cat"}).to_csv(root / "sample_submission.csv", index=False)
    return CompetitionCfg(name="c", root=str(root))


BAD_IDS = [  # (train ids, sample ids, message after the root)
    ({"a": "x", "../b": "y"}, ("t0",), "train.csv: line 3: id '../b' leaves the image folder {root}/train (a '..' part or "
                                       "an absolute path); ids name files inside it"),
    ({"a": "x", "sub/../../b": "y"}, ("t0",), "train.csv: line 3: id 'sub/../../b' leaves the image folder "
                                              "{root}/train (a '..' part or an absolute path); ids name files inside it"),
    ({"a": "x", "b": "y"}, ("t0", "/etc/passwd"), "sample_submission.csv: line 3: id '/etc/passwd' leaves the image "
                                                  "folder {root}/test (a '..' part or an absolute path); ids name "
                                                  "files inside it"),
    ({"a": "x", "b": "y"}, ("..",), "sample_submission.csv: line 2: id '..' leaves the image folder {root}/test (a '..' "
                                    "part or an absolute path); ids name files inside it"),
]


@pytest.mark.parametrize("labels, sample_ids, message", BAD_IDS)
def test_ids_leaving_the_image_folder(tmp_path, labels, sample_ids, message):
    cfg = _comp(tmp_path, labels, sample_ids)
    with pytest.raises(DataError) as e:
        load_competition(cfg)
    assert str(e.value) == f"{cfg.root}/" + message.format(root=cfg.root)


@pytest.mark.parametrize("ids", [{"sub/a": "x", "b..c": "y", "a": "x", "b": "y"}])
def test_ids_in_sub_folders_and_with_dots_are_fine(tmp_path, ids):
    assert len(load_competition(_comp(tmp_path, ids)).train) == 4


INFERRED = [  # labels of a label-column sample (classes from the labels) -> the one line
    ({"a": "cat", "b": "cat", "c": "dog", "d": "dog", "e": "Cat"},
     "label 'Cat' (1 row: line 6) differs from class 'cat' (2 rows) only in case, spaces or punctuation; the classes "
     "come from the train.csv labels (Cat, cat, dog): fix those rows, or list the real classes under competition.classes"),
    ({"a": "cat", "b": "cat", "c": "dog", "d": "dog", "e": "dog_", "f": "dog_"},
     "label 'dog_' (2 rows: line 6, line 7) differs from class 'dog' (2 rows) only in case, spaces or punctuation; the "
     "classes come from the train.csv labels (cat, dog, dog_): fix those rows, or list the real classes under "
     "competition.classes"),
]


@pytest.mark.parametrize("labels, message", INFERRED)
def test_label_variants_are_typos_when_classes_come_from_the_labels(tmp_path, labels, message):
    cfg = _comp(tmp_path, labels)
    with pytest.raises(DataError) as e:
        load_competition(cfg)
    assert str(e.value) == f"{cfg.root}/train.csv: {message}"
    ok = CompetitionCfg(**{**cfg.__dict__, "classes": sorted(set(labels.values()))})
    assert len(load_competition(ok).classes) == len(set(labels.values()))  # declared: classes of their own


def test_one_row_label_names_its_line(tmp_path):
    cfg = _comp(tmp_path, {"a": "cat", "b": "cat", "c": "dog", "d": "dog", "e": "bird"})
    comp = load_competition(cfg)
    with pytest.raises(DataError) as e:
        check_single_rows(comp)
    assert str(e.value) == (f"{cfg.root}/train.csv: label 'bird' is on 1 row only (line 6), too few for a class (its "
                            f"rows must fall into at least 2 folds); the classes come from the train.csv labels (bird, "
                            f"cat, dog): fix those rows, or list the real classes under competition.classes")
    declared = CompetitionCfg(**{**cfg.__dict__, "classes": ["bird", "cat", "dog"]})
    check_single_rows(load_competition(declared))  # declared classes: the folds' own message applies
