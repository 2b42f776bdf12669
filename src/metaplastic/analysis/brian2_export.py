"""A rule and its network as a runnable Brian2 script (``metaplastic export RUN --format
brian2``), and the check that Brian2 learns what the library learns.

What is written (``RUN/export/``):

* ``brian2_model.py`` — the network as Brian2 objects: one ``NeuronGroup`` per layer
  (the input layer's rates read from a ``TimedArray``; every other layer ``r = f(I)``),
  one ``Synapses`` per weight matrix whose postsynaptic current is a summed variable
  (``I_post = w * r_pre : 1 (summed)``), and on every plastic matrix the learned rule as
  the synapses' update, ``w += live(t) * (dw)``, with ``dw`` the rule's own equation (the
  one ``metaplastic export --format sympy`` prints, at full precision) in Brian2's names
  (``r_pre``, ``r_post``, ``w``, ``modulator(t)``).
* ``brian2_inputs.npz`` — what the task gave the network in one inner episode: the inputs
  (``x``, steps × inputs), the neuromodulatory signal (``modulator``), whether each step
  learns (``live``), the initial weights, and the library's own weights after every step
  (for the comparison); in a spiking network also every layer's spikes.

**The discretisation is the library's** (:func:`metaplastic.inner.make_step_detail`): one
clock step is one inner step. Within a step, every layer's current is summed from the
previous layer's rate (the summed variables, in layer order, in the ``start`` slot), the
rates follow instantaneously (``r = f(I)``), and then, in the ``end`` slot, every plastic
synapse changes by ``dw`` read from this step's rates and its weight before the change.

**The run is open loop**: inputs and the modulator are replayed from the library's
episode. Where the task closes the loop (a reward that depends on the output), the replay
is exact as long as Brian2's network does what the library's did, which is what the
comparison checks.

**What is exported**: rate networks (instantaneous rate neurons of the activations in
:data:`ACTIVATIONS`, any depth, fixed layers allowed) and spiking networks of the
library's LIF/ALIF neurons (input spikes replayed; each layer stepped as
:meth:`~metaplastic.neurons.lif.LIFNeuron.step` steps it, spike traces after the step),
with rules of named terms (``polynomial``, ``termpool``, ...) that read ``pre``, ``post``,
``w``, the modulator and, in a spiking network, ``pre_trace`` and ``post_trace``.
Anything else — errors through a feedback pathway (``e_pre``, ``e_post``), rule state,
learned neurons, rate neurons with a time constant, update bounds, normalisation, Dale's
law — is refused with one message that names every piece, before anything is written.

**Tolerance** (checked by :func:`compare`): Brian2 computes in float64, the library in
float32, so the weights agree to float32 rounding that accumulates over the episode; the
comparison reports the largest difference relative to the largest weight.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError
from metaplastic.inner import initial_carry, make_step_detail

#: the library's activation -> its expression of the current ``I`` in Brian2
ACTIVATIONS = {
    "linear": "I",
    "tanh": "tanh(I)",
    "relu": "clip(I, 0, inf)",
    "sigmoid": "1 / (1 + exp(-I))",
    "softplus1": "log(1 + exp(I))",
    "softplus10": "log(1 + exp(10 * I)) / 10",
}
#: the signals a synapse reads -> their names in Brian2's synaptic equations
SIGNALS = {"pre": "r_pre", "post": "r_post", "w": "w", "modulator": "modulator(t)"}
#: ... in a spiking network: the spikes (0/1) this step and the spike traces after it
SPIKING_SIGNALS = {"pre": "s_pre", "post": "s_post", "w": "w", "modulator": "modulator(t)",
                   "pre_trace": "trace_pre", "post_trace": "trace_post"}
SCRIPT, INPUTS, OUTPUTS = "brian2_model.py", "brian2_inputs.npz", "brian2_weights.npz"
#: the library's weights after every step are kept for the comparison up to this many
#: numbers (steps x synapses); a longer episode is refused with the number
MAX_RECORDED = 50_000_000


def _activation(name: str) -> str | None:
    from metaplastic import activations

    return ACTIVATIONS.get(activations.canonical(name, "neuron"))


def unsupported(network: Any, rule: Any, theta: Any) -> list[str]:
    """Every piece of ``network`` and ``rule`` the Brian2 export cannot express, in
    words (empty: it can)."""
    from metaplastic.analysis import export

    out = []
    if network.spiking:
        if not _lif(network):
            out.append("spiking neurons other than the library's LIF/ALIF neurons")
    elif network.neuron_model is not None:
        out.append("neurons other than instantaneous rate or LIF neurons (learned neurons)")
    elif network.tau is not None:
        out.append(f"rate neurons with a time constant (network.tau = {network.tau})")
    else:
        for l in range(1, network.n_layers + 1):
            act = network.neuron(l).activation
            if _activation(act) is None:
                out.append(f"the activation {act!r} of layer {l} (exported: "
                           f"{', '.join(ACTIVATIONS)})")
    for name, value, off in (("update_fan_in", network.update_fan_in, 0),
                             ("update_bound_w", network.update_bound_w, 0.0),
                             ("update_bound_init", network.update_bound_init, 0.0),
                             ("normalize", network.normalize, "none"),
                             ("dale", network.dale, False),
                             ("feedback_plasticity", network.feedback_plasticity, "none")):
        if value != off:
            out.append(f"network.{name} = {value!r}")
    if not isinstance(rule, cap.HasTermValues):
        out.append(f"the rule {rule.family!r}: not made of named terms (a network rule: "
                   f"`metaplastic explain RUN` distils it into a polynomial first)")
        return out
    if jax.tree.leaves(rule.init_state((1, 1))):
        out.append(f"the rule {rule.family!r} carries a state of its own between steps")
    read = sorted({str(s) for l in range(network.n_layers) for s in export.expression(
        rule, rule.layer_theta(theta, l), digits=export.FULL)[0].free_symbols} - {"eta"})
    names = signal_names(network)
    other = [s for s in read if s not in names]
    if other:
        out.append(f"the rule reads {', '.join(other)} (exported: the signals "
                   f"{', '.join(names)}; errors come through a feedback pathway, which "
                   f"the script does not build"
                   + ("" if network.spiking else ", and traces come from spiking neurons")
                   + ")")
    return out


def _lif(network: Any) -> bool:
    """Whether every layer of a spiking ``network`` is the library's LIF/ALIF neuron and
    it keeps spike traces (what the script writes out)."""
    from metaplastic.neurons.lif import LIFNeuron
    from metaplastic.spiking import SpikingNetwork

    return isinstance(network, SpikingNetwork) and all(
        type(network.neuron(l)) is LIFNeuron for l in range(1, network.n_layers + 1))


def signal_names(network: Any) -> dict[str, str]:
    """The signals a synapse of ``network`` can read -> their names in Brian2."""
    return SPIKING_SIGNALS if network.spiking else SIGNALS


def check_exportable(network: Any, rule: Any, theta: Any) -> None:
    """A ConfigError naming every piece the export cannot express; nothing if it can."""
    bad = unsupported(network, rule, theta)
    if bad:
        raise ConfigError("the Brian2 export cannot express: " + "; ".join(bad))


def update_equation(rule: Any, theta: Any, names: dict[str, str] = SIGNALS) -> str:
    """The rule's ``dw`` (θ's coefficients at full precision, ``eta`` as a number) in
    Brian2's names (``names``: :data:`SIGNALS`, or :data:`SPIKING_SIGNALS`)."""
    import sympy

    from metaplastic.analysis import export

    expr, consts = export.expression(rule, theta, digits=export.FULL)
    t = sympy.Symbol("t")
    subs = {sympy.Symbol(k): sympy.Float(v, export.FULL) for k, v in consts.items()}
    subs |= {sympy.Symbol(k): (sympy.Function("modulator")(t) if k == "modulator"
                               else sympy.Symbol(v)) for k, v in names.items()}
    return sympy.sstr(expr.xreplace(subs), full_prec=True)


