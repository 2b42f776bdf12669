"""Layered rate networks with a feedback pathway kept apart from the forward weights.

The forward pass is ``v_l = W_l r_{l-1}``, ``r_l = f(v_l)`` with ``r_0 = x`` (no biases).
The task supplies the error at the output neurons, ``e_L`` (e.g. ``y - target``). Errors
reach the hidden layers only through the feedback pathway:

* ``symmetric``: ``e_l = (W_{l+1}^T e_{l+1}) * f'(v_l)`` — exact backprop, needs weight
  transport; the reference, not a plausible model.
* ``random``: ``e_l = (B_{l+1} e_{l+1}) * f'(v_l)`` with fixed random ``B`` — feedback
  alignment (Lillicrap et al., Nat. Commun. 2016).
* ``direct``: ``e_l = (D_l e_L) * f'(v_l)`` with fixed random ``D`` — direct feedback
  alignment (Nøkland, NeurIPS 2016).
* ``none``: no feedback; hidden errors are zero.

Weights and feedback matrices live in :class:`NetState`, the state that learning changes;
rule parameters θ live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import capabilities as cap
from metaplastic import precision
from metaplastic.errors import ConfigError, ShapeError, unknown_name
from metaplastic.neurons import RateNeuron
from metaplastic.signals import LocalSignals, layer_signals

Array = jax.Array
FEEDBACK = ("none", "symmetric", "random", "direct", "sign")
#: feedback pathways whose synapses may be plastic (``feedback_plasticity``)
PLASTIC_FEEDBACK = ("random", "direct")
#: credit-assignment controls (``Network.error_ablation``)
ERROR_ABLATIONS = ("none", "hidden_synapses")


class NetState(NamedTuple):
    weights: tuple[Array, ...]  # W_l, shape (n_l, n_{l-1})
    feedback: tuple[Array, ...]  # B_{l+1} (n_l, n_{l+1}) or D_l (n_l, n_L); () without
    neurons: Any = ()  # the neurons' own state (spiking networks: voltages, traces, ...)
    #: parameters of learned neuron behaviour (meta-learned with the rule: θ["neuron"] of
    #: a :class:`~metaplastic.rules.composed.WithLearnedNeurons` rule); () for fixed neurons
    params: Any = ()


class Activity(NamedTuple):
    rates: tuple[Array, ...]  # r_0 = x, r_1, ..., r_L
    currents: tuple[Array, ...]  # v_1, ..., v_L


@dataclass(frozen=True)
class Network:
    """A feed-forward network of rate neurons; static configuration only (hashable)."""

    sizes: tuple[int, ...]
    activation: str = "linear"
    output_activation: str | None = None  # defaults to `activation`
    feedback: str = "none"
    init_scale: float = 1.0  # W_l ~ N(0, init_scale^2 / n_{l-1}), or U[-init_scale, init_scale]
    init_dist: str = "normal"  # "normal" (scaled by fan-in) or "uniform"
    feedback_scale: float = 1.0
    #: "learned": the feedback synapses (random or direct feedback) change during the
    #: episode by their own meta-learned local rule (θ["feedback"];
    #: :mod:`metaplastic.rules.feedback`), started as Kolen-Pollack; "none": fixed
    feedback_plasticity: str = "none"
    feedback_eta: float = 0.01  # the feedback rule's learning rate
    feedback_start: str = "kolen_pollack"  # or "zeros"
    feedback_decay: float = 0.0  # Kolen-Pollack's decay λ in the start
    #: Dale's law: each presynaptic neuron is excitatory (the first ``excitatory`` fraction
    #: of a layer) or inhibitory; its outgoing weights start with its sign and learning
    #: cannot flip them (a weight that would cross zero stays at zero)
    dale: bool = False
    excitatory: float = 0.8
    #: after every plastic update: "max_abs" divides each layer by its largest |weight|
    #: (Najarro & Risi 2020), "none" leaves it
    normalize: str = "none"
    #: > 0: every update of a layer is multiplied by ``update_fan_in / n_in`` (its
    #: presynaptic count): a neuron shares its plasticity among its synapses, so a rule
    #: changes a neuron's input by the same amount per step whatever its fan-in (784 raw
    #: pixels or 32 hidden units). A constant of each neuron; 0: off
    update_fan_in: int = 0
    #: bounded rule outputs (both local; 0 and 0: off): a synapse's applied update is
    #: softly limited to ``B = update_bound_w · |w| + update_bound_init · s_l``
    #: (``Δw → B · tanh(Δw / B)``), where ``s_l`` is its layer's initial weight scale (a
    #: constant: ``init_scale / sqrt(n_in)``, or ``init_scale / sqrt(3)`` for uniform)
    update_bound_w: float = 0.0
    update_bound_init: float = 0.0
    #: which layers learn (1 = the first weight matrix); () = every layer; "last": the
    #: output layer only, at any depth. A fixed layer keeps its initial weights (e.g.
    #: random Kenyon-cell projections, only the output synapses plastic)
    plastic: tuple[int, ...] | str = ()
    #: a credit-assignment control: "hidden_synapses" zeroes the errors (``e_pre`` and
    #: ``e_post``) that the synapses of every weight matrix but the last read — the hidden
    #: neurons' errors reach no hidden-layer synapse — while the output layer's synapses
    #: keep every signal they had (``e_pre``: the last hidden layer's error through the
    #: feedback pathway; ``e_post``: the output error). "none": off
    error_ablation: str = "none"
    #: rate neurons' time constant (``tau dv/dt = -v + I``); None: instantaneous, r = f(I)
    tau: float | None = None
    #: one neuron model for every layer (any object with the neuron interface of
    #: :mod:`metaplastic.neurons`); None: rate neurons from ``activation`` and ``tau``
    neuron_model: Any = None
    #: how weights are stored between steps: "float32", or "bfloat16" (half the memory,
    #: float32 arithmetic; :mod:`metaplastic.precision`)
    dtype: str = "float32"
    spiking = False  # class constant: neurons that talk by 0/1 spikes (SpikingNetwork)

    def __post_init__(self):
        if isinstance(self.sizes, str | bytes) or not all(
                isinstance(n, int | np.integer) and not isinstance(n, bool)
                for n in np.ravel(np.asarray(self.sizes, dtype=object))):
            raise ConfigError(f"network sizes must be a list of layer sizes (integers), e.g. "
                              f"(10, 1); got {self.sizes!r}")
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ConfigError(f"network sizes must be >= 2 positive layer sizes, got {self.sizes}")
        if self.feedback not in FEEDBACK:
            raise unknown_name("feedback pathway", self.feedback, FEEDBACK)
        if self.init_dist not in ("normal", "uniform"):
            raise ConfigError(f"init_dist must be 'normal' or 'uniform', got {self.init_dist!r}")
        RateNeuron(self.activation, self.tau)
        RateNeuron(self.output_activation or self.activation)
        if self.normalize not in ("none", "max_abs"):
            raise ConfigError(f"normalize must be 'none' or 'max_abs', got {self.normalize!r}")
        if self.update_fan_in < 0:
            raise ConfigError(f"update_fan_in must be >= 0, got {self.update_fan_in}")
        for name in ("update_bound_w", "update_bound_init"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"network.{name} must be >= 0 (0: off), got "
                                  f"{getattr(self, name)}")
        if not 0.0 <= self.excitatory <= 1.0:
            raise ConfigError(f"excitatory must be a fraction in [0, 1], got {self.excitatory}")
        precision.check(self.dtype, "network")
        if self.plastic == "last":
            object.__setattr__(self, "plastic", (len(self.sizes) - 1,))
        if self.feedback_plasticity not in ("none", "learned"):
            raise unknown_name("feedback plasticity", self.feedback_plasticity,
                               ("none", "learned"))
        if self.feedback_plasticity == "learned" and self.feedback not in PLASTIC_FEEDBACK:
            raise ConfigError(f"feedback_plasticity = 'learned' needs feedback synapses of "
                              f"their own: feedback = {' or '.join(map(repr, PLASTIC_FEEDBACK))}"
                              f", got {self.feedback!r}")
        if self.error_ablation not in ERROR_ABLATIONS:
            raise unknown_name("error ablation", self.error_ablation, ERROR_ABLATIONS)
        if isinstance(self.plastic, int | str) or not all(
                isinstance(l, int | np.integer) and 1 <= l <= len(self.sizes) - 1
                for l in self.plastic):
            raise ConfigError(f"network.plastic lists the layers that learn, each in "
                              f"[1, {len(self.sizes) - 1}], or is \"last\" (the output layer "
                              f"only); got {self.plastic!r}")
        object.__setattr__(self, "plastic", tuple(int(l) for l in self.plastic))

    def learns(self, layer: int) -> bool:
        """Whether weight layer ``layer`` (0-based) changes under the rule."""
        return not self.plastic or layer + 1 in self.plastic

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def neuron(self, layer: int) -> Any:
        """The neurons of layer ``layer`` (1-based; layer n_layers is the output). Learned
        neurons (``neuron_model.learned``) are the hidden layers'; the output layer keeps
        ``output_activation``."""
        last = layer == self.n_layers
        if self.neuron_model is not None and not (last and self.learned_neurons):
            return self.neuron_model
        return RateNeuron(self.output_activation or self.activation if last else self.activation,
                          self.tau)

    @property
    def stateful(self) -> bool:
        """Whether the neurons carry state from one step to the next (``forward`` then
        does not apply: step the network with ``run``)."""
        return self.tau is not None or (self.neuron_model is not None
                                        and cap.stateful(self.neuron_model))

    @property
    def learned_neurons(self) -> bool:
        """Whether the hidden neurons' behaviour has meta-learned parameters."""
        return cap.learned(self.neuron_model)

    def _params(self, layer: int, params: Any) -> tuple:
        """The extra argument of layer ``layer``'s neurons: their learned parameters."""
        learned = cap.learned(self.neuron(layer))
        return (params,) if learned else ()

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Weight shapes (n_out, n_in) of every layer."""
        return list(zip(self.sizes[1:], self.sizes[:-1], strict=True))

    def init(self, key: Array, weights: tuple[Array, ...] | None = None,
             params: Any = ()) -> NetState:
        """Draw forward weights (unless given) and the fixed feedback matrices; ``params``
        are learned neurons' parameters (from θ)."""
        kw, kb = jax.random.split(key)
        if weights is None:
            weights = tuple(self._draw(k, shape) for k, shape in
                            zip(jax.random.split(kw, self.n_layers), self.shapes, strict=True))
        elif [tuple(w.shape) for w in weights] != self.shapes:
            raise ShapeError(f"initial weights have shapes {[tuple(w.shape) for w in weights]}, "
                             f"the network needs {self.shapes}")
        if self.dale:
            weights = tuple(self.sign(l) * jnp.abs(w) for l, w in enumerate(weights))
        weights = self.store(tuple(weights))
        layers = tuple(self.neuron(l).init_state(n) for l, n in enumerate(self.sizes[1:], 1))
        return NetState(tuple(weights), self._init_feedback(kb), layers, params)

    def store(self, weights: Any) -> Any:
        """Weights as they are kept between steps (``dtype``)."""
        return precision.store(weights, self.dtype)

    def sign(self, layer: int) -> Array:
        """(n_in,) +1 for excitatory, -1 for inhibitory presynaptic neurons of weight
        matrix ``layer`` (0-based); all +1 without Dale's law."""
        n_in = self.sizes[layer]
        n_exc = round(self.excitatory * n_in) if self.dale else n_in
        return jnp.where(jnp.arange(n_in) < n_exc, 1.0, -1.0)

    def constrain(self, layer: int, w: Array, live: Array | bool = True) -> Array:
        """Weights after a plastic update: with Dale's law, no weight changes sign; with
        ``normalize = "max_abs"`` the layer is divided by its largest |weight|.

        ``live = False`` (a step after the task ended, whose update was zeroed) leaves
        constrained weights exactly as they are: Dale's clamp is idempotent and the divisor
        becomes 1. This is what lets the inner loop mask the *update* inside the update's
        own fused loop instead of selecting between two whole weight matrices afterwards
        (one pass over every synapse less per step)."""
        if self.dale:
            sign = self.sign(layer)
            w = sign * jnp.maximum(sign * w, 0.0)
        if self.normalize == "max_abs":
            w = w / jnp.where(live, jnp.maximum(jnp.max(jnp.abs(w)), 1e-30), 1.0)
        return w

    def update_scale(self, layer: int) -> float:
        """What the rule's update of weight matrix ``layer`` (0-based) is multiplied by."""
        return self.update_fan_in / self.sizes[layer] if self.update_fan_in else 1.0

    @property
    def bounds_updates(self) -> bool:
        """Whether the rule's updates are bounded (``update_bound_w``/``update_bound_init``)."""
        return bool(self.update_bound_w or self.update_bound_init)

    def weight_scale(self, layer: int) -> float:
        """The initial weight scale of weight matrix ``layer`` (0-based): the standard
        deviation its weights are drawn with."""
        if self.init_dist == "uniform":
            return self.init_scale / 3 ** 0.5
        return self.init_scale / self.sizes[layer] ** 0.5

    def bound_update(self, layer: int, w: Array, dw: Array) -> Array:
        """``dw`` softly limited to ``update_bound_w · |w| + update_bound_init · s_l``
        (unchanged when neither is set)."""
        if not self.bounds_updates:
            return dw
        bound = self.update_bound_w * jnp.abs(w) + self.update_bound_init * \
            self.weight_scale(layer)
        safe = jnp.where(bound > 0, bound, 1.0)
        return jnp.where(bound > 0, safe * jnp.tanh(dw / safe), 0.0)

    def _draw(self, key: Array, shape: tuple[int, int]) -> Array:
        if self.init_dist == "uniform":
            return jax.random.uniform(key, shape, minval=-self.init_scale, maxval=self.init_scale)
        return self.init_scale * jax.random.normal(key, shape) / jnp.sqrt(shape[1])

    def _init_feedback(self, key: Array) -> tuple[Array, ...]:
        hidden = self.sizes[1:-1]
        keys = jax.random.split(key, max(len(hidden), 1))
        if self.feedback in ("random", "sign"):
            src = self.sizes[2:]
        elif self.feedback == "direct":
            src = (self.sizes[-1],) * len(hidden)
        else:
            return ()
        return tuple(
            self.feedback_scale * jax.random.normal(k, (n, m)) / jnp.sqrt(m)
            for k, n, m in zip(keys, hidden, src, strict=False)
        )

    def feedback_sources(self, errs: tuple[Array, ...]) -> tuple[Array, ...]:
        """The error each feedback matrix carries (from ``errors``): the layer above's
        (random feedback) or the output's (direct), one per hidden layer."""
        if self.feedback == "direct":
            return tuple(errs[-1] for _ in self.sizes[1:-1])
        return tuple(errs[l + 1] for l in range(1, self.n_layers))

    def check_input(self, x: Array) -> None:
        if x.shape[-1] != self.sizes[0]:
            raise ShapeError(f"network expects inputs of size {self.sizes[0]}, got {x.shape}")

    def forward(self, weights: tuple[Array, ...], x: Array, params: Any = ()) -> Activity:
        """The activity for input ``x`` of a network whose neurons keep no state."""
        if self.stateful:
            raise ConfigError("this network's neurons have state: step it with "
                              "run(state, x)")
        self.check_input(x)
        rates, currents = [x], []
        for layer, w in enumerate(weights, start=1):
            neuron = self.neuron(layer)
            r, _, v = neuron.step(neuron.init_state(w.shape[0]), w @ rates[-1],
                                  *self._params(layer, params))
            rates.append(r)
            currents.append(v)
        return Activity(tuple(rates), tuple(currents))

    # --- one time step, through the neuron interface (every kind of network) -------------
    def encode(self, neurons: Any, x: Array) -> tuple[Array, Any]:
        """What the first plastic layer receives for the task's input ``x`` (rates: x)."""
        return x, neurons

    def layer_states(self, neurons: Any) -> tuple:
        """The neuron state of every layer 1..L within ``NetState.neurons``."""
        return neurons

    def after_step(self, neurons: Any, layers: tuple, rates: tuple) -> Any:
        """``NetState.neurons`` after a step, from the layers' new states."""
        return layers

    def run(self, state: NetState, x: Array) -> tuple[Activity, NetState]:
        """One time step: every layer's neurons step on their input current; returns the
        activity and the state after it."""
        self.check_input(x)
        s, neurons = self.encode(state.neurons, x)
        rates, currents, layers = [s], [], []
        for layer, (w, st) in enumerate(zip(state.weights, self.layer_states(neurons),
                                            strict=True), start=1):
            r, st, v = self.neuron(layer).step(st, w @ rates[-1],
                                               *self._params(layer, state.params))
            rates.append(r)
            currents.append(v)
            layers.append(st)
        neurons = self.after_step(neurons, tuple(layers), tuple(rates))
        return Activity(tuple(rates), tuple(currents)), state._replace(neurons=neurons)

    def respond(self, weights: tuple[Array, ...], x: Array, key: Array,
                steps: int = 1, params: Any = ()) -> Array:
        """The output to ``x`` presented for ``steps`` steps with the weights held fixed
        (a test, no plasticity): the forward pass for neurons without state (``key``
        unused), else the mean output over ``steps`` steps from rest."""
        if not self.stateful:
            return self.forward(weights, x, params).rates[-1]
        state = self.init(key, tuple(weights), params)

        def step(state, _):
            act, state = self.run(state, x)
            return state, act.rates[-1]

        return jax.lax.scan(step, state, None, length=steps)[1].mean(axis=0)

    def errors(self, state: NetState, act: Activity, e_out: Array | None) -> tuple[Array, ...]:
        """Errors at the neurons of every layer 0..L (layer 0, the input, gets zeros)."""
        errs = [None] * (self.n_layers + 1)
        errs[0] = jnp.zeros_like(act.rates[0])
        errs[-1] = jnp.zeros_like(act.rates[-1]) if e_out is None else e_out
        if self.feedback == "none":  # nothing reaches the hidden layers: skip the gains
            for l in range(1, self.n_layers):
                errs[l] = jnp.zeros_like(act.rates[l])
            return tuple(errs)
        for l in range(self.n_layers - 1, 0, -1):
            gain = self.neuron(l).derivative(act.currents[l - 1],
                                             *self._params(l, state.params))
            if self.feedback == "symmetric":
                arriving = state.weights[l].T @ errs[l + 1]
            elif self.feedback == "random":
                arriving = state.feedback[l - 1] @ errs[l + 1]
            elif self.feedback == "direct":
                arriving = state.feedback[l - 1] @ errs[-1]
            elif self.feedback == "sign":  # sign-concordant: reads the forward weights' signs
                arriving = (jnp.sign(state.weights[l].T) * jnp.abs(state.feedback[l - 1])
                            ) @ errs[l + 1]
            else:
                arriving = jnp.zeros_like(act.rates[l])
            errs[l] = arriving * gain
        return tuple(errs)

    def signals(
        self, state: NetState, act: Activity, e_out: Array | None, modulator=0.0
    ) -> tuple[LocalSignals, ...]:
        """The local signals of every layer's synapses after a forward pass."""
        errs = self.errors(state, act, e_out)
        tr = self.traces(state)
        last = self.n_layers - 1

        def read(l: int, e: Array) -> Array:  # the error synapses of matrix l read
            ablated = self.error_ablation == "hidden_synapses" and l < last
            return jnp.zeros_like(e) if ablated else e

        return tuple(
            layer_signals(act.rates[l], act.rates[l + 1], w, read(l, errs[l]),
                          read(l, errs[l + 1]), modulator, tr[l], tr[l + 1])
            for l, w in enumerate(state.weights)
        )

    def traces(self, state: NetState) -> tuple[Array | None, ...]:
        """Every layer's spike traces (0..L); ``None`` (zeros) for rate neurons."""
        return (None,) * len(self.sizes)
