"""Simulated recordings for a run configuration: ``task.simulate`` (ground truth for rule
inference, :mod:`metaplastic.analysis.simulate`).

A ``recorded`` task with a ``simulate`` table instead of ``path`` gets its recordings made
from that table, once, and kept in a cache file named by the table's contents (the same
table gives the same file, bitwise)::

    [task]
    name = "recorded"
    simulate = {rule = "oja", source = {name = "pca", n_in = 10, n_steps = 500},
                outputs = 4, trajectories = 40, record = 0.5, noise = 0.1, seed = 0}

``rule``: a registered rule name (its starting θ is the truth: ``oja`` is Oja's rule) or
a table ``{name = ..., eta = ...}``; ``theta``: a θ file for that rule instead (e.g. a
run's ``theta.npz``: recordings of a learned rule); ``source``: the task whose inputs are recorded;
``network``: the network table (default: the run's); ``outputs``: output neurons (default:
the source task's); ``observation``: what is recorded of the output neurons —
``"gaussian"`` (their activity with ``noise``), ``"poisson"`` (spike counts) or
``"calcium"`` (ΔF/F with ``noise``, indicator decay ``calcium_tau`` steps), as
:mod:`metaplastic.tasks.recorded` models them; ``hidden = true``: the hidden layers are
recorded too, with the same noise and recorded fraction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from metaplastic import rules, tasks
from metaplastic.errors import ConfigError
from metaplastic.experiments import sections

KEYS = ("rule", "theta", "source", "network", "outputs", "trajectories", "record", "noise",
        "seed", "observation", "calcium_tau", "hidden")


def cache_dir() -> Path:
    return Path(os.environ.get("METAPLASTIC_CACHE", Path.home() / ".cache" / "metaplastic"))


def truth(spec: dict, network_table: dict) -> tuple[Any, Any, Any, Any]:
    """(rule, θ, network, source task) of a ``simulate`` table."""
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise ConfigError(f"task.simulate: unknown key(s) {unknown}; valid: {', '.join(KEYS)}")
    for k in ("rule", "source"):
        if k not in spec:
            raise ConfigError(f"task.simulate needs {k!r}")
    rule_t = spec["rule"] if isinstance(spec["rule"], dict) else {"name": spec["rule"]}
    source_t = dict(spec["source"])
    rule = rules.make(rule_t["name"], **{k: v for k, v in rule_t.items() if k != "name"})
    source = tasks.make(source_t.pop("name"), **source_t)
    network = sections.build_network(sections.network_options(
        dict(spec.get("network", network_table))), source.n_in,
        int(spec.get("outputs", source.n_out)))
    if "theta" in spec:
        from metaplastic.experiments.rundir import load_theta
        from metaplastic.rules.base import conform

        path = str(Path(str(spec["theta"])).expanduser())
        theta = conform(rule, load_theta(path), network.shapes, what=path)
    else:
        theta = rule.init(jax.random.key(0), network.shapes)
    return rule, theta, network, source


def replaying(network):
    """The network that made simulated recordings, as it replays them: a spiking network's
    recorded inputs are the spikes its encoder made (:func:`~metaplastic.analysis.simulate.
    simulate`), so its replay passes them on (``encoder = "spikes"``) instead of drawing
    spikes anew."""
    from metaplastic.spiking import SpikingNetwork

    if isinstance(network, SpikingNetwork) and network.encoder != "spikes":
        return dataclasses.replace(network, encoder="spikes")
    return network


def _digest(spec: dict) -> str:
    """The θ file's contents (a changed file makes new recordings), or ""."""
    if "theta" not in spec:
        return ""
    path = Path(str(spec["theta"])).expanduser()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        raise ConfigError(f"task.simulate.theta: no θ file at {str(path)!r}") from None


#: the version of what a simulation writes (2: the trials' ``outcomes``), part of the cache
#: key: recordings simulated before a change are simulated again
LAYOUT = 2


def materialise(spec: dict, network_table: dict, progress: Any = None) -> str:
    """The path of the recordings ``spec`` describes, simulated now if not cached
    (``progress``: as :func:`~metaplastic.analysis.simulate.simulate`'s)."""
    from metaplastic.analysis.simulate import simulate

    text = json.dumps({"spec": spec, "network": network_table, "theta": _digest(spec),
                       "layout": LAYOUT}, sort_keys=True, default=str)
    path = cache_dir() / "recordings" / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz"
    if path.exists():
        return str(path)
    rule, theta, network, source = truth(spec, network_table)
    data = simulate(network, rule, theta, source, int(spec.get("trajectories", 32)),
                    jax.random.key(int(spec.get("seed", 0))),
                    record=float(spec.get("record", 1.0)), noise=float(spec.get("noise", 0.0)),
                    observation=str(spec.get("observation", "gaussian")),
                    calcium_tau=float(spec.get("calcium_tau", 10.0)),
                    hidden=bool(spec.get("hidden", False)), progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)  # whole or absent: two runs may race
    return str(path)


def from_nwb(spec: dict) -> str:
    """The path of the recordings read from the NWB file(s) ``spec`` (``task.nwb``:
    :mod:`metaplastic.tasks.nwb`) describes, read now (through pynwb) unless the same
    files, by contents, were read with the same table before."""
    from metaplastic.tasks import nwb

    spec = nwb.check_spec(spec)
    digests = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in spec["files"]]
    text = json.dumps({"nwb": {**spec, "files": digests}, "layout": LAYOUT},
                      sort_keys=True, default=str)
    path = cache_dir() / "recordings" / f"nwb-{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz"
    if path.exists():
        return str(path)
    data = nwb.read(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)  # whole or absent: two runs may race
    return str(path)
