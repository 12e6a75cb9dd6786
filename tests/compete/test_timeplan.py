"""The time-budget planner: durations, cost model, allocation (pure functions, no training)."""
import math
from dataclasses import replace

import pytest

from ensemble.compete.spec import Candidate
from ensemble.compete.plandata import BudgetError, Entry, Plan, Rerun, Speed, Workload, duration_text, parse_duration
from ensemble.compete.timeplan import TwinsError, fold_cost, format_plan, make_plan, required_twins, top_up

W = Workload(n_train=6000, n_test=1500, folds=5, views=2, overhead=1.0)
SPEEDS = {"a": Speed(128, 30.0, 150.0), "b": Speed(128, 30.0, 150.0), "a-scratch": Speed(128, 30.0, 150.0),
          "fast": Speed(128, 120.0, 600.0)}


@pytest.mark.parametrize("text, seconds", [("60m", 3600), ("1.5h", 5400), ("90s", 90), ("3600", 3600), ("3 min", 180)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-5m", "soon", "5d"])
def test_parse_duration_errors(text):
    with pytest.raises(ValueError, match=rf"^--time expected a positive duration like 60m, 1.5h or 900s, got {text!r}$"):
        parse_duration(text)


def test_speed_scales_with_pixels_and_fold_cost_adds_up():
    assert Speed(128, 40.0, 160.0).at(256) == Speed(256, 10.0, 40.0)
    total, train = fold_cost(Speed(128, 30.0, 150.0), W, head_epochs=2, epochs=3)
    epoch = 4800 / 30 + 1200 / 150                      # 168 s
    feats, predict = 6000 / 150, (1200 + 1500) * 2 / 150  # 40 s, 36 s
    head = 2 * (4800 / (50 * 150) + 1.0)
    assert train == pytest.approx(head + 3 * epoch)
    assert total == pytest.approx(feats + head + 3 * epoch + predict)


def test_plan_fills_the_budget_in_priority_order_and_twins_match():
    cands = [Candidate("a.yaml", name="a", sizes=[128, 160], head_epochs=2),
             Candidate("b.yaml", name="b", sizes=[128]),
             Candidate("a.yaml", name="a-scratch", twin="a", set=["model.pretrained=false"])]
    plan = make_plan(cands, SPEEDS, W, budget_s=6 * 3600.0, reserve=0.0, reserve_s=0.0, min_epochs=2,
                     target_epochs=4, max_epochs=12)
    assert [e.name for e in plan.entries] == ["a", "b", "a-scratch"]
    a, b, twin = plan.entries
    assert twin.size == a.size and twin.head_epochs == 0
    # equal time: the twin (no feature pass, no head epochs) fits in a's time, one more epoch would not
    assert twin.est_seconds <= a.est_seconds
    assert 5 * fold_cost(SPEEDS["a-scratch"].at(a.size), W, 0, twin.epochs + 1)[0] > a.est_seconds
    assert plan.est_seconds <= plan.available_s
    for e in plan.entries:  # each within its equal share, and one more epoch would not be
        assert e.est_seconds <= plan.available_s / 3 + 1e-6
    assert a.size == 160 and a.epochs >= 4  # the larger size when target_epochs still fit there
    assert a.overrides() == ["folds.n=5", "input.size=160",
                             f"stages=[{{epochs: 2, train: head, augment: false}}, {{epochs: {a.epochs}, train: all}}]",
                             f"train.time_limit={a.fold_limit:.0f}"]


def test_small_budget_drops_models_then_folds():
    cands = [Candidate("a.yaml", name="a", sizes=[128], head_epochs=2), Candidate("b.yaml", name="b")]
    plan = make_plan(cands, SPEEDS, W, budget_s=3600.0, folds=[5, 3], reserve=0.0, reserve_s=0.0,
                     min_epochs=4, target_epochs=5)
    assert [(e.name, e.folds) for e in plan.entries] == [("a", 3)]  # 5 folds leave `a` fewer than 5 epochs
    assert plan.entries[0].epochs >= 5
    roomy = make_plan(cands, SPEEDS, W, budget_s=4 * 3600.0, folds=[5, 3], reserve=0.0, reserve_s=0.0,
                      min_epochs=4, target_epochs=5)
    assert [(e.name, e.folds) for e in roomy.entries] == [("a", 5), ("b", 5)]


def test_partial_unfreeze_stage_and_plan_round_trip():
    e = Entry("a", "a.yaml", ["x=1"], 128, 2, 5, 100.0, 50, folds=3, partial=3)
    assert e.overrides()[3] == "stages=[{epochs: 2, train: head, augment: false}, {epochs: 1, train: 3}, {epochs: 4, train: all}]"
    plan = Plan(3600, 3000, [e], {"a": {"size": 128, "train": 30.0, "eval": 150.0}})
    assert Plan.from_dict(plan.to_dict()) == plan
    assert format_plan(plan).splitlines()[1].split() == ["a", "128", "3", "2+1+4", "all", "30.0", "50", "1.7"]


def test_partial_fine_tuning_epochs_and_a_faster_pretrained_model_twin():
    e = Entry("a", "a.yaml", [], 128, 2, 6, 100.0, 50, folds=3, train=5)
    assert e.overrides()[2] == "stages=[{epochs: 2, train: head, augment: false}, {epochs: 6, train: 5}]"
    assert "last 5" in format_plan(Plan(3600, 3000, [e], {"a": {"size": 128, "train": 30.0, "eval": 150.0}}))
    # the pretrained model fine-tunes its last stages at 4x the scratch twin's rate: the twin gets the
    # same time, hence fewer epochs
    speeds = {"a": Speed(128, 120.0, 600.0), "a-scratch": Speed(128, 30.0, 600.0)}
    cands = [Candidate("a.yaml", name="a", head_epochs=2, train=5),
             Candidate("a.yaml", name="a-scratch", twin="a", set=["model.pretrained=false"])]
    a, twin = make_plan(cands, speeds, W, budget_s=4 * 3600.0, reserve=0.0, reserve_s=0.0, min_epochs=1,
                        target_epochs=2, max_epochs=40).entries
    assert a.train == 5 and twin.train == "all"
    assert twin.epochs < a.epochs and twin.est_seconds <= a.est_seconds
    assert 5 * fold_cost(speeds["a-scratch"], W, 0, twin.epochs + 1)[0] > a.est_seconds


def test_budget_too_small_names_the_smallest_budget_that_works():
    cands = [Candidate("a.yaml", name="a"), Candidate("b.yaml", name="b")]
    one_epoch = 5 * fold_cost(SPEEDS["a"], W, 0, 1)[0]  # the smallest plan: `a`, 1 epoch (b costs the same)
    needed = (one_epoch + 30 + 12) / (1 - 0.08)  # reserve_s 30, setup + vote + report 12 s, reserve 8%
    with pytest.raises(BudgetError) as e:
        make_plan(cands, SPEEDS, W, budget_s=20, setup={"duplicates": 5.0}, tail={"vote": 7.0})
    assert e.value.needed_s == pytest.approx(needed) and e.value.smallest.name == "a"
    assert str(e.value) == (f"a budget of 20s is too short: the smallest plan (a at 128px, 5 folds, 1 epoch, with "
                            f"{needed - one_epoch:.0f}s of setup, vote, report and reserve) needs "
                            f"{duration_text(needed)} at the speeds measured now; use --time {duration_text(needed * 1.15)} or more")
    plan = make_plan(cands, SPEEDS, W, budget_s=needed + 1e-6, setup={"duplicates": 5.0}, tail={"vote": 7.0})
    assert [(x.name, x.epochs) for x in plan.entries] == [("a", 1)]  # exactly the smallest plan fits
    with pytest.raises(BudgetError):
        make_plan(cands, SPEEDS, W, budget_s=needed - 1, setup={"duplicates": 5.0}, tail={"vote": 7.0})


def test_smallest_plan_of_a_pretrained_model_is_its_head_epochs_on_cached_features():
    cands = [Candidate("a.yaml", name="a", head_epochs=2, train=5), Candidate("b.yaml", name="b")]
    head_only = 3 * fold_cost(SPEEDS["a"], replace(W, folds=3), 2, 0)[0]
    plan = make_plan(cands, SPEEDS, W, budget_s=head_only + 60, folds=[5, 3], reserve=0.0, reserve_s=0.0,
                     setup={"shift": 60.0})
    (a,) = plan.entries
    assert (a.name, a.folds, a.head_epochs, a.epochs) == ("a", 3, 2, 0)
    assert a.overrides()[2] == "stages=[{epochs: 2, train: head, augment: false}]"  # no fine-tuning stage
    assert format_plan(plan).splitlines()[1].split()[:4] == ["a", "128", "3", "2+0+0"]
    with pytest.raises(BudgetError, match=r"\(a at 128px, 3 folds, 2 head epochs on cached features, with 60s"):
        make_plan(cands, SPEEDS, W, budget_s=head_only + 59, folds=[5, 3], reserve=0.0, reserve_s=0.0,
                  setup={"shift": 60.0})


@pytest.mark.parametrize("budget", [60, 300, 600, 900, 1800, 3600, 7200, 4 * 3600])
def test_the_plan_never_exceeds_its_budget(budget):
    cands = [Candidate("a.yaml", name="a", sizes=[128, 160], head_epochs=2, train=5),
             Candidate("b.yaml", name="b", sizes=[128]), Candidate("a.yaml", name="a-scratch", twin="a"),
             Candidate("fast.yaml", name="fast")]
    w = replace(W, cache_s=40.0, cached=(128,))
    setup, tail = {"measure + plan": 20.0, "duplicates": 15.0, "train/test shift": 30.0}, {"vote": 25.0, "report": 5.0}
    try:
        plan = make_plan(cands, SPEEDS, w, budget, folds=[5, 3], reserve=0.08, reserve_s=0.0, setup=setup, tail=tail,
                         min_epochs=4, target_epochs=5, max_epochs=12)
    except BudgetError as e:
        assert e.needed_s > budget
        return
    assert plan.entries and plan.total_seconds + 0.08 * budget <= budget + 1e-6
    assert format_plan(plan).splitlines()[-1].split()[1:] == [f"{plan.total_seconds / 60:.1f}", "of",
                                                               f"{budget / 60:.1f}"]
    uncached = [e for e in plan.entries if e.size == 160]  # the 160 px cache is built once, by its first model
    if uncached:
        assert uncached[0].est_seconds == pytest.approx(
            w.folds * 0 + uncached[0].folds * fold_cost(SPEEDS["a"].at(160), replace(w, folds=uncached[0].folds),
                                                        2, uncached[0].epochs)[0] + 40.0)


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (37.2, "38s"), (60, "1m"), (119.5, "120s"), (121, "3m"),
                                           (250, "5m"), (7300, "2.1h")])
