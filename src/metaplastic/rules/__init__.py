"""Plasticity rules and their registry: ``make(name, **kw)``.

Registered names:

* ``polynomial`` — the trainable Volterra family over (pre, post, w);
* ``hebb``, ``anti-hebb``, ``oja`` — hand-designed rules, fixed settings of that family;
* ``stdp`` — pair-based STDP on spike traces, a fixed setting of the spike-trace polynomial
  over (pre, post, pre_trace, post_trace, w) (degree 1: 32 terms);
* ``abcd`` — Hebbian ABCD rule, per synapse (Najarro & Risi 2020) or shared per layer;
* ``static`` — no plasticity; θ is the initial weights (the evolved-weights baseline);
* ``termpool`` — learned coefficients over named local terms with feedback errors
  (pseudo-gradient, error-Hebbian, Hebb, Oja, Oja on errors, decay);
* ``sgd`` — the pseudo-gradient term alone: backprop's SGD with symmetric feedback,
  feedback alignment with random feedback, DFA with direct feedback;
* ``mlp`` — a small MLP shared by every synapse maps its local signals to dw;
* ``neuron-mlp`` — per-neuron MLPs set each neuron's plasticity factors (BLUR-like);
* ``recurrent`` — a GRU cell shared by every synapse, with a hidden state per synapse;
* ``three-factor`` — an STDP eligibility trace per synapse times a broadcast modulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from metaplastic._fields import coerce_kwargs
from metaplastic.errors import check_kwargs, unknown_name
from metaplastic.rules.base import Rule
from metaplastic.rules.hebbian import HebbianABCD, StaticWeights
from metaplastic.rules.mlp import MLPRule, NeuronMLP, RecurrentRule
from metaplastic.rules.polynomial import NAMED, PolynomialRule, term_name
from metaplastic.rules.termpool import TermPool
from metaplastic.rules.threefactor import ThreeFactor

REGISTRY: dict[str, Callable[..., Rule]] = {
    "polynomial": PolynomialRule,
    "hebb": lambda **kw: PolynomialRule(start="hebb", **kw),
    "anti-hebb": lambda **kw: PolynomialRule(start="anti-hebb", **kw),
    "oja": lambda **kw: PolynomialRule(start="oja", **kw),
    "stdp": lambda **kw: PolynomialRule(**{"variables": STDP_VARIABLES, "degree": 1, **kw},
                                        start="stdp"),
    "abcd": HebbianABCD,
    "static": StaticWeights,
    "termpool": TermPool,
    "sgd": lambda **kw: TermPool(terms=("pseudo_grad",), start="pseudo_grad", **kw),
    "mlp": MLPRule,
    "neuron-mlp": NeuronMLP,
    "recurrent": RecurrentRule,
    "three-factor": ThreeFactor,
}
#: the spike-trace polynomial family that pair STDP belongs to (degree 1: 32 terms)
STDP_VARIABLES = ("pre", "post", "pre_trace", "post_trace", "w")
_OPTIONS = {name: PolynomialRule
            for name in ("polynomial", "hebb", "anti-hebb", "oja", "stdp")} | {
    "abcd": HebbianABCD, "static": StaticWeights, "termpool": TermPool, "sgd": TermPool,
    "mlp": MLPRule, "neuron-mlp": NeuronMLP, "recurrent": RecurrentRule,
    "three-factor": ThreeFactor}
_FIXED = {"hebb", "anti-hebb", "oja", "sgd", "stdp"}


def options(name: str) -> list[str]:
    """The keyword options rule ``name`` accepts."""
    if name not in REGISTRY:
        raise unknown_name("rule", name, REGISTRY)
    fields = [f.name for f in dataclasses.fields(_OPTIONS[name]) if f.init]
    fixed = {"start", "terms"} if name == "sgd" else {"start"}
    return [f for f in fields if not (name in _FIXED and f in fixed)]


def make(name: str, **kw) -> Rule:
    """Build a registered rule; unknown names or options raise a ConfigError listing valid ones."""
    check_kwargs("rule", name, kw, options(name))
    return REGISTRY[name](**coerce_kwargs(_OPTIONS[name], kw, f"rule {name!r}"))


__all__ = ["NAMED", "REGISTRY", "HebbianABCD", "MLPRule", "NeuronMLP", "PolynomialRule",
           "RecurrentRule", "Rule", "StaticWeights", "TermPool",
           "make", "options", "term_name"]
