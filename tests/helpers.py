"""Small helpers shared by several test modules."""

import jax

from metaplastic.signals import layer_signals


def random_signals(key, n_in: int, n_out: int):
    """A layer's signals with every field (feedback errors included) drawn N(0, 1)."""
    k = jax.random.split(key, 5)
    return layer_signals(jax.random.normal(k[0], (n_in,)), jax.random.normal(k[1], (n_out,)),
                         jax.random.normal(k[2], (n_out, n_in)), jax.random.normal(k[3], (n_in,)),
                         jax.random.normal(k[4], (n_out,)))