def test_duration_text_is_a_time_at_least_that_long(seconds, text):
    assert duration_text(seconds) == text and parse_duration(text) >= seconds


def test_top_up_plans_more_models_when_the_plan_ran_faster_than_measured():
    cands = [Candidate("a.yaml", name="a", head_epochs=2), Candidate("b.yaml", name="b"),
             Candidate("a.yaml", name="a-scratch", twin="a")]
    plan = make_plan(cands, SPEEDS, W, budget_s=3600.0, reserve=0.0, reserve_s=0.0, min_epochs=3, target_epochs=5)
    assert [(e.name, e.epochs) for e in plan.entries] == [("a", 3)]
    a = plan.entries[0]
    # `a` took a quarter of its estimate: the speeds were 4x too pessimistic, and 3/4 of the budget is left
    extra = top_up(plan, cands, {"a": a.est_seconds / 4}, W, 3600.0 - a.est_seconds / 4, min_epochs=3,
                   target_epochs=5)
    assert [e.name for e in extra] == ["b", "a-scratch"]
    twin = extra[1]
    assert twin.size == a.size and twin.est_seconds <= a.est_seconds / 4 + 1e-6  # a's actual time
    assert sum(e.est_seconds for e in extra) <= 3600.0 - a.est_seconds / 4
    # on time: nothing to add; and nothing when the time left cannot give a model min_epochs
    assert top_up(plan, cands, {"a": a.est_seconds}, W, 3600.0 - a.est_seconds, min_epochs=3) == []
    assert top_up(plan, cands, {"a": a.est_seconds / 4}, W, 60.0, min_epochs=3) == []


