"""vote_runs fits its small models with BLAS on one thread: on a busy machine the spare BLAS threads
only spin (a stacking fit measured 1.33 s with two threads, 0.28 s with one), and compete's --time plan
prices the vote by the one-thread figure."""
from threadpoolctl import threadpool_info, threadpool_limits

import ensemble.vote.voter as voter


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_vote_runs_keeps_blas_on_one_thread_and_restores_it(monkeypatch):
    seen = {}
    monkeypatch.setattr(voter, "_vote", lambda *args: seen.setdefault("inside", _blas_threads()))
    with threadpool_limits(limits=2, user_api="blas"):  # as on a machine with cores to spare
        before = _blas_threads()
        assert before and set(before) == {2}, "numpy's BLAS is loaded and settable"
        voter.vote_runs(["runs/x/a"])
        assert _blas_threads() == before
    assert seen["inside"] == [1] * len(before)
