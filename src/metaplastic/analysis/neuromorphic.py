"""Spiking networks to and from NIR, the neuromorphic exchange format (``nir`` package,
read by snnTorch, Norse, Spyx, Lava, ...).

A :class:`~metaplastic.spiking.SpikingNetwork` with weights ``W_1..W_L`` becomes the graph
``input -> Linear(W_1) -> LIF -> ... -> Linear(W_L) -> LIF -> output``; the input node
receives the 0/1 spikes of the encoded input (the encoder is not part of the graph: Poisson
encoding is random, and NIR has no node for it).

How the library's LIF maps onto NIR's (continuous time, ``tau dv/dt = (v_leak - v) + R I``,
a spike when ``v > v_threshold``, then ``v <- v_reset``), for a step ``dt`` (metadata
``dt``): the library steps ``v <- alpha v + I`` with ``alpha = exp(-dt / tau_mem)``;
NIR's forward-Euler step is ``v <- (1 - dt / tau) v + (dt / tau) R I``. So

    tau = dt / (1 - alpha),   R = tau / dt,   v_leak = 0,   v_threshold = threshold,

and one Euler step of the NIR node is the library's step. The reset maps exactly when the
library resets to zero (``reset = "zero"``: ``v_reset = 0``). The library's default reset
"subtract" (``v <- v - threshold``) has no NIR node: it is exported as reset to zero, and
the metadata says so (``reset_in_library``); spike trains then differ from the library's
once a neuron's voltage overshoots its threshold. Refractory periods and adaptive
thresholds (ALIF) have no NIR LIF equivalent either: such networks are not exported.
The library fires when ``v >= threshold``, NIR when ``v > threshold``: the same spikes
unless a voltage lands on the threshold exactly.

:func:`from_nir` reads such a graph back into a network and weights, and :func:`simulate`
runs it (weights frozen) on given input spikes: the round trip reproduces the spike trains
of the original exactly (``tests/test_neuromorphic.py``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import capabilities as cap
from metaplastic.errors import ConfigError
from metaplastic.network import Network
from metaplastic.neurons.lif import LIFNeuron


def check_exportable(network) -> LIFNeuron:
    if not cap.spiking(network):
        raise ConfigError("NIR export is for spiking networks (network.neuron = 'lif'); "
                          "this run's network has rate neurons")
    lif = network.neuron_model
    if not isinstance(lif, LIFNeuron) or lif.beta > 0:
        raise ConfigError("NIR's LIF node has no adaptive threshold: ALIF networks "
                          "(beta > 0) cannot be exported")
    if lif.refractory > 0:
        raise ConfigError(f"NIR's LIF node has no refractory period: this network's neurons "
                          f"are refractory for {lif.refractory} steps")
    return lif


def to_nir(network, weights, source: str = "metaplastic"):
    """The network with ``weights`` (numpy or JAX arrays, one per layer) as a NIR graph;
    ``source`` goes into its metadata (the CLI writes the library's version)."""
    import nir

    lif = check_exportable(network)
    weights = [np.asarray(w, dtype=np.float32) for w in weights]
    if [w.shape for w in weights] != list(network.shapes):
        raise ConfigError(f"weights of shapes {[w.shape for w in weights]} do not fit the "
                          f"network's {list(network.shapes)}")
    tau = lif.dt / (1.0 - lif.alpha)
    nodes = {"input": nir.Input(input_type=np.array([network.sizes[0]]))}
    edges, last = [], "input"
    for l, w in enumerate(weights, start=1):
        n = w.shape[0]
        nodes[f"linear{l}"] = nir.Linear(weight=w)
        nodes[f"lif{l}"] = nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / lif.dt),
                                   v_leak=np.zeros(n), v_threshold=np.full(n, lif.threshold),
                                   v_reset=np.zeros(n))
        edges += [(last, f"linear{l}"), (f"linear{l}", f"lif{l}")]
        last = f"lif{l}"
    nodes["output"] = nir.Output(output_type=np.array([network.sizes[-1]]))
    edges.append((last, "output"))
    metadata = {"dt": float(lif.dt), "source": source,
                "reset_in_library": lif.reset,
                "note": ("library LIF: v <- exp(-dt/tau_mem) v + W s; exported as "
                         "tau = dt/(1 - exp(-dt/tau_mem)), R = tau/dt, v_leak = 0, v_reset = 0"
                         + ("" if lif.reset == "zero" else
                            "; the library's reset by subtraction is exported as reset to 0"))}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write(path: str | Path, network, weights, source: str = "metaplastic") -> Path:
    import nir

    path = Path(path)
    nir.write(path, to_nir(network, weights, source))
    return path


