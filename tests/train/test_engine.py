"""TTA views: the D4 group, multi-size views and their config names."""
import pytest
import torch


def test_d4_and_multi_size_tta_views():
    from ensemble.train.tta import expand_tta, tta_view
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    views = expand_tta(["d4", "hflip", "scale1.5"])
    assert views == ["none", "hflip", "vflip", "rot90", "rot180", "rot270", "transpose", "antitranspose", "scale1.5"]
    images = {tuple(tta_view(v)(x).flatten().tolist()) for v in views[:8]}
    assert len(images) == 8  # the 8 elements of D4 are all different
    assert torch.equal(tta_view("rot90")(tta_view("rot270")(x)), x)
    assert tuple(tta_view("hflip+scale1.5")(torch.zeros(2, 3, 16, 16)).shape) == (2, 3, 24, 24)
    with pytest.raises(ValueError, match=r"^unknown TTA view 'rot45'; available: none, hflip"):
        expand_tta(["rot45"])


def test_config_expands_tta_groups(tmp_path):
    from ensemble.config import ConfigError, load_config
    from tests.conftest import make_competition, write_configs
    cfg_path = write_configs(tmp_path / "cfg", make_competition(tmp_path / "c"), tmp_path / "runs")
    assert len(load_config(cfg_path, ["predict.tta=[d4, scale1.25]"]).predict.tta) == 9
    with pytest.raises(ConfigError, match=r"--set: key 'predict.tta': unknown TTA view 'upside'"):
        load_config(cfg_path, ["predict.tta=[upside]"])
