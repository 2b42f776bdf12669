"""Distil a learned rule into a formula: ``metaplastic explain RUN``.

A rule that is a network (``mlp``, ``neuron-mlp``, ``recurrent``) is a black box until it is
read out. :func:`collect` re-runs inner learning with the learned θ on fresh tasks and
records, for a random sample of synapses at every step, the signals the synapse saw and the
weight change the rule made. :func:`distil` fits ``dw`` with a sparse polynomial over those
signals by sequentially thresholded least squares (STLSQ; Brunton et al. 2016, SINDy):
least squares on all monomials up to ``degree``, drop the terms whose contribution
(|coefficient| x RMS of the monomial) is below ``threshold`` x the largest, refit, repeat.
R² is reported on held-out samples (never used in the fit). :func:`heatmaps` draws the
rule's dw over pairs of inputs (the others at their median) next to the distilled formula.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError, MetaplasticError
from metaplastic.inner import initial_carry, make_step_detail
from metaplastic.network import Network
from metaplastic.rules.base import Rule, signed_term
from metaplastic.signals import NAMES, LocalSignals, at_synapses
from metaplastic.tasks.base import Task

SIGNALS = NAMES


def collect(task: Task, network: Network, rule: Rule, theta: Any, *, key: jax.Array,
            tasks: int = 8, synapses: int = 64, every: int = 1) -> dict[str, np.ndarray]:
    """Signals and weight changes met during inner learning with ``theta``.

    For each of ``tasks`` fresh tasks, ``synapses`` random synapses per layer are followed
    every ``every`` steps while the task is active. Returns flat arrays (one entry per
    sample) for every name in :data:`SIGNALS`, ``dw`` and ``layer``.
    """
    if rule.per_layer:
        raise ConfigError(f"explain needs a rule shared by every synapse; {rule.family!r} "
                          f"has parameters per layer or per synapse")
    shapes = network.shapes

    def one(k):
        k_inst, k_run, k_pick = jax.random.split(k, 3)
        instance = task.sample(k_inst)
        detail = make_step_detail(network, rule, theta, task, instance)
        picks = []
        for l, (n_out, n_in) in enumerate(shapes):
            kj, ki = jax.random.split(jax.random.fold_in(k_pick, l))
            picks.append((jax.random.randint(kj, (synapses,), 0, n_out),
                          jax.random.randint(ki, (synapses,), 0, n_in)))

        def step(carry, _):
            for _ in range(every - 1):
                carry = detail(carry)[0]
            carry, signals, dws, live = detail(carry)
            rows = []
            for (j, i), s, dw in zip(picks, signals, dws, strict=True):
                rows.append({**at_synapses(s, j, i), "dw": dw[j, i],
                             "live": jnp.broadcast_to(live, j.shape)})
            return carry, rows

        carry = initial_carry(network, rule, theta, task, instance, k_run)
        return jax.lax.scan(step, carry, None, length=task.n_steps // every)[1]

    rows = jax.jit(jax.vmap(one))(jax.random.split(key, tasks))
    out: dict[str, list] = {name: [] for name in (*SIGNALS, "dw", "layer")}
    for l, layer in enumerate(rows):
        live = np.asarray(layer["live"]).reshape(-1).astype(bool)
        for name in (*SIGNALS, "dw"):
            out[name].append(np.asarray(layer[name]).reshape(-1)[live])
        out["layer"].append(np.full(int(live.sum()), l))
    data = {k: np.concatenate(v) for k, v in out.items()}
    if data["dw"].size == 0:
        raise MetaplasticError("explain: the tasks ended before any step was recorded")
    if not np.all(np.isfinite(data["dw"])):
        raise MetaplasticError("explain: the learned rule produced NaN/inf weight changes")
    return data


def varying(data: dict[str, np.ndarray], names=SIGNALS) -> list[str]:
    """The signals that actually vary in the samples (e.g. no e_post without feedback)."""
    return [n for n in names if n in data
            and np.std(data[n]) > 1e-8 * (1 + np.abs(np.mean(data[n])))]


def monomials(names: list[str], degree: int) -> list[tuple[int, ...]]:
    """Exponent tuples of every monomial of total degree <= ``degree`` (constant first)."""
    terms = [p for p in itertools.product(range(degree + 1), repeat=len(names))
             if sum(p) <= degree]
    return sorted(terms, key=lambda p: (sum(p), [-e for e in p]))


def term_label(powers: tuple[int, ...], names: list[str]) -> str:
    parts = [n if p == 1 else f"{n}^{p}" for n, p in zip(names, powers, strict=True) if p]
    return "*".join(parts) or "1"


def design(data: dict[str, np.ndarray], names: list[str], terms) -> np.ndarray:
    cols = [np.prod([data[n].astype(np.float64) ** p for n, p in zip(names, t, strict=True)],
                    axis=0) for t in terms]
    return np.stack(cols, axis=1)


@dataclass
class Distilled:
    """A sparse polynomial fitted to a rule's weight changes."""

    names: list[str]
    terms: list[tuple[int, ...]]
    coef: np.ndarray  # per term (0 where dropped)
    importance: np.ndarray  # |coef| x RMS of the monomial over the samples
    r2_train: float
    r2_heldout: float
    scale: float  # coefficients are shown divided by this (the rule's eta)

    def active(self) -> list[int]:
        """Indices of the kept terms, most important first."""
        keep = [k for k in range(len(self.terms)) if self.coef[k] != 0]
        return sorted(keep, key=lambda k: -self.importance[k])

    def labels(self) -> list[str]:
        return [term_label(t, self.names) for t in self.terms]

    def top(self, n: int = 3) -> list[str]:
        labels = self.labels()
        return [labels[k] for k in self.active()[:n]]

    def formula(self, max_terms: int = 8) -> str:
        labels, act = self.labels(), self.active()
        if not act:
            return "dw = 0"
        body = " ".join(signed_term(self.coef[k] / self.scale, labels[k])
                        for k in act[:max_terms])
        more = f" + ... ({len(act) - max_terms} smaller terms)" if len(act) > max_terms else ""
        factor = f"{self.scale:g} * " if self.scale != 1 else ""
        return f"dw = {factor}({body}{more})"

    def predict(self, data: dict[str, np.ndarray]) -> np.ndarray:
        return design(data, self.names, self.terms) @ self.coef

    def to_json(self) -> dict:
        labels = self.labels()
        return {"formula": self.formula(), "r2_heldout": self.r2_heldout,
                "r2_train": self.r2_train, "inputs": self.names, "scale": self.scale,
                "terms": [{"term": labels[k], "coef": float(self.coef[k]) / self.scale,
                           "importance": float(self.importance[k]),
                           "powers": [int(p) for p in self.terms[k]]}
                          for k in self.active()]}


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss if ss > 0 else float("nan")


