"""A meta-objective over a mixture of problems: one rule, several tasks and networks.

``Mixture(parts, weights)`` is the weighted mean of several
:class:`~metaplastic.meta.objective.Objective` s that share one rule — and so one θ — but
differ in dataset, input size, depth, width, ways or shots. A rule meta-trained on a
mixture has to work across all of them, which is what transfer to problems it never saw
asks of it.

Every meta-step runs every part on its own ``tasks_per_step`` fresh tasks (each part is
one vmapped group of equal shapes inside the same compiled step) and averages the parts'
losses with the normalised weights; gradients are averaged the same way. Each part drops
its own non-finite tasks, as an Objective does. The metrics are the weighted means of
the parts' metrics plus each part's ``task_loss`` and score under its label
(``task_loss[label]``).

Parts must give θ the same structure and shapes: rules shared by every synapse (term
pool, polynomial, MLP, ...) qualify whatever the networks; a rule with per-layer or
per-synapse parameters only across networks of equal shapes. Mixtures take whole
episodes (no truncated segments: parts differ in length).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError
from metaplastic.meta.objective import Objective, WholeEpisodes

Array = jax.Array


def _shapes(like: Any) -> list:
    return [(tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(like)]


@dataclass(frozen=True)
class Mixture(WholeEpisodes):
    """Weighted mean of objectives that share one rule (and θ's shapes)."""

    parts: tuple[Objective, ...]
    weights: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    #: > 0: each part's meta-gradient is clipped to this global norm before the parts are
    #: averaged, so that one part whose learning explodes cannot dominate a step (its
    #: direction is kept); 0: off
    part_clip: float = 0.0

    def __post_init__(self):
        parts = tuple(self.parts) if isinstance(self.parts, list | tuple) else ()
        if not parts or not all(isinstance(p, Objective) for p in parts):
            raise ConfigError(f"a mixture needs a non-empty list of Objectives, got "
                              f"{self.parts!r:.80}")
        object.__setattr__(self, "parts", parts)
        weights = tuple(float(w) for w in self.weights) or (1.0,) * len(parts)
        labels = tuple(str(x) for x in self.labels) or tuple(f"part {i}" for i in
                                                               range(len(parts)))
        if len(weights) != len(parts) or len(labels) != len(parts):
            raise ConfigError(f"a mixture of {len(parts)} parts needs as many weights and "
                              f"labels; got {len(weights)} and {len(labels)}")
        if not all(w > 0 and w < float("inf") for w in weights):
            raise ConfigError(f"mixture weights must be positive numbers, got {list(weights)}")
        if not self.part_clip >= 0:
            raise ConfigError(f"meta.part_clip must be >= 0 (0: off), got {self.part_clip}")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"mixture labels must differ from each other, got {list(labels)}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "labels", labels)
        first = parts[0]
        for label, p in zip(labels[1:], parts[1:], strict=True):
            if p.rule != first.rule:
                raise ConfigError(f"mixture part {label!r} has another rule ({p.rule!r:.80}) "
                                  f"than {labels[0]!r}: the parts share one rule")
            if _shapes(p.theta_like) != _shapes(first.theta_like) or (
                    jax.tree.structure(p.theta_like) != jax.tree.structure(first.theta_like)):
                raise ConfigError(
                    f"rule {first.rule.family!r} has θ shaped by the network: part "
                    f"{label!r} (sizes {p.network.sizes}) needs θ shapes "
                    f"{[s for s, _ in _shapes(p.theta_like)]}, part {labels[0]!r} (sizes "
                    f"{first.network.sizes}) {[s for s, _ in _shapes(first.theta_like)]}; "
                    f"a mixture over networks of different shapes needs a rule shared by "
                    f"every synapse (termpool, polynomial, mlp, ...)")
            for name in ("l1", "grad_mode", "checkpoint", "early_exit"):
                if getattr(p, name) != getattr(first, name):
                    raise ConfigError(f"mixture parts must share meta.{name}; part "
                                      f"{label!r} has {getattr(p, name)!r}, part "
                                      f"{labels[0]!r} {getattr(first, name)!r}")

    # --- what outer loops, the driver and the runner read --------------------------------
    @property
    def rule(self):
        return self.parts[0].rule

    @property
    def task(self):
        return self.parts[0].task

    @property
    def network(self):
        return self.parts[0].network

    @property
    def tasks_per_step(self) -> int:
        return sum(p.tasks_per_step for p in self.parts)

    @property
    def n_steps(self) -> int:
        return max(p.n_steps for p in self.parts)

    @property
    def grad_mode(self) -> str:
        return self.parts[0].grad_mode

    @property
    def checkpoint(self) -> bool:
        return self.parts[0].checkpoint

    @property
    def l1(self) -> float:
        return self.parts[0].l1

    @property
    def early_exit(self) -> int:
        return self.parts[0].early_exit

    @functools.cached_property
    def theta_like(self) -> Any:
        return self.parts[0].theta_like

    def conform(self, theta: Any, what: str = "θ") -> Any:
        return self.parts[0].conform(theta, what)

    @property
    def normalised_weights(self) -> tuple[float, ...]:
        total = sum(self.weights)
        return tuple(w / total for w in self.weights)

    def _combine(self, values, auxes) -> tuple[Array, dict]:
        ws = self.normalised_weights
        value = sum(w * v for w, v in zip(ws, values, strict=True))
        common = set.intersection(*(set(a) for a in auxes))
        aux = {k: sum(w * a[k] for w, a in zip(ws, auxes, strict=True)) for k in sorted(common)}
        for label, p, a in zip(self.labels, self.parts, auxes, strict=True):
            aux[f"task_loss[{label}]"] = a["task_loss"]
            if p.task.score in a and p.task.score != "task_loss":
                aux[f"{p.task.score}[{label}]"] = a[p.task.score]
        return value, aux

    def __call__(self, theta: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        """(weighted mean of the parts' losses, metrics)."""
        theta = self.conform(theta)
        outs = [p(theta, jax.random.fold_in(key, i)) for i, p in enumerate(self.parts)]
        return self._combine([v for v, _ in outs], [a for _, a in outs])

    def value_and_grad(self, theta: Any, key: Array):
        """(loss, metrics, dloss/dθ): each part's value and gradient (over its finite
        tasks), averaged with the weights."""
        theta = self.conform(theta)
        outs = [p.value_and_grad(theta, jax.random.fold_in(key, i))
                for i, p in enumerate(self.parts)]
        value, aux = self._combine([o[0] for o in outs], [o[1] for o in outs])
        ws = self.normalised_weights
        part_grads = [o[2] for o in outs]
        if self.part_clip:
            norms = [optax.tree.norm(g) for g in part_grads]
            for label, n in zip(self.labels, norms, strict=True):
                aux[f"grad_norm[{label}]"] = n
            part_grads = [jax.tree.map(lambda x, n=n: x * jnp.minimum(
                1.0, self.part_clip / jnp.maximum(n, 1e-30)), g)
                for g, n in zip(part_grads, norms, strict=True)]
        grads = jax.tree.map(lambda *gs: sum(w * g for w, g in zip(ws, gs, strict=True)),
                             *part_grads)
        return value, aux, grads


def parts_of(objective: Any) -> tuple:
    """The objectives a (possibly mixed) objective averages: its parts, or itself."""
    return cap.parts(objective)


__all__ = ["Mixture", "parts_of"]
