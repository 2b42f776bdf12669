"""Learning rules that are small neural networks, shared by every synapse or neuron.

* ``mlp`` — one MLP shared by all synapses (Bengio et al. 1990s' "learning a synaptic
  learning rule", as a network): its input is *that synapse's* local signals (any of
  pre, post, w, e_pre, e_post and the broadcast modulator), its output the synapse's
  ``dw = eta * MLP(signals)``.
* ``neuron-mlp`` — per-neuron networks in the spirit of BLUR (Sandler et al. 2021): a
  shared presynaptic network maps each neuron's own signals (pre, e_pre) to ``K``
  factors ``a``, a shared postsynaptic network maps (post, e_post) to ``K`` factors ``b``
  and a decay gate ``d``; a synapse changes by ``dw = eta * (sum_k b_k a_k - d * w)``. With
  ``K = 1``, ``a = pre``, ``b = post``, ``d = post^2`` it is Oja's rule.
* ``recurrent`` — each synapse carries a small hidden state ``h`` (in the spirit of VSML,
  Kirsch & Schmidhuber 2021), updated every step by one GRU cell shared by all synapses
  from the synapse's signals; ``dw = eta * v . h``.

All three are local by construction: the per-synapse definition (``synapse``) sees one
synapse's scalars, and the layer-wide fast paths are tested equal to it. The networks'
first layer is linear in the inputs, so the fast paths add per-neuron rows and columns
instead of forming a (post x pre x inputs) tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import activations
from metaplastic.errors import ConfigError
from metaplastic.rules import terms
from metaplastic.rules.base import Rule
from metaplastic.signals import NAMES, POST_SIDE, PRE_SIDE, LocalSignals, per_synapse

Array = jax.Array

INPUTS = NAMES
#: the activations an MLP rule takes (``softplus`` is β = 1 here: :mod:`metaplastic.activations`)
ACTIVATIONS = {name: activations.function(name, "rule") for name in activations.NAMES["rule"]}


def _check_inputs(name: str, inputs, allowed=INPUTS) -> tuple[str, ...]:
    inputs = tuple(inputs)
    bad = [v for v in inputs if v not in allowed]
    if bad or not inputs or len(set(inputs)) != len(inputs):
        raise ConfigError(f"rule {name!r}: inputs must be distinct names from "
                          f"{', '.join(allowed)}; got {list(inputs)}")
    return inputs


def _check_common(name: str, eta: float, hidden, activation: str) -> tuple[int, ...]:
    if eta <= 0:
        raise ConfigError(f"rule {name!r}: eta must be positive, got {eta}")
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ConfigError(f"rule {name!r}: hidden sizes must be >= 1, got {list(hidden)}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"rule {name!r}: unknown activation {activation!r}; "
                          f"valid: {', '.join(ACTIVATIONS)} (softplus: beta 1; "
                          f"metaplastic.activations)")
    return hidden


def init_mlp(key: Array, sizes: list[int], out_scale: float) -> list[dict[str, Array]]:
    """Layers ``{"w": (n_in, n_out), "b": (n_out,)}``; LeCun-normal weights, zero biases;
    the last layer's weights scaled by ``out_scale`` (0 starts the rule at dw = 0)."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        scale = out_scale if i == len(sizes) - 2 else 1.0
        layers.append({"w": scale * jax.random.normal(k, (a, b)) / np.sqrt(a),
                       "b": jnp.zeros((b,))})
    return layers


def apply_mlp(layers, x: Array, act) -> Array:
    """``x`` (..., n_in) through the layers; the activation between layers, none after."""
    for i, layer in enumerate(layers):
        x = x @ layer["w"] + layer["b"]
        if i < len(layers) - 1:
            x = act(x)
    return x


def _first_layer(w_in: Array, b: Array, inputs: tuple[str, ...], s: LocalSignals) -> Array:
    """The first layer's pre-activation for every synapse, (n_out, n_in, H), built from
    per-neuron rows and columns: sum_k W[k] x_k + b without a (post, pre, inputs) tensor."""
    n_out, n_in = s.w.shape
    z = jnp.broadcast_to(b, (n_out, n_in, b.shape[0]))
    for k, name in enumerate(inputs):
        x = getattr(s, name)
        if name in PRE_SIDE:
            z = z + (x[:, None] * w_in[k])[None, :, :]
        elif name in POST_SIDE:
            z = z + (x[:, None] * w_in[k])[:, None, :]
        elif name == "w":
            z = z + x[:, :, None] * w_in[k]
        else:  # the broadcast modulator
            z = z + x * w_in[k]
    return z


def _stack(s: LocalSignals, inputs: tuple[str, ...]) -> Array:
    return jnp.stack([jnp.asarray(getattr(s, n), jnp.result_type(s.w)) for n in inputs], -1)


def _start_term(name: str):
    from metaplastic.rules.termpool import TERMS, _term

    if name not in TERMS:
        raise ConfigError(f"rule 'mlp': unknown start {name!r}; valid: zeros, "
                          f"{', '.join(TERMS)}")
    return lambda s: _term(name, s)




