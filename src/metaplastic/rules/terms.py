"""One vocabulary of named local terms: each a polynomial in one synapse's signals.

A named term (or a hand-designed rule made of them) is a table ``{monomial: coefficient}``
whose monomials are written as the polynomial family writes its terms (``pre*post``,
``post^2*w``, ``post*pre_trace*modulator``; factors in any order). The polynomial rule
starts from them (``start = "oja"``) and compares with them, the term pool weighs them,
the MLP rule can start as one of them, and which signals a term reads follows from its
monomials — nothing is written twice.

| name | update | what it is |
|---|---|---|
| ``hebb`` | ``pre post`` | Hebb |
| ``anti-hebb`` | ``-pre post`` | anti-Hebbian |
| ``oja`` | ``pre post - post^2 w`` | Oja (1982) |
| ``pseudo_grad`` | ``-e_post pre`` | the delta rule / backprop's update with the feedback |
| ``error_hebb`` | ``-e_post e_pre`` | error-Hebbian |
| ``error_oja`` | ``e_post e_pre - e_post^2 w`` | Oja on errors |
| ``decay`` | ``-w`` | weight decay |
| ``stdp`` | ``post pre_trace - 1.05 pre post_trace`` | pair STDP on traces (Morrison et al. 2008) |
| ``rstdp`` | the same gated by ``modulator`` | reward-modulated STDP |
| ``trace_delta`` | ``-e_post pre_trace`` | the delta rule on spike traces |
| ``xr`` | ``pre modulator`` | activity times reward (Mehta et al. 2023) |
"""

from __future__ import annotations

from typing import Any

from metaplastic.errors import unknown_name

NAMED: dict[str, dict[str, float]] = {
    "zeros": {},
    "hebb": {"pre*post": 1.0},
    "anti-hebb": {"pre*post": -1.0},
    "oja": {"pre*post": 1.0, "post^2*w": -1.0},
    "pseudo_grad": {"e_post*pre": -1.0},
    "error_hebb": {"e_post*e_pre": -1.0},
    "error_oja": {"e_post*e_pre": 1.0, "e_post^2*w": -1.0},
    "decay": {"w": -1.0},
    "stdp": {"post*pre_trace": 1.0, "pre*post_trace": -1.05},
    "rstdp": {"post*pre_trace*modulator": 1.0, "pre*post_trace*modulator": -1.05},
    "trace_delta": {"e_post*pre_trace": -1.0},
    "xr": {"pre*modulator": 1.0},
}


def factors(monomial: str) -> dict[str, int]:
    """``"post^2*w"`` -> ``{"post": 2, "w": 1}``; ``"1"`` -> ``{}``."""
    out: dict[str, int] = {}
    for part in monomial.split("*"):
        if part == "1":
            continue
        name, _, power = part.partition("^")
        out[name] = out.get(name, 0) + (int(power) if power else 1)
    return out


def same_monomial(a: str, b: str) -> bool:
    return factors(a) == factors(b)


def get(name: str) -> dict[str, float]:
    if name not in NAMED:
        raise unknown_name("named term", name, NAMED)
    return NAMED[name]


def signals(name: str) -> set[str]:
    """The local signals a named term reads."""
    return {s for m in get(name) for s in factors(m)}


def value(name: str, s: Any) -> Any:
    """The term's value on one synapse's signals ``s`` (anything with those attributes:
    LocalSignals of arrays, or SymPy symbols)."""
    total: Any = 0
    for monomial, c in get(name).items():
        term: Any = c
        for signal, p in factors(monomial).items():
            term = term * getattr(s, signal) ** p
        total = total + term
    return total