def record(network: Any, rule: Any, theta: Any, task: Any, instance: Any,
           key: jax.Array) -> dict[str, np.ndarray]:
    """One inner episode as the script replays it: inputs (a spiking network's: the input
    spikes), modulator, ``live``, the initial weights (``w0_1``...), the weights after
    every step (``w_1``: steps x n_out x n_in ...) and, in a spiking network, every
    layer's spikes (``spikes_1``: steps x n_out ...)."""
    steps = task.n_steps
    synapses = sum(int(np.prod(s)) for s in network.shapes)
    if steps * synapses > MAX_RECORDED:
        raise ConfigError(f"the Brian2 comparison keeps the weights after every step: "
                          f"{steps} steps x {synapses} synapses is over {MAX_RECORDED:,} "
                          f"numbers; export a smaller network or a shorter task")

    @jax.jit
    def run(key):
        start = initial_carry(network, rule, theta, task, instance, key)
        step = make_step_detail(network, rule, theta, task, instance)

        def body(carry, _):
            carry, signals, _, live = step(carry)
            return carry, (signals[0].pre, jnp.asarray(signals[0].modulator, jnp.float32),
                           jnp.asarray(live, jnp.float32), carry[0].weights,
                           tuple(s.post for s in signals))

        _, (x, mod, live, weights, post) = jax.lax.scan(body, start, None, length=steps)
        return start[0].weights, x, mod, live, weights, post

    w0, x, mod, live, weights, post = jax.device_get(run(key))
    out = {"steps": np.asarray(steps), "x": np.asarray(x, np.float64),
           "modulator": np.broadcast_to(np.asarray(mod, np.float64), (steps,)).copy(),
           "live": np.broadcast_to(np.asarray(live, np.float64), (steps,)).copy()}
    for l, (a, b) in enumerate(zip(w0, weights, strict=True), start=1):
        out[f"w0_{l}"] = np.asarray(a, np.float64)
        out[f"w_{l}"] = np.asarray(b, np.float32)
        if network.spiking:  # every layer's spikes, compared with Brian2's
            out[f"spikes_{l}"] = np.asarray(post[l - 1], np.float32)
    return out


