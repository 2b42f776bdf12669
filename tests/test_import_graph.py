"""The package's import graph: no cycles between modules, and no lower layer importing a
higher one (imports inside functions count too: a deferred import is still a
dependency)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import metaplastic as mp

SRC = Path(mp.__file__).parent

#: layers, lowest first: a module may import its own layer and those below only
LAYERS = [
    {"errors", "_stats", "_records", "_fields", "_npz", "interrupts", "capabilities", "precision",
     "xla", "devices", "signals", "registry", "streams", "_version", "_startup",
     "activations", "progress"},
    {"neurons", "rules", "network", "spiking", "tasks"},
    {"inner", "meta"},
    {"analysis", "report"},
    {"experiments"},
    {"cli", "__init__"},
]


def unit(module: str) -> str:
    """A module's first-level name under metaplastic (``rules.polynomial`` -> rules)."""
    return module.split(".")[0] if module else "__init__"


def layer(module: str) -> int:
    u = unit(module)
    return next(i for i, names in enumerate(LAYERS) if u in names)


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("").as_posix().replace("/", ".")
        out[rel.removesuffix(".__init__") if rel != "__init__" else ""] = path
    return out


def edges(top_level_only: bool = False) -> set[tuple[str, str]]:
    """(importer, imported) between metaplastic's modules."""
    mods = modules()
    out = set()
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if top_level_only else ast.walk(tree)
        for node in nodes:
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("metaplastic"):
                base = node.module.removeprefix("metaplastic").lstrip(".")
                for a in node.names:
                    sub = f"{base}.{a.name}".lstrip(".")
                    targets.append(sub if sub in mods else base)
            elif isinstance(node, ast.Import):
                targets += [a.name.removeprefix("metaplastic").lstrip(".") for a in node.names
                            if a.name.startswith("metaplastic")]
            out |= {(name, t) for t in targets if t in mods and t != name}
    return out


def cycles(graph: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    succ: dict[str, list[str]] = {}
    for a, b in graph:
        succ.setdefault(a, []).append(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(succ):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert all(any(unit(m) in names for names in LAYERS) for m in modules())


def test_no_import_cycle():
    assert cycles(edges()) == []


def test_no_lower_layer_imports_a_higher_one():
    up = sorted(f"{a or 'metaplastic'} -> {b}" for a, b in edges()
                if layer(a) < layer(b) and not (unit(a) == "__init__"))
    assert up == [], "imports that run back up:\n" + "\n".join(up)


def test_the_checks_can_fail():
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
    assert layer("rules.polynomial") < layer("experiments.study")


def test_examples_and_docs_import_from_the_flat_public_api():
    """Examples and docs import from ``metaplastic`` and its first-level modules only."""
    root = SRC.parent.parent
    texts = [*root.glob("examples/*.py"), *root.glob("docs/**/*.md"), root / "README.md"]
    deep = [f"{p.relative_to(root)}: {m.group(0)}" for p in texts
            for m in re.finditer(r"(from|import) metaplastic\.\w+\.\w+", p.read_text())]
    assert deep == []
