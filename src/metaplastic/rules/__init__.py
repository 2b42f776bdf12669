"""Plasticity rules and their registry: ``make(name, **kw)``.

Registered names:

* ``polynomial`` — the trainable Volterra family over (pre, post, w);
* ``hebb``, ``anti-hebb``, ``oja`` — hand-designed rules, fixed settings of that family;
* ``stdp`` — pair-based STDP on spike traces, a fixed setting of the spike-trace polynomial
  over (pre, post, pre_trace, post_trace, w) (degree 1: 32 terms);
* ``xr`` — presynaptic activity times reward, over (pre, modulator, w);
* ``abcd`` — Hebbian ABCD rule, per synapse (Najarro & Risi 2020) or shared per layer;
* ``static`` — no plasticity; θ is the initial weights (the evolved-weights baseline);
* ``termpool`` — learned coefficients over named local terms with feedback errors
  (pseudo-gradient, error-Hebbian, Hebb, Oja, Oja on errors, decay);
* ``sgd`` — the pseudo-gradient term alone: backprop's SGD with symmetric feedback,
  feedback alignment with random feedback, DFA with direct feedback;
* ``layer-rates`` — the pseudo-gradient term with one meta-learned learning rate per
  layer (FA with learned per-layer step sizes: step size apart from credit assignment);
* ``adam`` — online Adam on the pseudo-gradient, per synapse (backprop-Adam with
  symmetric feedback): the strongest hand-designed baseline;
* ``mlp`` — a small MLP shared by every synapse maps its local signals to dw;
* ``neuron-mlp`` — per-neuron MLPs set each neuron's plasticity factors (BLUR-like);
* ``recurrent`` — a GRU cell shared by every synapse, with a hidden state per synapse;
* ``three-factor`` — an STDP eligibility trace per synapse times a broadcast modulator;
* ``bcm`` — Hebbian change gated by a sliding threshold (a running mean of post²): the
  ground truth outside the polynomial family for rule inference.
"""

from __future__ import annotations

from metaplastic.registry import make as _make
from metaplastic.registry import options as _options
from metaplastic.registry import register
from metaplastic.rules.adam import OnlineAdam
from metaplastic.rules.base import Rule
from metaplastic.rules.bcm import BCM
from metaplastic.rules.hebbian import HebbianABCD, StaticWeights
from metaplastic.rules.mlp import MLPRule, NeuronMLP, RecurrentRule
from metaplastic.rules.polynomial import NAMED, PolynomialRule, term_name
from metaplastic.rules.termpool import LayerRates, TermPool
from metaplastic.rules.threefactor import ThreeFactor

#: the spike-trace polynomial family that pair STDP belongs to (degree 1: 32 terms)
STDP_VARIABLES = ("pre", "post", "pre_trace", "post_trace", "w")

register("rule", "polynomial", PolynomialRule)
for _start in ("hebb", "anti-hebb", "oja"):
    register("rule", _start, PolynomialRule, fixed={"start": _start},
             doc=f"The polynomial rule fixed at {_start!r}'s coefficients.")
register("rule", "stdp", PolynomialRule, fixed={"start": "stdp"},
         defaults={"variables": STDP_VARIABLES, "degree": 1},
         doc="Pair-based STDP: the spike-trace polynomial at STDP's coefficients.")
register("rule", "xr", PolynomialRule, fixed={"start": "xr"},
         defaults={"variables": ("pre", "modulator", "w"), "degree": 2},
         doc="x·r: presynaptic activity times the reward (the modulator), a fixed setting "
             "of the polynomial over (pre, modulator, w).")
register("rule", "abcd", HebbianABCD)
register("rule", "static", StaticWeights)
register("rule", "termpool", TermPool)
register("rule", "sgd", TermPool, fixed={"terms": ("pseudo_grad",), "start": "pseudo_grad"},
         doc="The pseudo-gradient term alone: SGD / FA / DFA by the feedback pathway.")
register("rule", "layer-rates", LayerRates)
register("rule", "adam", OnlineAdam)
register("rule", "mlp", MLPRule)
register("rule", "neuron-mlp", NeuronMLP)
register("rule", "recurrent", RecurrentRule)
register("rule", "three-factor", ThreeFactor)
register("rule", "bcm", BCM)



def options(name: str) -> list[str]:
    """The keyword options rule ``name`` accepts (a registered name or "module:Class")."""
    return _options("rule", name)


def make(name: str, **kw) -> Rule:
    """Build a rule; unknown names or options raise a ConfigError listing valid ones."""
    return _make("rule", name, **kw)


__all__ = ["NAMED", "STDP_VARIABLES", "HebbianABCD", "MLPRule", "NeuronMLP", "OnlineAdam",
           "PolynomialRule", "RecurrentRule", "Rule", "StaticWeights", "TermPool",
           "ThreeFactor", "LayerRates", "make", "options", "register", "term_name"]
