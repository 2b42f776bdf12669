"""Checking and converting user-given values against a dataclass's field types.

Used by the registries and the config loader so that ``eta = "fast"`` or ``steps = 1.5``
gives a message naming the option instead of a traceback from deep inside JAX.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from metaplastic.errors import ConfigError


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to type ``tp`` or raise a ConfigError naming ``where``."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if not -(2**31) <= value < 2**31:  # counts and sizes go into 32-bit JAX integers
            raise ConfigError(f"{where} = {value} is out of range (|value| < 2^31)")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def coerce_kwargs(cls: type, kw: dict[str, Any], where: str) -> dict[str, Any]:
    """Convert keyword arguments for dataclass ``cls``; unknown keys raise a ConfigError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    bad = sorted(set(kw) - fields)
    if bad:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(map(repr, bad))}; "
            f"valid options: {', '.join(sorted(fields))}"
        )
    return {k: coerce(v, hints[k], f"{where}.{k}") for k, v in kw.items()}


def check_fields(obj: Any, where: str | None = None) -> None:
    """Check (and convert, e.g. ``lr=1`` to ``1.0``) the fields of dataclass instance
    ``obj`` against their types, for objects built from Python rather than a config:
    ``MetaGradient(steps="3")`` is one ConfigError, not a TypeError later."""
    cls = type(obj)
    hints = typing.get_type_hints(cls)
    where = where or cls.__name__
    for f in dataclasses.fields(cls):
        if f.init and f.name in hints:
            value = coerce(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}")
            object.__setattr__(obj, f.name, value)
