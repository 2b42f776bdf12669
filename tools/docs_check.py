"""Rerun the commands behind the numbers in README and docs, and compare (make docs-check).

Each claim in ``docs/claims.toml`` names a document, a regular expression whose first group
is the number as printed there, the ``metaplastic`` command that produces it and where the
run leaves it:

* ``summary:KEY`` — a number in the run's ``summary.json``;
* ``eval:RULE|VARIANT|METRIC`` — the mean of a held-out cell of ``eval.json``;
* ``term:NAME`` — the learned coefficient of a term (from ``metaplastic export``);
* ``recovery:SPLIT|RULE|KEY`` or ``recovery:SPLIT|KEY`` — a number of ``recovery.json``
  (fits to recordings), e.g. ``recovery:heldout|inferred|deviance_explained`` (a
  fraction; printed as a percentage: ``scale = 100``) or ``recovery:heldout|weight_r2``;
* ``seeds:RULE|VARIANT|METRIC`` — a command with ``--seeds``: the mean over its seeds of
  a held-out cell (each seed's ``eval.json``);
* ``seedgap:VARIANT|RULE|LOW|HIGH`` — the mean over seeds of ``(RULE - LOW) / (HIGH -
  LOW)`` in that row's score (e.g. the share of the FA-to-Adam gap a rule closes).

``kind = "exact"`` (a seeded, deterministic number): the rerun must round to the printed
digits (within half a unit of the last printed digit, plus ``slack`` units for
platform rounding); ``kind = "ci"``: within the printed 95% CI (``ci_group``: the regex
group holding it). Runs that several claims share are made once.

    python tools/docs_check.py [--only NAME ...] [--list] [--out DIR] [--fp-path ISA]

An exact claim of a long seeded computation (a meta-training, a fit) reproduces to its
printed digits on the floating-point path it was made on; on another CPU, XLA emits other
code and the same seed takes another trajectory. Such a claim states ``path_tolerance``:
how far the number moved on other paths, measured with ``--fp-path`` (this machine limited
to another instruction set) and recorded beside the claim; the check passes within it and
says so.

Exit status 0 when every claim holds, 1 otherwise (a table says which), 2 on a damaged
claims file. ``tests/test_docs_claims.py`` checks, without running anything, that every
claim's pattern still finds its number in its document.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "docs" / "claims.toml"
#: instruction sets XLA's CPU backend can be limited to (``--xla_cpu_max_isa``)
ISAS = ("SSE4_2", "AVX", "AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16")


@dataclass
class Claim:
    name: str
    doc: str
    pattern: str
    command: str
    value: str
    kind: str = "exact"
    slack: float = 1.0  # last-digit units allowed beyond rounding (exact)
    ci_group: int = 2
    sign: float = 1.0  # -1: the document prints the magnitude after a minus sign
    scale: float = 1.0  # the document prints the value times this (100: a percentage)
    #: exact claims of long seeded computations: how far the number moves on another
    #: floating-point path (another CPU's instruction set: XLA emits other code, the same
    #: seed takes another trajectory), measured with --fp-path and stated in claims.toml;
    #: 0: the number must reproduce to its printed digits everywhere
    path_tolerance: float = 0.0

    def printed(self) -> tuple[float, int, float | None]:
        """(number, digits after the point, printed CI or None) from the document."""
        text = (ROOT / self.doc).read_text()
        found = re.findall(self.pattern, text, flags=re.S)
        if len(found) != 1:
            raise ValueError(f"claim {self.name!r}: pattern found {len(found)} times in "
                             f"{self.doc} (want exactly 1)")
        groups = found[0] if isinstance(found[0], tuple) else (found[0],)
        num = groups[0]
        digits = len(num.split(".")[1]) if "." in num else 0
        ci = float(groups[self.ci_group - 1]) if self.kind == "ci" else None
        return float(num), digits, ci


def load(path: Path = CLAIMS) -> list[Claim]:
    try:
        data = tomllib.loads(path.read_text())
        claims = [Claim(**c) for c in data["claim"]]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise SystemExit(f"error: {path}: {type(e).__name__}: {e}") from None
    for c in claims:
        if c.kind not in ("exact", "ci"):
            raise SystemExit(f"error: claim {c.name!r}: kind must be 'exact' or 'ci'")
        if c.value.split(":", 1)[0] not in ("summary", "eval", "term", "recovery", "seeds",
                                            "seedgap"):
            raise SystemExit(f"error: claim {c.name!r}: value must start with summary:, "
                             f"eval:, term:, recovery:, seeds: or seedgap:")
    return claims


def _metaplastic(args: list[str]) -> None:
    from metaplastic.cli import main

    code = main(args)
    if code != 0:
        raise RuntimeError(f"metaplastic {' '.join(args)} exited {code}")


def _cell(run: Path, rule: str, variant: str, metric: str | None = None) -> float:
    rows = json.loads((run / "eval.json").read_text())["rows"]
    (row,) = [r for r in rows if r["rule"] == rule and r["variant"] == variant]
    return float(row[metric or row["score"]]["mean"])


def measure(run: Path, value: str) -> float:
    where, what = value.split(":", 1)
    if where in ("seeds", "seedgap"):  # a --seeds run: its seed-N directories
        seeds = sorted(run.glob("seed-*"))
        if not seeds:
            raise FileNotFoundError(f"{run} has no seed-N directories (a --seeds command?)")
        if where == "seeds":
            rule, variant, metric = what.split("|")
            vals = [_cell(s, rule, variant, metric) for s in seeds]
        else:
            variant, rule, low, high = what.split("|")
            vals = [(_cell(s, rule, variant) - _cell(s, low, variant))
                    / (_cell(s, high, variant) - _cell(s, low, variant)) for s in seeds]
        return sum(vals) / len(vals)
    if where == "summary":
        return float(json.loads((run / "summary.json").read_text())[what])
    if where == "recovery":  # SPLIT|KEY (e.g. weight_r2) or SPLIT|RULE|KEY
        parts = what.split("|")
        data = json.loads((run / "recovery.json").read_text())["splits"][parts[0]]
        value = data[parts[1]] if len(parts) == 2 else data["rules"][parts[1]][parts[2]]
        return float(value["mean"] if isinstance(value, dict) else value)
    if where == "eval":
        rule, variant, metric = what.split("|")
        rows = json.loads((run / "eval.json").read_text())["rows"]
        (row,) = [r for r in rows if r["rule"] == rule and r["variant"] == variant]
        return float(row[metric]["mean"])
    rows_file = run / "export" / "rule.json"
    if not rows_file.exists():
        _metaplastic(["export", str(run), "--format", "json"])
    rows = json.loads(rows_file.read_text())["rows"]
    total = [r["coefficient"] for r in rows if r["term"] == what]
    if not total:
        raise KeyError(f"no term {what!r} in {rows_file}")
    return float(sum(total))


def holds(claim: Claim, measured: float) -> tuple[bool, str]:
    printed, digits, ci = claim.printed()
    if claim.kind == "ci":
        return abs(measured - printed) <= ci, f"{printed} ± {ci}"
    unit = 10.0 ** -digits
    if abs(measured - printed) <= (0.5 + claim.slack) * unit + 1e-12:
        return True, f"{printed}"
    # another floating-point path: within the tolerance measured across paths
    return (abs(measured - printed) <= claim.path_tolerance + 1e-12,
            f"{printed} ±{claim.path_tolerance:g} (path)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", help="claims to check (default: all)")
    p.add_argument("--list", action="store_true", help="list the claims and stop")
    p.add_argument("--out", help="where the runs go (default: a temporary directory)")
    p.add_argument("--fp-path", metavar="ISA", choices=ISAS,
                   help="run on another floating-point path: "
                   "XLA's CPU code limited to this instruction set (SSE4_2, AVX, AVX2), "
                   "as another machine would compile it; the compilation cache is off")
    args = p.parse_args(argv)
    if args.fp_path:  # before JAX's backend starts (the runs are in this process)
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_max_isa={args.fp_path}".strip()
        os.environ["METAPLASTIC_CACHE_DIR"] = "off"
    claims = load()
    if args.only:
        unknown = set(args.only) - {c.name for c in claims}
        if unknown:
            print(f"error: unknown claims {sorted(unknown)}", file=sys.stderr)
            return 2
        claims = [c for c in claims if c.name in args.only]
    if args.list:
        for c in claims:
            print(f"{c.name:32s} {c.doc:22s} metaplastic {c.command}")
        return 0
    for c in claims:  # every pattern first: a stale document fails before minutes of runs
        c.printed()
    out = Path(args.out or tempfile.mkdtemp(prefix="docs-check-"))
    # simulated recordings made here, as on a machine that never ran the library (a
    # cached file from older code would otherwise stand in for today's simulation)
    os.environ["METAPLASTIC_CACHE"] = str(out / "cache")
    runs: dict[str, Path] = {}
    failed = 0
    for c in claims:
        if c.command not in runs:
            target = out / f"run{len(runs)}"
            target.mkdir(parents=True, exist_ok=True)
            _metaplastic([*shlex.split(c.command), "--out", str(target)])
            (runs[c.command],) = [d for d in target.iterdir() if d.is_dir()]
        measured = c.sign * c.scale * measure(runs[c.command], c.value)
        ok, printed = holds(c, measured)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {c.name:32s} printed {printed:>16s}  "
              f"measured {measured:.6g}  ({c.doc})", flush=True)
    print(f"{len(claims) - failed} of {len(claims)} claims hold; runs in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
