"""Recorded experiments as a task: fit θ so that the plastic network reproduces what was
observed (Mehta et al., NeurIPS 2023: model-based inference of plasticity rules).

Each trajectory of the recordings gives the network's input at every step, optionally a
reward (the broadcast modulator every synapse receives), and what was observed: the
activity of some output neurons (``activity`` with ``activity_mask``), and/or a choice per
step (``choices``). The network learns online under the rule through the recorded inputs;
the loss is the mismatch along the whole unroll:

* ``fit = "activity"``: mean squared error on the recorded entries, divided by the
  recorded activity's variance over the whole data set (1 = predicting the mean);
* ``fit = "choices"``: mean negative log-likelihood of the choices, the output read as
  the logit of choosing 1 (one output) or as logits over the options (several).

What the recorded activity is, for ``fit = "activity"`` (``observation``):

* ``"gaussian"`` (default): the output neurons' activity plus Gaussian noise of one
  variance (rates, or any signal measured linearly);
* ``"poisson"``: spike counts per step, Poisson with mean ``softplus(y)`` for the output
  ``y``. The loss is the Poisson negative log-likelihood per recorded entry, measured from
  the data's saturated model and in units of the null model's (every neuron at the data
  set's mean count): 0 = every count predicted exactly, 1 = no better than the mean;
* ``"calcium"``: ΔF/F of a calcium indicator, a linear-nonlinear model of the output:
  the neuron's rate ``y`` (its activation is the nonlinearity) drives the indicator
  ``c_t = exp(-1/calcium_tau) c_{t-1} + y_t`` (``calcium_tau`` in steps: GCaMP6s decays in
  about 1–2 s), observed as ``c_t`` plus Gaussian noise; the loss is the normalised MSE of
  ΔF/F. (A trajectory starts with ``c = 0``; a gain or baseline of the indicator is the
  output weights' and bias's to absorb.)
* ``"spikes"``: spike trains (0/1, or counts, per step), compared as van Rossum (2001)
  compares them: both the recorded and the network's output spikes are filtered by an
  exponential kernel, ``f_t = exp(-1/spike_tau) f_{t-1} + s_t`` (``spike_tau`` in steps),
  and the loss is the normalised MSE of the filtered trains. For a spiking network (its
  spike is the output, surrogate gradients pass through it), with the recorded input
  spikes replayed as they were (``network.encoder = "spikes"``): the simulated truth,
  replayed, matches the recordings exactly. A rate network fitted to spike trains is a
  rate model of them (its output filtered the same way). Its R² (``r2``) is 1 − that
  loss: in units of the whole data set's variance, since a trajectory whose recorded
  neurons hardly fire has almost no variance of its own.

Recording file (``.npz``, no object arrays), ``N`` trajectories of at most ``T`` steps:

=================  ===================  ===============================================
``inputs``         (N, T, n_in) float   the input at every step (required)
``lengths``        (N,) int             steps of each trajectory (default: all T)
``activity``       (N, T, n_out) float  observed output activity
``activity_mask``  (N, T, n_out) or     1 where ``activity`` was recorded (default: all)
                   (n_out,)
``choices``        (N, T) int           the choice at every step (0/1, or 0..n_out-1)
``rewards``        (N, T) float         the modulator at every step (default 0)
``outcomes``       (N, T) float         what the experiment recorded of each trial's
                                        outcome (e.g. reward 0/1; not used by the fit:
                                        behavioural models such as Rescorla–Wagner
                                        are fitted to it for comparison)
``update_mask``    (N, T) 0/1           1 where the synapses update (default: every
                                        step; e.g. only at a trial's last step)
``w0_<l>``         (N, out, in) float   layer l's weights at the start (l = 1, 2, ...;
                                        default: drawn by the network)
``activity_<l>``   (N, T, n_l) float    observed activity of hidden layer l (the neurons
                                        that weight matrix l feeds, l = 1..L-1);
                                        ``activity_mask_<l>`` as for the output
                                        (partially recorded: the rest is simulated)
=================  ===================  ===============================================

Trajectories shorter than ``T`` stop at their length (nothing is learned or compared
after it). ``burn_in`` steps at the start of every trajectory are replayed and learned
from but not compared: where the starting weights are not recorded (``initial =
"drawn"``), the time a rule needs to forget its start. Fitted starts (``initial =
"fitted"`` or ``"fitted_each"``) begin at the network's draw, or with ``start_steps = K``
at the least-squares fit of each recorded output neuron's activity over the first ``K``
steps to the inputs (a one-layer linear network, Gaussian activity: where the rule has
barely moved the weights yet). ``split`` picks the trajectories a
task draws from: ``"train"`` the first ``1 - heldout`` of them, ``"heldout"`` the rest
(for evaluation), ``"all"``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaplastic import _npz
from metaplastic.errors import ConfigError
from metaplastic.network import NetState, Network
from metaplastic.tasks.base import Task

Array = jax.Array
FITS = ("activity", "choices")
OBSERVATIONS = ("gaussian", "poisson", "calcium", "spikes")
SPLITS = ("train", "heldout", "all")
INITIAL = ("recorded", "drawn", "fitted", "fitted_each")
KEYS = ("inputs", "lengths", "activity", "activity_mask", "choices", "rewards",
        "outcomes", "update_mask")


@functools.cache
def load(path: str) -> dict[str, np.ndarray]:
    """A recording file, checked against the layout above (one message per problem)."""
    try:
        data = _npz.read(path, "recordings")
    except FileNotFoundError:
        raise ConfigError(f"recordings file {path!r} not found") from None
    unknown = sorted(k for k in data if k not in KEYS and not k.startswith("w0_")
                     and not re.fullmatch(r"activity(_mask)?_[1-9][0-9]*", k))
    if unknown:
        raise ConfigError(f"recordings {path!r}: unknown array(s) {unknown}; the layout "
                          f"has {', '.join(KEYS)}, w0_1, w0_2, ..., activity_1, "
                          f"activity_mask_1, ...")
    kinds = {k: v.dtype for k, v in data.items() if v.dtype.kind not in "biuf"}
    if kinds:
        raise ConfigError(f"recordings {path!r}: arrays must hold numbers; "
                          + ", ".join(f"{k} holds {d}" for k, d in sorted(kinds.items())))
    if "inputs" not in data or data["inputs"].ndim != 3:
        raise ConfigError(f"recordings {path!r} need 'inputs' of shape (trajectories, "
                          f"steps, n_in)")
    n, t, _ = data["inputs"].shape
    if n < 1 or t < 1:
        raise ConfigError(f"recordings {path!r} hold no steps: inputs {data['inputs'].shape}")
    if "activity" not in data and "choices" not in data:
        raise ConfigError(f"recordings {path!r} hold nothing to fit: neither 'activity' "
                          f"nor 'choices'")
    want = {"lengths": (n,), "choices": (n, t), "rewards": (n, t), "outcomes": (n, t),
            "update_mask": (n, t)}
    if "activity" in data:
        a = data["activity"]
        if a.ndim != 3 or a.shape[:2] != (n, t):
            raise ConfigError(f"recordings {path!r}: activity must be ({n}, {t}, n_out), "
                              f"got {a.shape}")
        mask = data.get("activity_mask", np.ones(a.shape[-1]))
        if mask.shape not in (a.shape, a.shape[-1:]):
            raise ConfigError(f"recordings {path!r}: activity_mask must be {a.shape} or "
                              f"({a.shape[-1]},), got {mask.shape}")
        data["activity_mask"] = np.broadcast_to(mask, a.shape).astype(np.float32)
    for k, shape in want.items():
        if k in data and data[k].shape != shape:
            raise ConfigError(f"recordings {path!r}: {k} must be {shape}, got {data[k].shape}")
    if "update_mask" in data and not np.isin(data["update_mask"], (0, 1)).all():
        raise ConfigError(f"recordings {path!r}: update_mask must hold only 0 and 1")
    for k in sorted(k for k in data if re.fullmatch(r"activity_[1-9][0-9]*", k)):
        a = data[k]
        if a.ndim != 3 or a.shape[:2] != (n, t):
            raise ConfigError(f"recordings {path!r}: {k} must be ({n}, {t}, n_{k[9:]}), got "
                              f"{a.shape}")
        mask = data.get(f"activity_mask_{k[9:]}", np.ones(a.shape[-1]))
        if mask.shape not in (a.shape, a.shape[-1:]):
            raise ConfigError(f"recordings {path!r}: activity_mask_{k[9:]} must be {a.shape} "
                              f"or ({a.shape[-1]},), got {mask.shape}")
        data[f"activity_mask_{k[9:]}"] = np.broadcast_to(mask, a.shape).astype(np.float32)
    stray = [k for k in data if re.fullmatch(r"activity_mask_[1-9][0-9]*", k)
             and f"activity_{k[14:]}" not in data]
    if stray:
        raise ConfigError(f"recordings {path!r}: {stray} without the activity they mask")
    lengths = data.setdefault("lengths", np.full(n, t))
    if not np.all((lengths >= 1) & (lengths <= t)):
        raise ConfigError(f"recordings {path!r}: lengths must be in [1, {t}]")
    for k, v in data.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ConfigError(f"recordings {path!r}: {k} holds NaN or inf")
    return data


class RecordedInstance(NamedTuple):
    inputs: Array  # (T, n_in)
    length: Array
    activity: Array  # (T, n_out) (zeros when not recorded)
    mask: Array  # (T, n_out)
    choices: Array  # (T,)
    rewards: Array  # (T,)
    learn: Array  # (T,) 1 where the synapses update
    w0: tuple  # per layer (out, in), or () when drawn by the network
    hidden: tuple = ()  # per recorded hidden layer: ((T, n_l) activity, (T, n_l) mask)
    index: Array = 0  # the trajectory's place in the file


class RecordedState(NamedTuple):
    t: Array
    sse: Array  # squared error on recorded entries
    n: Array  # recorded entries compared
    s1: Array  # their sum and sum of squares (for R²)
    s2: Array
    nll: Array  # choices (or Poisson counts): negative log-likelihood so far
    n_choices: Array
    ca: Array  # (n_out,) the calcium indicator (observation = "calcium"; else zeros)
    hsse: Array = 0.0  # hidden layers: squared error, each layer's over its variance
    hn: Array = 0.0  # hidden layers: recorded entries compared


@dataclass(frozen=True)
class RecordedTask(Task):
    """Replay recorded trajectories through the plastic network; see the module."""

    path: str = ""
    fit: str = "activity"
    split: str = "train"
    heldout: float = 0.2
    #: "recorded" (w0_<l> in the file), "drawn" (by the network, per trajectory),
    #: "fitted" (one start for every trajectory, fitted with the rule: θ["w0"]) or
    #: "fitted_each" (a start per trajectory, each fitted with the rule from its own data)
    initial: str = "recorded"
    #: what the recorded activity is (module docstring): "gaussian", "poisson", "calcium"
    observation: str = "gaussian"
    calcium_tau: float = 10.0  # the indicator's decay, in steps (observation = "calcium")
    spike_tau: float = 10.0  # the van Rossum kernel's decay, in steps (observation = "spikes")
    #: the first steps of every trajectory, replayed and learned from but not compared:
    #: with starts that are not recorded ("drawn"), the time for the rule to forget them
    burn_in: int = 0
    #: with a fitted start: 0 begins it at the network's draw; K > 0 at the least-squares
    #: fit of every recorded output neuron's activity over the first K steps to the inputs
    #: (per trajectory for "fitted_each", pooled over the training ones for "fitted")
    start_steps: int = 0
    score = "r2"
    study = "inference"  # a config of recordings is an inference run (rule recovery)
    simulates = True  # task.simulate: recordings simulated from a known rule first

    def __post_init__(self):
        if not self.path:
            raise ConfigError("the recorded task needs task.path = a recordings .npz file "
                              "(see `metaplastic simulate` to make one)")
        if self.fit not in FITS:
            raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not 0.0 <= self.heldout < 1.0:
            raise ConfigError(f"heldout must be a fraction in [0, 1), got {self.heldout}")
        if self.observation not in OBSERVATIONS:
            raise ConfigError(f"observation must be one of {', '.join(OBSERVATIONS)}, got "
                              f"{self.observation!r}")
        if self.observation != "gaussian" and self.fit != "activity":
            raise ConfigError(f"observation = {self.observation!r} describes recorded "
                              f"activity: it needs fit = 'activity'")
        for name in ("burn_in", "start_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a whole number of steps >= 0, got "
                                  f"{value!r}")
        if self.burn_in >= self.n_steps:
            raise ConfigError(f"burn_in ({self.burn_in}) leaves nothing of the recordings' "
                              f"{self.n_steps} steps to compare")
        if self.start_steps and (self.initial not in ("fitted", "fitted_each")
                                 or self.fit != "activity" or self.observation != "gaussian"):
            raise ConfigError(f"start_steps = {self.start_steps} estimates fitted starts from "
                              f"recorded Gaussian activity: it needs initial = 'fitted' or "
                              f"'fitted_each', fit = 'activity' and observation = 'gaussian' "
                              f"(got initial = {self.initial!r}, fit = {self.fit!r}, "
                              f"observation = {self.observation!r})")
        if self.start_steps > self.n_steps:
            raise ConfigError(f"start_steps ({self.start_steps}) is longer than the "
                              f"recordings' {self.n_steps} steps")
        if self.hidden_layers and (self.fit != "activity" or self.observation != "gaussian"):
            raise ConfigError(f"{self.path!r} records hidden layers {list(self.hidden_layers)}:"
                              f" they are compared as Gaussian activity, with fit = "
                              f"'activity' and observation = 'gaussian' only")
        for name in ("calcium_tau", "spike_tau"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive (steps), got "
                                  f"{getattr(self, name)}")
        if self.initial not in INITIAL:
            raise ConfigError(f"initial must be one of {', '.join(INITIAL)}, got "
                              f"{self.initial!r}")
        data = self._data
        if self.observation in ("poisson", "spikes") and "activity" in data:
            counts = data["activity"][data["activity_mask"] > 0]
            if counts.size and (counts.min() < 0 or not np.all(counts == np.round(counts))):
                raise ConfigError(f"observation = {self.observation!r} needs spike counts "
                                  f"(whole numbers >= 0) in {self.path!r}'s activity")
        if self.fit not in data and not (self.fit == "activity" and "activity" in data):
            raise ConfigError(f"fit = {self.fit!r} but {self.path!r} holds no {self.fit!r}")
        if self.initial == "fitted_each" and self.heldout > 0:
            raise ConfigError("initial = 'fitted_each' fits every trajectory's start from that "
                              "trajectory's own recordings: a held-out trajectory would start "
                              "where nothing was fitted; set task.heldout = 0 (and judge the "
                              "rule by its coefficients and the training fit)")
        if self.initial == "recorded" and not any(k.startswith("w0_") for k in data):
            raise ConfigError(f"initial = 'recorded' but {self.path!r} holds no w0_1, ...; "
                              f"set task.initial = 'drawn' or 'fitted'")
        if not len(self.indices):
            raise ConfigError(f"split {self.split!r} of {self.path!r} holds no trajectory "
                              f"(heldout = {self.heldout})")
        object.__setattr__(self, "score", "r2" if self.fit == "activity" else "nll")
        object.__setattr__(self, "maximise_score", self.fit == "activity")

    @property
    def _data(self) -> dict[str, np.ndarray]:
        return load(str(Path(self.path).expanduser()))

    @property
    def n_trajectories(self) -> int:
        return int(self._data["inputs"].shape[0])

    @property
    def indices(self) -> np.ndarray:
        return self.split_indices(self.split)

    def split_indices(self, split: str) -> np.ndarray:
        """The trajectories of ``split`` (of :data:`SPLITS`; possibly none)."""
        n = self.n_trajectories
        cut = n - int(round(self.heldout * n))
        return {"train": np.arange(cut), "heldout": np.arange(cut, n),
                "all": np.arange(n)}[split]

    @property
    def n_in(self) -> int:
        return int(self._data["inputs"].shape[-1])

    @property
    def n_out(self) -> int:
        d = self._data
        if "activity" in d:
            return int(d["activity"].shape[-1])
        return max(1, int(d["choices"].max()) + 1) if d["choices"].max() > 1 else 1

    @property
    def n_steps(self) -> int:
        return int(self._data["inputs"].shape[1])

    @property
    def _tau(self) -> float:
        """The time constant (steps) of the filter the observation model applies (calcium's
        indicator, or the spike trains' van Rossum kernel)."""
        return self.spike_tau if self.observation == "spikes" else self.calcium_tau

    @functools.cached_property
    def _activity(self) -> np.ndarray | None:
        """The recorded activity as it is compared: spike trains filtered by the van Rossum
        kernel (``observation = "spikes"``), else as recorded; None when not recorded."""
        d = self._data
        if "activity" not in d:
            return None
        if self.observation != "spikes":
            return d["activity"]
        out = np.asarray(d["activity"], np.float64).copy()
        for t in range(1, out.shape[1]):
            out[:, t] += math.exp(-1.0 / self.spike_tau) * out[:, t - 1]
        return out.astype(np.float32)

    @functools.cached_property
    def _scale(self) -> float:
        """The recorded activity's variance over the whole data set (the MSE's unit)."""
        d = self._data
        if "activity" not in d:
            return 1.0
        m = d["activity_mask"] > 0
        return float(max(np.var(self._activity[m]), 1e-12)) if m.any() else 1.0

    @functools.cached_property
    def _poisson(self) -> tuple[float, float]:
        """Per recorded entry, the Poisson NLL of the saturated model (every count its own
        mean) and of the null model (the data set's mean count), over the whole data set."""
        d = self._data
        k = d["activity"][d["activity_mask"] > 0].astype(np.float64)
        if not k.size:
            return 0.0, 1.0
        log_factorial = np.vectorize(math.lgamma)(k + 1)

        def nll(mean):
            return float(np.mean(mean - k * np.log(np.maximum(mean, 1e-12)) + log_factorial))

        sat, null = nll(k), nll(np.full_like(k, max(k.mean(), 1e-12)))
        return sat, max(null - sat, 1e-12)

    def instance_ids(self) -> np.ndarray:
        """The split's trajectories: an evaluation scores each once."""
        return self.indices

    def sample(self, key: Array) -> RecordedInstance:
        """A trajectory of the split, drawn uniformly (with replacement)."""
        pool = jnp.asarray(self.indices)
        return self.instance(pool[jax.random.randint(key, (), 0, pool.size)])

    def instance(self, i) -> RecordedInstance:
        """Trajectory ``i`` (an index into the file)."""
        d = self._data
        t, n_out = self.n_steps, self.n_out
        d = {**d, "activity": self._activity} if "activity" in d else d
        get = lambda k, shape, dtype: (jnp.asarray(d[k], dtype)[i] if k in d  # noqa: E731
                                       else jnp.zeros(shape, dtype))
        w0 = ()
        # "fitted": a rule with a fitted start ignores them; the truth's replay and
        # rules without one (baselines) start where the recordings say, when they say
        if self.initial != "drawn" and any(k.startswith("w0_") for k in d):
            layers = sorted(int(k[3:]) for k in d if k.startswith("w0_"))
            w0 = tuple(jnp.asarray(d[f"w0_{l}"], jnp.float32)[i] for l in layers)
        return RecordedInstance(
            jnp.asarray(d["inputs"], jnp.float32)[i], jnp.asarray(d["lengths"])[i],
            get("activity", (t, n_out), jnp.float32), get("activity_mask", (t, n_out),
                                                          jnp.float32),
            get("choices", (t,), jnp.int32), get("rewards", (t,), jnp.float32),
            jnp.asarray(d["update_mask"], jnp.float32)[i] if "update_mask" in d
            else jnp.ones((t,), jnp.float32), w0,
            tuple((jnp.asarray(d[f"activity_{l}"], jnp.float32)[i],
                   jnp.asarray(d[f"activity_mask_{l}"], jnp.float32)[i])
                  for l in self.hidden_layers),
            jnp.asarray(i, jnp.int32))

    @property
    def hidden_layers(self) -> tuple[int, ...]:
        """The hidden layers whose activity was recorded (``activity_<l>``), in order."""
        return tuple(sorted(int(k[9:]) for k in self._data
                            if re.fullmatch(r"activity_[1-9][0-9]*", k)))

    @functools.cached_property
    def _hidden_scale(self) -> tuple[float, ...]:
        """Each recorded hidden layer's activity variance (its squared error's unit)."""
        d = self._data
        out = []
        for l in self.hidden_layers:
            m = d[f"activity_mask_{l}"] > 0
            out.append(float(max(np.var(d[f"activity_{l}"][m]), 1e-12)) if m.any() else 1.0)
        return tuple(out)

    @property
    def fits_start(self) -> bool:
        return self.initial in ("fitted", "fitted_each")

    @property
    def fitted_starts(self) -> int:
        """How many starts θ holds: one per trajectory of the file ("fitted_each"), or
        one shared by all."""
        return self.n_trajectories if self.initial == "fitted_each" else 1

    def start_of(self, instance: RecordedInstance, weights: tuple) -> tuple:
        """This trajectory's start among θ's per-trajectory starts ("fitted_each")."""
        if self.initial != "fitted_each":
            return weights
        return tuple(jnp.asarray(w)[instance.index] for w in weights)

    def start_estimate(self, network: Network, draw: tuple) -> tuple:
        """The fitted starts' first value: ``draw`` (the network's), or with
        ``start_steps = K`` each recorded output neuron's weights replaced by the ridge
        least-squares fit of its recorded activity over the first K steps (where recorded)
        to the inputs: one start per trajectory ("fitted_each"; ``draw`` then has a leading
        axis of trajectories) or one over the training trajectories ("fitted"). A neuron
        with fewer recorded steps than inputs keeps its draw."""
        if not self.start_steps:
            return draw
        d = self._data
        k = self.start_steps
        x = d["inputs"][:, :k].astype(np.float64)  # load() fills the mask and lengths
        y = d["activity"][:, :k].astype(np.float64)
        live = np.arange(k)[None, :] < d["lengths"][:, None]
        m = (d["activity_mask"][:, :k] > 0) & live[:, :, None]
        shape = tuple(jnp.shape(draw[0]))  # (N, out, in) or (out, in)
        est, fitted = np.zeros(shape, np.float32), np.zeros(shape, bool)
        groups = [[i] for i in range(len(x))] if self.initial == "fitted_each" \
            else [list(self.split_indices("train"))]
        for g, rows in enumerate(groups):
            at = (g,) if len(shape) == 3 else ()
            for o in range(y.shape[-1]):
                sel = m[rows, :, o]
                if sel.sum() < x.shape[-1]:
                    continue  # too few recorded steps to determine the neuron's weights
                xs, ys = x[rows][sel], y[rows, :, o][sel]
                gram = xs.T @ xs
                ridge = 1e-3 * np.trace(gram) / len(gram) + 1e-12
                est[at + (o,)] = np.linalg.solve(gram + ridge * np.eye(len(gram)), xs.T @ ys)
                fitted[at + (o,)] = True
        return (jnp.where(fitted, est, draw[0]),)

    def initial_weights(self, instance: RecordedInstance):
        """The recorded initial weights of this trajectory, or None (drawn). A rule with
        a fitted start (``initial = "fitted"``) starts from its own θ["w0"] instead."""
        return instance.w0 or None

    def reset(self, instance, key: Array) -> RecordedState:
        z = jnp.zeros((), jnp.float32)
        return RecordedState(jnp.zeros((), jnp.int32), z, z, z, z, z, z,
                             jnp.zeros((self.n_out,), jnp.float32), z, z)

    def _now(self, instance, env):
        return jnp.minimum(env.t, self.n_steps - 1)

    def observe(self, instance, env):
        return instance.inputs[self._now(instance, env)], None

    def modulator(self, instance, env, y, target):
        return instance.rewards[self._now(instance, env)]

    def active(self, instance, env) -> Array:
        return env.t < instance.length

    def learns(self, instance, env) -> Array:
        return (env.t < instance.length) & (instance.learn[self._now(instance, env)] > 0)

    def predicted(self, env: RecordedState, y: Array) -> tuple[Array, Array]:
        """``(what the recording should show for output y, the filter after it)``: y
        (gaussian), the Poisson mean softplus(y), ΔF/F of the calcium indicator, or the
        spike train filtered by the van Rossum kernel."""
        if self.observation == "poisson":
            return jax.nn.softplus(y), env.ca
        if self.observation in ("calcium", "spikes"):
            ca = jnp.exp(-1.0 / self._tau) * env.ca + y
            return ca, ca
        return y, env.ca

    def _compared(self, env: RecordedState, live: Array) -> Array:
        """1 where this step is compared: a live step after the burn-in."""
        return live * (env.t >= self.burn_in) if self.burn_in else live

    def transition(self, instance, env: RecordedState, y: Array) -> RecordedState:
        t = self._now(instance, env)
        live = (env.t < instance.length).astype(jnp.float32)
        live_after = self._compared(env, live)
        m = instance.mask[t] * live_after
        obs = instance.activity[t]
        pred, ca = self.predicted(env, y)
        if self.observation == "poisson":  # the counts' NLL (their log k! included)
            nll = jnp.sum(m * (pred - obs * jnp.log(jnp.maximum(pred, 1e-12))
                               + jax.lax.lgamma(obs + 1.0)))
            n_nll = jnp.sum(m)
        else:
            c = instance.choices[t]
            if y.shape[-1] == 1:
                logp = jax.nn.log_sigmoid(jnp.where(c > 0, y[0], -y[0]))
            else:
                logp = jax.nn.log_softmax(y)[c]
            nll, n_nll = -live_after * logp, live_after
        return RecordedState(
            env.t + 1, env.sse + jnp.sum(m * (pred - obs) ** 2), env.n + jnp.sum(m),
            env.s1 + jnp.sum(m * obs), env.s2 + jnp.sum(m * obs ** 2),
            env.nll + nll, env.n_choices + n_nll, ca * live, env.hsse, env.hn)

    def transition_layers(self, instance, env: RecordedState, rates: tuple) -> RecordedState:
        """:meth:`transition` on the output, and the recorded hidden layers compared with
        their rates (each layer's squared error in units of its activity's variance)."""
        new = self.transition(instance, env, rates[-1])
        if not self.hidden_layers:
            return new
        t = self._now(instance, env)
        live = self._compared(env, (env.t < instance.length).astype(jnp.float32))
        hsse, hn = env.hsse, env.hn
        for l, scale, (act, mask) in zip(self.hidden_layers, self._hidden_scale,
                                         instance.hidden, strict=True):
            m = mask[t] * live
            hsse = hsse + jnp.sum(m * (rates[l] - act[t]) ** 2) / scale
            hn = hn + jnp.sum(m)
        return new._replace(hsse=hsse, hn=hn)

    def loss(self, instance, state: NetState, env: RecordedState, network=None) -> Array:
        if self.fit == "activity" and self.observation == "poisson":
            sat, scale = self._poisson
            return (env.nll / jnp.maximum(env.n_choices, 1.0) - sat) / scale
        if self.fit == "activity" and self.hidden_layers:  # every recorded layer, pooled
            return (env.sse / self._scale + env.hsse) / jnp.maximum(env.n + env.hn, 1.0)
        if self.fit == "activity":
            return env.sse / jnp.maximum(env.n, 1.0) / self._scale
        return env.nll / jnp.maximum(env.n_choices, 1.0)

    @property
    def profiled(self) -> bool:
        """Whether :meth:`likelihood` gives a summed squared error of Gaussian noise of
        unknown variance (whose profile NLL is ``(N/2) log SSE``), not an NLL."""
        return self.fit == "activity" and self.observation != "poisson"

    def likelihood(self, env: RecordedState) -> tuple[Array, Array]:
        """``(value, observations)`` summed over ``env`` (any leading axes): the negative
        log-likelihood of the choices or counts, or the squared error where
        :attr:`profiled`."""
        if self.profiled and self.hidden_layers:  # each layer in units of its variance
            return (jnp.sum(env.sse) / self._scale + jnp.sum(env.hsse),
                    jnp.sum(env.n) + jnp.sum(env.hn))
        if self.profiled:
            return jnp.sum(env.sse), jnp.sum(env.n)
        return jnp.sum(env.nll), jnp.sum(env.n_choices)

    def metrics(self, instance, state: NetState, env: RecordedState,
                network=None) -> dict[str, Array]:
        n = jnp.maximum(env.n, 1.0)
        sst = env.s2 - env.s1 ** 2 / n
        out = {"nll": env.nll / jnp.maximum(env.n_choices, 1.0)}
        if self.fit == "activity" and self.observation == "spikes":
            # in units of the data set's variance: a trajectory whose recorded neurons
            # hardly fire has almost none of its own (an R² of -1e14 says nothing)
            out = {"r2": 1.0 - env.sse / n / self._scale, "mse": env.sse / n}
        elif self.fit == "activity":
            out = {"r2": 1.0 - env.sse / jnp.maximum(sst, 1e-12), "mse": env.sse / n}
            if self.observation == "poisson":
                out["nll"] = env.nll / jnp.maximum(env.n_choices, 1.0)
        return out

    def check_network(self, network: Network) -> None:
        if network.sizes[0] != self.n_in or network.sizes[-1] != self.n_out:
            raise ConfigError(f"the recordings need a network {self.n_in} -> ... -> "
                              f"{self.n_out}; got sizes {network.sizes}")
        from metaplastic.spiking import SpikingNetwork

        if network.spiking and self.fit == "activity" and self.observation != "spikes":
            raise ConfigError(f"a spiking network's output is spike trains: fit them with "
                              f"task.observation = 'spikes', not {self.observation!r}")
        if isinstance(network, SpikingNetwork) and network.encoder == "poisson":
            raise ConfigError("a Poisson encoder would draw input spikes anew instead of "
                              "replaying the recorded input: set network.encoder = 'spikes' "
                              "(the recordings' inputs are spike trains) or 'latency'")
        for l in self.hidden_layers:
            width = int(self._data[f"activity_{l}"].shape[-1])
            if not l < network.n_layers or network.sizes[l] != width:
                raise ConfigError(f"the recordings hold hidden layer {l} of {width} neurons; "
                                  f"the network's sizes are {network.sizes}")
        if self.start_steps and (network.n_layers != 1 or network.stateful
                                 or network.spiking or network.output_activation not in
                                 (None, "linear") or network.activation != "linear"):
            raise ConfigError(f"start_steps estimates the start by least squares of the "
                              f"output on the input: it needs one layer of linear rate "
                              f"neurons without state (network.hidden = [], activation = "
                              f"'linear'); got sizes {network.sizes}, activation "
                              f"{network.output_activation or network.activation!r}")
        d = self._data
        layers = sorted(int(k[3:]) for k in d if k.startswith("w0_"))
        if self.initial != "drawn" and layers:
            shapes = [tuple(d[f"w0_{l}"].shape[1:]) for l in layers]
            if shapes != list(network.shapes):
                raise ConfigError(f"the recorded initial weights have shapes {shapes}, the "
                                  f"network's are {list(network.shapes)}")
