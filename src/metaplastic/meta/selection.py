"""The selection network of the learned evolution strategy: what selection can know, and
what it decides.

A Gaussian search distribution over a flat vector of ``D`` numbers — mean ``m`` and a
per-dimension scale ``σ`` (kept as ``log σ``) — samples ``N`` members
``x_i = m + σ ⊙ ε_i``, ``ε_i ~ N(0, I)`` (antithetic pairs). After their fitness ``f_i``
(minimised) is known, a small network with parameters φ makes every decision of the
generation, from features that are invariant to the scale of the fitness, to ``N`` and
to ``D`` (so one φ serves any rule family and population size):

* **Selection** (recombination weights, one MLP shared by every member): from each
  member's centred rank ``r_i ∈ [-½, ½]`` (best ½), its z-scored fitness (clipped to ±3)
  and whether it is the best, a logit ``ℓ_i = g_r r_i + g_z z_i + MLP_m(r_i, z_i, b_i)``;
  ``w = softmax(ℓ)`` over the members.
* **Variation** (one MLP shared by every dimension ``d``): from the selected step
  ``y_d = Σ_i w_i ε_id`` (normalised by the effective number of members
  ``n_eff = 1 / Σ w²``: ``ŷ_d = √n_eff y_d``), the selected second moment
  ``v_d = Σ_i w_i ε_id² − 1``, two evolution paths of ``ŷ`` (time constants 0.3 and 0.05:
  ``p ← (1−c) p + √(c(2−c)) ŷ``), ``log σ_d − log σ_0``, the generation's progress
  ``t / T``, two population-wide path lengths (``mean_d p² − 1``) and the share of
  members tied with the best (a plateau, e.g. a return at its cap) and with the worst
  (members whose learning diverged get the worst fitness), and where the
  generation's median fitness lies between the best and worst seen so far (0 best, 1
  worst: has the search fallen off a plateau it had reached?), three outputs
  ``o_d`` set

  ``m_d ← m_d + σ_d (2 sigmoid(o_d0) y_d + tanh(o_d1) p_fast,d / √n_eff)``,
  ``log σ_d ← log σ_d + ½ tanh(o_d2)``.

At φ's initialisation (output layers at zero) this is a rank-weighted recombination with
a fixed scale (``α = 1``, no momentum). The design follows Lange et al. (ICLR 2023,
"Discovering Evolution Strategies via Meta-Black-Box Optimization": fitness features per
member, per-dimension MLP over evolution paths); there the network is meta-*evolved*,
here it is trained by backpropagation through unrolled generations
(:mod:`metaplastic.meta.metameta`). Unlike LES the member network has no attention: the
features are already population-normalised (rank, z-score), and a per-member MLP is
cheaper and permutation-equivariant by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import _npz
from metaplastic.errors import ConfigError

Array = jax.Array

MEMBER_FEATURES = ("centred rank", "z-score", "is best")
DIM_FEATURES = ("selected step", "selected 2nd moment - 1", "fast path", "slow path",
                "log sigma / sigma0", "progress t/T", "fast path length - 1",
                "slow path length - 1", "share of members tied with the best",
                "share of members tied with the worst",
                "median fitness within the range seen so far")
PATH_RATES = (0.3, 0.05)
#: the shipped φ, trained by the ``selection-meta`` preset (docs/outer-loops.md)
DEFAULT_PHI = Path(__file__).resolve().parent.parent / "data" / "selection_phi.npz"
#: the logit's gain on the centred rank at initialisation (exp(6) between best and worst)
RANK_GAIN0 = 6.0


class SearchState(NamedTuple):
    """The learned ES's search distribution, flat over the ``D`` numbers of θ."""

    log_sigma: Array  # (D,)
    paths: Array  # (2, D): evolution paths of the normalised selected step
    log_sigma0: Array  # (D,): where log σ started (a feature)
    t: Array  # generations done (int32)
    best: Array  # the best (lowest) fitness seen so far (+inf before the first generation)
    worst: Array  # the worst fitness seen so far (-inf before the first generation)


