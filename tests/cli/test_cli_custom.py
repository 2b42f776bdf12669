"""A rule and a task from the user's own module get everything a built-in one gets."""

import json
import os
import subprocess
import sys

import pytest

from metaplastic.cli import main

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_custom_rule_and_task_from_a_user_module_get_everything(tmp_path, monkeypatch,
                                                                 capsys):
    """examples/custom_rule.toml names "custom_rule:DeltaTerms" and
    "custom_rule:LinearRegression": run directory, eval table, report and check."""
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.syspath_prepend(os.path.abspath(EXAMPLES))
    small = ["--set", "meta.steps=10", "--set", "meta.chunk=5", "--set", "eval.tasks=8",
             "--set", "eval.vary={}", "--set", "task.n_steps=40", "--out", str(tmp_path)]
    assert main(["run", "custom_rule.toml", *small]) == 0
    (run,) = list(tmp_path.iterdir())
    cfg = (run / "config.toml").read_text()
    assert 'name = "custom_rule:DeltaTerms"' in cfg and "custom_rule:LinearRegression" in cfg
    out = " ".join(capsys.readouterr().out.split())
    assert "learned rule: dw = eta * (" in out and "SGD (eta " in out  # the tuned value
    assert main(["eval", str(run), "--tasks", "6"]) == 0
    rows = json.loads((run / "eval.json").read_text())["rows"]
    assert {r["rule"] for r in rows} == {"learned", "SGD (eta tuned)"} and len(rows) == 2
    (run / "coefficients.png").unlink()
    assert main(["report", str(run)]) == 0 and (run / "coefficients.png").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["plot"]["theta_names"] == ["delta", "hebb", "decay"]
    capsys.readouterr()
    assert main(["check", str(run)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "rule 'custom_rule:DeltaTerms'" in out and "rule 'rule'" not in out


@pytest.mark.tier2
def test_the_custom_example_runs_as_documented(tmp_path, monkeypatch):
    """`python custom_rule.py` (registered names) and `metaplastic run custom_rule.toml`,
    as written in the example, in fresh processes."""
    for cmd in ([sys.executable, "custom_rule.py"],
                [sys.executable, "-m", "metaplastic.cli", "run", "custom_rule.toml"]):
        done = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=EXAMPLES, text=True,
                              capture_output=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "learned rule:" in done.stdout and "held-out evaluation" in done.stdout
    for run in tmp_path.iterdir():
        assert 'name = "custom_rule:DeltaTerms"' in (run / "config.toml").read_text()