def script(network: Any, rule: Any, theta: Any, source: str) -> str:
    """The Brian2 script's text (reads ``brian2_inputs.npz`` beside it, writes
    ``brian2_weights.npz``)."""
    sizes = network.sizes
    kind, body = (("spiking (LIF)", _spiking_layers) if network.spiking
                  else ("rate", _rate_layers))
    order = ("currents summed in layer order (start slot), each layer's LIF update\n"
             "(voltage, spike, reset, refractoriness, adaptation, spike trace), then"
             if network.spiking else
             "currents summed in layer order (start slot), rates r = f(I), then")
    lines = [
        f'"""{network.n_layers}-layer {kind} network {"-".join(map(str, sizes))} learning '
        f'by the rule of {source}.',
        "",
        "Written by `metaplastic export --format brian2`. One clock step is one inner step",
        f"of the library: {order}",
        "every plastic synapse changes by dw (end slot). Inputs and the modulator are",
        f'replayed from {INPUTS}; the weights after every step go to {OUTPUTS}."""',
        "from pathlib import Path",
        "",
        "import brian2 as b2",
        "import numpy as np",
        "",
        'b2.prefs.codegen.target = "numpy"  # no C compiler needed',
        "HERE = Path(__file__).resolve().parent",
        f'data = np.load(HERE / "{INPUTS}")',
        'STEPS = int(data["steps"])',
        "b2.defaultclock.dt = 1 * b2.ms  # one inner step",
        "dt = b2.defaultclock.dt",
        'x = b2.TimedArray(data["x"], dt=dt)  # (steps, inputs)',
        'modulator = b2.TimedArray(data["modulator"], dt=dt)',
        'live = b2.TimedArray(data["live"], dt=dt)  # 1 while the task learns',
        "",
        f"# the learned rule: {' '.join(rule.formula(theta).split())}",
        "",
        *body(network, rule, theta),
        "",
        "net = b2.Network(*layers, *synapses, *monitors"
        + (", *spike_monitors)" if network.spiking else ")"),
        "net.run(STEPS * dt)",
        "out = {}",
        "for l, (syn, mon) in enumerate(zip(synapses, monitors), start=1):",
        '    w = np.zeros((STEPS, *data[f"w0_{l}"].shape))',
        "    w[:, syn.j[:], syn.i[:]] = np.asarray(mon.w).T",
        '    out[f"w_{l}"] = w',
        *(["for l, mon in enumerate(spike_monitors, start=1):",
           '    out[f"spikes_{l}"] = np.asarray(mon.s).T'] if network.spiking else []),
        f'np.savez(HERE / "{OUTPUTS}", **out)',
        f'print("wrote", HERE / "{OUTPUTS}")',
    ]
    return "\n".join(lines) + "\n"


def _plasticity(network: Any, rule: Any, theta: Any, l: int) -> list[str]:
    """Layer ``l``'s synapse update (when plastic) and the monitor of its weights."""
    lines = []
    if network.learns(l - 1):
        dw = update_equation(rule, rule.layer_theta(theta, l - 1), signal_names(network))
        lines.append(f'syn.run_regularly("w += live(t) * ({dw})", when="end", order={l})')
    return lines + ['monitors.append(b2.StateMonitor(syn, "w", record=True, when="end", '
                    'order=100))', "synapses.append(syn)"]


