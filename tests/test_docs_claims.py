"""The claims make docs-check reruns still point at numbers in their documents (nothing is
run here: a stale pattern fails in the fast suite, a stale number in make docs-check)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("docs_check", ROOT / "tools" / "docs_check.py")
docs_check = importlib.util.module_from_spec(spec)
sys.modules["docs_check"] = docs_check  # dataclasses look their module up
spec.loader.exec_module(docs_check)


@pytest.mark.parametrize("claim", docs_check.load(), ids=lambda c: c.name)
def test_every_claim_finds_its_number_once(claim):
    number, digits, ci = claim.printed()
    assert number > 0 and digits >= 1
    assert (ci is not None and ci > 0) == (claim.kind == "ci")
    assert claim.command.split()[0] == "run"


def test_exact_claims_hold_to_the_printed_digits_and_ci_claims_within_the_ci(tmp_path,
                                                                             monkeypatch):
    doc = tmp_path / "d.md"
    doc.write_text("cosine 0.982 here; held out 0.85 ± 0.02 there")
    monkeypatch.setattr(docs_check, "ROOT", tmp_path)
    exact = docs_check.Claim("a", "d.md", r"cosine (0\.\d+)", "run oja", "summary:x")
    assert docs_check.holds(exact, 0.9824)[0] and docs_check.holds(exact, 0.9834)[0]
    assert not docs_check.holds(exact, 0.9836)[0]  # beyond rounding + one last-digit unit
    ci = docs_check.Claim("b", "d.md", r"out (0\.\d+) ± (0\.\d+)", "run oja", "eval:a|b|c",
                          kind="ci")
    assert docs_check.holds(ci, 0.869)[0] and not docs_check.holds(ci, 0.871)[0]
    twice = docs_check.Claim("c", "d.md", r"(0\.\d+)", "run oja", "summary:x")
    with pytest.raises(ValueError, match="found 3 times"):
        twice.printed()


def test_another_floating_point_path_is_accepted_within_the_measured_tolerance(
        tmp_path, monkeypatch):
    """A seeded fit moves on another CPU's floating-point path (+0.337 here, +0.339 with
    SSE4.2 only, +0.331 elsewhere): within the claim's path_tolerance it holds, and says
    so; beyond it, it fails; without one, only the printed digits count."""
    doc = tmp_path / "d.md"
    doc.write_text("top term +0.337 here")
    monkeypatch.setattr(docs_check, "ROOT", tmp_path)
    claim = docs_check.Claim("a", "d.md", r"\+(0\.\d+) here", "run x", "term:t",
                             path_tolerance=0.01)
    assert docs_check.holds(claim, 0.3372)[0]
    ok, said = docs_check.holds(claim, 0.331)
    assert ok and "(path)" in said
    assert not docs_check.holds(claim, 0.325)[0]
    strict = docs_check.Claim("b", "d.md", r"\+(0\.\d+) here", "run x", "term:t")
    assert not docs_check.holds(strict, 0.331)[0]
    with_path = [c for c in docs_check.load() if c.path_tolerance > 0]
    assert {c.name for c in with_path} >= {"inference-reward-seed0-top-term",
                                           "inference-reward-seed0-deviance"}
