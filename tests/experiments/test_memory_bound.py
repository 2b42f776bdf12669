"""meta.checkpoint = "auto" (the default): a meta-gradient run whose first meta-step
program would hold more than the memory budget switches checkpointing on, says so, saves
it in config.toml and computes what a run with meta.checkpoint = true computes; within
the budget, or with checkpointing set either way, nothing changes."""

import json

import numpy as np
import pytest

from metaplastic.cli import main
from metaplastic.errors import ConfigError
from metaplastic.experiments.config import load, override
from metaplastic.experiments.presets import get
from metaplastic.meta import memory

CONFIG = """name = "tiny-memory"
[task]
name = "pca"
n_in = 6
n_steps = 200
[network]
sizes = [6, 3]
[rule]
name = "polynomial"
eta = 0.01
[meta]
steps = 2
chunk = 2
tasks_per_step = 2
lr = 0.01
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(CONFIG)
    return path


def _run(config, out, *sets):
    assert main(["run", str(config), "--no-eval", "--out", str(out),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    (run,) = list(out.iterdir())
    with np.load(run / "theta.npz") as f:
        theta = {k: f[k] for k in f.files}
    return run, json.loads((run / "summary.json").read_text()), theta


def test_over_the_budget_checkpointing_is_switched_on(config, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setenv(memory.BUDGET_VARIABLE, "1KiB")
    run, summary, theta = _run(config, tmp_path / "auto")
    text = capsys.readouterr().out
    assert "checkpointing is switched on" in text and "1KiB" in text
    bound = summary["memory"]
    assert bound["switched_on"] and bound["budget_bytes"] == 1024
    # the recomputed unroll holds less at once than the stored one
    assert 0 < bound["program_bytes_checkpointed"] < bound["program_bytes"] / 2
    saved = load(run / "config.toml")
    assert saved.meta["checkpoint"] is True and not saved.meta_section.auto_checkpoint
    assert summary["config_at_start"]["meta"]["checkpoint"] is True
    # the same numbers as a run that asked for checkpointing
    _, set_on, theta_on = _run(config, tmp_path / "on", "meta.checkpoint=true")
    assert "memory" not in set_on
    for k in theta:
        np.testing.assert_array_equal(theta[k], theta_on[k])


def test_within_the_budget_or_set_nothing_changes(config, tmp_path, monkeypatch):
    run, summary, theta = _run(config, tmp_path / "auto")  # half this machine's memory
    assert summary["memory"]["switched_on"] is False
    assert summary["memory"]["program_bytes"] < summary["memory"]["budget_bytes"]
    assert "checkpoint" not in load(run / "config.toml").meta
    _, off, theta_off = _run(config, tmp_path / "off", "meta.checkpoint=false")
    for k in theta:
        np.testing.assert_array_equal(theta[k], theta_off[k])
    monkeypatch.setenv(memory.BUDGET_VARIABLE, "1KiB")  # false: kept, however large
    _, kept, _ = _run(config, tmp_path / "kept", "meta.checkpoint=false")
    assert "memory" not in kept and "memory" not in off


def test_evolution_strategies_are_left_alone(config, tmp_path, monkeypatch):
    monkeypatch.setenv(memory.BUDGET_VARIABLE, "1KiB")
    _, summary, _ = _run(config, tmp_path / "es", "meta.outer='es'", "meta.population=4")
    assert "memory" not in summary


@pytest.mark.parametrize("value, message", [
    ("lots", "METAPLASTIC_MEMORY_BUDGET must be a size"),
    ("-1GiB", "must be positive"),
])
def test_a_bad_budget_is_refused(config, tmp_path, monkeypatch, capsys, value, message):
    monkeypatch.setenv(memory.BUDGET_VARIABLE, value)
    assert main(["run", str(config), "--no-eval", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().out


def test_budget_units():
    import os

    for text, want in [("2GiB", 2 * 2**30), ("500MiB", 500 * 2**20), ("1e9", 10**9),
                       ("3 GB", 3 * 10**9)]:
        os.environ[memory.BUDGET_VARIABLE] = text
        try:
            assert memory.budget()[0] == want
        finally:
            del os.environ[memory.BUDGET_VARIABLE]
    assert memory.budget()[0] == memory.available()[0] // 2


def test_checkpoint_accepts_true_false_or_auto():
    cfg = get("oja")
    assert cfg.meta_section.auto_checkpoint  # the default
    assert not override(cfg, ["meta.checkpoint=false"]).meta_section.auto_checkpoint
    assert override(cfg, ["meta.checkpoint='auto'"]).meta_section.objective.get(
        "checkpoint", False) is False
    with pytest.raises(ConfigError, match="true, false or \"auto\""):
        override(cfg, ["meta.checkpoint='sometimes'"]).meta_section  # noqa: B018


def test_seeds_in_one_program_decide_alike(config, tmp_path, monkeypatch):
    monkeypatch.setenv(memory.BUDGET_VARIABLE, "1KiB")
    assert main(["run", str(config), "--no-eval", "--seeds", "0-1", "--out",
                 str(tmp_path)]) == 0
    seeds = sorted(p for p in tmp_path.rglob("summary.json"))
    assert len(seeds) == 2
    for path in seeds:
        assert json.loads(path.read_text())["memory"]["switched_on"]
        assert load(path.parent / "config.toml").meta["checkpoint"] is True
