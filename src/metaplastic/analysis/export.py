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

FORMATS = ("csv", "json", "sympy", "sympy_full", "latex")
#: significant digits that keep a float32 coefficient exactly (and a float64 one nearly)
FULL = 17


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
            total += sympy.Float(float(c), FULL) * (sympy.Symbol(name) if value is None
                                               else value)
        return sympy.Symbol("eta") * _rounded(total, digits), {"eta": float(rule.eta)}
    rows = table(rule, theta)
    means = {(r["layer"], r["coefficient"]): r["mean"] for r in rows}
    layers = sorted({r["layer"] for r in rows})
    out = []
    for layer in layers:
        m = {k: sympy.Float(means[layer, k], FULL) for k in ("A", "B", "C", "D", "eta")}
        out.append(_rounded(m["eta"] * (m["A"] * s.pre * s.post + m["B"] * s.pre
                                        + m["C"] * s.post + m["D"]), digits))
    return out, {}


def _rounded(expr, digits: int):
    """``expr`` with every number to ``digits`` significant digits, rounded once after
    like terms were combined (combining numbers of 4 digits printed 15)."""
    import sympy

    if digits >= FULL:
        return expr
    return expr.xreplace({n: sympy.Float(float(n), digits)
                          for n in expr.atoms(sympy.Float)})


def render(rule: Any, theta: Any, fmt: str, latex_threshold: float = 0.0) -> str:
    """The rule in one of :data:`FORMATS`; ``sympy_full`` is the expression at full
    precision that ``sympy.sympify`` reads back; ``latex_threshold``: LaTeX leaves out the
    terms below that fraction of the largest coefficient (and says how many)."""
    _check_format(fmt)
    if fmt in ("csv", "json"):
        extra = ({"eta": float(rule.eta)} if isinstance(rule, HasEta)
                 and isinstance(rule, HasTermValues) else {})
        return _write(fmt, {"rule": rule.family, **extra}, table(rule, theta), None, {})
    expr, consts = expression(rule, theta, digits=FULL if fmt != "sympy" else 4)
    return _write(fmt, {}, [], expr, consts, latex_threshold)


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
        total += sympy.Float(c, FULL) * sympy.Mul(*(x ** p for x, p in
                                                   zip(sym, powers, strict=True)))
    total = _rounded(total, digits)
    if scale == 1.0:
        return total, {}
    return sympy.Symbol("eta") * total, {"eta": scale}


def render_distilled(explained: dict, fmt: str, latex_threshold: float = 0.0) -> str:
    """``metaplastic explain``'s distilled formula in one of :data:`FORMATS` (rows: every
    kept term with its coefficient and importance; the held-out R² of the fit)."""
    _check_format(fmt)
    expr, consts = distilled_expression(explained, digits=FULL if fmt != "sympy" else 4)
    if fmt in ("csv", "json"):
        rows = [{"term": t["term"], "coefficient": float(t["coef"]),
                 "importance": float(t["importance"])} for t in explained["terms"]]
        head = {"distilled_from": "metaplastic explain", "eta": float(explained["scale"]),
                "r2_heldout": explained.get("r2_heldout")}
        return _write(fmt, head, rows, None, {})
    return _write(fmt, {}, [], expr, consts, latex_threshold)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")


def _write(fmt: str, head: dict, rows: list[dict], expr, consts: dict,
           latex_threshold: float = 0.0) -> str:
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
    if fmt == "sympy":  # for people: 4 significant digits, eta named
        lines = [f"dw = {e}" if len(exprs) == 1 else f"dw[layer {i + 1}] = {e}"
                 for i, e in enumerate(exprs)]
        lines += [f"{k} = {v:g}" for k, v in consts.items()]
        return "\n".join(lines) + "\n"
    if fmt == "sympy_full":  # for sympy.sympify: one expression (a list: one per layer)
        subs = {sympy.Symbol(k): sympy.Float(v, FULL) for k, v in consts.items()}
        full = [sympy.sstr(e.subs(subs), full_prec=True) for e in exprs]
        return (full[0] if len(full) == 1 else "[" + ", ".join(full) + "]") + "\n"
    lines = [f"\\Delta w = {_latex(e, latex_threshold)}" if len(exprs) == 1 else
             f"\\Delta w^{{({i + 1})}} = {_latex(e, latex_threshold)}"
             for i, e in enumerate(exprs)]
    lines += [f"\\eta = {_latex_number(v)}" for k, v in consts.items() if k == "eta"]
    return "\n".join(lines) + "\n"


def _latex_number(v: float, digits: int = 4) -> str:
    """``v`` to ``digits`` significant digits, trailing zeros kept, powers of ten as
    ``\\times 10^{k}``."""
    text = f"{v:#.{digits}g}"
    if "e" not in text:
        return text.rstrip(".")
    mantissa, exp = text.split("e")
    return f"{mantissa.rstrip('.')} \\times 10^{{{int(exp)}}}"


def _latex(expr, threshold: float = 0.0, digits: int = 4) -> str:
    """A rule's update for a paper: named symbols (``\\mathrm{pre}``), its monomials in
    order of the magnitude of their coefficients, every coefficient to ``digits``
    significant digits; monomials below ``threshold`` x the largest are left out (a LaTeX
    comment says how many)."""
    import sympy

    eta = sympy.Symbol("eta")
    factor = ""
    if expr.has(eta):
        expr, factor = sympy.expand(expr / eta), "\\eta \\left("
    terms = sympy.expand(expr).as_coefficients_dict()
    terms = {m: float(c) for m, c in terms.items() if float(c) != 0.0}
    if not terms:
        return "0"
    names = {sym: "\\mathrm{" + sym.name.replace("_", "\\_") + "}"
             for sym in expr.free_symbols}
    top = max(abs(c) for c in terms.values())
    kept = sorted(((m, c) for m, c in terms.items() if abs(c) >= threshold * top),
                  key=lambda mc: -abs(mc[1]))
    parts = []
    for i, (m, c) in enumerate(kept):
        number = _latex_number(abs(c), digits)
        body = "" if m == 1 else " " + sympy.latex(m, symbol_names=names, mul_symbol="dot")
        sign = ("-" if c < 0 else "") if i == 0 else (" - " if c < 0 else " + ")
        parts.append(f"{sign}{number}{body}")
    out = "".join(parts)
    if factor:
        out = f"{factor}{out} \\right)"
    left = len(terms) - len(kept)
    if left:
        out += f" % {left} term(s) below {threshold:g} x the largest left out"
    return out
