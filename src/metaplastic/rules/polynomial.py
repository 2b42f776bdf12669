"""The polynomial (Volterra / Taylor) family of local rules.

Confavreux et al. (NeurIPS 2020) and Mehta et al. (NeurIPS 2024) search over

    dw = eta * sum_{a,b,c=0..d} theta_abc * pre^a * post^b * w^c

with d = 2 (27 terms). Oja's rule is theta_110 = +1, theta_021 = -1 (Oja, 1982):
dw = eta * (pre*post - post^2*w); Hebb's is theta_110 = +1.

Fast path: for each power c of w, ``M_c[j, i] = sum_ab theta_abc post_j^b pre_i^a`` is a sum
of (d+1)^2 rank-1 outer products, computed as ``P_post^T (Theta_c P_pre)``; then
``dw = eta * sum_c w^c * M_c``. Nothing of size (pre x post x terms) is ever formed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.rules.base import Rule
from metaplastic.signals import LocalSignals

Array = jax.Array

#: hand-designed members of the family: {(a, b, c): coefficient}
NAMED = {
    "zeros": {},
    "hebb": {(1, 1, 0): 1.0},
    "anti-hebb": {(1, 1, 0): -1.0},
    "oja": {(1, 1, 0): 1.0, (0, 2, 1): -1.0},
}


def _powers(x: Array, degree: int) -> Array:
    """(degree+1, ...) stack of x^0, x^1, ..., x^degree."""
    return jnp.stack([jnp.ones_like(x)] + [x**k for k in range(1, degree + 1)])


def term_name(a: int, b: int, c: int) -> str:
    parts = [
        name if p == 1 else f"{name}^{p}"
        for name, p in (("pre", a), ("post", b), ("w", c))
        if p > 0
    ]
    return "*".join(parts) or "1"


@dataclass(frozen=True)
class PolynomialRule(Rule):
    """dw = eta * sum theta_abc pre^a post^b w^c, a, b, c in 0..degree.

    ``start`` names the starting coefficients (``zeros``, ``hebb``, ``anti-hebb``, ``oja``);
    ``init_noise`` adds N(0, init_noise^2) to every coefficient. ``fast=False`` uses the
    per-synapse definition (slow; for testing).
    """

    eta: float = 0.01
    degree: int = 2
    # only the starting point: rules with the same update compare (and compile) equal
    start: str = field(default="zeros", compare=False)
    init_noise: float = field(default=0.0, compare=False)
    fast: bool = True
    linear_in_theta = True  # dw(c * theta) = c * dw(theta): eta can be tuned by scaling θ
    family = "polynomial"

    def __post_init__(self):
        if self.start not in NAMED:
            raise ConfigError(
                f"unknown polynomial start {self.start!r}; valid: {', '.join(NAMED)}"
            )
        if not 1 <= self.degree <= 4:
            raise ConfigError(f"polynomial degree must be 1..4, got {self.degree}")
        if self.eta <= 0:
            raise ConfigError(f"eta must be positive, got {self.eta}")

    @property
    def terms(self) -> list[tuple[int, int, int]]:
        """(a, b, c) exponents, in the order of the flattened coefficient vector."""
        return list(itertools.product(range(self.degree + 1), repeat=3))

    @property
    def term_names(self) -> list[str]:
        return [term_name(*t) for t in self.terms]

    def coefficients(self, named: str) -> np.ndarray:
        """The coefficient array of a named rule ('oja', 'hebb', ...)."""
        d = self.degree + 1
        coef = np.zeros((d, d, d), np.float32)
        for (a, b, c), v in NAMED[named].items():
            if max(a, b, c) > self.degree:
                raise ConfigError(f"rule {named!r} needs degree >= {max(a, b, c)}")
            coef[a, b, c] = v
        return coef

    def init(self, key: Array, shapes=None) -> dict[str, Array]:
        coef = jnp.asarray(self.coefficients(self.start))
        if self.init_noise:
            coef = coef + self.init_noise * jax.random.normal(key, coef.shape)
        return {"coef": coef}

    def synapse(self, theta, s: LocalSignals) -> Array:
        d = self.degree
        pa, pb, pc = _powers(s.pre, d), _powers(s.post, d), _powers(s.w, d)
        return self.eta * jnp.einsum("abc,a,b,c->", theta["coef"], pa, pb, pc)

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            return self.update_per_synapse(theta, signals, state)
        d = self.degree
        p_pre = _powers(signals.pre, d)  # (d+1, n_in)
        p_post = _powers(signals.post, d)  # (d+1, n_out)
        a_pre = jnp.einsum("abc,ai->bci", theta["coef"], p_pre)  # (d+1, d+1, n_in)
        m = jnp.einsum("bj,bci->cji", p_post, a_pre)  # (d+1, n_out, n_in)
        w = signals.w
        dw = m[0]
        wc = jnp.ones_like(w)
        for c in range(1, d + 1):
            wc = wc * w
            dw = dw + wc * m[c]
        return self.eta * dw, state

    def formula(self, theta, max_terms: int = 6, rel_tol: float = 0.05) -> str:
        """``dw = eta * (+0.98 pre*post - 1.01 post^2*w + ...)`` with the largest terms."""
        coef = np.asarray(theta["coef"]).reshape(-1)
        # largest first; ties (e.g. Oja's +1/-1) in order of total degree
        terms = self.terms
        order = sorted(range(coef.size),
                       key=lambda k: (-round(float(abs(coef[k])), 6), sum(terms[k]), k))
        top = abs(coef[order[0]]) if coef.size else 0.0
        if top == 0:
            return "dw = 0"
        shown = [k for k in order[:max_terms] if abs(coef[k]) >= rel_tol * top]
        names = self.term_names
        body = " ".join(f"{'+' if coef[k] >= 0 else '-'}{abs(coef[k]):.3g} {names[k]}"
                        for k in shown)
        rest = int(np.sum(np.abs(coef) > 0)) - len(shown)
        more = f" + ... ({rest} smaller terms)" if rest > 0 else ""
        return f"dw = eta * ({body}{more}),  eta = {self.eta:g}"
