"""Write docs/config.md, the config reference, from the schema: every key of a model config
(ensemble/config/schema.py, with the `tune:` section of ensemble/tune/space.py) and of compete.yaml
(ensemble/compete/spec.py), with its type, default, range and one line of meaning.

    python scripts/gen_config_docs.py            # writes docs/config.md
    python scripts/gen_config_docs.py --check    # exit 1 when docs/config.md is stale (nothing written)

Meanings are the fields' own comments (a trailing `# ...`, or comment lines right above the field);
ranges come from the type (Literal choices), the `range` and `items` declared in each field's metadata
and the registry a name field is checked against. A field without a comment is an error naming it.
Field metadata the generator reads: `names` (registry kind), `keys` ("module:Dataclass" describing a
free-form mapping), `placeholder` (the name of a mapping's keys), `internal` (not a user key).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import io
import sys
import tokenize
import types
import typing
from dataclasses import MISSING, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "config.md"


@dataclass(frozen=True)
class Key:
    """One documented key. key: as users write it (`stages[].epochs`, `budgets.<name>.vote`);
    pattern: the same with `*` for list items and mapping names (`stages.*.epochs`)."""

    key: str
    pattern: str
    type: str
    default: str
    range: str
    meaning: str


class SchemaDocError(ValueError):
    """A schema field the generator cannot document (no comment)."""


# ---------------------------------------------------------------- field comments
@lru_cache(maxsize=None)
def _module_comments(path: str) -> tuple[dict[int, str], list[str]]:
    """-> ({line number: comment text}, source lines) of a Python file."""
    text = Path(path).read_text(encoding="utf-8")
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.COMMENT}
    return comments, text.splitlines()


def field_comments(cls: type) -> dict[str, str]:
    """{field name: its comment} of a dataclass: comment-only lines right above the field, then the
    comment on the field's own lines."""
    path = inspect.getsourcefile(cls)
    comments, lines = _module_comments(path)
    tree = ast.parse("\n".join(lines))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    out = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above, row = [], stmt.lineno - 1
        while row in comments and lines[row - 1].lstrip().startswith("#"):
            above.insert(0, comments[row])
            row -= 1
        own = [comments[r] for r in range(stmt.lineno, stmt.end_lineno + 1) if r in comments]
        text = " ".join(above + own).strip()
        if text:
            out[stmt.target.id] = text
    return out