def init_phi(key: Array, hidden: int = 16) -> dict[str, Array]:
    """φ at initialisation: rank-weighted recombination, fixed scale."""
    k1, k2 = jax.random.split(key)
    nm, nd = len(MEMBER_FEATURES), len(DIM_FEATURES)
    return {
        "member_gain": jnp.array([RANK_GAIN0, 0.0]),
        "member_w1": jax.random.normal(k1, (nm, hidden)) / np.sqrt(nm),
        "member_b1": jnp.zeros(hidden),
        "member_w2": jnp.zeros(hidden),
        "dim_w1": jax.random.normal(k2, (nd, hidden)) / np.sqrt(nd),
        "dim_b1": jnp.zeros(hidden),
        "dim_w2": jnp.zeros((hidden, 3)),
        "dim_b2": jnp.zeros(3),
    }


def check_phi(phi: dict) -> dict[str, Array]:
    """``phi`` as a dict of float arrays with the shapes :func:`init_phi` makes, or a
    ConfigError naming the problem."""
    if not isinstance(phi, dict):
        raise ConfigError(f"a selection network φ is a dict of arrays, got {type(phi).__name__}")
    hidden = np.shape(phi.get("member_b1", ()))
    like = init_phi(jax.random.key(0), hidden[0] if len(hidden) == 1 and hidden[0] else 1)
    missing, extra = sorted(set(like) - set(phi)), sorted(set(phi) - set(like))
    if missing or extra:
        raise ConfigError(f"selection network φ: missing {missing}, unexpected {extra}")
    out = {}
    for k, v in like.items():
        arr = np.asarray(phi[k])
        if arr.shape != v.shape or not np.issubdtype(arr.dtype, np.floating):
            raise ConfigError(f"selection network φ[{k!r}]: expected float {v.shape}, got "
                              f"{arr.dtype} {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"selection network φ[{k!r}] holds NaN/inf")
        out[k] = jnp.asarray(arr, jnp.float32)
    return out


def load_phi(path: str | Path | None = None) -> dict[str, Array]:
    """φ from a ``.npz`` file (no pickle); ``None``: the shipped one."""
    path = Path(DEFAULT_PHI if path is None else path)
    try:
        raw = _npz.read(path, "selection network file")
    except FileNotFoundError:
        raise ConfigError(f"selection network file {path} does not exist") from None
    return check_phi(raw)


def save_phi(path: str | Path, phi: dict) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in check_phi(phi).items()})


def init_search(dim: int, sigma: float | Array) -> SearchState:
    log_sigma = jnp.broadcast_to(jnp.log(jnp.asarray(sigma, jnp.float32)), (dim,))
    return SearchState(log_sigma, jnp.zeros((2, dim)), log_sigma, jnp.zeros((), jnp.int32),
                       jnp.asarray(jnp.inf), jnp.asarray(-jnp.inf))