def _spiking_layers(network: Any, rule: Any, theta: Any) -> list[str]:
    """LIF layers as the library steps them (:meth:`LIFNeuron.step`), the input spikes
    replayed, every layer's spike trace after the step (what the rule reads)."""
    sizes, decay = network.sizes, repr(network.trace_decay)
    lines = [
        f"DECAY = {decay}  # spike traces: trace <- DECAY * trace + spike",
        f'layers = [b2.NeuronGroup({sizes[0]}, """s : 1',
        'trace : 1""", name="layer0")]  # the input spikes, replayed',
        'layers[0].run_regularly("""s = x(t, i)',
        'trace = DECAY * trace + s""", when="start", order=0)',
        "synapses, monitors, spike_monitors = [], [], []",
    ]
    for l in range(1, network.n_layers + 1):
        n = network.neuron(l)
        reset = ("v = v - s * THRESHOLD" if n.reset == "subtract" else "v = v * (1 - s)")
        lines += [
            "",
            f"# layer {l}: {sizes[l]} LIF neurons (tau_mem {n.tau_mem}, threshold "
            f"{n.threshold}, reset {n.reset!r}, refractory {n.refractory} steps, beta "
            f"{n.beta}), {'plastic' if network.learns(l - 1) else 'fixed'} synapses from "
            f"layer {l - 1}",
            f'layers.append(b2.NeuronGroup({sizes[l]}, """I : 1',
            "v : 1", "refr : 1", "a : 1", "s : 1", "trace : 1", "free : 1",
            'ALPHA : 1 (shared, constant)', 'RHO : 1 (shared, constant)',
            'THRESHOLD : 1 (shared, constant)', 'BETA : 1 (shared, constant)',
            f'REFRACTORY : 1 (shared, constant)""", name="layer{l}"))',
            f"layers[{l}].ALPHA, layers[{l}].RHO = {n.alpha!r}, {n.rho!r}",
            f"layers[{l}].THRESHOLD, layers[{l}].BETA = {float(n.threshold)!r}, "
            f"{float(n.beta)!r}",
            f"layers[{l}].REFRACTORY = {int(n.refractory)}",
            f"syn = b2.Synapses(layers[{l - 1}], layers[{l}], "
            f'"""w : 1',
            f'I_post = w * s_pre : 1 (summed)""", name="synapses{l}")',
            "syn.connect()",
            f'syn.w = data["w0_{l}"][syn.j[:], syn.i[:]]  # W[post, pre]',
            f'syn.summed_updaters["I_post"].when, syn.summed_updaters["I_post"].order = '
            f'"start", {2 * l - 1}',
            f'layers[{l}].run_regularly("""free = int(refr == 0)',
            "v = free * (ALPHA * v + I)",
            "s = free * int(v - (THRESHOLD + BETA * a) >= 0)",
            reset,
            "refr = s * REFRACTORY + (1 - s) * clip(refr - 1, 0, inf)",
            "a = RHO * a + s",
            f'trace = DECAY * trace + s""", when="start", order={2 * l})',
            f'spike_monitors.append(b2.StateMonitor(layers[{l}], "s", record=True, '
            f'when="end", order=100))',
            *_plasticity(network, rule, theta, l),
        ]
    return lines


def _rate_layers(network: Any, rule: Any, theta: Any) -> list[str]:
    """Instantaneous rate layers: currents summed, ``r = f(I)``."""
    sizes = network.sizes
    lines = [
        f'layers = [b2.NeuronGroup({sizes[0]}, "r = x(t, i) : 1", name="layer0")]',
        "synapses, monitors = [], []",
    ]
    for l in range(1, network.n_layers + 1):
        f = _activation(network.neuron(l).activation)
        plastic = network.learns(l - 1)
        lines += [
            "",
            f"# layer {l}: {sizes[l]} rate neurons, "
            f"{'plastic' if plastic else 'fixed'} synapses from layer {l - 1}",
            f'layers.append(b2.NeuronGroup({sizes[l]}, """I : 1',
            f'r = {f} : 1""", name="layer{l}"))',
            f"syn = b2.Synapses(layers[{l - 1}], layers[{l}], "
            f'"""w : 1',
            f'I_post = w * r_pre : 1 (summed)""", name="synapses{l}")',
            "syn.connect()",
            f'syn.w = data["w0_{l}"][syn.j[:], syn.i[:]]  # W[post, pre]',
            f'syn.summed_updaters["I_post"].when, syn.summed_updaters["I_post"].order = '
            f'"start", {l}',
            *_plasticity(network, rule, theta, l),
        ]
    return lines