# ---------------------------------------------------------------- types
def _args(tp) -> tuple:
    return typing.get_args(tp)


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _dataclass_in(tp):
    """The dataclass a field holds (itself, optional, a list item or a mapping value), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if _is_union(tp) or typing.get_origin(tp) in (list, dict):
        found = [d for a in _args(tp) for d in [_dataclass_in(a)] if d is not None]
        return found[0] if found else None
    return None


def type_text(tp) -> str:
    """A type as a reader says it: 'int or null', 'list of int', 'mapping'."""
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "str"
    if _is_union(tp):
        parts = []
        for a in _args(tp):
            t = type_text(a)
            if t not in parts:
                parts.append(t)
        return " or ".join(parts)
    if origin is list:
        return f"list of {type_text(_args(tp)[0])}" if _args(tp) else "list"
    if origin is tuple or tp is tuple:
        return "list"
    if origin is dict or tp is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _literal_choices(tp) -> list:
    if typing.get_origin(tp) is Literal:
        return list(_args(tp))
    if _is_union(tp):
        return [c for a in _args(tp) for c in _literal_choices(a)]
    return []


def value_text(value) -> str:
    """A default as YAML flow text: null, true, [none], {epochs: 10}."""
    if dataclasses.is_dataclass(value):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                 if getattr(value, f.name) != _default(f)}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:_}".replace("_", ",")
    return str(value)


def _default(f: dataclasses.Field):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


# ---------------------------------------------------------------- ranges
def _registry_names(kind: str) -> list[str]:
    from ensemble.registry import lookup
    return list(lookup(kind))


def range_text(f: dataclasses.Field, tp) -> str:
    """What values a key takes: its Literal choices, the range declared on the field (and its items'),
    its registry."""
    parts = []
    choices = _literal_choices(tp)
    if choices:
        parts.append("one of: " + ", ".join(map(str, choices)))
    if "range" in f.metadata:
        parts.append(f.metadata["range"].expected)
    if "items" in f.metadata:
        parts.append("each item " + f.metadata["items"].expected)
    kind = f.metadata.get("names") or getattr(f.metadata.get("parse"), "kind", None)
    if kind:
        names = _registry_names(kind)
        extra = " (or any timm model name)" if kind == "backbone" else ""
        parts.append(f"a registered {kind}: " + ", ".join(names) + extra)
    return "; ".join(parts)


# ---------------------------------------------------------------- walking the schema
def _resolve(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def walk(cls: type, key: str = "", pattern: str = "") -> list[Key]:
    """Every documented key of dataclass `cls` under `key` (depth first, in field order)."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    out: list[Key] = []
    missing = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        tp = hints[f.name]
        k = f"{key}.{f.name}" if key else f.name
        pat = f"{pattern}.{f.name}" if pattern else f.name
        meaning = comments.get(f.name) or f.metadata.get("doc")
        if not meaning:
            missing.append(f"{Path(inspect.getsourcefile(cls)).relative_to(ROOT)}: {cls.__name__}.{f.name}")
            continue
        default = _default(f)
        child = _dataclass_in(tp)
        if "keys" in f.metadata:  # a free-form mapping described by another dataclass
            child, tp_text = _resolve(f.metadata["keys"]), "mapping"
        else:
            tp_text = type_text(tp)
        if child is not None and dataclasses.is_dataclass(default):
            default_text = "(section)"
        elif default is MISSING:
            default_text = "required"
        else:
            default_text = value_text(default)
        out.append(Key(k, pat, tp_text, default_text, range_text(f, tp), meaning))
        if child is None:
            continue
        holder = tp if "keys" in f.metadata else next(  # the part of the type that holds the dataclass
            a for a in (_args(tp) if _is_union(tp) else (tp,)) if _dataclass_in(a) is not None)
        container = None if "keys" in f.metadata else typing.get_origin(holder)
        if container is list:
            sub_key, sub_pat = k + "[]", pat + ".*"
        elif container is dict:
            sub_key, sub_pat = f"{k}.{f.metadata.get('placeholder', '<name>')}", pat + ".*"
        else:
            sub_key, sub_pat = k, pat
        out += walk(child, sub_key, sub_pat)
    if missing:
        raise SchemaDocError("fields without a meaning (add a comment after the field, or comment lines right "
                             "above it): " + "; ".join(missing))
    return out


def config_keys() -> list[Key]:
    """Every key of a model config (base.yaml + model file)."""
    from ensemble.config.schema import Config
    return walk(Config)


def compete_keys() -> list[Key]:
    """Every key of compete.yaml."""
    from ensemble.compete.spec import CompeteFile
    return walk(CompeteFile)


# ---------------------------------------------------------------- the page
INTRO = """# Config reference

<!-- Generated by `python scripts/gen_config_docs.py` from ensemble/config/schema.py, ensemble/tune/space.py,
ensemble/compete/spec.py and ensemble/vote/options.py: edit the field comments there, then rerun it. -->

Generated from the schema by `python scripts/gen_config_docs.py` (tests/system/test_docs.py fails when
this page is stale). How files combine (`base:`, `--set`) and what the loader checks:
[training.md](training.md#config). `[]` marks the items of a list (`stages[].epochs` is written
`--set stages.0.epochs=5`), `<name>` a key of your choice. "required": the key has no default.
"""


def _cell(text: str) -> str:
    """Table cell text: `|` escaped, and `<` so that runs/<name>/ is not read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "\\<").replace("\n", " ")


def _tables(keys: list[Key]) -> list[str]:
    lines: list[str] = []
    section = None
    for k in keys:
        top = k.pattern.split(".")[0]
        if top != section:
            section = top
            lines += ["", f"### `{top}`", "", "| key | type | default | range | meaning |", "|---|---|---|---|---|"]
        lines.append("| " + " | ".join([f"`{k.key}`", _cell(k.type), _cell(k.default), _cell(k.range),
                                         _cell(k.meaning)]) + " |")
    return lines


def render() -> str:
    lines = [INTRO.rstrip(), "", "## Model configs: `configs/<competition>/*.yaml`", "",
             "A model file names its competition file with `base:` (relative to itself); every other key:"]
    lines += _tables(config_keys())
    lines += ["", "## `configs/<competition>/compete.yaml`", "",
              "What `python -m ensemble.compete` runs: fixed `budgets:` (`--budget NAME`) and the `time:` "
              "candidates of `--time` ([compete.md](compete.md)). `set:` items are `KEY=VALUE` overrides "
              "of the model configs above; `vote:` takes the options of `python -m ensemble.vote` "
              "([voting.md](voting.md))."]
    lines += _tables(compete_keys())
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--check", action="store_true", help="exit 1 when docs/config.md differs from what would be "
                                                        "generated (nothing is written)")
    p.add_argument("--out", type=Path, default=OUT, help="default: docs/config.md")
    args = p.parse_args(argv)
    try:
        text = render()
    except SchemaDocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            print(f"{args.out} is stale: run python scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
