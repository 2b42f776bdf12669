"""The polynomial (Volterra / Taylor) family of local rules.

Confavreux et al. (NeurIPS 2020) and Mehta et al. (NeurIPS 2024) search over

    dw = eta * sum_{a,b,c=0..d} theta_abc * pre^a * post^b * w^c

with d = 2 (27 terms). Oja's rule is theta_110 = +1, theta_021 = -1 (Oja, 1982):
dw = eta * (pre*post - post^2*w); Hebb's is theta_110 = +1.

The family extends to the feedback errors: ``variables = ["pre", "post", "w", "e_pre",
"e_post"]`` gives all (d+1)^5 monomials, e.g. ``-e_post*pre`` (the pseudo-gradient) or
``e_post*e_pre`` (error-Hebbian), as in Shervani-Tabar & Rosenbaum (2023).

Fast path: the variables of the presynaptic neuron (pre, e_pre) form feature rows
``F_pre`` (all products of their powers), those of the postsynaptic neuron form ``F_post``;
for each power c of w, ``M_c = F_post^T (Theta_c F_pre)`` is a sum of rank-1 outer products,
and ``dw = eta * sum_c w^c * M_c``. Nothing of size (pre x post x terms) is ever formed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.rules import terms
from metaplastic.rules.base import Rule, signed_term
from metaplastic.signals import NAMES, POST_SIDE, PRE_SIDE, SIDES, LocalSignals

Array = jax.Array

VARIABLES = NAMES
# the broadcast modulator is the same at every neuron: it rides with the postsynaptic side
_PRE_SIDE = PRE_SIDE
_POST_SIDE = (*POST_SIDE, *(n for n in NAMES if SIDES[n] == "broadcast"))

#: hand-designed members of the family, by name: the named terms of
#: :mod:`metaplastic.rules.terms` (the one vocabulary), {term name: coefficient}
NAMED = terms.NAMED


def _powers(x: Array, degree: int) -> Array:
    """(degree+1, ...) stack of x^0, x^1, ..., x^degree."""
    return jnp.stack([jnp.ones_like(x)] + [x**k for k in range(1, degree + 1)])


def _factors(term: str) -> frozenset:
    """A term's factors, order-free: 'post*pre_trace' == 'pre_trace*post'."""
    return frozenset(term.split("*"))


def term_name(*powers: int, variables=("pre", "post", "w")) -> str:
    parts = [
        name if p == 1 else f"{name}^{p}"
        for name, p in zip(variables, powers, strict=True)
        if p > 0
    ]
    return "*".join(parts) or "1"


def _features(signals: LocalSignals, names: list[str], degree: int, size: int) -> Array:
    """(prod over names of (degree+1), n) rows: every product of the names' powers."""
    rows = jnp.ones((1, size))
    for name in names:
        p = _powers(jnp.broadcast_to(getattr(signals, name), (size,)), degree)  # (d+1, n)
        rows = (rows[:, None, :] * p[None, :, :]).reshape(-1, size)
    return rows


