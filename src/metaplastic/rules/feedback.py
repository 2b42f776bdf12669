"""Plastic feedback pathways (after Lindsey & Litwin-Kumar 2020): the feedback synapses that
carry errors to the hidden layers change during the episode by their own meta-learned local
rule.

A feedback synapse ``b`` from neuron ``j`` of the layer above (or of the output layer, with
direct feedback) to neuron ``i`` of a hidden layer reads only

* ``e`` — the signal it carries: the error of its source neuron ``j``,
* ``r`` — the activity (rate) of the neuron ``i`` it ends on,
* ``b`` — its own weight,

and nothing of the forward weights. Its change is ``Δb = feedback_eta · Σ_k c_k · term_k``
over :data:`TERMS` (``e·r``, ``b``, ``e·r·b``, ``e``, ``r``, ``e·b``, ``r·b``), with the
coefficients ``c`` meta-learned in θ (``θ["feedback"]``) alongside the synapses' rule.

**Kolen–Pollack** (Kolen & Pollack 1994; Akrout et al. 2019) is the special case
``c = {e·r: -1, b: -λ}`` — the same local update as a forward synapse's pseudo-gradient
``-e_post · pre``, plus a decay — with which ``B - Wᵀ`` shrinks by ``(1 - ηλ)`` every step
when the forward rule is the pseudo-gradient with the same decay (tested). It is the start
(``network.feedback_start = "kolen_pollack"``; ``"zeros"``: fixed feedback at first). The
rule composed around the synapses' rule: :class:`~metaplastic.rules.composed.
WithPlasticFeedback`; the update is applied in :mod:`metaplastic.inner`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metaplastic.errors import unknown_name

Array = jax.Array

#: the feedback rule's terms, in the order of θ["feedback"]
TERMS = ("e*r", "b", "e*r*b", "e", "r", "e*b", "r*b")
STARTS = ("kolen_pollack", "zeros")


def coefficients(start: str, decay: float = 0.0) -> Array:
    """The feedback coefficients of a named start."""
    if start not in STARTS:
        raise unknown_name("feedback rule start", start, STARTS)
    c = jnp.zeros(len(TERMS), jnp.float32)
    if start == "kolen_pollack":
        c = c.at[TERMS.index("e*r")].set(-1.0).at[TERMS.index("b")].set(-decay)
    return c


def update(coef: Array, e: Array, r: Array, b: Array) -> Array:
    """``Σ_k c_k term_k`` for a feedback matrix ``b`` (n_dst, n_src) whose synapses carry
    ``e`` (n_src,) and end on neurons with activity ``r`` (n_dst,)."""
    e, r = e[None, :], r[:, None]
    terms = (e * r, b, e * r * b, e + 0 * b, r + 0 * b, e * b, r * b)
    return sum(c * t for c, t in zip(coef, terms, strict=True))


def formula(coef: Any) -> str:
    parts = [f"{float(c):+.3g} {t}" for c, t in zip(coef, TERMS, strict=True)
             if abs(float(c)) > 1e-6]
    return "db = eta_b * (" + (" ".join(parts) or "0") + ")"


__all__ = ["STARTS", "TERMS", "coefficients", "formula", "update"]
