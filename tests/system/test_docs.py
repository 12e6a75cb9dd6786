"""The docs cannot drift from the code.

- every flag of every command's --help has a row in its page's flags table (docs/commands/<cmd>.md),
  every row names a flag the command has, and every flag has a help line;
- docs/config.md is what scripts/gen_config_docs.py generates from the schema, so it lists every key;
- README.md and docs/ name only config files, repository paths, command flags and config keys that
  exist, and their relative links resolve;
- README.md starts with the two commands, stays at most 150 lines and links every page.

The --help texts come from each command's build_parser() (imported, no subprocess).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 150
FIRST_LINE = re.compile(r"python3 -m venv \.venv && \.venv/bin/pip install -e '\.\[([\w,-]+)\]' && "
                        r"\.venv/bin/python -m ensemble\.demo")
SECOND_LINE = ".venv/bin/python -m pytest -q"
# competition names the docs use as examples of your own (never shipped under configs/)
EXAMPLE_COMPETITIONS = {"x", "X", "my-comp", "NAME"}
FILE_SUFFIXES = {"csv", "json", "yaml", "yml", "py", "png", "pt", "pth", "npz", "html", "log", "journal", "parquet",
                 "safetensors", "zip", "jpg", "jpeg", "md", "txt", "gz", "npy"}


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------- commands and their parsers
@lru_cache(maxsize=None)
def commands() -> dict[str, str]:
    """{command: module} for every `prog="python -m ensemble.<command>"` in the package."""
    found = {}
    for path in sorted((ROOT / "ensemble").rglob("*.py")):
        m = re.search(r'prog="python -m ensemble\.(\w+)"', path.read_text(encoding="utf-8"))
        if m:
            found[m.group(1)] = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return found


@lru_cache(maxsize=None)
def parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(commands()[command])
    build = getattr(module, "build_parser", None)
    assert build is not None, (f"{module.__file__}: add build_parser() -> argparse.ArgumentParser (main() parses "
                               f"with it; the docs test reads --help from it)")
    return build()


def options(command: str) -> dict[str, argparse.Action]:
    """{option string: action} of a command, -h/--help left out."""
    return {s: a for a in parser(command)._actions for s in a.option_strings if s not in ("-h", "--help")}


def page(command: str) -> Path:
    return DOCS / "commands" / f"{command}.md"


def flag_table(text: str) -> list[str]:
    """The option strings in the first cell of each row of the page's `## Flags` table."""
    m = re.search(r"^## Flags\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        return []
    rows = [line for line in m.group(1).splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [opt for row in rows[1:] for opt in re.findall(r"`(-{1,2}[A-Za-z][\w-]*)", row.split("|")[1])]


# ---------------------------------------------------------------- what the docs say
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def code_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def code_spans(text: str) -> list[str]:
    """Inline `code` outside fenced blocks."""
    return re.findall(r"`([^`\n]+)`", FENCE.sub("", text))


def command_lines(text: str) -> list[tuple[str, str]]:
    """[(command, its arguments)] of every `python -m ensemble.X ...` in code blocks and spans
    (continuation lines joined; a `#` comment, `&&`, `;`, `&` or `|` ends a command)."""
    pieces = [line for block in code_blocks(text) for line in block.replace("\\\n", " ").splitlines()]
    out = []
    for piece in pieces + code_spans(text):
        for m in re.finditer(r"-m ensemble\.(\w+)((?:(?!-m ensemble\.).)*)", piece):
            args = re.split(r"\s#|&&|;|\s&(?:\s|$)|\s\|\s", m.group(2))[0]
            out.append((m.group(1), args))
    return out


def set_keys(text: str) -> list[str]:
    """The keys of every `--set KEY=VALUE` in code (placeholders such as KEY left out)."""
    code = "\n".join(code_blocks(text) + code_spans(text))
    keys = [m.group(1) or m.group(2) or m.group(3) for m in
            re.finditer(r"--set[ =]+(?:'([^'=]+)=|\"([^\"=]+)=|([^\s='\"\]]+)=)", code)]
    return [k for k in keys if not k.isupper() and "<" not in k]


def span_keys(text: str, tops: set[str]) -> list[str]:
    """Dotted config keys written in inline code: `train.ema.decay`, `stages[].train: k`, `input.size=64`."""
    out = []
    for span in code_spans(text):
        m = re.match(r"([a-z_]+(?:\[\d*\])?(?:\.[\w<>*-]+(?:\[\d*\])?)+)(?=$|[=:, )]|\s)", span)
        if m and m.group(1).split(".")[0].split("[")[0] in tops and m.group(1).rsplit(".", 1)[1] not in FILE_SUFFIXES:
            out.append(m.group(1))
    return out


@lru_cache(maxsize=None)
def generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def schema_keys() -> tuple[list[str], list[re.Pattern]]:
    """(every documented key as written in docs/config.md, patterns that match any spelling of a key and of
    its parents: `stages.1.epochs`, `stages[0].epochs`, `budgets.cpu.vote`, `tune.space.optim.lr.head`)."""
    gen = generator()
    keys = [k.key for k in gen.config_keys() + gen.compete_keys()]
    spelled = set()
    for key in keys:
        parts = key.split(".")
        spelled.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    patterns = []
    for key in spelled:
        p = re.escape(key).replace(r"\[\]", r"(?:\[\d*\]|\.\d+)")
        p = p.replace(re.escape("<key>"), r".+").replace(re.escape("<name>"), r"(?:[\w-]+|<\w+>)")
        patterns.append(re.compile(p))
    return keys, patterns


def known_key(key: str) -> bool:
    return any(p.fullmatch(key) for p in schema_keys()[1])


def expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in expand_braces(path[:m.start()] + alt + path[m.end():])]


def config_paths(text: str) -> list[str]:
    """configs/....yaml paths that name a shipped file (placeholders and example competitions left out)."""
    out = []
    for path in re.findall(r"configs/[\w.{},*<>/-]+?\.ya?ml", text):
        parts = path.split("/")[1:]
        if any("<" in p or p.split(".")[0] in EXAMPLE_COMPETITIONS for p in parts):
            continue
        out.append(path)
    return out


def missing_config_files(path: str) -> list[str]:
    """The expansions of a doc's configs/ path that match no file (a tune output `.best.yaml` counts when its
    model file exists)."""
    bad = []
    for p in expand_braces(path):
        q = p.replace(".best.yaml", ".yaml")
        if not list(ROOT.glob(q)):
            bad.append(p)
    return bad


def repo_paths(text: str) -> list[str]:
    """ensemble/, scripts/, tests/ and docs/ paths named in a doc (placeholders left out)."""
    found = re.findall(r"(?<![\w/.-])((?:ensemble|scripts|tests|docs)/[\w./*-]*[\w/*])", text)
    return [p for p in found if "<" not in p]


def links(text: str) -> list[str]:
    return [m for m in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", text)) if not re.match(r"[a-z]+:", m)]


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(h) for h in re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M)}