@dataclass(frozen=True)
class MLPRule(Rule):
    """dw = eta * MLP(local signals of the synapse); one MLP shared by every synapse.

    ``start``: ``zeros`` (the last layer scaled by ``out_scale``, 0 by default: dw = 0) or
    a term of the term pool (``pseudo_grad``, ``hebb``, ``oja``, ...): the MLP is then fitted
    by regression to that term over random signals at ``init`` — e.g. a network rule that
    starts as feedback alignment and is meta-learned from there.
    """

    inputs: tuple[str, ...] = ("pre", "post", "w")
    hidden: tuple[int, ...] = (16,)
    activation: str = "tanh"
    eta: float = 0.01
    out_scale: float = field(default=0.0, compare=False)  # 0: start at dw = 0
    start: str = field(default="zeros", compare=False)
    fast: bool = True
    family = "mlp"

    def __post_init__(self):
        object.__setattr__(self, "inputs", _check_inputs("mlp", self.inputs))
        object.__setattr__(self, "hidden",
                           _check_common("mlp", self.eta, self.hidden, self.activation))
        if self.start != "zeros":
            _start_term(self.start)
            missing = terms.signals(self.start) - set(self.inputs)
            if missing:
                raise ConfigError(f"rule 'mlp': start {self.start!r} needs inputs "
                                  f"{sorted(missing)}")

    def init(self, key: Array, shapes=None):
        out_scale = self.out_scale if self.start == "zeros" else 1.0
        theta = {"mlp": init_mlp(key, [len(self.inputs), *self.hidden, 1], out_scale)}
        if self.start != "zeros":
            theta = self.fit(theta, _start_term(self.start), jax.random.fold_in(key, 1))
        return theta

    def fit(self, theta, target, key: Array, *, samples: int = 4096, steps: int = 1500,
            lr: float = 1e-2):
        """θ fitted by regression so that MLP(signals) ≈ target(signals) (dw / eta) over
        signals drawn N(0, 1) (w: N(0, 0.5²)); deterministic given ``key``."""
        import optax

        act = ACTIVATIONS[self.activation]
        opt = optax.adam(lr)

        def fitted(theta, key):  # one program: the draws, the target and every step
            k = jax.random.split(key, 6)
            s = LocalSignals(*(jax.random.normal(k[i], (samples,)) for i in range(6)))
            s = s._replace(w=0.5 * s.w)
            y = target(s)

            def loss(t):
                return jnp.mean((apply_mlp(t["mlp"], _stack(s, self.inputs), act)[..., 0]
                                 - y) ** 2)

            def step(carry, _):
                t, o = carry
                u, o = opt.update(jax.grad(loss)(t), o)
                return (optax.apply_updates(t, u), o), None

            return jax.lax.scan(step, (theta, opt.init(theta)), None, length=steps)[0][0]

        return jax.jit(fitted)(theta, key)

    def synapse(self, theta, s: LocalSignals) -> Array:
        act = ACTIVATIONS[self.activation]
        return self.eta * apply_mlp(theta["mlp"], _stack(s, self.inputs), act)[..., 0]

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            return self.update_per_synapse(theta, signals, state)
        act = ACTIVATIONS[self.activation]
        first, *rest = theta["mlp"]
        z = _first_layer(first["w"], first["b"], self.inputs, signals)
        if not rest:
            return self.eta * z[..., 0], state
        return self.eta * apply_mlp(rest, act(z), act)[..., 0], state

    def formula(self, theta) -> str:
        theta = self.checked(theta)
        sizes = [len(self.inputs), *self.hidden, 1]
        n = sum(int(np.size(v)) for layer in theta["mlp"] for v in layer.values())
        return (f"dw = {self.eta:g} * MLP({', '.join(self.inputs)}), "
                f"{'-'.join(map(str, sizes))} {self.activation}, {n} parameters "
                f"(`metaplastic explain RUN` distils it into a formula)")