def test_when_the_first_candidate_gets_too_few_epochs_the_first_that_gets_enough_is_planned():
    slow = {"a": Speed(128, 3.0, 15.0), "a-scratch": Speed(128, 3.0, 15.0), "fast": Speed(128, 120.0, 600.0)}
    cands = [Candidate("a.yaml", name="a"), Candidate("a.yaml", name="a-scratch", twin="a"),
             Candidate("fast.yaml", name="fast")]
    plan = make_plan(cands, slow, W, budget_s=1800.0, reserve=0.0, reserve_s=0.0, min_epochs=3, target_epochs=5)
    assert [(e.name, e.epochs >= 3) for e in plan.entries] == [("fast", True)]
    # and when none gets min_epochs: the first whose smallest recipe fits (not `a`: one epoch of it takes
    # 8000 s), with as many epochs as fit
    plan = make_plan(cands, slow, W, budget_s=1800.0, reserve=0.0, reserve_s=0.0, min_epochs=40, max_epochs=50)
    (fast,) = plan.entries
    assert fast.name == "fast" and 1 <= fast.epochs < 40 and plan.est_seconds <= 1800.0
    assert 5 * fold_cost(slow["fast"], W, 0, fast.epochs + 1)[0] > 1800.0


def test_required_twins_are_planned_first_and_compare_at_equal_time():
    cands = [Candidate("a.yaml", name="a", sizes=[128], head_epochs=2), Candidate("b.yaml", name="b"),
             Candidate("fast.yaml", name="fast"), Candidate("a.yaml", name="a-scratch", twin="a")]
    kw = dict(reserve=0.0, reserve_s=0.0, min_epochs=3, target_epochs=5, max_models=2)
    optional = make_plan(cands, SPEEDS, W, 4 * 3600.0, **kw)
    assert [e.name for e in optional.entries] == ["a", "b"]  # priority order: no room for the twin
    required = make_plan(cands, SPEEDS, W, 4 * 3600.0, twins="required", **kw)
    a, twin = required.entries
    assert (a.name, twin.name) == ("a", "a-scratch") and twin.size == a.size and twin.epochs >= 3
    assert twin.est_seconds <= a.est_seconds  # equal time: the twin fits in a's time ...
    assert 5 * fold_cost(SPEEDS["a-scratch"].at(a.size), W, 0, twin.epochs + 1)[0] > a.est_seconds  # ... and no more
    roomy = make_plan(cands, SPEEDS, W, 4 * 3600.0, twins="required", **{**kw, "max_models": 3})
    assert [e.name for e in roomy.entries] == ["a", "b", "a-scratch"]  # the rest fill in priority order
    assert required_twins(cands) == {"a", "a-scratch"}
    chain = [*cands, Candidate("a.yaml", name="a-tiny", twin="a-scratch")]
    assert required_twins(chain) == {"a", "a-scratch", "a-tiny"}