@dataclass(frozen=True)
class PolynomialRule(Rule):
    """dw = eta * sum theta_abc pre^a post^b w^c, a, b, c in 0..degree (or over the
    ``variables`` given, which may add the feedback errors e_pre and e_post).

    ``start`` names the starting coefficients (``zeros``, ``hebb``, ``anti-hebb``, ``oja``);
    ``init_noise`` adds N(0, init_noise^2) to every coefficient. ``fast=False`` uses the
    per-synapse definition (slow; for testing).
    """

    eta: float = 0.01
    degree: int = 2
    variables: tuple[str, ...] = ("pre", "post", "w")
    # only the starting point: rules with the same update compare (and compile) equal
    start: str = field(default="zeros", compare=False)
    init_noise: float = field(default=0.0, compare=False)
    fast: bool = True
    #: terms held at zero (a term mask), by name: e.g. ["w^2", "pre*w^2"]
    exclude: tuple[str, ...] = ()
    linear_in_theta = True  # dw(c * theta) = c * dw(theta): eta can be tuned by scaling θ
    family = "polynomial"

    def __post_init__(self):
        if self.start not in NAMED:
            raise ConfigError(f"unknown polynomial start {self.start!r}; valid: "
                              f"{', '.join(NAMED)}")
        if not 1 <= self.degree <= 4:
            raise ConfigError(f"polynomial degree must be 1..4, got {self.degree}")
        object.__setattr__(self, "variables", tuple(self.variables))
        bad = [v for v in self.variables if v not in VARIABLES]
        if bad or len(set(self.variables)) != len(self.variables):
            raise ConfigError(f"polynomial variables must be distinct names from "
                              f"{', '.join(VARIABLES)}; got {list(self.variables)}")
        self._named_indices(self.start)  # a ConfigError if its terms are not all here
        if self.eta <= 0:
            raise ConfigError(f"eta must be positive, got {self.eta}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        known = {_factors(t) for t in self.term_names}
        unknown = [t for t in self.exclude if _factors(t) not in known]
        if unknown:
            raise ConfigError(f"exclude: no term(s) {unknown} among this polynomial's "
                              f"{len(known)} terms over {list(self.variables)}")

    def sparse_part(self, theta):
        """What the L1 penalty sees: the coefficients without the excluded terms (which
        then get no gradient at all and stay at zero)."""
        return self._masked(theta["coef"])

    def held(self, theta):
        """The excluded terms' coefficients (they do not act: :meth:`_masked`)."""
        return {"coef": ~np.array(self.free_terms).reshape(np.shape(theta["coef"]))}

    @property
    def free_terms(self) -> list[bool]:
        """Per term (order of :attr:`term_names`): whether it is fitted (not excluded)."""
        ex = {_factors(t) for t in self.exclude}
        return [_factors(t) not in ex for t in self.term_names]

    def _masked(self, coef):
        """``coef`` with the excluded terms at zero (no gradient reaches them)."""
        if not self.exclude:
            return coef
        keep = np.array(self.free_terms, np.float32)
        return coef * keep.reshape(np.shape(coef))

    @property
    def terms(self) -> list[tuple[int, ...]]:
        """Exponents of ``variables``, in the order of the flattened coefficient vector."""
        return list(itertools.product(range(self.degree + 1), repeat=len(self.variables)))

    @property
    def term_names(self) -> list[str]:
        return [term_name(*t, variables=self.variables) for t in self.terms]

    def term_coefficients(self, theta):
        """θ's coefficient of every term, in the order of :attr:`term_names`: the
        coefficient that acts (an excluded term's is 0 whatever θ holds there: a θ
        file may hold anything in its place)."""
        return self._masked(theta["coef"])

    def term_values(self, s) -> list:
        """Every term's value for one synapse's signals ``s`` (any numbers with ``*`` and
        ``**``: floats, arrays, SymPy symbols), in the order of :attr:`term_names`."""
        out = []
        for powers in self.terms:
            value = 1
            for name, p in zip(self.variables, powers, strict=True):
                value = value * getattr(s, name) ** p if p else value
            out.append(value)
        return out

    def _named_indices(self, named: str) -> dict[int, float]:
        """{index in term_names: coefficient} of a named rule; a ConfigError naming the
        variables and degree it needs when this polynomial lacks some of its terms."""
        table = terms.get(named)
        index = {frozenset(terms.factors(t).items()): i for i, t in enumerate(self.term_names)}
        absent = [t for t in table if frozenset(terms.factors(t).items()) not in index]
        if absent:
            need = {v for t in table for v in terms.factors(t)}
            order = [v for v in VARIABLES if v in need]
            names = ", ".join(order[:-1]) + (" and " if len(order) > 1 else "") + order[-1]
            degree = max(p for t in table for p in terms.factors(t).values())
            raise ConfigError(f"start {named!r} needs variables {names} and degree >= "
                              f"{degree} (its terms {absent})")
        return {index[frozenset(terms.factors(t).items())]: v for t, v in table.items()}

    def coefficients(self, named: str) -> np.ndarray:
        """The coefficient array of a named rule ('oja', 'hebb', 'stdp', ...)."""
        coef = np.zeros((self.degree + 1,) * len(self.variables), np.float32)
        flat = coef.reshape(-1)
        for i, v in self._named_indices(named).items():
            flat[i] = v
        return coef

    def init(self, key: Array, shapes=None) -> dict[str, Array]:
        coef = jnp.asarray(self.coefficients(self.start))
        if self.init_noise:
            coef = coef + self.init_noise * jax.random.normal(key, coef.shape)
        return {"coef": self._masked(coef)}

    def synapse(self, theta, s: LocalSignals) -> Array:
        d, k = self.degree, len(self.variables)
        letters = "abcdefgh"[:k]
        powers = [_powers(getattr(s, name), d) for name in self.variables]
        spec = f"{letters}," + ",".join(letters) + "->"
        return self.eta * jnp.einsum(spec, self._masked(theta["coef"]), *powers)

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            return self.update_per_synapse(theta, signals, state)
        d, names = self.degree, self.variables
        pre_side = [v for v in names if v in _PRE_SIDE]
        post_side = [v for v in names if v in _POST_SIDE]
        # coefficient tensor ordered (pre-side..., post-side..., w) and flattened per side
        order = [names.index(v) for v in pre_side + post_side] + (
            [names.index("w")] if "w" in names else [])
        coef = jnp.transpose(self._masked(theta["coef"]), order)
        n_pre, n_post = (d + 1) ** len(pre_side), (d + 1) ** len(post_side)
        coef = coef.reshape(n_pre, n_post, -1)  # last axis: powers of w (or 1)
        n_out, n_in = signals.w.shape
        f_pre = _features(signals, pre_side, d, n_in)  # (n_pre, n_in)
        f_post = _features(signals, post_side, d, n_out)  # (n_post, n_out)
        a_pre = jnp.einsum("pqc,pi->qci", coef, f_pre)
        m = jnp.einsum("qj,qci->cji", f_post, a_pre)  # (powers of w, n_out, n_in)
        w = signals.w
        dw, wc = m[0], jnp.ones_like(w)
        for c in range(1, m.shape[0]):
            wc = wc * w
            dw = dw + wc * m[c]
        return self.eta * dw, state

    def formula(self, theta, max_terms: int = 6, rel_tol: float = 0.05) -> str:
        """``dw = eta * (+0.98 pre*post - 1.01 post^2*w + ...)`` with the largest terms."""
        theta = self.checked(theta)
        coef = np.asarray(self.term_coefficients(theta)).reshape(-1)
        # largest first; ties (e.g. Oja's +1/-1) in order of total degree
        terms = self.terms
        order = sorted(range(coef.size),
                       key=lambda k: (-round(float(abs(coef[k])), 6), sum(terms[k]), k))
        top = abs(coef[order[0]]) if coef.size else 0.0
        if top == 0:
            return "dw = 0"
        shown = [k for k in order[:max_terms] if abs(coef[k]) >= rel_tol * top]
        names = self.term_names
        body = " ".join(signed_term(coef[k], names[k]) for k in shown)
        rest = int(np.sum(np.abs(coef) > 0)) - len(shown)
        more = f" + ... ({rest} smaller terms)" if rest > 0 else ""
        return f"dw = eta * ({body}{more}),  eta = {self.eta:g}"