@dataclass(frozen=True)
class NeuronMLP(Rule):
    """dw = eta * (sum_k b_k(post side) a_k(pre side) - d(post side) * w).

    ``a = MLP_pre(pre_inputs)`` and ``(b, d) = MLP_post(post_inputs)`` are computed once per
    neuron by networks shared by every neuron; each synapse combines its two neurons'
    outputs. ``modulator`` may be an input on either side (it is broadcast).
    """

    rank: int = 2
    pre_inputs: tuple[str, ...] = ("pre",)
    post_inputs: tuple[str, ...] = ("post",)
    hidden: tuple[int, ...] = (16,)
    activation: str = "tanh"
    eta: float = 0.01
    out_scale: float = field(default=0.1, compare=False)
    fast: bool = True
    family = "neuron-mlp"

    def __post_init__(self):
        object.__setattr__(self, "pre_inputs", _check_inputs(
            "neuron-mlp", self.pre_inputs, PRE_SIDE + ("modulator",)))
        object.__setattr__(self, "post_inputs", _check_inputs(
            "neuron-mlp", self.post_inputs, POST_SIDE + ("modulator",)))
        object.__setattr__(self, "hidden",
                           _check_common("neuron-mlp", self.eta, self.hidden, self.activation))
        if self.rank < 1:
            raise ConfigError(f"rule 'neuron-mlp': rank must be >= 1, got {self.rank}")

    def init(self, key: Array, shapes=None):
        k_pre, k_post = jax.random.split(key)
        return {"pre": init_mlp(k_pre, [len(self.pre_inputs), *self.hidden, self.rank],
                                self.out_scale),
                "post": init_mlp(k_post, [len(self.post_inputs), *self.hidden, self.rank + 1],
                                 self.out_scale)}

    def neuron_outputs(self, theta, s: LocalSignals) -> tuple[Array, Array, Array]:
        """``a`` (..., K) for the presynaptic side; ``b`` (..., K), ``d`` (...) postsynaptic."""
        act = ACTIVATIONS[self.activation]
        pre = jnp.stack([jnp.broadcast_to(getattr(s, n), s.pre.shape)
                         for n in self.pre_inputs], -1)
        post = jnp.stack([jnp.broadcast_to(getattr(s, n), s.post.shape)
                          for n in self.post_inputs], -1)
        a = apply_mlp(theta["pre"], pre, act)
        bd = apply_mlp(theta["post"], post, act)
        return a, bd[..., :-1], bd[..., -1]

    def synapse(self, theta, s: LocalSignals) -> Array:
        a, b, d = self.neuron_outputs(theta, s)
        return self.eta * (jnp.sum(a * b, -1) - d * s.w)

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            return self.update_per_synapse(theta, signals, state)
        a, b, d = self.neuron_outputs(theta, signals)  # (n_in, K), (n_out, K), (n_out,)
        return self.eta * (b @ a.T - d[:, None] * signals.w), state

    def formula(self, theta) -> str:
        return (f"dw = {self.eta:g} * (sum_k b_k({', '.join(self.post_inputs)}) "
                f"a_k({', '.join(self.pre_inputs)}) - d({', '.join(self.post_inputs)}) * w), "
                f"K = {self.rank}, per-neuron MLPs {list(self.hidden)} {self.activation}")


@dataclass(frozen=True)
class RecurrentRule(Rule):
    """Each synapse has a hidden state h (size ``state_size``) updated by a shared GRU
    cell from its local signals; dw = eta * v . h_new."""

    inputs: tuple[str, ...] = ("pre", "post", "w")
    state_size: int = 4
    eta: float = 0.01
    out_scale: float = field(default=0.0, compare=False)
    fast: bool = True
    family = "recurrent"

    def __post_init__(self):
        object.__setattr__(self, "inputs", _check_inputs("recurrent", self.inputs))
        _check_common("recurrent", self.eta, (self.state_size,), "tanh")

    def init(self, key: Array, shapes=None):
        n, h = len(self.inputs), self.state_size
        k_x, k_h, k_v = jax.random.split(key, 3)
        return {"wx": jax.random.normal(k_x, (n, 3 * h)) / np.sqrt(n),
                "wh": jax.random.normal(k_h, (h, 3 * h)) / np.sqrt(h),
                "b": jnp.zeros((3 * h,)),
                "v": self.out_scale * jax.random.normal(k_v, (h,)) / np.sqrt(h)}

    def init_state(self, shape):
        return jnp.zeros((*shape, self.state_size))

    def _cell(self, theta, zx: Array, h: Array) -> Array:
        """GRU (Cho et al. 2014): zx = x W_x + b is given; returns the new state."""
        n = self.state_size
        zh = h @ theta["wh"]
        r = jax.nn.sigmoid(zx[..., :n] + zh[..., :n])
        u = jax.nn.sigmoid(zx[..., n:2 * n] + zh[..., n:2 * n])
        c = jnp.tanh(zx[..., 2 * n:] + r * zh[..., 2 * n:])
        return u * h + (1 - u) * c

    def synapse_step(self, theta, s: LocalSignals, h: Array) -> tuple[Array, Array]:
        """One synapse: ``(dw, h_new)`` from its scalar signals and hidden state."""
        h = self._cell(theta, _stack(s, self.inputs) @ theta["wx"] + theta["b"], h)
        return self.eta * h @ theta["v"], h

    def synapse(self, theta, s: LocalSignals) -> Array:
        """dw from a zero hidden state (the first step); see :meth:`synapse_step`."""
        return self.synapse_step(theta, s, jnp.zeros((self.state_size,)))[0]

    def update_per_synapse(self, theta, signals: LocalSignals, state):
        return per_synapse(lambda s, h: self.synapse_step(theta, s, h), signals, state)

    def update(self, theta, signals: LocalSignals, state):
        if not self.fast:
            return self.update_per_synapse(theta, signals, state)
        zx = _first_layer(theta["wx"], theta["b"], self.inputs, signals)
        h = self._cell(theta, zx, state)
        return self.eta * h @ theta["v"], h

    def formula(self, theta) -> str:
        return (f"dw = {self.eta:g} * v . h, h <- GRU({', '.join(self.inputs)}; h), "
                f"{self.state_size} hidden units per synapse")