def check_options(degree: int, threshold: float) -> None:
    if not 1 <= degree <= 6:
        raise ConfigError(f"explain: degree must be 1..6, got {degree}")
    if not 0 <= threshold < 1:
        raise ConfigError(f"explain: threshold must be in [0, 1), got {threshold}")


def distil(data: dict[str, np.ndarray], names: list[str] | None = None, *, degree: int = 3,
           threshold: float = 0.05, heldout: float = 0.2, seed: int = 0,
           scale: float = 1.0, iterations: int = 10) -> Distilled:
    """Fit ``dw`` with a sparse polynomial over ``names`` (default: the varying signals)."""
    names = varying(data) if names is None else list(names)
    if not names:
        raise MetaplasticError("explain: none of the signals varies during inner learning")
    unknown = [n for n in names if n not in SIGNALS]
    if unknown:
        raise ConfigError(f"explain: unknown inputs {unknown}; valid: {', '.join(SIGNALS)}")
    check_options(degree, threshold)
    terms = monomials(names, degree)
    x, y = design(data, names, terms), data["dw"].astype(np.float64)
    n = y.size
    test = np.random.default_rng(seed).random(n) < heldout
    if test.sum() < 10 or (~test).sum() < len(terms):
        raise MetaplasticError(f"explain: {n} samples are too few for {len(terms)} terms")
    rms = np.sqrt(np.mean(x[~test] ** 2, axis=0)) + 1e-30
    xs = x[~test] / rms  # fit on normalised columns: importances are comparable
    keep = np.ones(len(terms), bool)
    c = np.zeros(len(terms))
    for _ in range(iterations):
        c = np.zeros(len(terms))
        c[keep] = np.linalg.lstsq(xs[:, keep], y[~test], rcond=None)[0]
        small = np.abs(c) < threshold * np.max(np.abs(c)) if np.any(c) else ~keep
        if not np.any(small & keep):
            break
        keep &= ~small
    coef = c / rms
    return Distilled(names, terms, coef, np.abs(c), _r2(y[~test], x[~test] @ coef),
                     _r2(y[test], x[test] @ coef), scale)


def rule_dw(rule: Rule, theta: Any, values: dict[str, np.ndarray], like: np.ndarray):
    """The rule's per-synapse dw at the given signal values (missing ones zero)."""

    def one(v):
        s = LocalSignals(**{n: v.get(n, jnp.zeros(())) for n in SIGNALS})
        return rule.synapse(rule.layer_theta(theta, 0), s)

    flat = {n: jnp.asarray(v, jnp.float32).reshape(-1) for n, v in values.items()}
    return np.asarray(jax.jit(jax.vmap(one))(flat)).reshape(like.shape)


def heatmaps(rule: Rule, theta: Any, data: dict[str, np.ndarray], fit: Distilled,
             path: str | Path, grid: int = 41) -> Path:
    """PNG: the rule's dw over each pair of inputs (others at their median), the
    distilled polynomial below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = fit.names[:4]
    pairs = list(itertools.combinations(names, 2)) or [(names[0], names[0])]
    lo = {n: np.percentile(data[n], 1) for n in fit.names}
    hi = {n: np.percentile(data[n], 99) for n in fit.names}
    med = {n: np.median(data[n]) for n in fit.names}
    fig, axes = plt.subplots(2, len(pairs), figsize=(3.4 * len(pairs), 6.2), squeeze=False)
    for col, (a, b) in enumerate(pairs):
        ga, gb = np.meshgrid(np.linspace(lo[a], hi[a], grid), np.linspace(lo[b], hi[b], grid))
        values = {n: np.full(ga.shape, med[n]) for n in fit.names}
        values[a], values[b] = ga, gb
        learned = rule_dw(rule, theta, values, ga)
        poly = fit.predict({n: v.reshape(-1) for n, v in values.items()}).reshape(ga.shape)
        vmax = float(np.max(np.abs(learned))) or 1.0
        for row, (z, title) in enumerate(((learned, "rule"), (poly, "distilled"))):
            ax = axes[row, col]
            im = ax.imshow(z, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-vmax,
                           vmax=vmax, extent=(lo[a], hi[a], lo[b], hi[b]))
            ax.set_xlabel(a)
            ax.set_ylabel(b)
            ax.set_title(f"{title}: dw({a}, {b})", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    others = ", ".join(f"{n}={med[n]:.2g}" for n in fit.names)
    fig.suptitle(f"R² (held out) {fit.r2_heldout:.3f}; other inputs at their medians "
                 f"({others})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
