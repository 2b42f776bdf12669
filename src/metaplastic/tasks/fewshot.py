"""Online few-shot classification (after Shervani-Tabar & Rosenbaum 2023; Lindsey &
Litwin-Kumar 2020).

Each task draws ``ways`` classes from the task's class split, gives them labels
0..ways-1 in a random order, and presents ``shots`` examples per class **one at a time**
(online, batch 1, shuffled); the error at the output neurons is ``softmax(y) - onehot``.
After those ``ways * shots`` steps the network is scored on ``queries`` fresh examples per
class: the meta-loss is their mean cross-entropy, the score their accuracy.

Classes are split into meta-training classes and disjoint held-out classes
(``heldout``; by default the upper half of the labels): ``classes = "train"`` samples only
the former, ``"heldout"`` only the latter, so a rule can be evaluated on classes it never
saw. ``outputs`` sets the number of output neurons when it should exceed ``ways`` (as in
Shervani-Tabar & Rosenbaum: 47 outputs, 5-way episodes). ``hold > 1`` presents every
example for that many steps (spiking networks see it as Poisson rates); queries are then
answered by ``network.respond`` over ``hold`` steps with the weights frozen, the logits
being ``readout_scale`` times the mean output (for spiking outputs, spike counts when
``readout_scale = hold``). ``modulation = "reward"`` broadcasts
``r = sum_j y_j (2 onehot_j - 1)`` to every synapse each step: +1 per spike (or unit of
rate) of the labelled output neuron, -1 per spike of any other (for three-factor rules).
``project_to > 0`` passes inputs through a fixed random projection to that
dimension (seeded by ``projection_seed``), so one rule serves datasets of different input
sizes. ``input_norm`` rescales a dataset's inputs first (``global``: centred, one overall
standard deviation; ``feature``: per-feature z-scores), so that a rule meets comparable
input scales across datasets (MNIST-1D's inputs are several times larger than digits').

The dataset is held on the device once per process and indexed inside the jitted
episode; the built-in datasets are small (digits 0.5 MB, MNIST-1D 0.8 MB, MNIST-5k 16 MB).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network
from metaplastic.tasks import datasets
from metaplastic.tasks.base import Task

Array = jax.Array
SPLITS = ("train", "heldout", "all")
MODULATIONS = ("none", "reward")


class FewShotInstance(NamedTuple):
    support_x: Array  # (ways * shots, D), in presentation order
    support_y: Array  # (ways * shots,) labels 0..ways-1
    query_x: Array  # (ways * queries, D)
    query_y: Array
    key: Array  # the queries' spike-encoding noise


INPUT_NORMS = ("none", "global", "feature")


def normalise_inputs(x: np.ndarray, how: str) -> np.ndarray:
    """Inputs rescaled so that datasets meet a rule at comparable scales: ``global``
    subtracts every feature's mean and divides by one standard deviation over all
    features (relative scales kept); ``feature`` z-scores each feature (its standard
    deviation floored at a tenth of the overall one, so near-constant pixels stay small)."""
    if how == "none":
        return x
    centred = x - x.mean(axis=0)
    overall = float(centred.std()) or 1.0
    if how == "global":
        return (centred / overall).astype(np.float32)
    return (centred / np.maximum(x.std(axis=0), 0.1 * overall)).astype(np.float32)


@functools.cache
def _tables(dataset: str, path: str, project_to: int, projection_seed: int,
            input_norm: str = "none"):
    """Device copies of the (normalised, projected) inputs and a per-class index table."""
    ds = datasets.load(dataset, path or None)
    x = normalise_inputs(ds.x, input_norm)
    if project_to:
        rng = np.random.default_rng(projection_seed)
        proj = rng.normal(0.0, 1.0 / np.sqrt(ds.dim), (ds.dim, project_to)).astype(np.float32)
        x = x @ proj
    classes = ds.classes
    per_class = [np.flatnonzero(ds.y == c) for c in classes]
    n_min = min(len(p) for p in per_class)
    table = np.stack([p[:n_min] for p in per_class])  # (n_classes, n_min) example indices
    return jnp.asarray(x), jnp.asarray(table), classes


@dataclass(frozen=True)
class FewShotTask(Task):
    """N-way, K-shot online classification with class splits."""

    dataset: str = "digits"
    path: str = ""
    ways: int = 5
    shots: int = 10
    queries: int = 10
    classes: str = "train"
    heldout: tuple[int, ...] = ()  # held-out class labels; () = the upper half
    project_to: int = 0
    projection_seed: int = 0
    outputs: int = 0  # output neurons (0: ways); episode labels are the first `ways` of them
    hold: int = 1
    readout_scale: float = 1.0
    modulation: str = "none"  # or "reward": the broadcast modulator (see module docstring)
    #: rescale the dataset's inputs before any projection: "none", "global" or "feature"
    #: (:func:`normalise_inputs`; statistics of the whole dataset, no labels used)
    input_norm: str = "none"
    score = "accuracy"

    def __post_init__(self):
        if self.classes not in SPLITS:
            raise ConfigError(f"classes must be one of {SPLITS}, got {self.classes!r}")
        for name in ("ways", "shots", "queries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.outputs and self.outputs < self.ways:
            raise ConfigError(f"outputs ({self.outputs}) must be 0 or >= ways ({self.ways})")
        if self.hold < 1:
            raise ConfigError(f"hold must be >= 1 steps per example, got {self.hold}")
        if self.modulation not in MODULATIONS:
            raise ConfigError(f"unknown few-shot modulation {self.modulation!r}; valid: "
                              f"{', '.join(MODULATIONS)}")
        if self.ways < 2:
            raise ConfigError("few-shot classification needs ways >= 2")
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(f"unknown input_norm {self.input_norm!r}; valid: "
                              f"{', '.join(INPUT_NORMS)}")
        if self.project_to < 0:
            raise ConfigError(f"project_to must be >= 0, got {self.project_to}")
        object.__setattr__(self, "heldout", tuple(int(c) for c in self.heldout))
        x, table, classes = self._data()
        pool = self.class_pool()
        if len(pool) < self.ways:
            raise ConfigError(f"{self.classes!r} split of {self.dataset!r} has {len(pool)} "
                              f"classes, fewer than ways = {self.ways}")
        if table.shape[1] < self.shots + self.queries:
            raise ConfigError(f"{self.dataset!r} has only {table.shape[1]} examples in its "
                              f"smallest class; shots + queries = {self.shots + self.queries}")

    def _data(self):
        return _tables(self.dataset, self.path, self.project_to, self.projection_seed,
                       self.input_norm)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(meta-training class labels, held-out class labels); disjoint."""
        classes = np.asarray(self._data()[2])
        held = np.asarray(self.heldout) if self.heldout else classes[len(classes) // 2:]
        unknown = sorted(set(held.tolist()) - set(classes.tolist()))
        if unknown:
            raise ConfigError(f"held-out classes {unknown} are not labels of {self.dataset!r} "
                              f"({classes.tolist()})")
        return np.setdiff1d(classes, held), np.sort(held)

    def class_pool(self) -> np.ndarray:
        train, held = self.split()
        return {"train": train, "heldout": held,
                "all": np.union1d(train, held)}[self.classes]

    @property
    def n_in(self) -> int:
        return int(self._data()[0].shape[1])

    @property
    def n_out(self) -> int:
        return self.outputs or self.ways

    @property
    def n_steps(self) -> int:
        return self.ways * self.shots * self.hold

    def sample_indices(self, key: Array) -> tuple[Array, Array, Array, Array]:
        """Dataset row indices and episode labels: (support_idx, support_y, query_idx,
        query_y); the support in presentation order."""
        _, table, classes = self._data()
        rows = jnp.asarray(np.searchsorted(classes, self.class_pool()))
        k_cls, k_ex, k_order = jax.random.split(key, 3)
        chosen = jax.random.permutation(k_cls, rows)[: self.ways]  # label i <- class chosen[i]
        n = self.shots + self.queries
        picks = jax.vmap(lambda k, r: jax.random.permutation(k, table[r])[:n])(
            jax.random.split(k_ex, self.ways), chosen)  # (ways, shots + queries)
        labels = jnp.repeat(jnp.arange(self.ways), n).reshape(self.ways, n)
        s_idx, s_y = picks[:, : self.shots].reshape(-1), labels[:, : self.shots].reshape(-1)
        order = jax.random.permutation(k_order, s_idx.size)
        q_idx, q_y = picks[:, self.shots:].reshape(-1), labels[:, self.shots:].reshape(-1)
        return s_idx[order], s_y[order], q_idx, q_y

    def sample(self, key: Array) -> FewShotInstance:
        x = self._data()[0]
        s_idx, s_y, q_idx, q_y = self.sample_indices(key)
        return FewShotInstance(x[s_idx], s_y, x[q_idx], q_y, jax.random.fold_in(key, 0x0E))

    def observe(self, instance: FewShotInstance, t):
        i = t if self.hold == 1 else t // self.hold
        return instance.support_x[i], jax.nn.one_hot(instance.support_y[i], self.n_out)

    def modulator(self, instance, env, y: Array, target: Array | None) -> Array:
        if self.modulation == "none" or target is None:
            return jnp.zeros(())
        return jnp.sum(y * (2.0 * target - 1.0))

    def output_error(self, y: Array, target: Array | None) -> Array:
        return jax.nn.softmax(y) - target  # dL/dv for cross-entropy on a linear output

    def _query_logits(self, instance: FewShotInstance, state: NetState,
                      network: Network) -> Array:
        keys = jax.random.split(instance.key, instance.query_x.shape[0])
        out = jax.vmap(lambda x, k: network.respond(state.weights, x, k, self.hold,
                                                    state.params))(
            instance.query_x, keys)
        return self.readout_scale * out

    def loss(self, instance: FewShotInstance, state: NetState, env=None,
             network: Network | None = None) -> Array:
        logits = self._query_logits(instance, state, network)
        return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits),
                                             instance.query_y[:, None], axis=1))

    def metrics(self, instance: FewShotInstance, state: NetState, env=None,
                network: Network | None = None):
        logits = self._query_logits(instance, state, network)
        return {"accuracy": jnp.mean(jnp.argmax(logits, axis=1) == instance.query_y)}

    def check_network(self, network: Network) -> None:
        if network.sizes[0] != self.n_in or network.sizes[-1] != self.n_out:
            raise ConfigError(f"few-shot {self.dataset!r} needs a network {self.n_in} -> ... "
                              f"-> {self.n_out}; got sizes {network.sizes}")
        if not network.spiking and (network.output_activation or network.activation) != "linear":
            raise ConfigError("few-shot classification needs a linear output layer "
                              "(output_activation = 'linear'): softmax is applied by the task")