def test_required_twins_that_do_not_fit_name_the_budget_that_holds_them():
    cands = [Candidate("a.yaml", name="a"), Candidate("a.yaml", name="a-scratch", twin="a")]
    kw = dict(reserve=0.0, reserve_s=0.0, min_epochs=3, target_epochs=3)
    two_models = 2 * 5 * fold_cost(SPEEDS["a"], W, 0, 3)[0]  # both at 3 epochs
    with pytest.raises(TwinsError) as e:
        make_plan(cands, SPEEDS, W, two_models - 60, twins="required", **kw)
    assert e.value.needed_s == pytest.approx(two_models, abs=1.0)
    assert str(e.value) == (f"time.twins: required: a budget of {duration_text(two_models - 60)} does not hold a, "
                            f"a-scratch with 3 epochs each; use --time {duration_text(e.value.needed_s)} or more, or "
                            f"set time.twins: optional")
    plan = make_plan(cands, SPEEDS, W, two_models + 1, twins="required", **kw)
    assert [(x.name, x.epochs) for x in plan.entries] == [("a", 3), ("a-scratch", 3)]
    optional = make_plan(cands, SPEEDS, W, two_models - 60, **kw)
    assert [x.name for x in optional.entries] == ["a"]  # optional: the twin waits for time left over


