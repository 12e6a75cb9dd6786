"""Pseudo-label thresholds (vote/pseudo.py): the lowest per-class threshold whose OOF precision is met."""
import numpy as np
import pytest

from ensemble.vote.pseudo import class_threshold, pseudo_labels

CLASSES = ["a", "b", "c"]


def test_the_lowest_threshold_that_meets_the_precision_and_ties_stay_together():
    conf = np.array([0.99, 0.98, 0.9, 0.9, 0.8, 0.7])
    correct = np.array([True, True, True, False, True, False])
    # precision of the rows at or above each value: 0.99 -> 1, 0.98 -> 1, 0.9 (both) -> 3/4, 0.8 -> 4/5, 0.7 -> 4/6
    assert class_threshold(conf, correct, 0.75) == (0.8, 0.8, 5)
    assert class_threshold(conf, correct, 0.8) == (0.8, 0.8, 5)
    assert class_threshold(conf, correct, 0.9) == (0.98, 1.0, 2)  # the 0.9 pair is never split
    assert class_threshold(conf, correct, 0.6) == (0.7, 4 / 6, 6)
    assert class_threshold(conf[::-1], correct[::-1], 0.8) == (0.8, 0.8, 5)  # order does not matter
    assert class_threshold(conf, ~correct, 0.95) is None
    assert class_threshold(np.array([]), np.array([], bool), 0.95) is None
    # 19 of 20 is 0.95 exactly, whatever 0.95 * 20 rounds to
    assert class_threshold(np.linspace(1, 0.5, 20), np.arange(20) != 7, 0.95) == (0.5, 0.95, 20)


def _brute(conf, correct, target):
    """Every distinct value as a threshold; the lowest whose rows reach the precision."""
    ok = [t for t in np.unique(conf) if correct[conf >= t].mean() >= target - 1e-9]
    return min(ok) if ok else None


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_meet_the_oof_precision_and_pick_the_test_rows_that_pass(seed):
    rng = np.random.default_rng(seed)
    n, t = 400, 150
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + np.eye(3)[y] * np.array([3.0, 1.5, 1.0])  # a strong and a fair class
    oof = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    as_c = oof.argmax(1) == 2  # ... and one that is wrong where it is most confident: never 0.95 precise
    y[as_c] = np.where(oof[as_c, 2] < np.median(oof[as_c, 2]), 2, 0)
    test = rng.dirichlet(np.ones(3) * 0.5, t)
    pl = pseudo_labels(oof, y, test, CLASSES, precision=0.95)
    pred = oof.argmax(1)
    for c, th in enumerate(pl.thresholds):
        rows = pred == c
        brute = _brute(oof[rows, c], y[rows] == c, 0.95)
        assert th.threshold == (None if brute is None else pytest.approx(brute, abs=1e-12))
        if th.threshold is None:
            assert th.taken == 0 and not (pl.take & (test.argmax(1) == c)).any()
            assert "OOF precision never reaches 0.95" in th.line(0.95) and th.line(0.95).endswith("no test rows")
            continue
        kept = rows & (oof[:, c] >= th.threshold)
        assert (y[kept] == c).mean() >= 0.95 and th.precision == pytest.approx((y[kept] == c).mean())
        assert th.oof_rows == kept.sum()
        want = (test.argmax(1) == c) & (test[:, c] >= th.threshold)
        assert np.array_equal(pl.take & (pl.label == c), want) and th.taken == want.sum()
        assert th.line(0.95) == (f"pseudo-labels: {CLASSES[c]}: threshold {th.threshold:.3f}, OOF precision "
                                 f"{th.precision:.3f} ({th.oof_rows} OOF rows), {th.taken} test rows")
    assert pl.thresholds[0].threshold is not None and pl.thresholds[2].threshold is None  # strong yes, weak no
    assert pl.n == sum(th.taken for th in pl.thresholds) > 0


def test_max_fraction_keeps_the_most_confident_rows():
    y = np.array([0] * 10 + [1] * 10)
    oof = np.where(np.arange(20)[:, None] < 10, [0.6, 0.4], [0.4, 0.6]).astype(np.float32)
    test = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55], [0.65, 0.35]])
    full = pseudo_labels(oof, y, test, ["x", "y"], precision=0.95)
    assert full.take.tolist() == [True, True, True, False, True]  # 0.55 < y's threshold 0.6
    capped = pseudo_labels(oof, y, test, ["x", "y"], precision=0.95, max_fraction=0.4)  # 2 of 5 rows
    assert capped.take.tolist() == [True, False, True, False, False] and capped.capped == 2
    assert [t.taken for t in capped.thresholds] == [1, 1]
    assert capped.lines()[-1] == ("pseudo-labels: 2 more test rows passed their threshold; max_fraction kept the "
                                  "2 most confident")


def test_the_frame_is_train_extra_rows_soft_or_hard_with_a_weight():
    y = np.array([0, 0, 1, 1])
    oof = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    test = np.array([[0.95, 0.05], [0.5, 0.5], [0.3, 0.7]])
    pl = pseudo_labels(oof, y, test, ["x", "y"])
    soft = pl.frame(["t0", "t1", "t2"], ["i/t0.png", "i/t1.png", "i/t2.png"], weight=0.5, hard=False)
    assert list(soft.columns) == ["id", "path", "x", "y", "weight"]
    assert soft["id"].tolist() == ["t0"] and soft["path"].tolist() == ["i/t0.png"]  # 0.7 < y's threshold 0.8
    np.testing.assert_allclose(soft[["x", "y"]].to_numpy(), [[0.95, 0.05]], rtol=1e-6)
    assert soft["weight"].tolist() == [0.5]
    hard = pl.frame(["t0", "t1", "t2"], ["a", "b", "c"], weight=1.0, hard=True)
    assert hard[["x", "y"]].to_numpy().tolist() == [[1.0, 0.0]]


def test_rank_scores_are_made_rows_of_probabilities_and_bad_arguments_are_named():
    y = np.array([0, 1])
    pl = pseudo_labels(np.array([[2.0, 1.0], [1.0, 3.0]]), y, np.array([[4.0, 0.0]]), ["x", "y"], precision=0.5)
    assert pl.probs.tolist() == [[1.0, 0.0]] and pl.thresholds[0].threshold == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"^pseudo-label precision must be in \(0, 1\], got 1.5$"):
        pseudo_labels(np.ones((2, 2)) / 2, y, np.ones((1, 2)) / 2, ["x", "y"], precision=1.5)
    with pytest.raises(ValueError, match=r"^pseudo-label max_fraction must be in \(0, 1\], got 0$"):
        pseudo_labels(np.ones((2, 2)) / 2, y, np.ones((1, 2)) / 2, ["x", "y"], max_fraction=0)
    with pytest.raises(ValueError, match=r"expected OOF \(N, 3\) with N labels and test \(T, 3\)"):
        pseudo_labels(np.ones((2, 2)) / 2, y, np.ones((1, 2)) / 2, CLASSES)