def perturbations(key: Array, n: int, dim: int, antithetic: bool = True) -> Array:
    """``ε`` (n, dim): standard normal, in antithetic pairs (+ε, −ε) when ``antithetic``."""
    if not antithetic:
        return jax.random.normal(key, (n, dim))
    half = jax.random.normal(key, (n // 2, dim))
    return jnp.concatenate([half, -half])


def member_features(fitness: Array) -> Array:
    """(N, 3): centred rank (best ½), z-score (higher is better, clipped to ±3), is-best."""
    n = fitness.shape[0]
    order = jnp.argsort(jnp.argsort(-fitness))  # 0 = worst ... n-1 = best
    rank = order / jnp.maximum(n - 1, 1) - 0.5
    centred = fitness - jnp.mean(fitness)
    var = jnp.mean(centred ** 2)
    std = jnp.sqrt(jnp.where(var > 0, var, 1.0))  # all tied: z = 0, and a finite gradient
    z = jnp.clip(-centred / std, -3.0, 3.0)
    best = (order == n - 1).astype(fitness.dtype)
    return jnp.stack([rank, z, best], axis=-1)


def recombination_weights(phi: dict, fitness: Array) -> Array:
    """The selection: a weight per member (≥ 0, summing to 1) from its fitness features."""
    feats = member_features(fitness)
    hidden = jnp.tanh(feats @ phi["member_w1"] + phi["member_b1"])
    logits = feats[:, :2] @ phi["member_gain"] + hidden @ phi["member_w2"]
    return jax.nn.softmax(logits)


def dim_features(search: SearchState, y_hat: Array, v: Array, paths: Array,
                 progress: Array, ties: Array, place: Array) -> Array:
    """(D, 11): what the variation network sees for every dimension (``ties``: the shares
    tied with the best and with the worst)."""
    dim = y_hat.shape[0]
    lengths = jnp.mean(paths ** 2, axis=1) - 1.0
    rel = jnp.clip(search.log_sigma - search.log_sigma0, -10.0, 10.0)
    glob = jnp.broadcast_to(jnp.concatenate([jnp.atleast_1d(progress), lengths,
                                             jnp.ravel(ties), jnp.atleast_1d(place)]),
                            (dim, 6))
    return jnp.concatenate([jnp.stack([y_hat, v, paths[0], paths[1], rel], -1), glob], -1)


def update(phi: dict, search: SearchState, mean: Array, eps: Array, fitness: Array,
           progress: Array, sigma_floor: float = 0.0) -> tuple[Array, SearchState, dict]:
    """One generation's selection and variation: the new mean and search state from the
    members' perturbations ``eps`` (N, D) and their fitness (N,), minimised and finite.
    ``sigma_floor`` > 0: no dimension's scale falls below that share of its initial one
    (φ still moves σ above it)."""
    w = recombination_weights(phi, fitness)
    n_eff = 1.0 / jnp.sum(w ** 2)
    y = w @ eps
    y_hat = jnp.sqrt(n_eff) * y
    v = w @ (eps ** 2) - 1.0
    rates = jnp.asarray(PATH_RATES)[:, None]
    paths = (1 - rates) * search.paths + jnp.sqrt(rates * (2 - rates)) * y_hat
    # plateaus (ties with the best) and members lost (diverged ones get the worst)
    ties = jnp.stack([jnp.mean(fitness == jnp.min(fitness)),
                      jnp.mean(fitness == jnp.max(fitness))]) - 1.0 / fitness.shape[0]
    best = jnp.minimum(search.best, jnp.min(fitness))
    worst = jnp.maximum(search.worst, jnp.max(fitness))
    span = worst - best
    place = jnp.where(span > 0, (jnp.median(fitness) - best) / jnp.where(span > 0, span, 1.0),
                      0.0)
    feats = dim_features(search, y_hat, v, paths, progress, ties, place)
    out = jnp.tanh(feats @ phi["dim_w1"] + phi["dim_b1"]) @ phi["dim_w2"] + phi["dim_b2"]
    gain = 2 * jax.nn.sigmoid(out[:, 0])
    momentum = jnp.tanh(out[:, 1])
    sigma = jnp.exp(search.log_sigma)
    step = sigma * (gain * y + momentum * paths[0] / jnp.sqrt(n_eff))
    d_log_sigma = 0.5 * jnp.tanh(out[:, 2])
    log_sigma = search.log_sigma + d_log_sigma
    if sigma_floor:
        log_sigma = jnp.maximum(log_sigma, search.log_sigma0 + np.log(sigma_floor))
    new = SearchState(log_sigma, paths, search.log_sigma0, search.t + 1,
                      best, worst)
    info = {"n_eff": n_eff, "step_gain": jnp.mean(gain), "momentum": jnp.mean(momentum),
            "d_log_sigma": jnp.mean(log_sigma - search.log_sigma),
            "sigma": jnp.exp(jnp.mean(new.log_sigma))}
    return mean + step, new, info