def test_a_required_twin_makes_its_model_take_a_size_the_twin_can_match():
    """chest_xray, 40m: lite0 took 192 px, where its scratch twin gets no 2 epochs in lite0's time, so the
    planner refused (`use --time 68m`) though lite0 at 128 px and its twin fit in 40m."""
    cands = [Candidate("l0.yaml", name="lite0", sizes=[128, 160, 192], head_epochs=2, train=5),
             Candidate("l1.yaml", name="lite1", sizes=[128, 160], head_epochs=2, train=5),
             Candidate("l0.yaml", name="lite0-scratch", sizes=[128], twin="lite0")]
    speeds = {"lite0": Speed(128, 81.7, 285.6), "lite1": Speed(128, 58.3, 233.8), "lite0-scratch": Speed(128, 45.1, 276.4)}
    w = Workload(5216, 640, 3, views=2, cache_s=60.0)
    kw = dict(folds=[3], setup={"shift": 66.0}, min_epochs=2, target_epochs=3, max_epochs=12)
    assert make_plan(cands, speeds, w, 40 * 60.0, **kw).entries[0].size > 128  # optional: a larger size
    lite0, twin = make_plan(cands, speeds, w, 40 * 60.0, twins="required", **kw).entries
    assert (lite0.name, twin.name, lite0.size, twin.size) == ("lite0", "lite0-scratch", 128, 128)
    assert twin.epochs >= 2 and twin.est_seconds <= lite0.est_seconds


def test_the_second_round_is_reserved_so_both_rounds_fit():
    cands = [Candidate("a.yaml", name="a", head_epochs=2), Candidate("b.yaml", name="b")]
    kw = dict(reserve=0.0, reserve_s=0.0, min_epochs=2, target_epochs=4, max_epochs=12, tail={"vote": 20.0})
    rerun = Rerun(extra=1500, models=("a",), steps={"pseudo-labels": 5.0, "vote again": 40.0})
    alone = make_plan(cands, SPEEDS, W, 6 * 3600.0, **kw)
    plan = make_plan(cands, SPEEDS, W, 6 * 3600.0, rerun=rerun, **kw)
    (second,) = plan.rerun
    first = plan.entry("a")
    assert second.name == "a-pseudo" and (second.size, second.head_epochs, second.epochs) == (
        first.size, first.head_epochs, first.epochs)  # the same recipe ...
    w = replace(W, extra=1500)  # ... on 1500 more training rows per fold (no image cache to build)
    assert second.est_seconds == pytest.approx(5 * fold_cost(SPEEDS["a"].at(first.size), w, 2, first.epochs)[0])
    assert second.fold_limit == math.ceil(fold_cost(SPEEDS["a"].at(first.size), w, 2, first.epochs)[1] * 1.05)
    assert plan.rerun_steps == rerun.steps and plan.speeds["a-pseudo"] == plan.speeds["a"]
    assert plan.est_seconds + plan.rerun_seconds <= plan.available_s + 1e-6
    assert plan.total_seconds <= plan.budget_s + 1e-6
    assert sum(e.epochs for e in plan.entries) < sum(e.epochs for e in alone.entries)  # the first round pays
    assert Plan.from_dict(plan.to_dict()) == plan
    lines = format_plan(plan).splitlines()
    assert [r.split()[0] for r in lines[1:]] == ["a", "b", "a-pseudo", "vote", "pseudo-labels", "vote", "total"]
    a_min = 5 * fold_cost(SPEEDS["a"], W, 2, 2)[0]  # `a` at min_epochs: room for it, not for its second round
    tight = make_plan(cands, SPEEDS, W, a_min + 30.0, rerun=rerun, **kw)
    assert [(e.name, e.epochs) for e in tight.entries] == [("a", 2)] and tight.rerun == [] and tight.rerun_steps == {}


@pytest.mark.parametrize("budget", [900, 1800, 3600, 7200])
def test_plans_with_a_second_round_never_exceed_their_budget(budget):
    cands = [Candidate("a.yaml", name="a", sizes=[128, 160], head_epochs=2, train=5),
             Candidate("b.yaml", name="b", sizes=[128]), Candidate("fast.yaml", name="fast")]
    rerun = Rerun(extra=1500, steps={"pseudo-labels": 5.0, "vote again": 60.0})
    plan = make_plan(cands, SPEEDS, replace(W, cache_s=40.0), budget, folds=[5, 3], reserve=0.08, reserve_s=0.0,
                     setup={"duplicates": 15.0}, tail={"vote": 25.0, "report": 5.0}, min_epochs=2,
                     target_epochs=4, rerun=rerun)
    assert plan.entries and plan.total_seconds + 0.08 * budget <= budget + 1e-6
    if plan.rerun:
        assert [e.name for e in plan.rerun] == [e.name + "-pseudo" for e in plan.entries]
