"""The package tree and its layers: every module imports, no import cycle, each layer imports only
what it may (vote: artifacts, metrics and itself; train: never tune, vote, report or compete)."""
import ast
import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ensemble

PKG = Path(ensemble.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(PKG)], "ensemble."))
# what each part may import from ensemble (besides itself); registry, cli and plugins are shared helpers
BASE = {"ensemble.registry"}
ALLOWED = {
    "ensemble.registry": set(),
    "ensemble.metric_spec": set(),
    "ensemble.metrics": {"ensemble.metric_spec"} | BASE,
    "ensemble.config": BASE | {"ensemble.metrics"},  # parse hooks look registries up lazily (registry.lookup)
    "ensemble.artifacts": {"ensemble.config"},
    "ensemble.data": BASE | {"ensemble.config", "ensemble.artifacts", "ensemble.metrics", "ensemble.metric_spec"},
    "ensemble.models": BASE,
    "ensemble.train": BASE | {"ensemble.config", "ensemble.artifacts", "ensemble.metrics", "ensemble.data",
                              "ensemble.models", "ensemble.cli", "ensemble.plugins",
                              "ensemble.shift"},  # shift's weighted CV (assemble) and test_like folds
    # vote/shift.py reads shift's torch-free scores/priors (numpy, scipy, sklearn only)
    "ensemble.vote": BASE | {"ensemble.artifacts", "ensemble.metrics", "ensemble.cli", "ensemble.plugins",
                             "ensemble.shift"},
    "ensemble.tune": BASE | {"ensemble.config", "ensemble.artifacts", "ensemble.metrics", "ensemble.data", "ensemble.train",
                             "ensemble.cli", "ensemble.plugins"},
    # predict: models, data, train's prediction/TTA/adaptation and vote's recipe and submission format; export
    # also reads the runs and their configs (artifacts, config); never tune, report or compete
    "ensemble.predict": BASE | {"ensemble.config", "ensemble.artifacts", "ensemble.data", "ensemble.models",
                                "ensemble.train", "ensemble.vote", "ensemble.cli", "ensemble.plugins"},
}


def part(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def ensemble_imports(module: str) -> set[str]:
    """Every ensemble module `module` imports (at the top or inside functions)."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text())
    pkg = module if spec.submodule_search_locations else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ensemble")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("ensemble"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names if importlib.util.find_spec(f"{base}.{a.name}")
                        is not None} if base in ("ensemble", "ensemble.vote", "ensemble.train") else set()
    return out


def test_every_module_imports_in_a_fresh_interpreter():
    """`python -c` over all modules, each in its own interpreter state: no cycle hides behind import order."""
    code = ("import importlib, sys\n"
            "for m in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k.startswith('ensemble')]:\n"
            "        del sys.modules[k]\n"
            "    importlib.import_module(m)\n")
    r = subprocess.run([sys.executable, "-c", code, *MODULES], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(PKG.parent)})
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("module", MODULES)
def test_layer_rule(module):
    me = part(module)
    if me not in ALLOWED:
        return  # report, compete, demo, cli, plugins, dups: the public functions of everything above
    bad = {part(m) for m in ensemble_imports(module)} - ALLOWED[me] - {me, "ensemble"}
    assert not bad, f"{module} imports {sorted(bad)} (layer {me} may import {sorted(ALLOWED[me])})"


def test_train_never_imports_tune_vote_report_or_compete():
    for module in (m for m in MODULES if m.startswith("ensemble.train")):
        assert not {part(m) for m in ensemble_imports(module)} & {"ensemble.tune", "ensemble.vote",
                                                                  "ensemble.report", "ensemble.compete"}


def test_vote_imports_only_artifacts_metrics_and_itself():
    """Helpers it also uses: registry (its method registry), plugins and cli (the command's -q/-v)."""
    for module in (m for m in MODULES if m.startswith("ensemble.vote")):
        others = {part(m) for m in ensemble_imports(module)} - {"ensemble.vote", "ensemble"}
        assert others <= {"ensemble.artifacts", "ensemble.metrics", "ensemble.registry", "ensemble.plugins",
                          "ensemble.cli", "ensemble.shift"}, (module, others)  # shift: torch-free scores/priors


def test_import_graph_has_no_cycle_between_parts():
    graph = {}
    for module in MODULES:
        graph.setdefault(part(module), set()).update(
            p for p in (part(m) for m in ensemble_imports(module)) if p != part(module) and p != "ensemble")
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_stay_small():
    sizes = {m: len(Path(importlib.util.find_spec(m).origin).read_text().splitlines()) for m in MODULES}
    assert max(sizes.values()) <= 330, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def top_level_imports(path: Path, module: str, is_package: bool, root: str) -> set[str]:
    """The `root` modules a file imports when it is imported: statements at module level (also inside a
    top-level try/if, but not under `if TYPE_CHECKING`), not the lazy ones inside functions."""
    pkg = module if is_package else module.rsplit(".", 1)[0]
    out: set[str] = set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, (ast.If, ast.Try)):
                for block in (node.body, node.orelse, getattr(node, "finalbody", []),
                              *[h.body for h in getattr(node, "handlers", [])]):
                    visit(block)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] == root)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                if base.split(".")[0] == root:
                    out.add(base)
                    out.update(f"{base}.{a.name}" for a in node.names)  # kept only when it is a module

    visit(ast.parse(path.read_text()).body)
    return out


def module_graph(folder: Path, root: str) -> dict[str, set[str]]:
    """{module: modules of the same tree it imports at module level} for the package at folder/root."""
    files = {}
    for f in sorted((folder / root).rglob("*.py")):
        parts = f.relative_to(folder).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return {m: {i for i in top_level_imports(f, m, f.name == "__init__.py", root) if i in files and i != m}
            for m, f in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """The first import circle of a module graph (depth first, sorted), as [a, b, ..., a]; None when none."""
    done, stack = set(), []

    def visit(node):
        if node in stack:
            return stack[stack.index(node):] + [node]
        if node in done:
            return None
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        stack.pop()
        done.add(node)
        return None

    return next((c for c in map(visit, sorted(graph)) if c), None)


def test_no_module_level_import_circle_anywhere():
    assert find_cycle(module_graph(PKG.parent, "ensemble")) is None


def test_a_planted_module_level_circle_is_found(tmp_path):
    pkg = tmp_path / "planted"
    (pkg / "inner").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "inner" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from planted.inner import b\n")
    (pkg / "inner" / "b.py").write_text("import os\n\n\ndef later():\n    from planted import a  # lazy: no circle\n")
    assert find_cycle(module_graph(tmp_path, "planted")) is None
    (pkg / "inner" / "b.py").write_text("try:\n    from .. import a\nexcept ImportError:\n    a = None\n")
    assert find_cycle(module_graph(tmp_path, "planted")) == ["planted.a", "planted.inner.b", "planted.a"]
