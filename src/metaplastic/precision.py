"""How numbers that live through an unroll are stored: float32, or bfloat16 storage with
float32 arithmetic.

``network.dtype = "bfloat16"`` keeps the weights between steps in bfloat16;
``rule.dtype = "bfloat16"`` (rules with per-synapse coefficients, e.g. ``abcd``) keeps
θ's coefficients in bfloat16 during the unroll. Both halve the memory the inner loop
holds and reads every step; every step still computes in float32 (:func:`compute` widens
what it reads, XLA fuses the conversion into the kernels that read it) and rounds only
what it stores (:func:`store`). bfloat16 keeps 8 significant bits: a weight change smaller
than about 0.4% of the weight is rounded away — see docs/scaling.md for what that did to
the ``oja`` and ``hml-cartpole`` presets.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError

STORAGE = ("float32", "bfloat16")


def check(dtype: str, where: str) -> None:
    if dtype not in STORAGE:
        raise ConfigError(f"{where}.dtype must be one of {', '.join(STORAGE)}, got {dtype!r}")


def store(tree: Any, dtype: str) -> Any:
    """Floating leaves of ``tree`` in the storage ``dtype`` (float32: unchanged)."""
    if dtype == "float32":
        return tree
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x,
        tree)


def compute(tree: Any) -> Any:
    """bfloat16 leaves of ``tree`` widened to float32 for arithmetic; others unchanged."""
    return jax.tree.map(
        lambda x: x.astype(jnp.float32) if jnp.result_type(x) == jnp.bfloat16 else x, tree)
