"""The learned-ES protocol (benchmarks/learned_es_protocol.toml) is complete and runnable:
fixed before φ is trained, so a mistake in it cannot be repaired after looking."""

import tomllib
from pathlib import Path

from metaplastic.experiments import presets
from metaplastic.experiments.build import build_task
from metaplastic.experiments.selection_run import PROBLEMS

PROTOCOL = Path(__file__).resolve().parents[1] / "benchmarks" / "learned_es_protocol.toml"


def test_the_protocol_names_held_out_searches_that_build():
    p = tomllib.loads(PROTOCOL.read_text())
    test, dev = p["test"], p["development"]
    assert len(test) >= 4 and p["evaluation"]["seeds"] >= 10
    names = [s["name"] for s in test + dev]
    assert len(names) == len(set(names))
    assert not {s["preset"] for s in test} & {s["preset"] for s in dev}
    assert "cartpole-hebbian" in {s["preset"] for s in dev}  # CartPole steered φ's design
    trained_on = {prob["name"] for prob in PROBLEMS}
    assert not {s["preset"] for s in test} & trained_on
    assert not set(p["tuning"]["seeds"]) & set(range(p["evaluation"]["seeds"]))
    for s in test + dev:
        assert s["direction"] in ("minimise", "maximise")
        assert s["metric"] in ("loss", "accuracy", "return")
        cfg = presets.get(s["preset"])  # an unknown preset raises
        build_task(cfg, **s["fresh"])  # the fresh-task score's overrides are valid
