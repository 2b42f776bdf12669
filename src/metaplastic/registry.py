"""One registration mechanism for every kind of piece: rules, tasks, outer loops, neurons,
plausibility checks, and kinds of run (studies).

A registry entry is a class (a frozen dataclass) under a name, optionally with options
that the name fixes (``"oja"`` is the polynomial rule with ``start = "oja"``) or whose
defaults it changes. The options a name accepts are the class's own ``__init__`` fields,
minus the fixed ones: there is no second table of option names to keep in step.

::

    import metaplastic as mp

    @dataclass(frozen=True)
    class MyRule(mp.rules.Rule): ...

    mp.register("rule", "my-rule", MyRule)     # or mp.register_rule("my-rule", MyRule)
    mp.make("rule", "my-rule", eta=0.1)

A name of the form ``"package.module:Class"`` needs no registration: the module is
imported and the class used directly (a TOML config can say ``name = "mymodule:MyRule"``;
the command line puts the current directory on the import path, as ``python -m`` does).
Unknown names and options raise a :class:`~metaplastic.errors.ConfigError` that lists the
valid ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaplastic._fields import coerce_kwargs
from metaplastic.errors import ConfigError, check_kwargs, unknown_name

#: the kinds of piece, and the package whose import registers the built-in ones (the
#: kinds of *search* an outer loop is are ``meta.outer.SEARCH_KINDS``)
PIECE_KINDS = {"rule": "metaplastic.rules", "task": "metaplastic.tasks",
         "outer": "metaplastic.meta", "neuron": "metaplastic.neurons",
         "check": "metaplastic.analysis.plausibility", "study": "metaplastic.experiments.studies"}


@dataclass(frozen=True)
class Entry:
    """A registered class, with the options its name fixes and the defaults it changes."""

    cls: type
    fixed: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    doc: str = ""

    def options(self) -> list[str]:
        """Keyword options this entry accepts: the class's init fields, less the fixed."""
        if dataclasses.is_dataclass(self.cls):
            names = [f.name for f in dataclasses.fields(self.cls) if f.init]
        else:
            params = inspect.signature(self.cls).parameters.values()
            names = [p.name for p in params if p.kind is p.KEYWORD_ONLY
                     or p.kind is p.POSITIONAL_OR_KEYWORD]
        return [n for n in names if n not in self.fixed]


_REGISTRIES: dict[str, dict[str, Entry]] = {kind: {} for kind in PIECE_KINDS}

#: what a class of each kind must have (the protocols of docs/extending.md)
PROTOCOLS = {"rule": ("init", "update", "layer_theta", "init_state", "initial_weights"),
             "task": ("sample", "reset", "observe", "transition", "active", "loss",
                      "metrics", "n_in", "n_out", "n_steps"),
             "outer": ("init", "step", "theta", "restart", "truncation_at", "check", "run",
                       "steps", "chunk", "max_nan_skips"),
             "neuron": ("init_state", "step", "derivative"),
             "check": ("__call__",),
             "study": ("from_dict", "to_dict", "build", "init", "report")}


def check_protocol(kind: str, name: str, cls: Any) -> None:
    """A ConfigError if ``cls`` lacks what a ``kind`` needs (subclassing the library's
    base class — Rule, Task, OuterLoop — brings the defaults)."""
    missing = [m for m in PROTOCOLS[kind] if not hasattr(cls, m)
               and not (dataclasses.is_dataclass(cls) and m in _all_fields(cls))]
    if missing:
        raise ConfigError(f"{kind} {name!r} ({getattr(cls, '__qualname__', cls)}) lacks "
                          f"{', '.join(missing)}: see docs/extending.md")


def _check_kind(kind: str) -> dict[str, Entry]:
    if kind not in PIECE_KINDS:
        raise unknown_name("kind of piece", kind, PIECE_KINDS)
    return _REGISTRIES[kind]


