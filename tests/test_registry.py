"""One Registry type: register, duplicates, "did you mean", listing; every registry-backed config
name is checked when the config loads, before anything is written."""
import pytest

from ensemble.config import ConfigError, load_config
from ensemble.registry import Registry, lookup
from ensemble.train.__main__ import main as train_main


def test_register_get_list_and_refuse_duplicates():
    reg = Registry("widget")

    @reg.register("round")
    def round_widget():
        return "o"

    reg.register("square", "[]")
    assert list(reg) == ["round", "square"] and reg.names() == ["round", "square"] and len(reg) == 2
    assert reg.get("round") is round_widget and reg["square"] == "[]" and "round" in reg
    with pytest.raises(ValueError, match=r"^widget 'round' is already registered$"):
        reg.register("round", "other")
    reg.register("round", round_widget)  # the same object again: a no-op (a plugin imported twice)
    reg.register("round", "other", override=True)
    assert reg["round"] == "other"
    with pytest.raises(ValueError) as e:
        reg.get("rund")
    assert str(e.value) == "unknown widget 'rund'; available: round, square (did you mean 'round'?)"
    with pytest.raises(ValueError) as e:
        reg.get("zzz")
    assert str(e.value) == "unknown widget 'zzz'; available: round, square"
    assert reg.get("zzz", None) is None


@pytest.mark.parametrize("kind", ["backbone", "activation", "weights_map", "loss", "optimizer", "scheduler", "preset",
                                  "metric", "TTA view", "vote method", "adaptation"])
def test_every_registry_is_one_type_looked_up_by_its_own_name(kind):
    """The name the config loader looks a registry up by is the one its messages use."""
    assert isinstance(lookup(kind), Registry) and len(lookup(kind)) > 0 and lookup(kind).kind == kind


TYPOS = [
    ("loss.name=focall", "key 'loss.name': unknown loss 'focall'; available: ce, focal, smooth_l1, mse "
                         "(did you mean 'focal'?)"),
    ("optim.name=adamx", "key 'optim.name': unknown optimizer 'adamx'; available: adamw, adam, sgd "
                         "(did you mean 'adam'?)"),
    ("schedule.name=cosin", "key 'schedule.name': unknown scheduler 'cosin'; available: cosine, constant, step, "
                            "plateau, onecycle (did you mean 'cosine'?)"),
    ("model.backbone=resnet19", "key 'model.backbone': unknown backbone 'resnet19'; available: resnet18, "),
    ("model.head.activation=gelo", "key 'model.head.activation': unknown activation 'gelo'; available: relu, gelu, "
                                   "silu (did you mean 'gelu'?)"),
    ("augment.train=medicl", "key 'augment.train': spec: unknown preset 'medicl'; available: medical, dermoscopy, light, none "
                             "(did you mean 'medical'?)"),
    ("augment.eval=[{name: Flipp}]", "key 'augment.eval': spec[0]: unknown augmentation 'Flipp'; did you mean"),
    ("competition.metric=acuracy", "key 'competition.metric': unknown metric 'acuracy'; available: accuracy, "),
    ("predict.tta=[hflp]", "key 'predict.tta': unknown TTA view 'hflp'; available: none, hflip, "),
    ("model.weights_map=by_ordr", "key 'model.weights_map': unknown weights_map 'by_ordr'; available: identity, "
                                  "by_order (did you mean 'by_order'?)"),
    ("optim.lr.head=-0.001", "key 'optim.lr.head': a learning rate must be > 0, got -0.001"),
    ("stages=[{epochs: 1, lr: {backbone: 0}}]", "key 'stages.0.lr.backbone': a learning rate must be > 0, got 0"),
]


@pytest.mark.parametrize("override, message", TYPOS)
def test_typo_fails_at_load(tiny, override, message):
    cfg_path, _, _ = tiny
    with pytest.raises(ConfigError) as e:
        load_config(cfg_path, [override])
    assert str(e.value).startswith(f"--set: {message}")


def test_typo_in_a_file_names_the_file_and_writes_nothing(tiny, capsys):
    cfg_path, _, runs = tiny
    cfg_path.write_text(cfg_path.read_text() + "loss: {name: focall}\n")
    assert train_main(["--cfg", str(cfg_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {cfg_path}: key 'loss.name': unknown loss 'focall'; "
                                              "available: ce, focal, smooth_l1, mse (did you mean 'focal'?)")
    assert not runs.exists()  # nothing written: no runs dir, folds.csv, cache or config.yaml
