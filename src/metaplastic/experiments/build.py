"""Turn a :class:`RunConfig` into the library's pieces: task, network, rule, objective, outer."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from metaplastic import rules, tasks
from metaplastic.errors import ConfigError
from metaplastic.experiments.config import RunConfig
from metaplastic.meta import EvolutionStrategy, MetaGradient, Objective
from metaplastic.network import Network
from metaplastic.rules.base import Rule
from metaplastic.tasks.base import Task


@dataclass(frozen=True)
class Pieces:
    task: Task
    network: Network
    rule: Rule
    objective: Objective
    outer: MetaGradient | EvolutionStrategy


def build_task(cfg: RunConfig, **overrides: Any) -> Task:
    opts = {k: v for k, v in cfg.task.items() if k != "name"} | overrides
    return tasks.make(cfg.task["name"], **opts)


def build_rule(cfg: RunConfig, name: str | None = None) -> Rule:
    """The configured rule, or the registered rule ``name`` with the same shared options."""
    opts = {k: v for k, v in cfg.rule.items() if k != "name"}
    if name is not None:
        opts = {k: v for k, v in opts.items() if k in rules.options(name)}
    return rules.make(name or cfg.rule["name"], **opts)


NEURONS = ("rate", "lif", "alif")


def build_network(cfg: RunConfig, task: Task) -> Network:
    n = cfg.network
    common = dict(sizes=(task.n_in, *n.hidden, task.n_out), activation=n.activation,
                  output_activation=n.output_activation, feedback=n.feedback,
                  init_scale=n.init_scale, init_dist=n.init_dist,
                  feedback_scale=n.feedback_scale, dale=n.dale, excitatory=n.excitatory,
                  normalize=n.normalize)
    if n.neuron == "rate":
        return Network(**common)
    if n.neuron not in NEURONS:
        raise ConfigError(f"unknown network.neuron {n.neuron!r}; valid: {', '.join(NEURONS)}")
    from metaplastic.neurons.lif import LIFNeuron
    from metaplastic.spiking import SpikingNetwork

    beta = n.beta if n.beta or n.neuron == "lif" else 0.5
    if n.neuron == "lif" and n.beta:
        raise ConfigError("network.beta (threshold adaptation) needs neuron = 'alif'")
    lif = LIFNeuron(tau_mem=n.tau_mem, threshold=n.threshold, reset=n.reset,
                    refractory=n.refractory, tau_adapt=n.tau_adapt, beta=beta)
    return SpikingNetwork(**common, neuron_model=lif, encoder=n.encoder, rate=n.rate,
                          gain=n.gain, window=n.window, tau_trace=n.tau_trace)


def build(cfg: RunConfig, **task_overrides: Any) -> Pieces:
    """Every piece of a run; ``task_overrides`` change task options (e.g. ``n_in=25``)."""
    task = build_task(cfg, **task_overrides)
    network = build_network(cfg, task)
    rule = build_rule(cfg)
    m = cfg.meta
    objective = Objective(task, network, rule, tasks_per_step=m.tasks_per_step, l1=m.l1,
                          checkpoint=m.checkpoint, early_exit=m.early_exit,
                          grad_mode=m.grad_mode)
    return Pieces(task, network, rule, objective, build_outer(cfg))


def build_outer(cfg: RunConfig) -> MetaGradient | EvolutionStrategy:
    """The outer loop; switching is one key, ``meta.outer``."""
    m = cfg.meta
    if m.outer == "gradient" and (m.early_exit or m.population_batch):
        raise ConfigError("meta.early_exit and meta.population_batch are for the ES outer "
                          "loop (a meta-gradient needs every step of the unroll)")
    if m.grad_mode == "forward" and (m.truncation or m.truncation_schedule):
        raise ConfigError("meta.grad_mode = 'forward' is for whole episodes; truncated "
                          "segments take reverse-mode gradients")
    if m.outer == "gradient":
        return MetaGradient(steps=m.steps, lr=m.lr, schedule=m.schedule, optimizer=m.optimizer,
                            clip=m.clip or None, on_nan=m.on_nan,
                            max_nan_skips=m.max_nan_skips, chunk=m.chunk,
                            truncation=m.truncation,
                            truncation_schedule=m.truncation_schedule)
    if m.outer == "es":
        if m.truncation_schedule:
            raise ConfigError("meta.truncation_schedule is for the gradient outer loop; "
                              "ES takes one meta.truncation")
        # the Objective is a loss (a reinforcement task's is minus its return): minimise it
        return EvolutionStrategy(strategy=m.strategy, population=m.population, steps=m.steps,
                                 sigma=m.sigma, lr=m.lr, optimizer=m.optimizer,
                                 antithetic=m.antithetic, fitness_shaping=m.fitness_shaping,
                                 direction="minimize", max_nan_skips=m.max_nan_skips,
                                 chunk=m.chunk, truncation=m.truncation,
                                 population_batch=m.population_batch)
    raise ConfigError(f"unknown meta.outer {m.outer!r}; valid: gradient, es")


def validate(cfg: RunConfig) -> Pieces:
    """Build everything a run will need — pieces, reference and baseline rules, the
    evaluation variants — so that a bad name or value fails before any training."""
    from metaplastic.experiments.runner import validate_baselines

    pieces = build(cfg)
    from metaplastic.plausibility import check_names

    check_names(cfg.constraints)
    if cfg.reference:
        build_rule(cfg, cfg.reference)
    validate_baselines(cfg)
    if cfg.eval.tasks < 0:
        raise ConfigError(f"eval.tasks must be >= 0, got {cfg.eval.tasks}")
    for _, var in variants(cfg):
        build(cfg, **var)
    return pieces


def variants(cfg: RunConfig) -> list[tuple[str, dict]]:
    """The evaluation rows as (label, task-option overrides)."""
    if cfg.eval.variants:
        rows = []
        for v in cfg.eval.variants:
            opts = {k: x for k, x in v.items() if k != "label"}
            rows.append((str(v.get("label", _label(opts))), opts))
        return rows
    vary = cfg.eval.vary
    if not vary:
        return [("default", {})]
    keys = list(vary)
    values = [v if isinstance(v, list | tuple) else [v] for v in vary.values()]
    combos = [dict(zip(keys, c, strict=True)) for c in itertools.product(*values)]
    return [(_label(c), c) for c in combos]


def _label(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in opts.items()) or "default"
