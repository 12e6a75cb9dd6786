"""Load a config: YAML files with `base:` inheritance plus `--set` overrides, validated into the schema.

    cfg = load_config("configs/ham10000/resnet18.yaml", ["input.size=64", "folds.n=2"])

Every key is checked against the dataclasses of ensemble.config.schema and every number and choice
against the range declared next to its field (ensemble.config.checks); errors name the file (or `--set`) that supplied the key, the dotted
key and what was expected.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import yaml

from ensemble.config.checks import check_config
from ensemble.config.schema import Config, ConfigError
from ensemble.registry import did_you_mean


# ---------------------------------------------------------------- loading
def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          f"save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """Merge a file over its `base:` chain. -> (raw dict, provenance dotted-key -> file)."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular base chain")
    data = read_yaml(path)
    base = data.pop("base", None)
    raw, prov = {}, {}
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: key 'base' expected a file path, got {base!r}")
        base_path = (path.parent / base)
        if not base_path.is_file():
            raise ConfigError(f"{path}: base file not found: {base_path}")
        raw, prov = _load_chain(base_path, seen + (path.resolve(),))
    _merge(raw, data, prov, str(path))
    return raw, prov


def _merge(dst: dict, src: Mapping, prov: dict[str, str], source: str, prefix: str = "") -> None:
    for k, v in src.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _merge(dst[k], v, prov, source, key + ".")
        else:
            dst[k] = _plain(v)
            prov[key] = source


def _plain(v):
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["a.b=1", "c=[1, 2]"] -> {"a.b": 1, "c": [1, 2]} (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value is not valid YAML: {value!r}") from None
    return out


def set_dotted(raw: dict, key: str, value, source: str = "--set") -> None:
    """Set raw['a']['b'] (or a list index: 'stages.0.epochs') from a dotted key."""
    parts = key.split(".")
    node: Any = raw
    for i, p in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(p, node, where, source)]
        else:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, (dict, list)):
                raise ConfigError(f"{source}: key '{where}' is a value, cannot set '{key}'")
            node = nxt
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key, source)] = _plain(value)
    else:
        node[last] = _plain(value)


def _index(p: str, node: list, where: str, source: str) -> int:
    if not p.isdigit() or int(p) >= len(node):
        raise ConfigError(f"{source}: key '{where}' expected a list index < {len(node)}, got {p!r}")
    return int(p)


def load_config(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Config:
    """Load, merge base files, apply overrides and validate. Raises ConfigError."""
    path = Path(path)
    raw, prov = _load_chain(path)
    items = overrides.items() if isinstance(overrides, Mapping) else parse_overrides(overrides).items()
    for key, value in items:
        set_dotted(raw, key, value)
        prov[key] = "--set"
    if "name" not in raw or raw["name"] is None:
        raw["name"] = path.name.split(".")[0] if path.name.endswith(".yaml") else path.stem
    def source(key: str) -> str:
        return _source(prov, key, path)
    cfg = build(Config, raw, "", source)
    check_config(cfg, source)
    return cfg


def competition_config(competition: str | None, cfg: str | None, configs_dir: str | Path = "configs") -> Config:
    """The base config of `--competition NAME` (configs/NAME/base.yaml) or of `--cfg FILE`."""
    path = Path(cfg) if cfg else Path(configs_dir) / str(competition) / "base.yaml"
    if not cfg and not path.is_file():
        raise ConfigError(f"--competition {competition}: config not found: {path} (use --cfg)")
    return load_config(path)


def _source(prov: dict[str, str], key: str, default: Path) -> str:
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        # list indices in overrides: stages.0.epochs -> also try prefixes
        k = ".".join(parts[:n])
        if k in prov:
            return prov[k]
    return str(default)


# ---------------------------------------------------------------- validation
def build(tp, value, key: str, source) -> Any:
    """Convert plain YAML data into type `tp`, raising ConfigError with the key's source."""
    def fail(expected: str):
        got = f"{type(value).__name__} {value!r}" if value is not None else "null"
        raise ConfigError(f"{source(key)}: key '{key}' expected {expected}, got {got}")

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            fail(f"a mapping of {tp.__name__} fields")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k not in fields:
                near = did_you_mean(str(k), fields)
                hint = f" (did you mean '{key + '.' if key else ''}{near[0]}'?)" if near else ""
                raise ConfigError(f"{source(sub)}: unknown key '{sub}'{hint}")
            if "parse" in fields[k].metadata:  # a field with its own syntax (e.g. competition.metric)
                try:
                    v = fields[k].metadata["parse"](v)
                except ValueError as e:
                    raise ConfigError(f"{source(sub)}: key '{sub}': {e}") from None
            kwargs[k] = build(hints[k], v, sub, source)
        for name, f in fields.items():
            if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                sub = f"{key}.{name}" if key else name
                raise ConfigError(f"{source(key)}: missing required key '{sub}'")
        return tp(**kwargs)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if len(args) == 2 and type(None) in args and dataclasses.is_dataclass([a for a in args if a is not type(None)][0]):
            # an optional section (stages[].lr): its own errors name the inner key
            return build([a for a in args if a is not type(None)][0], value, key, source)
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return build(a, value, key, source)
            except ConfigError as e:
                errors.append(e)
        fail(" or ".join(_type_name(a) for a in args))
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            fail("one of " + ", ".join(map(repr, choices)))
        return value
    if origin is list:
        if not isinstance(value, list):
            fail(_type_name(tp))
        (item,) = typing.get_args(tp)
        return [build(item, v, f"{key}.{i}", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            fail("a mapping")
        _, vt = typing.get_args(tp)
        return {str(k): build(vt, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                fail("a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            fail("a string")
        return str(value)
    raise TypeError(f"unsupported config type {tp!r}")  # a bug in the schema, not user input


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML (loadable again with load_config)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
