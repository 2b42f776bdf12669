"""Spiking networks: LIF/ALIF neurons that communicate only by 0/1 spikes.

A :class:`SpikingNetwork` is a :class:`~metaplastic.network.Network` whose neurons are
:class:`~metaplastic.neurons.lif.LIFNeuron` s with state (voltage, refractoriness,
adaptation) carried from one time step to the next. The task's real-valued input is turned
into spikes by an encoder:

* ``poisson`` — rate coding: input ``i`` spikes with probability
  ``clip(rate * (1 + gain * x_i), 0, 1)`` per step;
* ``latency`` — at the start of every window of ``window`` steps the input is latched and
  input ``i`` spikes once, ``round((window - 1) * (1 - sigmoid(gain * x_i)))`` steps into the
  window (larger inputs spike earlier);
* ``spikes`` — the input already is spike trains (recorded presynaptic spikes: 0/1, or
  counts, per step), passed on unchanged: recordings of a spiking network
  (:mod:`metaplastic.tasks.recorded`) replay the very input spikes that were recorded.

Every neuron (inputs included) keeps an exponential spike trace
``trace <- exp(-dt / tau_trace) * trace + spike``; the traces reach the synapses as
``pre_trace`` / ``post_trace`` in :class:`~metaplastic.signals.LocalSignals`, the spikes as
``pre`` / ``post``. Feedback pathways work as in rate networks, with the surrogate spike
derivative as each neuron's local gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network
from metaplastic.neurons.lif import LIFNeuron, LIFState

Array = jax.Array
ENCODERS = ("poisson", "latency", "spikes")


class SpikingState(NamedTuple):
    key: Array  # raw key data for the encoder's randomness
    phase: Array  # step within the latency window
    latched: Array  # latency: the spike step of each input in this window
    lif: tuple[LIFState, ...]  # per layer 1..L
    traces: tuple[Array, ...]  # per layer 0..L


@dataclass(frozen=True)
class SpikingNetwork(Network):
    """A feed-forward network of (A)LIF neurons; see the module docstring."""

    neuron_model: LIFNeuron = field(default_factory=LIFNeuron)
    encoder: str = "poisson"
    rate: float = 0.1  # poisson: spike probability per step at x = 0
    gain: float = 1.0
    window: int = 10  # latency: steps per latched input
    tau_trace: float = 20.0
    spiking = True

    def __post_init__(self):
        super().__post_init__()
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {self.encoder!r}; valid: {', '.join(ENCODERS)}")
        if not 0 < self.rate <= 1:
            raise ConfigError(f"encoder rate must be a probability in (0, 1], got {self.rate}")
        if self.window < 1 or self.tau_trace <= 0:
            raise ConfigError("window must be >= 1 and tau_trace > 0")

    @property
    def trace_decay(self) -> float:
        return float(np.exp(-self.neuron_model.dt / self.tau_trace))

    def init(self, key: Array, weights=None, params=()) -> NetState:
        base = super().init(key, weights, params)
        lif = base.neurons
        traces = tuple(jnp.zeros((n,)) for n in self.sizes)
        k_enc = jax.random.key_data(jax.random.fold_in(key, 0x5B1CE))
        neurons = SpikingState(k_enc, jnp.zeros((), jnp.int32),
                               jnp.zeros((self.sizes[0],), jnp.int32), lif, traces)
        return base._replace(neurons=neurons)

    def encode(self, neurons: SpikingState, x: Array) -> tuple[Array, SpikingState]:
        """0/1 input spikes for the real-valued input ``x`` (``spikes``: ``x`` itself)."""
        if self.encoder == "spikes":
            return x, neurons
        key, sub = jax.random.split(jax.random.wrap_key_data(neurons.key))
        neurons = neurons._replace(key=jax.random.key_data(key))
        if self.encoder == "poisson":
            p = jnp.clip(self.rate * (1.0 + self.gain * x), 0.0, 1.0)
            return jax.random.bernoulli(sub, p).astype(x.dtype), neurons
        start = neurons.phase == 0
        when = jnp.round((self.window - 1) * (1 - jax.nn.sigmoid(self.gain * x)))
        latched = jnp.where(start, when.astype(jnp.int32), neurons.latched)
        s = (latched == neurons.phase).astype(x.dtype)
        return s, neurons._replace(latched=latched, phase=(neurons.phase + 1) % self.window)

    def layer_states(self, neurons: SpikingState) -> tuple:
        return neurons.lif

    def after_step(self, neurons: SpikingState, layers: tuple, rates: tuple) -> SpikingState:
        decay = self.trace_decay
        traces = tuple(decay * tr + r for tr, r in zip(neurons.traces, rates, strict=True))
        return neurons._replace(lif=layers, traces=traces)

    def traces(self, state: NetState) -> tuple[Array, ...]:
        return state.neurons.traces