def register(kind: str, name: str, cls: type, *, fixed: dict | None = None,
             defaults: dict | None = None, doc: str = "", replace: bool = False) -> type:
    """Register ``cls`` as ``name`` of ``kind`` (one of :data:`PIECE_KINDS`); returns ``cls``.

    ``fixed``: options the name sets and hides; ``defaults``: options whose default the
    name changes (still settable). Registering a taken name needs ``replace=True``.
    """
    table = _check_kind(kind)
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(f"a {kind} name must be a non-empty string without ':', got {name!r}")
    if not callable(cls):
        raise ConfigError(f"register({kind!r}, {name!r}, ...): {cls!r} is not a class")
    if name in table and not replace and table[name].cls is not cls:
        raise ConfigError(f"{kind} {name!r} is already registered (to "
                          f"{table[name].cls.__qualname__}); pass replace=True to replace it")
    check_protocol(kind, name, cls)
    entry = Entry(cls, dict(fixed or {}), dict(defaults or {}), doc)
    check_kwargs(kind, name, [*entry.fixed, *entry.defaults],
                 [f for f in _all_fields(cls)])
    table[name] = entry
    global _generation
    _generation += 1
    return cls


_generation = 0


def generation() -> int:
    """Counts registrations: what was built under a name may be stale when it changes."""
    return _generation


def _all_fields(cls) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init]
    return list(inspect.signature(cls).parameters)


def _builtins(kind: str) -> None:
    importlib.import_module(PIECE_KINDS[kind])


def names(kind: str) -> list[str]:
    """The registered names of ``kind``, in registration order."""
    _builtins(kind)
    return list(_check_kind(kind))


def entries(kind: str) -> dict[str, Entry]:
    _builtins(kind)
    return dict(_check_kind(kind))


def import_object(spec: str, what: str = "object") -> Any:
    """The object named by ``"package.module:Name"`` (a ConfigError if it cannot be had)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ConfigError(f"{what} {spec!r}: a module path is written 'module:Name'")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module!r} ({e}); it must "
                          f"be importable, e.g. a .py file in the current directory") from None
    except Exception as e:  # an error inside the user's module: name it, not a traceback
        raise ConfigError(f"{what} {spec!r}: importing {module!r} failed: "
                          f"{type(e).__name__}: {e}") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {spec!r}: module {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def entry(kind: str, name: str) -> Entry:
    """The entry of ``name`` (a registered name, or ``"module:Class"``)."""
    table = _check_kind(kind)
    if not isinstance(name, str):
        raise ConfigError(f"a {kind} name must be a string, got {name!r}")
    if ":" in name:
        obj = import_object(name, kind)
        if not isinstance(obj, type):
            raise ConfigError(f"{kind} {name!r} is not a class")
        check_protocol(kind, name, obj)
        return Entry(obj)
    _builtins(kind)
    if name not in table:
        raise unknown_name(kind, name, table)
    return table[name]


def options(kind: str, name: str) -> list[str]:
    """The keyword options ``name`` of ``kind`` accepts."""
    return entry(kind, name).options()


def make(kind: str, name: str, **kw: Any) -> Any:
    """Build ``name`` of ``kind`` with options ``kw`` (converted to the fields' types).

    Unknown names or options raise a ConfigError that lists the valid ones; so does a
    value of the wrong type (``eta = "fast"``).
    """
    e = entry(kind, name)
    check_kwargs(kind, name, kw, e.options())
    where = f"{kind} {name!r}"
    if dataclasses.is_dataclass(e.cls):
        kw = coerce_kwargs(e.cls, kw, where)
    try:
        return e.cls(**{**e.defaults, **kw, **e.fixed})
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def portable(kind: str, name: str) -> tuple[str, dict]:
    """``(name, options)`` that rebuild ``name`` in another process: built-in names stay;
    a name registered by the user's own code becomes ``"module:Class"`` with the options
    its registration fixed (what a run directory records, so that ``eval`` and ``report``
    re-import it)."""
    e = entry(kind, name)
    if ":" in name or e.cls.__module__.split(".")[0] == "metaplastic":
        return name, {}
    module = e.cls.__module__
    if module == "__main__":  # a script: importable by its file name from its directory
        main = sys.modules["__main__"]
        module = getattr(getattr(main, "__spec__", None), "name", None) or Path(
            getattr(main, "__file__", "__main__")).stem
    return f"{module}:{e.cls.__qualname__}", {**e.defaults, **e.fixed}


def register_rule(name: str, cls: type, **kw) -> type:
    return register("rule", name, cls, **kw)


def register_task(name: str, cls: type, **kw) -> type:
    return register("task", name, cls, **kw)


def register_outer(name: str, cls: type, **kw) -> type:
    return register("outer", name, cls, **kw)


def register_neuron(name: str, cls: type, **kw) -> type:
    return register("neuron", name, cls, **kw)
