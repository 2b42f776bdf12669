"""A pool of named local terms with learned coefficients (Shervani-Tabar & Rosenbaum 2023).

    dw = eta * sum_k theta_k * term_k(pre, post, w, e_pre, e_post)

Terms, for the synapse pre -> post (``e`` is the feedback error at a neuron, arriving
through the network's feedback pathway, never read from the forward weights):

| name | term | |
|---|---|---|
| ``pseudo_grad`` | ``-e_post * pre`` | backprop's SGD with symmetric feedback; FA with random |
| ``error_hebb`` | ``-e_post * e_pre`` | error-Hebbian |
| ``hebb`` | ``post * pre`` | Hebb |
| ``oja`` | ``post * pre - post^2 * w`` | Oja on activities |
| ``error_oja`` | ``e_post * e_pre - e_post^2 * w`` | Oja on errors |
| ``decay`` | ``-w`` | weight decay |
| ``oja_subspace`` | ``post * (pre - sum_k post_k * w_k,pre)`` | Oja subspace: **not local** |

``oja_subspace`` is the "Oja" term of Shervani-Tabar & Rosenbaum's published code
(``y x^T - y y^T W`` for the layer): the synapse pre -> post reads the weights of every
other neuron's synapse from the same presynaptic neuron (a reconstruction ``W^T y`` of the
input), so it has no per-synapse definition and fails the locality check whenever its
coefficient is non-zero. It is in the pool to reproduce their results and to measure what
that non-local term contributes; ``oja`` is the local, single-neuron form.

One coefficient vector is shared by every layer. The fast path adds rank-1 outer products
and ``w``-scaled rows; it is tested equal to the per-synapse definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.rules import terms
from metaplastic.rules.base import Rule, signed_term
from metaplastic.rules.hebbian import _need_shapes
from metaplastic.signals import LocalSignals

Array = jax.Array
LOCAL_TERMS = ("pseudo_grad", "error_hebb", "hebb", "oja", "error_oja", "decay")
#: terms that read more than one synapse's signals (layer-level only: no ``synapse``)
NONLOCAL_TERMS = ("oja_subspace",)
TERMS = LOCAL_TERMS + NONLOCAL_TERMS


def _term(name: str, s: LocalSignals) -> Array:
    """A local term's value (the one vocabulary: :mod:`metaplastic.rules.terms`)."""
    return terms.value(name, s)


