"""Plausibility checks: measure which biological constraints a network and rule keep.

Nothing here trusts names or comments; every check runs the real computation with JAX:

* ``locality`` — the update of synapse i->j (and its rule state) depends only on that
  synapse's signals (pre_i, post_j, w_ji, e_pre_i, e_post_j, its own rule state) and on
  broadcast modulators: the gradient of dw[j, i] with respect to every *other* synapse's
  signals is exactly zero, for random signals and sampled synapses of every layer.
* ``no_weight_transport`` — the feedback errors that reach the neurons do not depend on the
  forward weights: with the neurons' activities held fixed, the Jacobian of every layer's
  errors with respect to every forward weight matrix is exactly zero.
* ``online`` — the inner loop's memory does not grow with the number of steps (no stored
  activation history): the carried state and XLA's working memory of ``length`` inner steps
  are the same for two lengths.
* ``dale`` — each neuron's outgoing weights keep one sign through learning: checked on the
  weights of real inner-loop runs at several points in time.
* ``spikes_only`` — neurons communicate only by 0/1 spikes: the values each hidden layer
  sends to the next, over random inputs (the task's own, for a network that takes its
  input as spikes), are all 0 or 1.

:func:`check` runs the constraints asked for and returns one :class:`CheckResult` each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import capabilities as cap
from metaplastic import registry, xla
from metaplastic.errors import ConfigError, MetaplasticError
from metaplastic.inner import advance, initial_carry
from metaplastic.network import NetState, Network
from metaplastic.registry import register
from metaplastic.rules.base import Rule
from metaplastic.signals import NAMES, SIDES, numpy_signals, own_index
from metaplastic.spiking import SpikingNetwork
from metaplastic.tasks.base import Task

CONSTRAINTS = ("locality", "no_weight_transport", "online", "dale", "spikes_only")


class ConstraintError(MetaplasticError):
    """A declared plausibility constraint does not hold."""


@dataclass
class CheckResult:
    constraint: str
    holds: bool
    detail: str  # how it was measured, or where it fails (layer, signal)

    def to_json(self) -> dict:
        return asdict(self)


def check_names(names) -> tuple[str, ...]:
    names = tuple(names)
    valid = registry.names("check")
    bad = [n for n in names if n not in valid]
    if bad:
        raise ConfigError(f"unknown constraint(s) {bad}; valid: {', '.join(valid)}")
    return names


# ------------------------------------------------------------------------------ locality
def _random_state(rng: np.random.Generator, state, shape):
    """Rule state with random values where it is a float array (to exercise dependencies)."""
    leaves, tree = jax.tree.flatten(state)
    out = [jnp.asarray(rng.standard_normal(jnp.shape(x)), jnp.result_type(x))
           if jnp.issubdtype(jnp.result_type(x), jnp.floating) and _per_synapse(x, shape)
           else x for x in leaves]
    return jax.tree.unflatten(tree, out)


def _per_synapse(x, shape) -> bool:
    return jnp.ndim(x) >= 2 and tuple(jnp.shape(x)[:2]) == tuple(shape)


def _foreign(g: np.ndarray, own: tuple) -> np.ndarray:
    """Indices where the gradient ``g`` is non-zero outside the entries ``own``."""
    g = np.array(g, copy=True)
    g[own] = 0.0
    return np.argwhere(g != 0)


def _nearby(theta: Any, rng: np.random.Generator, rel: float = 0.01) -> Any:
    """θ moved slightly in every float entry, so that no part of the rule is switched off
    by an exact zero (a term pool's coefficient at 0 hides what its term reads)."""
    def move(x):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            return x
        a = np.asarray(x, np.float64)
        scale = rel * (float(np.max(np.abs(a))) if a.size and np.any(a) else 1.0)
        return jnp.asarray(a + scale * rng.standard_normal(a.shape), jnp.result_type(x))
    return jax.tree.map(move, theta)


def check_locality(network: Network, rule: Rule, theta: Any, key: jax.Array, *,
                   draws: int = 2, synapses: int = 12) -> CheckResult:
    """dw[j, i] (and the rule state of (j, i)) must not depend on other synapses' signals,
    at ``theta`` and at a θ moved slightly from it: a part of the rule that reads other
    synapses but is switched off at ``theta`` by an exact zero (a term pool's coefficient
    that meta-training has not moved yet) fails too, because meta-training can turn it on."""
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    thetas = (("", theta), ("near", _nearby(theta, np.random.default_rng([*seed, 7]))))
    for l, shape in enumerate(network.shapes):
        n_out, n_in = shape
        state0 = rule.init_state(shape)
        rng = np.random.default_rng(l)
        pairs = np.array([(j, i) for j in range(n_out) for i in range(n_in)])
        if len(pairs) > synapses:
            pairs = pairs[rng.choice(len(pairs), synapses, replace=False)]
        js, is_ = jnp.asarray(pairs[:, 0]), jnp.asarray(pairs[:, 1])

        def outputs(theta_l, s, st, j, i, shape=shape):
            dw, new = rule.update(theta_l, s, st)
            own = [jnp.sum(x[j, i]) for x in jax.tree.leaves(new) if _per_synapse(x, shape)]
            return dw[j, i], sum(own, jnp.zeros(()))

        # one program per layer for both θ: θ is an argument, not a constant
        grads = xla.once(jax.vmap(
            lambda t, s, st, j, i: tuple(
                jax.grad(lambda a, b, k=k: outputs(t, a, b, j, i)[k], argnums=(0, 1))(s, st)
                for k in (0, 1)),
            in_axes=(None, None, None, 0, 0)))
        for where, th in thetas:
            theta_l = rule.layer_theta(th, l)
            for d in range(draws):  # drawn by NumPy: no random-number program to compile
                draw = np.random.default_rng([*seed, l, d])
                s, state = numpy_signals(draw, *shape), _random_state(draw, state0, shape)
                bad = _first_foreign(grads(theta_l, s, state, js, is_), pairs, shape)
                if bad is None:
                    continue
                if where == "near":
                    bad = (f"{bad}, for θ moved slightly from this one (at this θ it "
                           f"holds: a part of the rule that is switched off here by a zero, "
                           f"such as a term's coefficient, reads other synapses, and "
                           f"meta-training can turn it on)")
                return CheckResult("locality", False, f"layer {l + 1}: {bad}")
    return CheckResult("locality", True, f"d(dw_ji)/d(other synapses' pre, post, w, e_pre, "
                       f"e_post, rule state) = 0 exactly for {synapses} sampled synapses per "
                       f"layer x {draws} random signal draws, at this θ and at a θ moved "
                       f"slightly from it")


def _first_foreign(grads, pairs, shape) -> str | None:
    """Where the first sampled synapse's update or rule state depends on another
    synapse's signals or rule state, in words; None where none does."""
    for which, (g_s, g_state) in zip(("dw", "rule state"), grads, strict=True):
        for n, (j, i) in enumerate(pairs):
            for name in NAMES:
                if SIDES[name] == "broadcast":  # shared by every synapse
                    continue
                bad = _foreign(np.asarray(getattr(g_s, name))[n], own_index(name, j, i))
                if bad.size:
                    return f"{which} of synapse {i}->{j} depends on {name}{list(map(int, bad[0]))}"
            for g in jax.tree.leaves(g_state):
                g = np.asarray(g)[n]
                if g.ndim >= 2 and tuple(g.shape[:2]) == tuple(shape):
                    bad = _foreign(g, (j, i))
                    if bad.size:
                        return (f"{which} of synapse {i}->{j} depends on the rule state of "
                                f"synapse {int(bad[0][1])}->{int(bad[0][0])}")
    return None


# ------------------------------------------------------------------ no weight transport
def _transport_probe(network: Network) -> Callable:
    """One compiled program for every draw of :func:`check_weight_transport`: ``(weights,
    feedback, x, e_out, cotangents) -> (grads, errors, errors with the forward weights'
    signs flipped)``, where ``grads[l-1]`` holds d(<error at hidden layer l, its
    cotangent>)/d(W_k) for every layer k.

    d(error at layer l)/d(W_k) is zero exactly when its product with every cotangent is;
    one random cotangent per layer finds a non-zero Jacobian with probability 1, in the
    memory of one gradient (the whole Jacobian of a 784-170-130-100-70-47 network took
    3.7 GB). One program, not one per operation (the eager version compiled ~30 small
    programs: 2-5 s of a run's start-up), and every random number is drawn by NumPy and
    passed in (random-number code took most of the program's compile time)."""

    def probe(weights, feedback, x, e_out, cots):
        # the network's own start for everything but the random parts, which are given:
        # the unused draws of ``init`` are dropped before XLA compiles
        state = network.init(jax.random.key(0), weights)._replace(feedback=feedback)
        act, state = network.run(state, x)

        def errs(weights):
            return network.errors(NetState(weights, state.feedback), act, e_out)

        same, vjp = jax.vjp(errs, state.weights)
        grads = []
        for l in range(1, network.n_layers):
            cot = [jnp.zeros_like(e) for e in same]
            cot[l] = cots[l - 1]
            grads.append(vjp(type(same)(cot) if isinstance(same, tuple) else cot)[0])
        return grads, same, errs(tuple(-w for w in state.weights))

    return xla.once(probe)


def _transport_draw(network: Network, rng: np.random.Generator) -> tuple:
    """Random arguments of :func:`_transport_probe`'s program, drawn by NumPy: forward and
    feedback weights at the network's scale, an input, an output error and one cotangent
    per hidden layer's error."""
    def normal(like, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(like.shape), like.dtype)

    state = jax.eval_shape(network.init, jax.random.key(0))
    weights = tuple(normal(w, network.weight_scale(l)) for l, w in enumerate(state.weights))
    feedback = jax.tree.map(lambda b: normal(b, 1.0 / max(b.shape[-1], 1) ** 0.5),
                            state.feedback)
    x = jnp.asarray(rng.standard_normal(network.sizes[0]), jnp.float32)
    e_out = jnp.asarray(rng.standard_normal(network.sizes[-1]), jnp.float32)
    errors = jax.eval_shape(lambda w, b, x, e: network.errors(
        NetState(w, b), network.run(network.init(jax.random.key(0), w)._replace(feedback=b),
                                    x)[0], e), weights, feedback, x, e_out)
    cots = tuple(normal(errors[l]) for l in range(1, network.n_layers))
    return weights, feedback, x, e_out, cots


def check_weight_transport(network: Network, key: jax.Array, *, draws: int = 2) -> CheckResult:
    """The errors reaching each layer must not depend on the forward weights (activities
    held fixed)."""
    if network.n_layers < 2:
        return CheckResult("no_weight_transport", True, "a single plastic layer: the only "
                           "error is the task's, at the output; no feedback pathway")
    probe = _transport_probe(network)
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    for d in range(draws):
        grads, same, flipped = probe(*_transport_draw(network,
                                                      np.random.default_rng([*seed, d])))
        for l, per_weight in enumerate(grads, start=1):  # hidden layers' errors
            for k, g in enumerate(per_weight):
                if np.any(np.asarray(g) != 0):
                    return CheckResult(
                        "no_weight_transport", False,
                        f"the error at hidden layer {l} depends on forward weights W{k + 1} "
                        f"(feedback = {network.feedback!r} reads the forward weights)")
        for l in range(1, network.n_layers):  # signs read (zero derivative)
            if not np.array_equal(np.asarray(flipped[l]), np.asarray(same[l])):
                return CheckResult(
                    "no_weight_transport", False,
                    f"the error at hidden layer {l} changes when the forward weights change "
                    f"sign (feedback = {network.feedback!r} reads them: a non-local "
                    f"reference, not a biologically plausible pathway)")
    return CheckResult("no_weight_transport", True,
                       f"d(errors)/d(forward weights) = 0 exactly with activities fixed, and the "
                       f"errors unchanged when the forward weights flip sign "
                       f"(feedback = {network.feedback!r}), {draws} random draws")


# ------------------------------------------------------------------------------- online
def _bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def check_online(network: Network, rule: Rule, theta: Any, task: Task, key: jax.Array, *,
                 lengths: tuple[int, int] = (8, 64)) -> CheckResult:
    """Carried state and XLA working memory of ``length`` inner steps, for two lengths."""
    k_inst, k_net = jax.random.split(key)

    def start(k_inst, k_net):
        instance = task.sample(k_inst)
        return instance, initial_carry(network, rule, theta, task, instance, k_net)

    # shapes only: the programs are compiled for their memory, never run, so nothing
    # computes a task or a carry (that was a program of its own, 1-1.5 s)
    instance, carry = jax.eval_shape(start, k_inst, k_net)
    sizes = []
    for n in lengths:
        fn = jax.jit(lambda inst, c, n=n: advance(network, rule, theta, task, inst, c, n))
        compiled = xla.compile_for_analysis(fn.lower(instance, carry))
        out = jax.eval_shape(fn, instance, carry)
        temp = compiled.memory_analysis().temp_size_in_bytes
        sizes.append((_bytes(out), temp))
    (c1, t1), (c2, t2) = sizes
    detail = (f"{lengths[0]} vs {lengths[1]} inner steps: carried state {c1} vs {c2} bytes, "
              f"XLA working memory {t1} vs {t2} bytes")
    return CheckResult("online", c1 == c2 and t1 == t2, detail)


# --------------------------------------------------------------------------------- dale
def check_dale(network: Network, rule: Rule, theta: Any, task: Task, key: jax.Array, *,
               tasks: int = 2, points: int = 4) -> CheckResult:
    """Each presynaptic neuron's outgoing weights have one sign, kept through learning."""
    n = task.n_steps
    seg = max(n // points, 1)
    for t in range(tasks):
        k_inst, k_net = jax.random.split(jax.random.fold_in(key, t))
        instance = task.sample(k_inst)
        carry = initial_carry(network, rule, theta, task, instance, k_net)
        run = xla.once(lambda c, instance=instance: advance(network, rule, theta, task,
                                                            instance, c, seg))
        signs = [None] * network.n_layers
        for p in range(points + 1):
            for l, w in enumerate(carry[0].weights):
                w = np.asarray(w)
                pos, neg = np.any(w > 0, axis=0), np.any(w < 0, axis=0)
                both = np.flatnonzero(pos & neg)
                if both.size:
                    return CheckResult("dale", False, f"layer {l + 1}: presynaptic neuron "
                                       f"{int(both[0])} has outgoing weights of both signs "
                                       f"at step {p * seg}")
                sign = pos.astype(int) - neg.astype(int)
                if signs[l] is not None:
                    flipped = np.flatnonzero(sign * signs[l] < 0)
                    if flipped.size:
                        return CheckResult("dale", False, f"layer {l + 1}: presynaptic "
                                           f"neuron {int(flipped[0])} changed sign by step "
                                           f"{p * seg}")
                    sign = np.where(sign == 0, signs[l], sign)
                signs[l] = sign
            if p < points:
                carry = run(carry)
    return CheckResult("dale", True, f"one sign per presynaptic neuron, kept at {points + 1} "
                       f"points over {n} steps, {tasks} tasks")


# -------------------------------------------------------------------------- spikes only
def check_spikes(network: Network, key: jax.Array, *, steps: int = 20,
                 task: Task | None = None) -> CheckResult:
    """What every plastic layer receives (the input layer's output included) must be 0 or 1,
    over ``steps`` time steps of random inputs; for a network that passes its input on as
    spikes (``encoder = "spikes"``), of ``task``'s own inputs (e.g. recorded spike
    trains: whether they are spikes is the data's property, not the network's)."""
    given = isinstance(network, SpikingNetwork) and network.encoder == "spikes"
    if given and task is None:
        return CheckResult("spikes_only", False, "the network passes its input on as spikes "
                           "(encoder 'spikes'): checking it needs the task's inputs")
    # random inputs drawn by NumPy (a random-number program costs more to compile than
    # this check runs); every step in one compiled scan
    seed = np.asarray(jax.random.key_data(key)).ravel()
    xs = None if given else np.random.default_rng(seed).standard_normal(
        (steps, network.sizes[0])).astype(np.float32)

    def run(key, xs):
        state = network.init(key)
        if given:
            k_task, k_env = jax.random.split(jax.random.fold_in(key, 1))
            instance = task.sample(k_task)
            env = task.reset(instance, k_env)
        else:
            instance = env = None

        def body(carry, x):
            state, env = carry
            if given:
                x, _ = task.observe(instance, env)
            act, state = network.run(state, x)
            if given:
                env = task.transition(instance, env, act.rates[-1])
            return (state, env), act.rates

        return jax.lax.scan(body, (state, env), xs, length=steps)[1]

    rates = [np.asarray(r) for r in xla.once(run)(key, xs)]  # per layer: (steps, n)
    for t in range(steps):
        for l in range(network.n_layers):
            r = rates[l][t]
            bad = r[(r != 0) & (r != 1)]
            if bad.size:
                sender = "the input layer" if l == 0 else f"layer {l}"
                kind = ("real-valued inputs, not spikes" if l == 0 else
                        f"{network.activation} rate neurons send real-valued rates")
                return CheckResult("spikes_only", False,
                                   f"{sender} sends {float(bad[0]):.3g} to layer {l + 1} "
                                   f"({kind})")
    inputs = "the task's inputs" if given else "random inputs"
    return CheckResult("spikes_only", True, f"every value any layer receives over {steps} "
                       f"steps of {inputs} is 0 or 1")


def _locality(network, rule, theta, task, key):
    """The locality check, its detail naming every per-neuron constant and preprocessing
    step the run adds to what the synapses read."""
    result = check_locality(network, rule, theta, key)
    notes = []
    if not result.holds and isinstance(rule, cap.HasTermValues):
        # a named term without a per-synapse value reads more than one synapse
        values = rule.term_values(numpy_signals(np.random.default_rng(0), 1, 1))
        names = cap.term_names(rule)
        coef = np.ravel(np.asarray(rule.term_coefficients(theta), np.float64))
        found = [name + (f" (coefficient {coef[k]:.3g})" if coef.size == len(names) else "")
                 for k, (name, v) in enumerate(zip(names, values, strict=True)) if v is None]
        if found:
            notes.append(f"non-local term(s) of the rule: {', '.join(found)}")
    norm = cap.input_norm(task)
    if norm != "none":  # what the synapses see was rescaled before the network
        notes.append(f"the task's inputs are rescaled with statistics of the whole dataset "
                     f"(input_norm = {norm!r}): preprocessing before the network, not "
                     f"computed by any neuron or synapse")
    if network.update_fan_in:
        notes.append(f"every update is scaled by update_fan_in / (the neuron's number of "
                     f"inputs) = {network.update_fan_in} / n_in, a constant of each neuron")
    if network.feedback_plasticity == "learned":
        notes.append("the feedback synapses change by their own learned rule, reading only "
                     "the error they carry, the activity of the neuron they end on and their "
                     "own weight (metaplastic.rules.feedback)")
    if network.bounds_updates:
        notes.append(f"every update is softly bounded by {network.update_bound_w:g} × |w| "
                     f"(the synapse's own weight) + {network.update_bound_init:g} × the "
                     f"layer's initial weight scale (a constant of each layer)")
    if not notes:
        return result
    return dataclasses.replace(result, detail="; ".join([result.detail, *notes]))


def _weight_transport(network, rule, theta, task, key):
    return check_weight_transport(network, key)


def _spikes(network, rule, theta, task, key):
    return check_spikes(network, key, task=task)


register("check", "locality", _locality)
register("check", "no_weight_transport", _weight_transport)
register("check", "online", check_online)
register("check", "dale", check_dale)
register("check", "spikes_only", _spikes)


def check(constraints, network: Network, rule: Rule, theta: Any, task: Task,
          key: jax.Array) -> list[CheckResult]:
    """Run the named constraints (every registered one if empty).

    A check is registered as ``fn(network, rule, theta, task, key) -> CheckResult``
    (``metaplastic.register("check", name, fn)``)."""
    names = check_names(constraints) or tuple(registry.names("check"))
    out = []
    for name in names:
        k = jax.random.fold_in(key, _stream(name))
        out.append(registry.entry("check", name).cls(network, rule, theta, task, k))
    return out


def _stream(name: str) -> int:
    """The key stream of a check: its place among the built-in ones (keys unchanged),
    then a hash of the name."""
    if name in CONSTRAINTS:
        return CONSTRAINTS.index(name)
    return int.from_bytes(name.encode()[:4].ljust(4, b"\0"), "little") & 0x7FFFFFFF
