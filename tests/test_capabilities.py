"""Capabilities are declared, not probed: no ``getattr``/``hasattr`` of a named member,
no ``vars()`` and no ``except AttributeError`` on a piece outside
:mod:`metaplastic.capabilities`."""

from __future__ import annotations

import ast
from pathlib import Path

import metaplastic as mp
from metaplastic import capabilities as cap

SRC = Path(mp.__file__).parent

#: (file, object probed): probes of things that are not pieces, each with its reason
NOT_PIECES = {
    ("cli/console.py", "args"): "argparse's namespace: options some commands lack",
    ("cli/__init__.py", "args"): "argparse's namespace: options some commands lack",
    ("cli/training.py", "args"): "argparse's namespace: options some commands lack",
    ("meta/memory.py", "x"): "a pytree leaf (an array or a ShapeDtypeStruct, or not)",
    ("meta/driver.py", "except AttributeError"): "an exception type that takes no "
                                                 "attributes (the state it carries)",
    ("meta/seeds.py", "except AttributeError"): "the same, for the seeds' states",
    ("meta/memory.py", "except AttributeError"): "os.sysconf on a platform without it",
    ("analysis/neuromorphic.py", "except AttributeError"): "nir.read of a damaged file",
    ("report/recovery_plots.py", "except AttributeError"): "a damaged recovery.json: its figure "
                                                     "is skipped",
    ("meta/driver.py", "e"): "an exception: the state it carries, if any",
    ("meta/es.py", "params"): "evosax's strategy parameters (differ between versions)",
    ("tasks/gym.py", "self._space"): "gymnax's observation space (Box or Discrete)",
    ("devices.py", "_inside"): "a thread-local counter",
    ("analysis/neuromorphic.py", "graph"): "a NIR graph read from a file (older nir: no "
                                           "metadata)",
    ("report/plots.py", "run_path"): "a RunDir or a path",
    ("registry.py", "cls"): "the registry's own check of a class against its kind",
    ("registry.py", "obj"): "the registry resolving 'module:Name'",
    ("registry.py", "main"): "the __main__ module of a script",
    ("registry.py", "getattr(main, '__spec__', None)"): "the __main__ module of a script",
    ("rules/base.py", "arr"): "an array-like in a θ file (None, a list, an array)",
    ("xla.py", "module"): "JAX's private threefry module, as this JAX version has it",
    ("xla.py", "except AttributeError"): "JAX's private lowering registry, as this JAX "
                                         "version has it",
}


def _probes():
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "capabilities.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                if name == "vars":
                    out.append((rel, node.lineno, "vars()", ""))
                if (name in ("getattr", "hasattr") and len(node.args) >= 2
                        and isinstance(node.args[1], ast.Constant)):
                    what = ast.unparse(node.args[0])
                    if what != "self" and (rel, what) not in NOT_PIECES:
                        out.append((rel, node.lineno, f"{name}({what}, "
                                    f"{node.args[1].value!r})", what))
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = [ast.unparse(t) for t in (node.type.elts if isinstance(
                    node.type, ast.Tuple) else [node.type])]
                if "AttributeError" in names and (rel, "except AttributeError") \
                        not in NOT_PIECES:
                    out.append((rel, node.lineno, "except AttributeError", ""))
    return out


def test_no_piece_is_probed_outside_the_capability_module():
    found = [f"{rel}:{line}: {what}" for rel, line, what, _ in _probes()]
    assert not found, "declare a capability in metaplastic/capabilities.py:\n" + \
        "\n".join(found)


def test_the_probe_finder_finds_a_probe(tmp_path, monkeypatch):
    """The finder is not blind: a probe written into a scratch copy is found."""
    bad = tmp_path / "pkg"
    bad.mkdir()
    (bad / "x.py").write_text('def f(rule):\n    return getattr(rule, "term_names", [])\n'
                              'def g(task):\n    try:\n        return task.n\n'
                              '    except AttributeError:\n        return 0\n')
    monkeypatch.setattr(__import__(__name__), "SRC", bad)
    assert [p[2] for p in _probes()] == ["getattr(rule, 'term_names')",
                                         "except AttributeError"]


def test_capabilities_of_the_built_in_rules():
    poly = mp.rules.make("polynomial")
    assert isinstance(poly, cap.HasTermValues) and cap.linear_in_theta(poly)
    assert cap.term_names(poly)[0] and cap.eta(poly) == poly.eta
    mlp = mp.rules.make("mlp")
    assert not isinstance(mlp, cap.HasNamedTerms) and cap.term_names(mlp) == []
    abcd = mp.rules.make("abcd")
    assert isinstance(abcd, cap.HasLayerStatistics)
    assert not isinstance(abcd, cap.HasTermValues)