@dataclass(frozen=True)
class TermPool(Rule):
    """dw = eta * sum_k theta_k term_k; ``start`` names a term set to ``start_coef``
    (default 1; or ``zeros``)."""

    eta: float = 0.01
    terms: tuple[str, ...] = LOCAL_TERMS
    start: str = field(default="zeros", compare=False)
    start_coef: float = field(default=1.0, compare=False)
    fast: bool = True
    linear_in_theta = True  # dw(c * theta) = c * dw(theta): eta can be tuned by scaling θ
    family = "termpool"

    @property
    def term_names(self) -> list[str]:
        """The coefficients' names, in θ's order (for plots and exports)."""
        return list(self.terms)

    def __post_init__(self):
        object.__setattr__(self, "terms", tuple(self.terms))
        bad = [t for t in self.terms if t not in TERMS]
        if bad or not self.terms:
            raise ConfigError(f"unknown term(s) {bad}; valid terms: {', '.join(TERMS)}")
        if self.start != "zeros" and self.start not in self.terms:
            raise ConfigError(f"start must be 'zeros' or one of the terms, got {self.start!r}")
        if not self.eta > 0:
            raise ConfigError(f"eta must be positive, got {self.eta}")
        nonlocal_terms = [t for t in self.terms if t in NONLOCAL_TERMS]
        if nonlocal_terms and not self.fast:
            raise ConfigError(f"term(s) {nonlocal_terms} read other synapses' weights and "
                              f"have no per-synapse definition: they need fast = true")

    def init(self, key, shapes=None):
        coef = np.zeros(len(self.terms), np.float32)
        if self.start != "zeros":
            coef[self.terms.index(self.start)] = self.start_coef
        return {"coef": jnp.asarray(coef)}

    def term_coefficients(self, theta):
        """θ's coefficient of every term, in the order of :attr:`term_names`."""
        return theta["coef"]

    def term_values(self, s) -> list:
        """Every term's value for one synapse's signals ``s`` (floats, arrays or SymPy
        symbols), in the order of :attr:`term_names`; a non-local term has no value from
        one synapse's signals: it is given as ``None``."""
        return [_term(t, s) if t in LOCAL_TERMS else None for t in self.terms]

    def synapse(self, theta, s: LocalSignals) -> Array:
        vals = jnp.stack([_term(t, s) for t in self.terms])
        return self.eta * jnp.dot(theta["coef"], vals)

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            return self.update_per_synapse(theta, signals, state)
        c = dict(zip(self.terms, theta["coef"], strict=True))
        get = lambda name: c.get(name, 0.0)  # noqa: E731
        has = lambda *names: any(n in c for n in names)  # noqa: E731
        s = signals
        # rank-1 parts: a_post (x) pre + b_post (x) e_pre; w-scaled part: g_post * w; a
        # part is computed only when one of its terms is in the pool (no pass over w for
        # a part that is zero)
        dw = jnp.zeros_like(s.w)
        if has("pseudo_grad", "hebb", "oja", "oja_subspace"):
            a = -get("pseudo_grad") * s.e_post + (get("hebb") + get("oja")) * s.post
            if "oja_subspace" in c:  # y x^T - y (y^T W): reads every neuron's weights
                a = a + c["oja_subspace"] * s.post
            dw = jnp.outer(a, s.pre)
        if has("error_hebb", "error_oja"):
            b = -get("error_hebb") * s.e_post + get("error_oja") * s.e_post
            dw = dw + jnp.outer(b, s.e_pre)
        if has("oja", "error_oja", "decay"):
            g = -get("oja") * s.post**2 - get("error_oja") * s.e_post**2 - get("decay")
            dw = dw + g[:, None] * s.w
        if "oja_subspace" in c:
            dw = dw - jnp.outer(c["oja_subspace"] * s.post, s.post @ s.w)
        return (dw if self.eta == 1 else self.eta * dw), state

    def formula(self, theta, rel_tol: float = 0.05) -> str:
        theta = self.checked(theta)
        coef = np.asarray(theta["coef"])
        top = np.abs(coef).max() if coef.size else 0.0
        if top == 0:
            return "dw = 0"
        order = np.argsort(-np.abs(coef), kind="stable")
        body = " ".join(signed_term(coef[k], self.terms[k])
                        for k in order if abs(coef[k]) >= rel_tol * top)
        return f"dw = eta * ({body}),  eta = {self.eta:g}"


@dataclass(frozen=True)
class LayerRates(Rule):
    """The pseudo-gradient term with one meta-learned learning rate per layer:

        dw_l = eta * exp(theta_l) * (-e_post * pre)

    SGD / FA / DFA by the feedback pathway, each layer's step size learned (θ_l is its
    log factor, 0 at the start: every layer at ``eta``). The control that separates
    step-size tuning from credit assignment: a learned rule that beats FA only by
    scaling each layer's step would be matched by this one."""

    eta: float = 0.03
    family = "layer-rates"
    per_layer = True

    def __post_init__(self):
        if not self.eta > 0:
            raise ConfigError(f"eta must be positive, got {self.eta}")

    def init(self, key, shapes=None):
        _need_shapes("layer-rates", shapes)
        return tuple({"log_rate": jnp.zeros((), jnp.float32)} for _ in shapes)

    def rates(self, theta) -> np.ndarray:
        """Every layer's learning rate, input side first."""
        return self.eta * np.exp([float(t["log_rate"]) for t in theta])

    def synapse(self, theta, s: LocalSignals) -> Array:
        return self.eta * jnp.exp(theta["log_rate"]) * _term("pseudo_grad", s)

    def update(self, theta, signals: LocalSignals, state):
        step = self.eta * jnp.exp(theta["log_rate"])
        return -step * jnp.outer(signals.e_post, signals.pre), state

    def formula(self, theta) -> str:
        rates = ", ".join(f"{r:.3g}" for r in self.rates(theta))
        return f"dw_l = -r_l * e_post * pre,  r = ({rates}) (layers 1-{len(theta)})"
