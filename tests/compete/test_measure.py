"""compete/measure.py: what --time times before it plans (and that it writes nothing)."""
import pytest

from conftest import make_competition, write_configs
from ensemble.compete.measure import FULL, full_measure_seconds, measure_candidates, measure_images
from ensemble.compete.spec import Candidate
from ensemble.compete.plandata import Speed
from ensemble.config import load_config


def test_candidates_are_timed_at_their_smallest_size(tmp_path):
    comp = make_competition(tmp_path / "comp")
    cfg = load_config(write_configs(tmp_path / "configs", comp, tmp_path / "runs"))
    cands = [Candidate("model.yaml", name="a", sizes=[32, 24]), Candidate("model.yaml", name="b", train=2)]
    speeds, build_s = measure_candidates(cands, {"a": cfg, "b": cfg}, 3, quick=True)
    assert speeds["a"].size == 24 and speeds["b"].size == 128
    assert all(s.train > 0 and s.eval > 0 for s in speeds.values()) and build_s > 0
    assert not (tmp_path / "runs").exists()
    # the full pass: (3 timed + 1 warm-up batches) x 2 rounds, training and inference, plus building
    est = full_measure_seconds(cands, {"a": cfg, "b": cfg}, {"a": Speed(24, 8.0, 16.0), "b": Speed(128, 4.0, 8.0)}, 1.5)
    batches = (FULL["steps"] + 1) * FULL["rounds"]
    assert est == pytest.approx(1.5 + batches * 8 * (1 / 8 + 1 / 16) + batches * 8 * (1 / 4 + 1 / 8))


def test_image_work_is_timed_on_a_sample(tmp_path):
    comp = make_competition(tmp_path / "comp", size=64)
    paths = sorted(str(p) for p in (comp / "train").iterdir())
    rates = measure_images([*paths, str(comp / "missing.jpg")], size=32, n=6)
    assert 0 < rates.decode_s < 1 and 0 < rates.hash_s < 1 and 0 < rates.stats_s < 1
