"""One registration mechanism for every kind of piece: iterate it, extend it, misuse it."""

import dataclasses
import importlib.util

import pytest

import metaplastic as mp
from metaplastic import registry
from metaplastic.errors import ConfigError
from metaplastic.rules.polynomial import PolynomialRule


@pytest.mark.parametrize("kind", list(registry.PIECE_KINDS))
def test_every_entry_of_every_kind_lists_its_options_from_its_class(kind):
    entries = registry.entries(kind)
    assert entries, f"no {kind} registered"
    for name, entry in entries.items():
        options = registry.options(kind, name)
        if dataclasses.is_dataclass(entry.cls):
            fields = {f.name for f in dataclasses.fields(entry.cls) if f.init}
            assert set(options) == fields - set(entry.fixed), name


@pytest.mark.parametrize("kind", ["rule", "task", "outer", "neuron"])
def test_every_entry_builds_with_its_defaults(kind):
    for name in registry.names(kind):
        try:
            piece = registry.make(kind, name)
        except ConfigError as e:
            if name == "recorded":  # needs its recordings file
                assert "task.path" in str(e)
                continue
            # an optional family whose package is not installed
            assert "pip install 'metaplastic[" in str(e), name
            assert importlib.util.find_spec("mujoco_playground") is None, name
            continue
        assert isinstance(piece, registry.entry(kind, name).cls)
        for option, value in registry.entry(kind, name).fixed.items():
            assert getattr(piece, option) == value


@pytest.mark.parametrize("kind", list(registry.PIECE_KINDS))
def test_unknown_names_list_the_valid_ones(kind):
    with pytest.raises(ConfigError, match=f"unknown {kind} 'nope'.*{registry.names(kind)[0]}"):
        registry.entry(kind, "nope")


def test_unknown_and_fixed_options_are_refused_by_name():
    with pytest.raises(ConfigError, match="unknown option.*'etaa'.*valid options: .*eta"):
        mp.make("rule", "polynomial", etaa=1.0)
    with pytest.raises(ConfigError, match="'start'"):  # "oja" fixes its start
        mp.rules.make("oja", start="hebb")
    with pytest.raises(ConfigError, match="must be a number"):
        mp.make("rule", "polynomial", eta="fast")


@dataclasses.dataclass(frozen=True)
class Scaled(PolynomialRule):
    """A user's rule: the polynomial family under another name."""


def test_a_user_registered_rule_is_first_class_and_recorded_by_module_path():
    mp.register_rule("test-scaled", Scaled, fixed={"start": "oja"})
    try:
        rule = mp.rules.make("test-scaled", eta=0.5)
        assert isinstance(rule, Scaled) and rule.start == "oja" and rule.eta == 0.5
        assert "test-scaled" in registry.names("rule")
        assert registry.portable("rule", "test-scaled") == (
            "test_registry:Scaled", {"start": "oja"})
        with pytest.raises(ConfigError, match="already registered"):
            mp.register_rule("test-scaled", PolynomialRule)
    finally:
        registry._REGISTRIES["rule"].pop("test-scaled")


def test_module_paths_build_without_registration():
    rule = mp.rules.make("metaplastic.rules.polynomial:PolynomialRule", eta=0.2)
    assert isinstance(rule, PolynomialRule)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        mp.rules.make("no_such_module:Rule")
    with pytest.raises(ConfigError, match="has no 'Nope'"):
        mp.tasks.make("metaplastic.tasks.pca:Nope")
    with pytest.raises(ConfigError, match="unknown kind"):
        registry.register("widget", "x", Scaled)