# ---------------------------------------------------------------- the checks
COMMANDS = sorted(commands())


def test_every_command_is_found():
    assert {"train", "tune", "vote", "compete", "export", "predict", "distill", "init", "dups", "shift", "report",
            "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_page_has_a_row_for_every_flag(command):
    path = page(command)
    assert path.is_file(), f"add {rel(path)}: what python -m ensemble.{command} does, a '## Flags' table, examples, " \
                           f"what it writes"
    opts = options(command)
    rows = flag_table(path.read_text(encoding="utf-8"))
    missing = [f"{s} ({opts[s].help})" for s in opts if s not in rows]
    assert not missing, f"{rel(path)}: add to its '## Flags' table (first cell, in backticks): " + "; ".join(missing)
    extra = [s for s in rows if s not in opts]
    assert not extra, (f"{rel(path)}: remove {', '.join(extra)} from its '## Flags' table: "
                       f"python -m ensemble.{command} has no such flag")


@pytest.mark.parametrize("command", COMMANDS)
def test_command_page_has_its_sections(command):
    text = page(command).read_text(encoding="utf-8") if page(command).is_file() else ""
    missing = [h for h in ("## Flags", "## Examples", "## What it writes") if not re.search(rf"^{h}$", text, re.M)]
    assert not missing, f"{rel(page(command))}: add the section(s) {', '.join(missing)}"
    assert f"python -m ensemble.{command}" in "\n".join(code_blocks(text)), \
        f"{rel(page(command))}: its '## Examples' need at least one python -m ensemble.{command} command"


def test_every_script_is_documented():
    text = "\n".join(p.read_text(encoding="utf-8") for p in doc_files())
    missing = [rel(p) for p in sorted((ROOT / "scripts").glob("*")) if p.suffix in (".py", ".sh") and rel(p) not in text]
    assert not missing, f"name {', '.join(missing)} in docs/benchmarks.md (a benchmark: what it prints) or the page it serves"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_help_and_the_description_is_whole(command):
    p = parser(command)
    module = commands()[command]
    bare = [a.option_strings[-1] for a in p._actions if a.option_strings and not a.help]
    assert not bare, f"{module}: give {', '.join(bare)} a help= text (--help and the docs list it)"
    assert p.description and p.description.rstrip().endswith("."), \
        f"{module}: the --help description stops mid-sentence: {p.description!r}"


def test_config_reference_is_generated_from_the_schema():
    gen = generator()
    current = (DOCS / "config.md").read_text(encoding="utf-8") if (DOCS / "config.md").is_file() else ""
    keys, _ = schema_keys()
    missing = [k for k in keys if f"`{k}`" not in current]
    assert not missing, f"docs/config.md lacks {', '.join(missing)}: run python scripts/gen_config_docs.py"
    expected = gen.render()
    if current != expected:
        diff = next(f"line {i + 1}: {a!r} (expected {b!r})" for i, (a, b) in
                    enumerate(zip(current.splitlines() + [""] * 9999, expected.splitlines() + [""] * 9999)) if a != b)
        pytest.fail(f"docs/config.md is stale ({diff}): run python scripts/gen_config_docs.py")


def test_config_reference_check_mode_exits_1_when_stale(tmp_path):
    gen = generator()
    out = tmp_path / "config.md"
    assert gen.main(["--out", str(out)]) == 0
    assert gen.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("`folds.n`", "`folds.k`"))
    assert gen.main(["--check", "--out", str(out)]) == 1


