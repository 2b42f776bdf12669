"""Ground truth for rule inference: recordings of a network learning under a known rule.

:func:`simulate` runs ``n`` trajectories of a network learning online under ``rule`` with
``theta`` on inputs from a source task (PCA inputs, ...), and returns what an experiment
would record, in the layout of :mod:`metaplastic.tasks.recorded`: the inputs (a spiking
network's: its input spikes), the output layer's activity (or spikes) with measurement
noise and a recording mask (a random subset of the output neurons per trajectory), the
modulator as ``rewards``, and the initial weights.
Fitting a rule to these recordings (task ``recorded``) and comparing the inferred θ with
``theta`` measures recovery where the answer is known.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from metaplastic import capabilities as cap
from metaplastic import xla
from metaplastic.errors import ConfigError
from metaplastic.inner import trace
from metaplastic.meta.memory import available, gib
from metaplastic.network import Network
from metaplastic.progress import reporting
from metaplastic.tasks.base import Task

OBSERVATIONS = ("gaussian", "poisson", "calcium", "spikes")


def _check(n: int, record: float, noise: float, network: Network,
           observation: str = "gaussian", calcium_tau: float = 10.0) -> None:
    if observation not in OBSERVATIONS:
        raise ConfigError(f"observation must be one of {', '.join(OBSERVATIONS)}, got "
                          f"{observation!r}")
    if not calcium_tau > 0:
        raise ConfigError(f"calcium_tau must be positive (steps), got {calcium_tau}")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1_000_000:
        raise ConfigError(f"trajectories must be an integer in [1, 1000000], got {n!r}")
    if not 0.0 < record <= 1.0:
        raise ConfigError(f"record (the fraction of output neurons recorded) must be in "
                          f"(0, 1], got {record}")
    if not noise >= 0.0:
        raise ConfigError(f"noise (relative to the activity's SD) must be >= 0, got {noise}")
    if cap.spiking(network) != (observation == "spikes"):
        raise ConfigError("simulate: observation = 'spikes' records a spiking network's "
                          "output spikes, and a spiking network's output is recorded as "
                          f"spikes; got observation = {observation!r} for a "
                          f"{'spiking' if cap.spiking(network) else 'rate'} network")
    if observation == "spikes" and noise:
        raise ConfigError(f"simulate: spike trains are recorded as they are (noise = 0), "
                          f"got noise = {noise}")


def _recorded(key: jax.Array, record: float, shape: tuple) -> np.ndarray:
    """The recording mask of ``shape`` (trajectories, steps, neurons): a random
    ``record`` fraction of the neurons (at least one) per trajectory, at every step."""
    n, _, width = shape
    kept = max(1, int(round(record * width)))
    order = np.argsort(np.asarray(jax.random.uniform(key, (n, width))), axis=1)
    mask = np.zeros((n, width), np.float32)
    np.put_along_axis(mask, order[:, :kept], 1.0, axis=1)
    return np.broadcast_to(mask[:, None, :], shape).copy()


#: how the simulation's one program is compiled: as a program run once (LLVM level 1,
#: threefry unrolled; :func:`metaplastic.xla.once`). The recordings are bitwise those of
#: XLA's defaults (tested; checked on the five ``infer-*`` presets' recordings at 32 to
#: 600 trajectories); it compiles in 0.54-0.75 s instead of 1.25-2.17 s on those presets
#: (docs/benchmarks.md)
_compiled = xla.once


def simulate(network: Network, rule: Any, theta: Any, source: Task, n: int, key: jax.Array,
             *, record: float = 1.0, noise: float = 0.0, observation: str = "gaussian",
             calcium_tau: float = 10.0, hidden: bool = False,
             progress: Any = None) -> dict[str, np.ndarray]:
    """Recordings of ``n`` trajectories (arrays by the names of the recordings layout).

    ``record``: fraction of the output neurons recorded (at least one), drawn per
    trajectory; ``noise``: Gaussian measurement noise, its SD this fraction of the clean
    signal's SD over all trajectories. ``observation`` (as :mod:`metaplastic.tasks.recorded`
    fits them): ``"gaussian"`` records the activity; ``"poisson"`` spike counts drawn with
    mean softplus(activity) (``noise`` unused); ``"calcium"`` ΔF/F, the activity filtered
    by an indicator decaying over ``calcium_tau`` steps; ``"spikes"`` (spiking networks
    only) the output neurons' spikes as they are. A spiking network's ``inputs`` are the
    input spikes its encoder made, so that a network with ``encoder = "spikes"`` replays
    exactly those. ``hidden``: the hidden layers are
    recorded too (``activity_<l>``, Gaussian noise and a recorded fraction ``record`` per
    layer and trajectory, drawn apart from the output's). ``progress``: the library's
    progress argument (:mod:`metaplastic.progress`): steps simulated, every trajectory at
    once, reported from inside the compiled loop (the numbers are the same either way)."""
    _check(n, record, noise, network, observation, calcium_tau)
    if hidden and observation == "spikes":
        raise ConfigError("simulate: hidden layers are recorded as Gaussian activity; a "
                          "spiking network's hidden spikes are not (set hidden = false)")
    steps = source.n_steps
    # what the recordings hold: per step the input, the activity (a float64 copy with
    # noise, its mask) and the modulator, about 4 copies of it in all on the way
    need = 4 * n * steps * (network.sizes[0] + 3 * network.sizes[-1] + 1) * 8
    have, what = available()
    if have and need > have // 2:
        raise ConfigError(f"simulate: {n} trajectories of {steps} steps need about "
                          f"{gib(need)}, more than half of the {gib(have)} of {what}; "
                          f"simulate fewer or shorter trajectories")

    def run(report):
        tick = None if report is None else (
            lambda done: report(int(done), steps, f"{n} trajectories"))

        def one(k):
            k_task, k_net = jax.random.split(k)
            instance = source.sample(k_task)
            start, end, xs = trace(network, rule, theta, source, instance, k_net,
                                   lambda s: (s[0].pre, s[-1].post, s[0].modulator,
                                              tuple(x.post for x in s[:-1]) if hidden
                                              else ()),
                                   tick=tick, every=max(1, steps // 100))
            extra = source.record(instance, end[2]) if isinstance(source, cap.Records) \
                else {}
            return xs, start[0].weights, extra

        out = _compiled(jax.vmap(one))(jax.random.split(key, n))
        return jax.block_until_ready(out)

    with reporting(progress, "simulating") as report:
        (inputs, activity, rewards, layers), w0, extra = run(report)
    activity = np.asarray(activity, np.float64)
    k_noise, k_mask = jax.random.split(jax.random.fold_in(key, 1))
    if observation == "calcium":  # the indicator: c_t = exp(-1/tau) c_{t-1} + y_t
        decay, ca = np.exp(-1.0 / calcium_tau), np.zeros_like(activity[:, 0])
        for t in range(activity.shape[1]):
            ca = decay * ca + activity[:, t]
            activity[:, t] = ca
    sd = float(np.std(activity)) or 1.0
    if observation == "poisson":  # counts, drawn by NumPy from a seed of the key
        rate = np.logaddexp(0.0, activity)  # softplus
        rng = np.random.default_rng(np.asarray(jax.random.key_data(k_noise)).ravel())
        noisy = rng.poisson(rate).astype(np.float64)
    else:
        noisy = activity + noise * sd * np.asarray(jax.random.normal(k_noise, activity.shape))
    out = {"inputs": np.array(inputs, np.float32),
           "lengths": np.full(n, steps, np.int32),
           "activity": noisy.astype(np.float32),
           "activity_mask": _recorded(k_mask, record, activity.shape),
           "rewards": np.array(rewards, np.float32)}
    out |= {f"w0_{l}": np.array(w, np.float32) for l, w in enumerate(w0, start=1)}
    for l, clean in enumerate(layers, start=1):  # hidden layers: their own draws
        clean = np.asarray(clean, np.float64)
        k_n, k_m = jax.random.split(jax.random.fold_in(key, 100 + l))
        sd_l = float(np.std(clean)) or 1.0
        out[f"activity_{l}"] = (clean + noise * sd_l * np.asarray(
            jax.random.normal(k_n, clean.shape))).astype(np.float32)
        out[f"activity_mask_{l}"] = _recorded(k_m, record, clean.shape)
    out |= {k: np.array(v) for k, v in extra.items()}  # e.g. choices
    if isinstance(source, cap.HasOutcomes) and "choices" in out:  # e.g. the trials' rewards
        out["outcomes"] = np.asarray(source.outcomes(out["choices"], out["rewards"]),
                                     np.float32)
    if not all(np.all(np.isfinite(v)) for v in out.values()):
        raise ConfigError("simulate: the network's activity diverged (NaN/inf) under this "
                          "rule; lower its eta or the number of steps")
    return out
