"""Online principal component analysis (the task of Oja's rule).

Each task draws a random covariance ``C = Q diag(lambda) Q^T`` with a uniformly random
rotation ``Q`` and spectrum ``lambda_k = s * decay^k`` (k = 0..n_in-1), where the overall
variance ``s`` is drawn log-uniformly from ``scale_range`` (so that a rule cannot rely on
one input scale). A single linear neuron
``y = w . x`` sees one input ``x ~ N(0, C)`` per step (or, with ``hold > 1``, a new input
every ``hold`` steps: a spiking network then sees it as Poisson rates for that long).
The desired behaviour (Oja, 1982) is that ``w`` converges to the first principal
component ``q_1`` with unit norm; the meta-loss of the final weights is

    L = (1 - |cos(w, q_1)|) + norm_weight * (||w|| - 1)^2

as in Confavreux et al. (NeurIPS 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network
from metaplastic.tasks.base import Task, log_uniform, positive_range

Array = jax.Array


class PCAInstance(NamedTuple):
    mixing: Array  # Q diag(sqrt(lambda)): x = mixing @ z, z ~ N(0, I)
    pc1: Array  # first principal component (unit norm)
    key: Array  # the input stream's key


def random_rotation(key: Array, n: int) -> Array:
    """A Haar-random orthogonal matrix (QR of a Gaussian with the sign fix)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n)))
    return q * jnp.sign(jnp.diag(r))


@dataclass(frozen=True)
class PCATask(Task):
    """Find the first principal component of a random Gaussian input, online."""

    n_in: int = 10
    n_steps: int = 1000
    decay: float = 0.5
    norm_weight: float = 1.0
    scale_range: tuple[float, ...] = (1.0, 1.0)
    hold: int = 1  # steps each input is held (spiking networks see it as rates for a while)
    score = "abs_cos"

    def __post_init__(self):
        if self.n_in < 2:
            raise ConfigError(f"pca task needs n_in >= 2, got {self.n_in}")
        if self.n_steps < 1:
            raise ConfigError(f"pca task needs n_steps >= 1, got {self.n_steps}")
        if self.hold < 1:
            raise ConfigError(f"pca hold must be >= 1 steps, got {self.hold}")
        if not 0 < self.decay < 1:
            raise ConfigError(f"pca decay must be in (0, 1), got {self.decay}")
        object.__setattr__(self, "scale_range",
                           positive_range("pca", "scale_range", self.scale_range))

    @property
    def n_out(self) -> int:
        return 1

    def spectrum(self) -> Array:
        return self.decay ** jnp.arange(self.n_in, dtype=float)

    def sample(self, key: Array) -> PCAInstance:
        k_rot, k_scale, k_stream = jax.random.split(key, 3)
        q = random_rotation(k_rot, self.n_in)
        scale = log_uniform(k_scale, self.scale_range)
        return PCAInstance(q * jnp.sqrt(scale * self.spectrum()), q[:, 0], k_stream)

    def observe(self, instance: PCAInstance, t):
        sample = t if self.hold == 1 else t // self.hold
        z = jax.random.normal(jax.random.fold_in(instance.key, sample), (self.n_in,))
        return instance.mixing.astype(z.dtype) @ z, None

    def _weights(self, state: NetState) -> Array:
        return state.weights[-1][0]

    def metrics(self, instance: PCAInstance, state: NetState, env=None,
                network=None) -> dict[str, Array]:
        w = self._weights(state)
        norm = jnp.linalg.norm(w)
        abs_cos = jnp.abs(w @ instance.pc1.astype(w.dtype)) / jnp.maximum(norm, 1e-12)
        return {"abs_cos": abs_cos, "norm": norm}

    def loss(self, instance: PCAInstance, state: NetState, env=None, network=None) -> Array:
        m = self.metrics(instance, state)
        return (1.0 - m["abs_cos"]) + self.norm_weight * (m["norm"] - 1.0) ** 2

    def check_network(self, network: Network) -> None:
        if network.n_layers != 1 or network.sizes != (self.n_in, 1):
            raise ConfigError(
                f"the pca task needs a single layer {self.n_in} -> 1 (no hidden layers); "
                f"got sizes {network.sizes}"
            )
