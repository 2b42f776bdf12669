"""How much a rule's updates point along backprop's: the per-layer cosine between what the
rule changes over an episode and what backpropagation's gradient step would change.

Along the rule's own learning trajectory (its weights, its inputs), every step also
computes backprop's errors on the same weights — the same network with symmetric feedback
(and no error ablation) — and the gradient step of the online loss, ``-e_post ⊗ pre`` per
weight matrix (the pseudo-gradient with exact errors). Summed over the episode's learning
steps, per layer: ``cos(Σ Δw_rule, Σ Δw_backprop)``, and the mean per-step cosine. A
credit-assignment control: a rule that only tunes step sizes on FA-like signals aligns in
the output layer and not in the hidden ones; one that uses its feedback for credit
assignment aligns in hidden layers too. Not a requirement on a good rule (a useful update
need not follow the gradient), a description of what it does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic._stats import mean_ci
from metaplastic.inner import initial_carry, make_step_detail

Array = jax.Array


def _cos(a: Array, b: Array) -> Array:
    a, b = jnp.ravel(a), jnp.ravel(b)
    return a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)


def episode_alignment(objective: Any, theta: Any, key: Array) -> tuple[Array, Array]:
    """One task: per weight layer, (cosine of the episode's summed updates, mean per-step
    cosine) between the rule's update and backprop's gradient step."""
    network, rule, task = objective.network, objective.rule, objective.task
    reference = dataclasses.replace(network, feedback="symmetric", error_ablation="none",
                                    feedback_plasticity="none")
    k_task, k_net = jax.random.split(key)
    instance = task.sample(k_task)
    carry = initial_carry(network, rule, theta, task, instance, k_net)
    step = make_step_detail(network, rule, theta, task, instance, reference=reference)
    zeros = tuple(jnp.zeros_like(w) for w in carry[0].weights)
    n = len(zeros)

    def body(c, _):
        carry, rule_sum, bp_sum, cos_sum, count = c
        carry, _, dws, live, ref = step(carry)
        bps = tuple(-s.e_post[:, None] * s.pre[None, :] for s in ref)
        on = live.astype(jnp.float32)
        rule_sum = tuple(a + on * d for a, d in zip(rule_sum, dws, strict=True))
        bp_sum = tuple(a + on * g for a, g in zip(bp_sum, bps, strict=True))
        cos_sum = cos_sum + on * jnp.stack([_cos(d, g) for d, g in zip(dws, bps, strict=True)])
        return (carry, rule_sum, bp_sum, cos_sum, count + on), None

    init = (carry, zeros, zeros, jnp.zeros(n), jnp.zeros(()))
    (_, rule_sum, bp_sum, cos_sum, count), _ = jax.lax.scan(body, init, None,
                                                            length=task.n_steps)
    total = jnp.stack([_cos(a, b) for a, b in zip(rule_sum, bp_sum, strict=True)])
    return total, cos_sum / jnp.maximum(count, 1.0)


def gradient_alignment(objective: Any, theta: Any, key: Array, n_tasks: int = 50) -> dict:
    """Per weight layer (1 = the first), mean ± 95% CI over ``n_tasks`` tasks of the
    cosine between the rule's summed update over the episode and backprop's summed
    gradient step (``episode``), and of the mean per-step cosine (``per_step``)."""
    keys = jax.random.split(key, n_tasks)
    total, per_step = jax.jit(jax.vmap(lambda k: episode_alignment(objective, theta, k)))(keys)
    total, per_step = np.asarray(total), np.asarray(per_step)
    out = {}
    for l in range(total.shape[1]):
        m, ci, _ = mean_ci(total[:, l])
        ms, cis, _ = mean_ci(per_step[:, l])
        out[f"layer {l + 1}"] = {"episode": {"mean": m, "ci95": ci},
                                 "per_step": {"mean": ms, "ci95": cis}}
    return out


__all__ = ["episode_alignment", "gradient_alignment"]
