"""One table of activation functions, for neurons and for the networks inside rules.

``softplus`` has a slope parameter β: ``softplus_β(v) = log(1 + exp(β v)) / β``. The table
names it: ``softplus1`` (β = 1, ``jax.nn.softplus``) and ``softplus10`` (β = 10, as in
Shervani-Tabar & Rosenbaum 2023). The bare name ``softplus`` keeps the meaning it has
always had in each place, so existing configs keep their numbers:

* a **neuron** (``network.activation = "softplus"``, ``LearnedNeuron.base``): β = 10;
* an **MLP rule** (``rule.activation = "softplus"``): β = 1.

Every entry has its derivative; those with a closed form use it (cheaper than autodiff,
above all inside a meta-gradient, which would otherwise differentiate a derivative;
tested equal to ``jax.grad``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from metaplastic.errors import unknown_name

Array = jax.Array
Fn = Callable[[Array], Array]


def _softplus(beta: float) -> tuple[Fn, Fn]:
    if beta == 1.0:
        return jax.nn.softplus, jax.nn.sigmoid
    return (lambda v: jax.nn.softplus(beta * v) / beta,
            lambda v: jax.nn.sigmoid(beta * v))


#: name -> (f, f' or None: by autodiff)
TABLE: dict[str, tuple[Fn, Fn | None]] = {
    "linear": (lambda v: v, jnp.ones_like),
    "tanh": (jnp.tanh, lambda v: 1.0 - jnp.tanh(v) ** 2),
    "relu": (jax.nn.relu, lambda v: (v > 0).astype(v.dtype)),
    "sigmoid": (jax.nn.sigmoid, lambda v: jax.nn.sigmoid(v) * (1.0 - jax.nn.sigmoid(v))),
    "softplus1": _softplus(1.0),
    "softplus10": _softplus(10.0),
    "gelu": (jax.nn.gelu, None),
    "silu": (jax.nn.silu, None),
}

#: what the bare name ``softplus`` means where (module docstring)
SOFTPLUS = {"neuron": "softplus10", "rule": "softplus1"}

#: the names each place accepts
NAMES = {"neuron": ("linear", "tanh", "relu", "sigmoid", "softplus", "softplus1",
                    "softplus10"),
         "rule": ("tanh", "relu", "gelu", "softplus", "softplus1", "softplus10", "silu")}


def canonical(name: str, where: str, what: str = "activation") -> str:
    """The table's name of ``name`` as ``where`` ("neuron" or "rule") reads it; an
    unknown name is a ConfigError that lists the valid ones (``what`` names it)."""
    if name not in NAMES[where]:
        raise unknown_name(what, name, NAMES[where])
    return SOFTPLUS[where] if name == "softplus" else name


def function(name: str, where: str) -> Fn:
    return TABLE[canonical(name, where)][0]


def derivative(name: str, where: str) -> Fn:
    """f' of ``name``: its closed form, or autodiff of f elementwise."""
    f, df = TABLE[canonical(name, where)]
    if df is not None:
        return df
    return lambda v: jax.vmap(jax.grad(f))(v.reshape(-1)).reshape(v.shape)