def write(out: Path, network: Any, rule: Any, theta: Any, task: Any, instance: Any,
          key: jax.Array, source: str) -> tuple[Path, Path]:
    """``brian2_model.py`` and ``brian2_inputs.npz`` in ``out``: the episode of ``task``'s
    ``instance`` with the network's weights drawn by ``key`` (or given by the task or θ).
    Checked first: nothing is written for a network or rule the export cannot express.
    A composed rule (a fitted start) is exported as its synapses' own rule."""
    from metaplastic.rules.composed import synapses_part

    own, own_theta = synapses_part(rule, theta)
    check_exportable(network, own, own_theta)
    data = record(network, rule, theta, task, instance, key)
    text = script(network, own, own_theta, source)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / INPUTS, **data)
    (out / SCRIPT).write_text(text)
    return out / SCRIPT, out / INPUTS


@dataclass
class Comparison:
    """Brian2's weights against the library's over one episode: the largest absolute
    difference, the largest weight, and their ratio (``relative``); in a spiking network
    also the spikes."""

    steps: int
    max_abs: float
    max_weight: float
    seconds: float
    #: a spiking network: the library's spikes over the episode (every layer), and the
    #: (step, neuron) pairs where Brian2's spike differs from the library's
    spikes: int | None = None
    spike_mismatches: int | None = None

    @property
    def relative(self) -> float:
        return self.max_abs / max(self.max_weight, 1e-30)

    def to_json(self) -> dict:
        return {"steps": self.steps, "max_abs_difference": self.max_abs,
                "max_abs_weight": self.max_weight, "relative": self.relative,
                "brian2_seconds": self.seconds, "spikes": self.spikes,
                "spike_mismatches": self.spike_mismatches}


def brian2_python() -> str:
    """The Python that runs exported scripts: ``$METAPLASTIC_BRIAN2_PYTHON``, else this
    one. (Brian2 2.9, the last release for Python 3.11, needs NumPy < 2.4: where this
    environment has a newer NumPy, point the variable at an environment with Brian2.)"""
    return os.environ.get("METAPLASTIC_BRIAN2_PYTHON") or sys.executable


@functools.cache
def _importable(python: str) -> str | None:
    """None where ``python`` imports brian2, else why not (the error's last line)."""
    try:
        done = subprocess.run([python, "-c", "import brian2"], capture_output=True,
                              text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{type(e).__name__}: {e}"
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def brian2_available() -> bool:
    """Whether :func:`brian2_python` can import Brian2."""
    return _importable(brian2_python()) is None


def compare(out: Path, timeout: float = 600.0) -> Comparison:
    """Run the exported script with Brian2 (a fresh Python process, :func:`brian2_python`,
    as a user would) and compare its weights after every step with the library's."""
    import time

    python = brian2_python()
    why = _importable(python)
    if why is not None:
        raise ConfigError(f"Brian2 cannot be imported by {python} ({why}): `pip install "
                          f"brian2` there, or set METAPLASTIC_BRIAN2_PYTHON to a Python "
                          f"that has it (Brian2 2.9 on Python 3.11 needs NumPy < 2.4)")
    t = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([python, str(out / SCRIPT)], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise ConfigError(f"the exported Brian2 script failed (exit {done.returncode}):\n"
                          f"{tail}")
    lib, b2 = np.load(out / INPUTS), np.load(out / OUTPUTS)
    keys = sorted(k for k in lib.files if k.startswith("w_"))
    max_abs = max(float(np.max(np.abs(lib[k].astype(np.float64) - b2[k]))) for k in keys)
    max_w = max(float(np.max(np.abs(lib[k]))) for k in keys)
    spikes = sorted(k for k in lib.files if k.startswith("spikes_"))
    result = Comparison(int(lib["steps"]), max_abs, max_w, round(seconds, 2),
                        spikes=int(sum(np.sum(lib[k]) for k in spikes)) if spikes else None,
                        spike_mismatches=int(sum(np.sum(lib[k] != b2[k]) for k in spikes))
                        if spikes else None)
    (out / "brian2_check.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result
