"""A learned rule written out whole: every term with its coefficient (CSV, JSON), and the
update as a SymPy expression and as LaTeX (``metaplastic export RUN``).

Rules made of named terms (``polynomial`` and its named forms, ``termpool``) give every
term's expression from the rule's own code (``rule.term_values`` evaluated on SymPy
symbols), so the printed equation is the one the code computes (tested numerically against
``rule.synapse``). Rules with per-synapse coefficients (``abcd``) give per-layer summaries
of each coefficient (mean, sd, min, max) and the update with the layer means. Rules that
are networks (``mlp``, ...) have no terms: ``metaplastic explain RUN`` distils them into a
sparse polynomial first.
"""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace
from typing import Any

import numpy as np

from metaplastic.capabilities import HasEta, HasLayerStatistics, HasTermValues
from metaplastic.errors import ConfigError
from metaplastic.signals import NAMES

FORMATS = ("csv", "json", "sympy", "latex")


def _symbols():
    import sympy

    return SimpleNamespace(**{n: sympy.Symbol(n) for n in NAMES})


def exportable(rule: Any) -> bool:
    """Whether the rule can be written out whole: named terms whose values its code
    computes, or per-layer coefficient tables."""
    return isinstance(rule, HasTermValues | HasLayerStatistics)


def table(rule: Any, theta: Any) -> list[dict]:
    """Rows of the rule's parameters: ``{term, coefficient}`` per term, or for per-synapse
    coefficient rules ``{layer, coefficient, mean, sd, min, max}``."""
    if isinstance(rule, HasTermValues):
        coef = np.asarray(rule.term_coefficients(theta), float).reshape(-1)
        return [{"term": n, "coefficient": float(c)}
                for n, c in zip(rule.term_names, coef, strict=True)]
    if isinstance(rule, HasLayerStatistics):
        rows = []
        for layer, coefs in enumerate(rule.layer_tables(theta), start=1):
            for name, v in coefs.items():
                v = np.asarray(v, float)
                rows.append({"layer": layer, "coefficient": name, "mean": float(v.mean()),
                             "sd": float(v.std()), "min": float(v.min()),
                             "max": float(v.max()), "synapses": int(v.size)})
        return rows
    raise ConfigError(f"rule {rule.family!r} has no terms "
                      f"to export: `metaplastic explain RUN` distils it into a sparse "
                      f"polynomial first")


def expression(rule: Any, theta: Any, digits: int = 4):
    """The update ``dw`` as a SymPy expression with coefficients to ``digits`` significant
    digits (abcd: one per layer, with the layer means of its coefficients), and the
    constants it names (``eta``)."""
    import sympy

    s = _symbols()
    if isinstance(rule, HasTermValues):
        coef = np.asarray(rule.term_coefficients(theta), float).reshape(-1)
        total = 0
        for name, c, value in zip(rule.term_names, coef, rule.term_values(s), strict=True):
            if c == 0:
                continue
            total += sympy.Float(float(c), digits) * (sympy.Symbol(name) if value is None
                                                 else value)
        return sympy.Symbol("eta") * total, {"eta": float(rule.eta)}
    rows = table(rule, theta)
    means = {(r["layer"], r["coefficient"]): r["mean"] for r in rows}
    layers = sorted({r["layer"] for r in rows})
    out = []
    for layer in layers:
        m = {k: sympy.Float(means[layer, k], digits) for k in ("A", "B", "C", "D", "eta")}
        out.append(m["eta"] * (m["A"] * s.pre * s.post + m["B"] * s.pre + m["C"] * s.post
                               + m["D"]))
    return out, {}


def render(rule: Any, theta: Any, fmt: str) -> str:
    """The rule in one of :data:`FORMATS`."""
    _check_format(fmt)
    if fmt in ("csv", "json"):
        extra = ({"eta": float(rule.eta)} if isinstance(rule, HasEta)
                 and isinstance(rule, HasTermValues) else {})
        return _write(fmt, {"rule": rule.family, **extra}, table(rule, theta), None, {})
    expr, consts = expression(rule, theta)
    return _write(fmt, {}, [], expr, consts)


def distilled_expression(explained: dict, digits: int = 4):
    """The sparse polynomial that ``metaplastic explain`` fitted (its ``explain.json``)
    as a SymPy expression: ``scale * sum_k coef_k * prod_i input_i^power_ki``, and the
    constants it names (``eta``: the scale, when not 1)."""
    import sympy

    try:
        names, scale = list(explained["inputs"]), float(explained["scale"])
        terms = [(float(t["coef"]), [int(p) for p in t["powers"]]) for t in explained["terms"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"explain.json lacks the fitted terms ({type(e).__name__}: {e}); "
                          f"run `metaplastic explain RUN` again") from None
    if any(len(p) != len(names) for _, p in terms):
        raise ConfigError("explain.json's term powers do not match its inputs: run "
                          "`metaplastic explain RUN` again")
    sym = [sympy.Symbol(n) for n in names]
    total = 0
    for c, powers in terms:
        total += sympy.Float(c, digits) * sympy.Mul(*(x ** p for x, p in
                                                     zip(sym, powers, strict=True)))
    if scale == 1.0:
        return total, {}
    return sympy.Symbol("eta") * total, {"eta": scale}


def render_distilled(explained: dict, fmt: str) -> str:
    """``metaplastic explain``'s distilled formula in one of :data:`FORMATS` (rows: every
    kept term with its coefficient and importance; the held-out R² of the fit)."""
    _check_format(fmt)
    expr, consts = distilled_expression(explained)
    if fmt in ("csv", "json"):
        rows = [{"term": t["term"], "coefficient": float(t["coef"]),
                 "importance": float(t["importance"])} for t in explained["terms"]]
        head = {"distilled_from": "metaplastic explain", "eta": float(explained["scale"]),
                "r2_heldout": explained.get("r2_heldout")}
        return _write(fmt, head, rows, None, {})
    return _write(fmt, {}, [], expr, consts)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")


def _write(fmt: str, head: dict, rows: list[dict], expr, consts: dict) -> str:
    if fmt == "json":
        return json.dumps({**head, "rows": rows}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return buf.getvalue()
    import sympy

    exprs = expr if isinstance(expr, list) else [expr]
    if fmt == "sympy":
        lines = [f"dw = {e}" if len(exprs) == 1 else f"dw[layer {i + 1}] = {e}"
                 for i, e in enumerate(exprs)]
        lines += [f"{k} = {v:g}" for k, v in consts.items()]
        return "\n".join(lines) + "\n"
    lines = [f"\\Delta w = {sympy.latex(e)}" if len(exprs) == 1 else
             f"\\Delta w^{{({i + 1})}} = {sympy.latex(e)}" for i, e in enumerate(exprs)]
    lines += [f"\\eta = {v:g}" for k, v in consts.items() if k == "eta"]
    return "\n".join(lines) + "\n"
