"""The README's Python example is examples/quickstart.py, and it runs."""

import re
import runpy
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_is_the_quickstart_file():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    assert blocks[0] == (ROOT / "examples" / "quickstart.py").read_text()


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any("make demo" in line for line in head) and any("make test" in line for line in head)


@pytest.mark.tier2  # the whole example as printed in the README (400 meta-steps)
def test_quickstart_runs_and_finds_ojas_terms(capsys):
    ns = runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.startswith("dw = eta * (")
    rule, theta = ns["rule"], ns["result"].theta
    coef = np.asarray(theta["coef"])
    oja = rule.coefficients("oja")
    cos = coef.ravel() @ oja.ravel() / (np.linalg.norm(coef) * np.linalg.norm(oja))
    assert cos > 0.9
    # the two largest terms are Oja's, with Oja's signs
    top2 = sorted(np.argsort(-np.abs(coef.ravel()))[:2])
    names = [rule.term_names[k] for k in top2]
    assert set(names) == {"pre*post", "post^2*w"}
    assert coef[1, 1, 0] > 0 > coef[0, 2, 1]
