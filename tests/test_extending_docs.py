"""docs/extending.md names every member the library reads of a piece: the required ones
(registry.PROTOCOLS), the base classes' public members, and every optional ability of
metaplastic.capabilities."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from metaplastic import capabilities as cap
from metaplastic import registry
from metaplastic.experiments.study import Study
from metaplastic.meta.outer import OuterLoop
from metaplastic.rules.base import Rule
from metaplastic.tasks.base import Task

DOC = Path(__file__).parent.parent / "docs" / "extending.md"


def _missing(names, text):
    return sorted(n for n in names if f"`{n}" not in text)


def _protocols():
    return [v for v in vars(cap).values() if isinstance(v, type)
            and v.__module__ == cap.__name__ and getattr(v, "_is_protocol", False)]


@pytest.fixture(scope="module")
def text():
    return DOC.read_text(encoding="utf-8")


def test_every_capability_and_its_members_are_documented(text):
    protocols = _protocols()
    assert len(protocols) > 20
    missing = {p.__name__: _missing(typing._get_protocol_attrs(p), text) for p in protocols}
    assert {k: v for k, v in missing.items() if v} == {}
    assert _missing([p.__name__ for p in protocols], text) == []


@pytest.mark.parametrize("cls", [Task, Rule, OuterLoop, Study])
def test_every_public_member_of_a_base_class_is_documented(cls, text):
    assert _missing([n for n in dir(cls) if not n.startswith("_")], text) == []


def test_every_required_member_is_documented(text):
    required = {n for kind, names in registry.PROTOCOLS.items() if kind != "check"
                for n in names}
    assert _missing(required, text) == []


def test_the_check_finds_an_undocumented_member():
    assert _missing(["term_names", "not_a_member"], "`term_names` is documented") == \
        ["not_a_member"]
