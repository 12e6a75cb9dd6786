import pytest

from ensemble.config import ConfigError, dump_config, load_config, parse_overrides


def write(p, text):
    p.write_text(text)
    return p


@pytest.fixture
def cfgdir(tmp_path):
    write(tmp_path / "base.yaml", "competition: {name: c, root: data/c, metric: balanced_accuracy}\nfolds: {n: 4}\n")
    write(tmp_path / "m.yaml", "base: base.yaml\nmodel: {backbone: resnet34}\noptim: {lr: {head: 0.01}}\n")
    return tmp_path


def test_base_inheritance_and_defaults(cfgdir):
    cfg = load_config(cfgdir / "m.yaml")
    assert cfg.competition.metric == "balanced_accuracy"
    assert cfg.folds.n == 4 and cfg.folds.seed == 42
    assert cfg.model.backbone == "resnet34"
    assert cfg.optim.lr.head == 0.01 and cfg.optim.lr.backbone == 1e-4
    assert cfg.name == "m" and str(cfg.run_dir) == "runs/c/m"


def test_overrides_including_list_index(cfgdir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "x.pt").write_bytes(b"")  # model.pretrained must name a file that exists
    cfg = load_config(cfgdir / "m.yaml", ["input.size=64", "stages=[{epochs: 2, train: head}, {epochs: 3}]",
                                          "stages.1.epochs=5", "model.pretrained=weights/x.pt"])
    assert cfg.input.size == 64
    assert [(s.epochs, s.train) for s in cfg.stages] == [(2, "head"), (5, "all")]
    assert cfg.model.pretrained == "weights/x.pt"
    with pytest.raises(ConfigError, match=r"--set: key 'model.pretrained' expected true, false or the path of an "
                                          r"existing weights file .*, got 'weights/y.pt' \(file not found\)"):
        load_config(cfgdir / "m.yaml", ["model.pretrained=weights/y.pt"])
    assert load_config(cfgdir / "m.yaml", ["stages=[{epochs: 1, train: 2}]"]).stages[0].train == 2


def test_resolved_config_round_trips(cfgdir, tmp_path):
    cfg = load_config(cfgdir / "m.yaml", ["folds.n=3"])
    write(tmp_path / "resolved.yaml", dump_config(cfg))
    assert load_config(tmp_path / "resolved.yaml") == cfg


@pytest.mark.parametrize("text, overrides, message", [
    ("optim: {lrr: 1}", [], "{m}: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("train: {batch_size: big}", [], "{m}: key 'train.batch_size' expected an integer, got str 'big'"),
    ("", ["input.szie=3"], "--set: unknown key 'input.szie' (did you mean 'input.size'?)"),
    ("", ["folds.n=2.5"], "--set: key 'folds.n' expected an integer, got float 2.5"),
    ("input: {bad_images: ignore}", [], "{m}: key 'input.bad_images' expected one of 'fail', 'skip', got str 'ignore'"),
    ("stages: [{train: all}]", [], "{m}: missing required key 'stages.0.epochs'"),
    ("", ["stages.3.epochs=1"], "--set: key 'stages.3' expected a list index < 1, got '3'"),
    ("", ["nokey"], "--set: expected key=value, got 'nokey'"),
])
def test_bad_config_messages(cfgdir, text, overrides, message):
    m = write(cfgdir / "bad.yaml", "base: base.yaml\nstages: [{epochs: 1}]\n" + text
              if "stages" not in text else "base: base.yaml\n" + text)
    with pytest.raises(ConfigError) as e:
        load_config(m, overrides)
    assert str(e.value) == message.format(m=m)


def test_base_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope\.yaml$"):
        load_config(tmp_path / "nope.yaml")
    m = write(tmp_path / "m.yaml", "base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: base file not found: .*missing\.yaml$"):
        load_config(m)
    m = write(tmp_path / "m2.yaml", "model: {backbone: resnet18}\n")
    with pytest.raises(ConfigError, match=r"m2\.yaml: missing required key 'competition'"):
        load_config(m)


def test_unknown_key_names_the_base_file_it_came_from(cfgdir):
    write(cfgdir / "base.yaml", "competition: {name: c, root: r, metirc: x}\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfgdir / "m.yaml")
    assert str(e.value) == f"{cfgdir / 'base.yaml'}: unknown key 'competition.metirc' (did you mean 'competition.metric'?)"


def test_parse_overrides_yaml_values():
    assert parse_overrides(["a=1", "b=x", "c=[1, 2]", "d=null"]) == {"a": 1, "b": "x", "c": [1, 2], "d": None}


def test_float_keys_accept_yaml_exponent_strings(cfgdir):
    cfg = load_config(cfgdir / "m.yaml", ["optim.lr.head=1e-3", "optim.weight_decay=5e-5"])
    assert cfg.optim.lr.head == 1e-3 and cfg.optim.weight_decay == 5e-5
    with pytest.raises(ConfigError, match="key 'optim.lr.head' expected a number, got str 'fast'"):
        load_config(cfgdir / "m.yaml", ["optim.lr.head=fast"])


def test_ranges_declared_on_fields_are_checked_in_nested_sections_lists_and_mappings():
    from dataclasses import dataclass, field

    from ensemble.config.checks import check_fields
    from ensemble.config.ranges import POSITIVE_INT, not_empty

    @dataclass(frozen=True)
    class Item:
        k: int = field(default=1, metadata={"range": POSITIVE_INT})

    @dataclass(frozen=True)
    class Top:
        items: list[Item] = field(default_factory=lambda: [Item()], metadata={"range": not_empty("at least one item")})
        sizes: list[int] = field(default_factory=list, metadata={"items": POSITIVE_INT})
        by_name: dict[str, Item] = field(default_factory=dict)
        optional: int | None = field(default=None, metadata={"range": POSITIVE_INT})  # None: not set, not checked

    source = lambda key: "f.yaml"
    check_fields(Top([Item(2)], [1, 2], {"a": Item(3)}), source)
    for top, message in ((Top([Item(0)]), "f.yaml: key 'items.0.k' expected an integer >= 1, got int 0"),
                         (Top(sizes=[1, -1]), "f.yaml: key 'sizes.1' expected an integer >= 1, got int -1"),
                         (Top(by_name={"a": Item(0)}), "f.yaml: key 'by_name.a.k' expected an integer >= 1, got int 0"),
                         (Top(items=[]), "f.yaml: key 'items' expected at least one item, got list []")):
        with pytest.raises(ConfigError) as e:
            check_fields(top, source)
        assert str(e.value) == message


def test_every_number_of_the_schema_has_its_range_next_to_it():
    """No separate table: a bad value of a range-checked key fails with the key's own words."""
    import dataclasses

    from ensemble.config import ranges, schema
    declared = {f"{cls.__name__}.{f.name}" for cls in vars(schema).values() if dataclasses.is_dataclass(cls)
                for f in dataclasses.fields(cls) if "range" in f.metadata or "items" in f.metadata}
    assert {"FoldsCfg.n", "InputCfg.size", "HeadCfg.hidden", "StageCfg.epochs", "StageCfg.train", "TrainCfg.device",
            "Config.stages", "MixCfg.prob", "ScheduleCfg.factor"} <= declared
    assert not hasattr(ranges, "RANGES")
