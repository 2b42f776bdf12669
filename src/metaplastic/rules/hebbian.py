"""Hebbian ABCD rules (Najarro & Risi, NeurIPS 2020) and static weights (the baseline).

``abcd``: for the synapse from presynaptic ``pre`` to postsynaptic ``post``,

    dw = eta * (A * pre * post + B * pre + C * post + D)

with A, B, C, D and eta **per synapse** (``shared=False``: five evolved numbers per
synapse, as Najarro & Risi) or **one set per layer** (``shared=True``). The per-synapse
coefficients are the synapse's own parameters, like its weight, so the rule stays local.

``static``: no plasticity; θ *is* the network's initial weights, which the outer loop
evolves directly — the baseline "weights evolved by the same ES and budget".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import precision
from metaplastic.errors import ConfigError
from metaplastic.rules.base import Rule
from metaplastic.signals import LocalSignals, per_synapse

Array = jax.Array
COEFS = ("A", "B", "C", "D", "eta")


def _need_shapes(name, shapes):
    if not shapes:
        raise ConfigError(f"rule {name!r} has parameters per layer: init needs the network's "
                          f"weight shapes (rule.init(key, network.shapes))")


@dataclass(frozen=True)
class HebbianABCD(Rule):
    """dw = eta * (A pre post + B pre + C post + D); per synapse or shared per layer."""

    shared: bool = False
    init_noise: float = field(default=0.0, compare=False)
    eta_init: float = field(default=0.0, compare=False)
    fast: bool = True
    #: how the coefficients are stored during the unroll: "float32", or "bfloat16" (half
    #: the memory read every step; float32 arithmetic: :mod:`metaplastic.precision`)
    dtype: str = "float32"
    family = "abcd"
    per_layer = True

    def __post_init__(self):
        precision.check(self.dtype, "rule")

    def init(self, key: Array, shapes=None):
        _need_shapes("abcd", shapes)
        if not self.init_noise:  # constants: built on the host, no program compiled per shape
            return tuple({name: jnp.asarray(np.full(() if self.shared else tuple(shape),
                                                    self.eta_init if name == "eta" else 0.0,
                                                    np.float32))
                          for name in COEFS} for shape in shapes)
        theta = []
        for k, shape in zip(jax.random.split(key, len(shapes)), shapes, strict=True):
            size = () if self.shared else tuple(shape)
            keys = jax.random.split(k, len(COEFS))
            layer = {}
            for kc, name in zip(keys, COEFS, strict=True):
                base = self.eta_init if name == "eta" else 0.0
                layer[name] = base + self.init_noise * jax.random.normal(kc, size)
            theta.append(layer)
        return tuple(theta)

    def synapse(self, theta, s: LocalSignals, own=None) -> Array:
        c = theta if own is None else own
        return c["eta"] * (c["A"] * s.pre * s.post + c["B"] * s.pre + c["C"] * s.post + c["D"])

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            if self.shared:
                return per_synapse(lambda s: self.synapse(theta, s), signals), state
            return per_synapse(lambda s, own: self.synapse(None, s, own), signals, theta), state
        pre, post = signals.pre[None, :], signals.post[:, None]
        t = theta
        eta = t["eta"]
        # factored: (ηA post + ηB) pre + (ηC post + ηD); the ηX products are loop-invariant
        dw = (eta * t["A"] * post + eta * t["B"]) * pre + (eta * t["C"] * post + eta * t["D"])
        return jnp.broadcast_to(dw, signals.w.shape), state

    def layer_tables(self, theta) -> list[dict]:
        """Per layer, coefficient name -> its values (one per synapse, or one shared)."""
        return [dict(layer) for layer in theta]

    def formula(self, theta) -> str:
        theta = self.checked(theta)
        parts = []
        for l, layer in enumerate(theta):
            stats = ", ".join(f"{k} {_summary(np.asarray(v))}" for k, v in layer.items())
            parts.append(f"layer {l + 1}: {stats}")
        kind = "shared per layer" if self.shared else "per synapse"
        return f"dw = eta * (A*pre*post + B*pre + C*post + D), {kind}; " + "; ".join(parts)


def _summary(v: np.ndarray) -> str:
    if v.ndim == 0:
        return f"{float(v):+.3g}"
    return f"mean {v.mean():+.3g} (sd {v.std():.2g})"


@dataclass(frozen=True)
class StaticWeights(Rule):
    """No plasticity: θ holds the network's weights, evolved or trained directly."""

    init_scale: float = field(default=1.0, compare=False)
    family = "static"

    def init(self, key: Array, shapes=None):
        _need_shapes("static", shapes)
        keys = jax.random.split(key, len(shapes))
        return {"w": tuple(self.init_scale * jax.random.normal(k, s) / np.sqrt(s[1])
                           for k, s in zip(keys, shapes, strict=True))}

    def layer_theta(self, theta, layer):
        return None

    def initial_weights(self, theta):
        return tuple(theta["w"])

    def synapse(self, theta, s: LocalSignals) -> Array:
        return jnp.zeros_like(s.w)

    def update(self, theta, signals: LocalSignals, state):
        return jnp.zeros_like(signals.w), state

    def formula(self, theta) -> str:
        theta = self.checked(theta)
        norms = ", ".join(f"{float(jnp.linalg.norm(w)):.3g}" for w in theta["w"])
        return f"dw = 0 (static weights; layer norms {norms})"
