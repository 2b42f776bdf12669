"""A standard behavioural model fitted to the same choices as a plasticity rule:
Rescorla–Wagner, so that "the rule explains the choices" is stated against the model a
behavioural neuroscientist would fit first, not only against no plasticity.

The model (binary accept/refuse choices, the recordings' ``choices``; the cue of each
trial, the recordings' ``inputs``; the outcome of each trial as the experiment recorded
it, ``outcomes``, e.g. reward 0/1):

* the value of a trial is ``V = w · x`` (``x``: the trial's input, e.g. a one-hot odour
  code, so ``V`` is that odour's value);
* ``P(accept) = sigmoid(beta · V + bias)``;
* after an accepted trial, ``w ← w + alpha (outcome − V) x`` (the Rescorla–Wagner delta
  rule; a refused option's outcome is not seen, nothing changes);
* every weight starts at ``v0``.

Four parameters (``alpha`` in (0, 1) through a logistic, ``beta``, ``bias``, ``v0``) are
fitted by maximum likelihood on the training trajectories: Adam from several starts, the
best kept, every start in one compiled program.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metaplastic.errors import ConfigError

Array = jax.Array

#: starting points of the fit, (logit alpha, beta, bias, v0): a grid over alpha (0.05,
#: 0.27, 0.73), beta (1, 5, 15) and bias (0, −5); the likelihood can keep rising slowly
#: as beta grows with the bias (nearly deterministic choices), so the fit runs long
STARTS = tuple((a, b, c, 0.5) for a in (-3.0, -1.0, 1.0) for b in (1.0, 5.0, 15.0)
               for c in (0.0, -5.0))
STEPS, LR = 2000, 0.1


@dataclass(frozen=True)
class RescorlaWagner:
    """Fitted parameters of the model of the module."""

    alpha: float
    beta: float
    bias: float
    v0: float

    def as_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "bias": self.bias, "v0": self.v0}


def _check(inputs, choices, outcomes, lengths) -> tuple[np.ndarray, ...]:
    x = np.asarray(inputs, np.float32)
    c = np.asarray(choices)
    o = np.asarray(outcomes, np.float32)
    n = np.asarray(lengths, np.int32)
    if x.ndim != 3 or c.shape != x.shape[:2] or o.shape != x.shape[:2] or n.shape != x.shape[:1]:
        raise ConfigError(f"Rescorla–Wagner needs inputs (N, T, n_in), choices, outcomes "
                          f"(N, T) and lengths (N,); got {x.shape}, {c.shape}, {o.shape}, "
                          f"{n.shape}")
    if not np.all(np.isin(c, (0, 1))):
        raise ConfigError("Rescorla–Wagner here models binary choices (accept 1 / refuse 0); "
                          f"the recordings hold choices {sorted(set(np.unique(c).tolist()))}")
    return x, c.astype(np.float32), o, n


def _nll_each(params: Array, x: Array, c: Array, o: Array, n: Array) -> Array:
    """Summed choice NLL of every trajectory, (N,)."""
    alpha = jax.nn.sigmoid(params[0])
    beta, bias, v0 = params[1], params[2], params[3]

    def one(xs, cs, os, length):
        def step(w, inp):
            xt, ct, ot, t = inp
            v = w @ xt
            logit = beta * v + bias
            # −log P(choice): softplus(−logit) for 1, softplus(logit) for 0
            nll = jnp.where(t < length, ct * jax.nn.softplus(-logit)
                            + (1 - ct) * jax.nn.softplus(logit), 0.0)
            w = w + jnp.where(t < length, ct * alpha * (ot - v), 0.0) * xt
            return w, nll

        w0 = jnp.full((xs.shape[-1],), v0)
        steps = jnp.arange(xs.shape[0])
        return jnp.sum(jax.lax.scan(step, w0, (xs, cs, os, steps))[1])

    return jax.vmap(one)(x, c, o, n)


@jax.jit
def _fit(x, c, o, n, starts):
    opt = optax.adam(LR)

    def total(p):
        return jnp.sum(_nll_each(p, x, c, o, n))

    def run(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(total)(p)
            u, s = opt.update(g, s)
            return (optax.apply_updates(p, u), s), None

        p = jax.lax.scan(step, (p, opt.init(p)), None, length=STEPS)[0][0]
        return p, total(p)

    return jax.vmap(run)(starts)


def fit(inputs, choices, outcomes, lengths) -> RescorlaWagner:
    """The maximum-likelihood model over the trajectories given (see the module)."""
    x, c, o, n = _check(inputs, choices, outcomes, lengths)
    params, nll = _fit(jnp.asarray(x), jnp.asarray(c), jnp.asarray(o), jnp.asarray(n),
                       jnp.asarray(STARTS, jnp.float32))
    nll = np.asarray(nll)
    if not np.any(np.isfinite(nll)):
        raise ConfigError("the Rescorla–Wagner fit gave no finite likelihood from any start")
    best = np.asarray(params)[int(np.nanargmin(np.where(np.isfinite(nll), nll, np.nan)))]
    return RescorlaWagner(float(jax.nn.sigmoid(best[0])), float(best[1]), float(best[2]),
                          float(best[3]))


def nll_per_trajectory(model: RescorlaWagner, inputs, choices, outcomes,
                       lengths) -> np.ndarray:
    """Mean choice NLL of every trajectory under ``model`` (the rule's per-trajectory
    ``nll`` is the same quantity)."""
    x, c, o, n = _check(inputs, choices, outcomes, lengths)
    a = min(max(model.alpha, 1e-7), 1 - 1e-7)
    p = jnp.asarray([np.log(a / (1 - a)), model.beta, model.bias, model.v0], jnp.float32)
    total = np.asarray(jax.jit(_nll_each)(p, jnp.asarray(x), jnp.asarray(c),
                                          jnp.asarray(o), jnp.asarray(n)), np.float64)
    return total / np.maximum(n, 1)


__all__ = ["RescorlaWagner", "fit", "nll_per_trajectory"]
