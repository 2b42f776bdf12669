"""What a synapse may see: :class:`LocalSignals`.

A layer's signals hold, for the synapse from presynaptic neuron ``i`` to postsynaptic
neuron ``j``: the presynaptic rate ``pre[i]``, the postsynaptic rate ``post[j]``, the
synapse's own weight ``w[j, i]``, the feedback error arriving at each end (``e_pre[i]``,
``e_post[j]``), a broadcast modulator (reward, surprise) shared by every synapse, and the
exponential spike traces of both neurons (``pre_trace[i]``, ``post_trace[j]``; spiking
networks — zero in rate networks). In a spiking network ``pre`` and ``post`` are the 0/1
spikes of this time step.

Rules are written for *one* synapse — a function of a ``LocalSignals`` whose fields are
scalars — and :func:`per_synapse` maps it over the layer's grid, so a rule written this
way cannot read what its synapse cannot (locality by construction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ShapeError

Array = jax.Array


class LocalSignals(NamedTuple):
    """Signals of one layer (arrays) or of one synapse (scalars)."""

    pre: Array  # (n_in,)
    post: Array  # (n_out,)
    w: Array  # (n_out, n_in)
    e_pre: Array  # (n_in,)  feedback arriving at the presynaptic neuron
    e_post: Array  # (n_out,) feedback arriving at the postsynaptic neuron
    modulator: Array  # ()     broadcast to every synapse
    pre_trace: Array | None = None  # (n_in,)  presynaptic spike trace
    post_trace: Array | None = None  # (n_out,) postsynaptic spike trace


#: the vocabulary of local signals: every name, and which side of the synapse it lives on
#: ("pre": one value per presynaptic neuron, "post": per postsynaptic neuron, "synapse":
#: per synapse, "broadcast": one value shared by every synapse). Rules, checks, explain
#: and tests read it from here: adding a signal touches this module and LocalSignals.
SIDES: dict[str, str] = {"pre": "pre", "post": "post", "w": "synapse", "e_pre": "pre",
                         "e_post": "post", "modulator": "broadcast", "pre_trace": "pre",
                         "post_trace": "post"}
NAMES: tuple[str, ...] = LocalSignals._fields
PRE_SIDE: tuple[str, ...] = tuple(n for n in NAMES if SIDES[n] == "pre")
POST_SIDE: tuple[str, ...] = tuple(n for n in NAMES if SIDES[n] == "post")
assert set(SIDES) == set(NAMES), "every LocalSignals field needs a side"


def own_index(name: str, j, i) -> tuple:
    """The index of synapse i->j's own entry in a layer's array of signal ``name``."""
    return {"pre": (i,), "post": (j,), "synapse": (j, i), "broadcast": ()}[SIDES[name]]


def at_synapses(signals: LocalSignals, j: Array, i: Array) -> dict[str, Array]:
    """Every signal as seen by the synapses i->j (index arrays of one shape)."""
    return {n: jnp.broadcast_to(getattr(signals, n)[own_index(n, j, i)], j.shape)
            for n in NAMES}


def _signal_shapes(n_out: int, n_in: int) -> list[tuple[int, ...]]:
    side = {"pre": (n_in,), "post": (n_out,), "synapse": (n_out, n_in), "broadcast": ()}
    return [side[SIDES[n]] for n in NAMES]


def random_signals(key: Array, n_out: int, n_in: int) -> LocalSignals:
    """A layer's signals with every field (errors, modulator, traces) drawn N(0, 1): what
    tests feed a rule."""
    keys = jax.random.split(key, len(NAMES))
    return LocalSignals(*(jax.random.normal(k, shape) for k, shape
                          in zip(keys, _signal_shapes(n_out, n_in), strict=True)))


def numpy_signals(rng: np.random.Generator, n_out: int, n_in: int) -> LocalSignals:
    """:func:`random_signals` drawn by NumPy (float32): inputs of a check that must not
    compile a random-number program first (the locality check before a run)."""
    return LocalSignals(*(jnp.asarray(rng.standard_normal(shape, np.float32))
                          for shape in _signal_shapes(n_out, n_in)))


def layer_signals(pre, post, w, e_pre=None, e_post=None, modulator=0.0, pre_trace=None,
                  post_trace=None) -> LocalSignals:
    """Build a layer's signals, checking shapes; missing feedback and traces are zero."""
    pre, post, w = jnp.asarray(pre), jnp.asarray(post), jnp.asarray(w)
    if w.shape != (post.shape[-1], pre.shape[-1]) or pre.ndim != 1 or post.ndim != 1:
        raise ShapeError(
            f"layer signals need pre (n_in,), post (n_out,) and w (n_out, n_in); "
            f"got pre {pre.shape}, post {post.shape}, w {w.shape}"
        )
    e_pre = jnp.zeros_like(pre) if e_pre is None else jnp.asarray(e_pre)
    e_post = jnp.zeros_like(post) if e_post is None else jnp.asarray(e_post)
    if e_pre.shape != pre.shape or e_post.shape != post.shape:
        raise ShapeError(
            f"feedback errors must match the neurons: e_pre {e_pre.shape} vs pre {pre.shape}, "
            f"e_post {e_post.shape} vs post {post.shape}"
        )
    pre_trace = jnp.zeros_like(pre) if pre_trace is None else jnp.asarray(pre_trace)
    post_trace = jnp.zeros_like(post) if post_trace is None else jnp.asarray(post_trace)
    if pre_trace.shape != pre.shape or post_trace.shape != post.shape:
        raise ShapeError(f"traces must match the neurons: pre_trace {pre_trace.shape} vs pre "
                         f"{pre.shape}, post_trace {post_trace.shape} vs post {post.shape}")
    return LocalSignals(pre, post, w, e_pre, e_post, jnp.asarray(modulator, pre.dtype),
                        pre_trace, post_trace)


# vmap axes: the inner map runs over presynaptic neurons i, the outer over postsynaptic j.
_OVER_PRE = LocalSignals(pre=0, post=None, w=0, e_pre=0, e_post=None, modulator=None,
                         pre_trace=0, post_trace=None)
_OVER_POST = LocalSignals(pre=None, post=0, w=0, e_pre=None, e_post=0, modulator=None,
                          pre_trace=None, post_trace=0)


def per_synapse(
    fn: Callable[..., Array], signals: LocalSignals, own: Any = None
) -> Array:
    """Apply a one-synapse function to every synapse of a layer; returns (n_out, n_in).

    ``own`` is an optional pytree of (n_out, n_in) arrays — parameters that belong to each
    synapse, like its weight (e.g. per-synapse Hebbian coefficients); ``fn`` then receives
    ``(signals, own)`` sliced to one synapse.
    """
    if own is None:
        over_pre = jax.vmap(fn, in_axes=(_OVER_PRE,))
        return jax.vmap(over_pre, in_axes=(_OVER_POST,))(signals)
    over_pre = jax.vmap(fn, in_axes=(_OVER_PRE, 0))
    return jax.vmap(over_pre, in_axes=(_OVER_POST, 0))(signals, own)