def _chain(graph) -> list[str]:
    """The node names from the input to the output of a chain-shaped graph."""
    nxt: dict[str, str] = {}
    for a, b in graph.edges:
        if a in nxt:
            raise ConfigError(f"NIR graph branches at node {a!r}: only feed-forward chains "
                              f"(input -> linear -> LIF -> ... -> output) are read")
        nxt[a] = b
    starts = [k for k, v in graph.nodes.items() if type(v).__name__ == "Input"]
    if len(starts) != 1:
        raise ConfigError(f"NIR graph needs exactly one input node, found {len(starts)}")
    order, seen = [starts[0]], {starts[0]}
    while order[-1] in nxt:
        order.append(nxt[order[-1]])
        if order[-1] in seen:
            raise ConfigError("NIR graph has a cycle: recurrent graphs are not read")
        seen.add(order[-1])
    return order


def _one(values, what: str) -> float:
    v = np.unique(np.asarray(values, dtype=np.float64))
    if v.size != 1:
        raise ConfigError(f"NIR LIF nodes with different {what} per neuron cannot be read: "
                          f"the library's neurons share one model")
    return float(v[0])


def from_nir(graph_or_path, dt: float | None = None) -> tuple[Network, tuple[np.ndarray, ...]]:
    """A network and its weights from a NIR graph (or file) of the shape :func:`to_nir`
    writes: Linear (or Affine without bias) and LIF nodes in turn, one LIF model for every
    neuron. ``dt``: the time step (default: the graph's metadata ``dt``, else 1).

    The network is a plain :class:`~metaplastic.network.Network` of LIF neurons whose
    input is spikes (no encoder): step it with :func:`simulate`."""
    import nir

    graph = graph_or_path
    if isinstance(graph_or_path, str | Path):
        try:
            graph = nir.read(graph_or_path)
        except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:
            raise ConfigError(f"cannot read {graph_or_path} as a NIR file: "
                              f"{type(e).__name__}: {e}") from None
    meta = getattr(graph, "metadata", None)
    if dt is None:
        dt = float(meta.get("dt", 1.0)) if isinstance(meta, dict) else 1.0
    order = _chain(graph)
    body = [graph.nodes[k] for k in order[1:]]
    if body and type(body[-1]).__name__ == "Output":
        body = body[:-1]
    if len(body) < 2 or len(body) % 2:
        raise ConfigError("NIR graph must alternate weight nodes (Linear/Affine) and LIF "
                          f"nodes; got {[type(b).__name__ for b in body]}")
    weights, models = [], []
    for lin, cell in zip(body[::2], body[1::2], strict=True):
        kind, neuron = type(lin).__name__, type(cell).__name__
        if kind not in ("Linear", "Affine") or neuron != "LIF":
            raise ConfigError(f"NIR node pair {kind} -> {neuron} is not read: only Linear "
                              f"(or Affine without bias) -> LIF")
        if kind == "Affine" and np.any(np.asarray(lin.bias) != 0):
            raise ConfigError("NIR Affine nodes with a bias are not read: the library's "
                              "layers have no bias")
        if _one(cell.v_leak, "v_leak") != 0.0:
            raise ConfigError("NIR LIF nodes with v_leak != 0 are not read")
        tau = _one(cell.tau, "tau")
        if tau <= dt:
            raise ConfigError(f"NIR LIF tau {tau} must exceed the time step dt = {dt}")
        alpha = 1.0 - dt / tau
        gain = (dt / tau) * _one(cell.r, "r")
        w = np.asarray(lin.weight, dtype=np.float64)
        weights.append((w if gain == 1.0 else w * gain).astype(np.float32))
        reset = "zero" if _one(cell.v_reset, "v_reset") == 0.0 else None
        if reset is None:
            raise ConfigError("NIR LIF nodes with v_reset != 0 are not read")
        models.append((-dt / np.log(alpha), _one(cell.v_threshold, "v_threshold")))
    if len(set(models)) != 1:
        raise ConfigError("NIR LIF nodes of different layers differ (tau, threshold): the "
                          "library's network has one neuron model")
    tau_mem, threshold = models[0]
    lif = LIFNeuron(tau_mem=float(tau_mem), threshold=float(threshold), reset="zero",
                    dt=float(dt))
    sizes = (weights[0].shape[1], *(w.shape[0] for w in weights))
    return Network(sizes=sizes, neuron_model=lif), tuple(weights)


def simulate(network: Network, weights, input_spikes) -> tuple[np.ndarray, ...]:
    """Spikes of every layer (input first), ``(steps, neurons)`` each, for the input
    spikes ``(steps, n_in)``, weights frozen, from rest."""
    x = jnp.asarray(input_spikes, dtype=jnp.float32)
    if x.ndim != 2 or x.shape[1] != network.sizes[0]:
        raise ConfigError(f"input spikes must be (steps, {network.sizes[0]}), got {x.shape}")
    state = network.init(jax.random.key(0), tuple(jnp.asarray(w) for w in weights))

    def step(state, s):
        act, state = network.run(state, s)
        return state, act.rates

    spikes = jax.jit(lambda st, x: jax.lax.scan(step, st, x)[1])(state, x)
    return tuple(np.asarray(s).astype(np.uint8) for s in spikes)
