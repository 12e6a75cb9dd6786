"""One template for every competition's `time:` section: the shipped compete.yaml files are it, rendered."""
from __future__ import annotations

import pytest
import yaml

from conftest import REPO
from ensemble.compete.spec import CompeteFile
from ensemble.config.loader import build
from ensemble.init.template import model_files, time_section

SHIPPED = [  # competition, profile, parameters (as each compete.yaml's comment above `time:` states them)
    ("demo", "small", dict(size=32)),
    ("ham10000", "pretrained", dict(tta="[flips]", vote={"bias": "on"})),
    ("chest_xray", "pretrained", dict(tta="[none, hflip]", pseudo={"labels": "soft", "weight": 0.5, "precision": 0.95})),
]


def spec(time: dict):
    return build(CompeteFile, {"time": time}, "", lambda key: "test").time


@pytest.mark.parametrize("competition, profile, params", SHIPPED)
def test_shipped_time_sections_are_the_template_rendered(competition, profile, params):
    shipped = yaml.safe_load((REPO / "configs" / competition / "compete.yaml").read_text())["time"]
    rendered = time_section(profile, **params)
    assert rendered == shipped
    assert spec(rendered) == spec(shipped)  # the same TimeSpec: compete plans the same job


def test_a_changed_parameter_changes_the_section():
    assert time_section("small", size=64)["candidates"][0] == {"cfg": "resnet18.yaml", "sizes": [64]}
    assert "vote" not in time_section("pretrained") and time_section("pretrained")["set"][-1] == \
        "predict.tta=[none, hflip]"
    with pytest.raises(ValueError, match="unknown profile 'huge'; available: small, pretrained"):
        time_section("huge")
    with pytest.raises(ValueError, match="the small profile needs the image size"):
        time_section("small")


@pytest.mark.parametrize("profile, competition", [("small", "demo"), ("pretrained", "chest_xray"),
                                                   ("pretrained", "ham10000")])
def test_model_templates_are_the_shipped_model_files(profile, competition):
    """Every model file a profile's candidates name, as the shipped competitions have it."""
    files = model_files(profile, competition)
    names = {c["cfg"] for c in time_section(profile, size=32)["candidates"]}
    assert set(files) == names
    for name, text in files.items():
        shipped = yaml.safe_load((REPO / "configs" / competition / name).read_text())
        mine = yaml.safe_load(text)
        if competition == "ham10000":  # ham's own tuning space aside, the same recipes
            shipped.pop("tune", None), mine.pop("tune", None)
        assert mine == shipped, name
