"""The learned-ES protocol (benchmarks/learned_es_protocol.toml) is complete and runnable:
fixed before φ is trained, so a mistake in it cannot be repaired after looking."""

import tomllib
from pathlib import Path

import pytest

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


@pytest.mark.tier2  # spawns the benchmark script
def test_merge_takes_the_entry_with_more_seeds(tmp_path):
    """Results of a parallel evaluate (another --out) merge into the main file: an entry
    the main file lacks is added, one with more seeds replaces a shorter one, a shorter
    one does not replace a longer one; a file of another protocol is refused."""
    import hashlib
    import json
    import subprocess
    import sys

    sha = hashlib.sha256(PROTOCOL.read_bytes()).hexdigest()
    runs = lambda n: [{"final": float(i)} for i in range(n)]  # noqa: E731
    main, other = tmp_path / "main", tmp_path / "other"
    main.mkdir(), other.mkdir()
    (main / "learned_es_protocol.json").write_text(json.dumps({
        "protocol_sha256": sha, "results": {"acrobot": {
            "snes": {"per_test_search": {"runs": runs(10)}},
            "cma-es": {"per_test_search": {"runs": runs(3)}}}}}))
    (other / "learned_es_protocol.json").write_text(json.dumps({
        "protocol_sha256": sha, "results": {"acrobot": {
            "snes": {"per_test_search": {"runs": runs(4)}},
            "cma-es": {"per_test_search": {"runs": runs(10)}},
            "learned-es": {"untuned": {"runs": runs(10)}}}}}))
    script = PROTOCOL.with_name("learned_es_protocol.py")
    done = subprocess.run([sys.executable, str(script), "merge", "--from", str(other),
                           "--out", str(main)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads((main / "learned_es_protocol.json").read_text())["results"]["acrobot"]
    assert {k: len(v[next(iter(v))]["runs"]) for k, v in got.items()} == {
        "snes": 10, "cma-es": 10, "learned-es": 10}
    (other / "learned_es_protocol.json").write_text(json.dumps({
        "protocol_sha256": "0" * 64, "results": {}}))
    done = subprocess.run([sys.executable, str(script), "merge", "--from", str(other),
                           "--out", str(main)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "another protocol" in done.stderr