def doc_problems(text: str, where: str) -> list[str]:
    """What a doc names that does not exist: config files, repository paths, commands, flags, config keys."""
    gen_tops = {k.split(".")[0].split("[")[0] for k in schema_keys()[0]}
    problems = []
    for path in config_paths(text):
        for bad in missing_config_files(path):
            problems.append(f"{where}: names {bad}, which does not exist; name a file under configs/ "
                            f"(ls configs/{bad.split('/')[1]}/) or remove it")
    for path in repo_paths(text):
        if not list(ROOT.glob(path.rstrip("/"))):
            problems.append(f"{where}: names {path}, which does not exist; fix the path or remove it")
    for command, args in command_lines(text):
        if command not in commands():
            problems.append(f"{where}: names python -m ensemble.{command}, which is not a command "
                            f"({', '.join(COMMANDS)})")
            continue
        for flag in re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", args):
            if flag not in options(command) and flag != "--help":
                problems.append(f"{where}: python -m ensemble.{command} {flag}: the command has no such flag; "
                                f"remove it (python -m ensemble.{command} --help lists them)")
    for key in set_keys(text) + span_keys(text, gen_tops):
        if not known_key(key):
            problems.append(f"{where}: config key '{key}' is not in the schema (docs/config.md lists every key); "
                            f"fix or remove it")
    return problems


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_docs_name_only_what_exists(path):
    problems = doc_problems(path.read_text(encoding="utf-8"), rel(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_links_resolve(path):
    bad = []
    for link in links(path.read_text(encoding="utf-8")):
        target, _, frag = link.partition("#")
        dest = (path.parent / target).resolve() if target else path
        if not dest.exists():
            bad.append(f"{rel(path)}: link {link}: {target} does not exist")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"{rel(path)}: link {link}: {rel(dest)} has no heading with anchor #{frag}")
    assert not bad, "\n".join(bad)


def test_readme_starts_with_the_two_commands_and_stays_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (f"README.md has {len(lines)} lines, at most {MAX_README_LINES}: move "
                                            f"detail into a page under docs/ and link it")
    assert lines[0] == "```" and lines[3] == "```", "README.md must open with a code block holding the two commands"
    m = FIRST_LINE.fullmatch(lines[1])
    assert m, (f"README.md line 2 must be the setup command that runs the demo "
               f"(python3 -m venv .venv && .venv/bin/pip install -e '.[...]' && .venv/bin/python -m ensemble.demo), "
               f"got {lines[1]!r}")
    assert lines[2] == SECOND_LINE, f"README.md line 3 must be the test command {SECOND_LINE!r}, got {lines[2]!r}"


def test_readme_setup_installs_extras_that_exist():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    m = FIRST_LINE.fullmatch(README.read_text(encoding="utf-8").splitlines()[1])
    assert m, "README.md line 2 must be the setup command (see test_readme_starts_with_the_two_commands...)"
    unknown = [e for e in m.group(1).split(",") if e not in extras]
    assert not unknown, f"README.md line 2 installs extras {unknown} that pyproject.toml does not define"


def test_readme_links_every_command_and_page():
    text = README.read_text(encoding="utf-8")
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in links(text)}
    missing = [rel(p) for p in sorted(DOCS.rglob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md: link {', '.join(missing)} (the command table or the docs list)"
    rows = [c for c in COMMANDS if re.search(rf"^\|.*`python -m ensemble\.{c}`.*\(docs/commands/{c}\.md\)", text, re.M)]
    assert rows == COMMANDS, ("README.md: add a command table row (| `python -m ensemble.X` | what | "
                              f"[page](docs/commands/X.md) |) for {', '.join(sorted(set(COMMANDS) - set(rows)))}")


def layout_problems(text: str) -> list[str]:
    """docs/layout.md's table: each `ensemble/<package>/` row names every module of the package (but
    __init__.py) and no other; every top-level module is named somewhere on the page."""
    problems = []
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `ensemble/(\w+)/` \|(.*)\|\s*$", text, re.M)}
    for package in sorted(p.name for p in (ROOT / "ensemble").iterdir() if (p / "__init__.py").is_file()):
        modules = {f.name for f in (ROOT / "ensemble" / package).glob("*.py")} - {"__init__.py"}
        if package not in rows:
            problems.append(f"docs/layout.md: add a row | `ensemble/{package}/` | ... | naming {', '.join(sorted(modules))}")
            continue
        named = set(re.findall(r"(?<![/\w])`?(\w+\.py)", rows[package]))
        for name in sorted(modules - named):
            problems.append(f"docs/layout.md: the ensemble/{package}/ row lacks {name}: add it with what it holds")
        for name in sorted(named - modules):
            problems.append(f"docs/layout.md: the ensemble/{package}/ row names {name}, which is not in "
                            f"ensemble/{package}/: rename or remove it")
    for module in sorted(f.name for f in (ROOT / "ensemble").glob("*.py")):
        if not re.search(rf"(?<![\w/])(ensemble/)?{re.escape(module)}", text):
            problems.append(f"docs/layout.md: name ensemble/{module} (a top-level module) in the table")
    return problems


def test_layout_lists_every_module():
    problems = layout_problems((DOCS / "layout.md").read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the checks catch what they should
BAD_DOC = """
```
python -m ensemble.train --cfg configs/ham10000/resnet50.yaml --sett input.size=64
python -m ensemble.tune --cfg configs/demo/resnet18.yaml --trials 4 --set model.head.hiden=[]  # a comment --nope
torchrun --nproc_per_node=2 -m ensemble.train --cfg configs/demo/resnet18.yaml --devices cuda
```
Every competition has `configs/demo/efficientnet_lite{0,1,2}.yaml`; set `train.sync_bnn: true` and
`stages[].trian`, see `ensemble/vote/outputs.py` and `python -m ensemble.trian --help`.
"""


def test_the_doc_checks_name_each_wrong_thing():
    problems = "\n".join(doc_problems(BAD_DOC, "x.md"))
    for wrong in ("configs/ham10000/resnet50.yaml, which does not exist", "configs/demo/efficientnet_lite1.yaml",
                  "configs/demo/efficientnet_lite2.yaml", "ensemble.train --sett: the command has no such flag",
                  "ensemble.train --devices", "config key 'model.head.hiden'", "config key 'train.sync_bnn'",
                  "config key 'stages[].trian'", "ensemble/vote/outputs.py, which does not exist",
                  "python -m ensemble.trian, which is not a command"):
        assert wrong in problems, wrong
    for right in ("efficientnet_lite0.yaml", "--nope", "--trials", "'input.size'"):
        assert right not in problems, right


def test_known_keys_accept_every_spelling():
    for key in ("stages.1.epochs", "stages[0].train", "stages[].lr.head", "model.head.hidden", "name", "optim.lr",
                "budgets.cpu.vote.bias", "time.candidates[1].train", "tune.space.optim.lr.head", "train.ema.decay"):
        assert known_key(key), key
    for key in ("head.hidden", "stages.epochs", "train.ema.decayy", "budgets.cpu.votes", "time.twin"):
        assert not known_key(key), key


def test_layout_check_names_renamed_and_missing_modules():
    text = (DOCS / "layout.md").read_text(encoding="utf-8").replace("`manifest.py` (what a vote writes)", "`outputs.py`")
    problems = "\n".join(layout_problems(text))
    assert "the ensemble/vote/ row lacks manifest.py" in problems
    assert "the ensemble/vote/ row names outputs.py, which is not in ensemble/vote/" in problems


def test_flag_table_rows_are_read_from_the_first_cell():
    text = "# x\n\n## Flags\n\n| flag | meaning |\n|---|---|\n| `-q`, `--quiet` | fewer (`--verbose` not) |\n" \
           "| `--set KEY=VALUE` | override |\n\n## Examples\n| `--not-a-row` | x |\n"
    assert flag_table(text) == ["-q", "--quiet", "--set"]
