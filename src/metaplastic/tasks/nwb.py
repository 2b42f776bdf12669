"""Recordings as labs store them: NWB files read through ``pynwb`` into the recordings
layout of :mod:`metaplastic.tasks.recorded` (``task.nwb`` in a config; the result is
cached as an ``.npz`` by :func:`metaplastic.experiments.recordings.from_nwb`).

Two ways to make steps of a recording (``steps``):

* ``"bins"`` — time in bins of ``bin`` seconds. The inputs are a ``TimeSeries`` (``inputs``:
  its name, or its path such as ``stimulus/odour``), averaged over each bin (a bin without
  a sample holds the last value). What was observed (``activity``) is either ``"units"`` —
  the ``Units`` table's spike times counted per bin (spike counts: fit them with
  ``observation = "poisson"``) — or the name of a ``RoiResponseSeries``/``TimeSeries`` of
  ΔF/F or rates, averaged per bin (``observation = "calcium"`` or ``"gaussian"``). An
  optional ``rewards`` series (the neuromodulator every synapse receives) is summed per bin.
  ``hidden = {"1" = "series", ...}`` maps series of rates or ΔF/F to hidden layers
  (``activity_1``, ...: compared as Gaussian activity), averaged per bin.
  ``inputs = "units"`` takes the inputs from the ``Units`` table too: the spike counts
  per bin of the rows ``input_units`` (presynaptic neurons), for a spiking network that
  replays them (``network.encoder = "spikes"``); ``units`` then names the output rows,
  and the two may not share a row.
  Trajectories are the rows of the ``trials`` table (``trials = true``, the default when
  there is one) or each whole file.
* ``"trials"`` — one step per row of the ``trials`` table, one trajectory per file: the
  inputs are the trial columns named in ``inputs`` (numbers, or vectors per trial),
  ``choices``, ``rewards`` and ``outcomes`` name trial columns.

Several files (``files``) are several sessions: their trajectories are stacked, padded to
the longest with ``lengths`` saying where each ends. Missing or ambiguous pieces are
collected and reported together in one message, with what the file holds instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metaplastic.errors import ConfigError

STEPS = ("bins", "trials")
OPTIONS = ("files", "steps", "bin", "inputs", "activity", "rewards", "choices", "outcomes",
           "trials", "units", "input_units", "hidden")


def _pynwb():
    try:
        import pynwb
    except ImportError:
        raise ConfigError("reading NWB files needs pynwb: `pip install pynwb` (or "
                          "`pip install 'metaplastic[nwb]'`)") from None
    return pynwb


def check_spec(spec: dict) -> dict:
    """``spec`` (the ``task.nwb`` table) checked: known keys, files given, ``steps`` and
    ``bin`` consistent. Returns it with defaults filled in."""
    if not isinstance(spec, dict):
        raise ConfigError(f"task.nwb must be a table, got {spec!r}")
    unknown = sorted(set(spec) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"task.nwb: unknown key(s) {unknown}; valid: {', '.join(OPTIONS)}")
    files = spec.get("files")
    if isinstance(files, str):
        files = [files]
    if not files or not all(isinstance(f, str) for f in files):
        raise ConfigError("task.nwb.files must name one or more .nwb files")
    out = {"steps": "bins", "trials": None, **spec,
           "files": [str(Path(f).expanduser()) for f in files]}
    if out["steps"] not in STEPS:
        raise ConfigError(f"task.nwb.steps must be one of {', '.join(STEPS)}, got "
                          f"{out['steps']!r}")
    hidden = out.get("hidden", {})
    if not isinstance(hidden, dict) or not all(
            str(k).isdigit() and int(k) >= 1 and isinstance(v, str) for k, v in hidden.items()):
        raise ConfigError(f"task.nwb.hidden maps hidden layers (1, 2, ...) to series names, "
                          f"e.g. {{\"1\" = \"dff_kc\"}}; got {hidden!r}")
    out["hidden"] = {int(k): v for k, v in hidden.items()}
    if out["steps"] == "bins":
        b = out.get("bin")
        if not isinstance(b, int | float) or isinstance(b, bool) or not b > 0:
            raise ConfigError(f"task.nwb.bin (seconds per step) must be a positive number "
                              f"when steps = 'bins', got {b!r}")
    missing = [f for f in out["files"] if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"task.nwb.files: no such file(s): {', '.join(missing)}")
    return out


# ------------------------------------------------------------------------ reading a file
def _path(nwb, obj) -> str:
    """Where ``obj`` lives in the file: ``stimulus/odour``, ``processing/ophys/dff``..."""
    groups = {"acquisition": nwb.acquisition, "stimulus": nwb.stimulus,
              "stimulus_template": nwb.stimulus_template, "processing": nwb.processing,
              "analysis": nwb.analysis}
    parts = []
    while obj is not None and obj is not nwb:
        parent = obj.parent
        if parent is nwb:  # the top-level group it sits in
            group = next((g for g, held in groups.items()
                          if obj.name in held and held[obj.name] is obj), None)
            parts += [obj.name] + ([group] if group else [])
            break
        parts.append(obj.name)
        obj = parent
    return "/".join(reversed(parts))


def _series(nwb) -> dict[str, Any]:
    """Every TimeSeries in the file, by its path inside it."""
    from pynwb import TimeSeries

    return {_path(nwb, o): o for o in nwb.objects.values() if isinstance(o, TimeSeries)}


def _find(nwb, name: str, what: str, problems: list[str]):
    """The TimeSeries called ``name`` (or at that path); None with a problem noted."""
    found = _series(nwb)
    hits = [p for p in found if p == name or p.rsplit("/", 1)[-1] == name]
    if len(hits) == 1:
        return found[hits[0]]
    if not hits:
        problems.append(f"{what}: no TimeSeries {name!r} (the file has: "
                        f"{', '.join(sorted(found)) or 'none'})")
    else:
        problems.append(f"{what}: {len(hits)} series are called {name!r} "
                        f"({', '.join(sorted(hits))}): give its path")
    return None


def _times(ts) -> np.ndarray:
    if ts.timestamps is not None:
        return np.asarray(ts.timestamps[:], np.float64)
    n = len(ts.data)
    return float(ts.starting_time or 0.0) + np.arange(n) / float(ts.rate)


def _values(ts) -> np.ndarray:
    x = np.asarray(ts.data[:], np.float64)
    return x[:, None] if x.ndim == 1 else x.reshape(len(x), -1)


def _bin_of(t: np.ndarray, start: float, width: float) -> np.ndarray:
    """The bin of each time (bin k: ``[start + k width, start + (k + 1) width)``),
    computed from the offset, so that a time on an edge falls where it should."""
    return np.floor((t - start) / width + 1e-9).astype(np.int64)


def _binned(ts, start: float, width: float, n_bins: int, how: str) -> np.ndarray:
    """(bins, channels): the series averaged (``mean``; an empty bin holds the last value
    before it) or summed (``sum``) over each of ``n_bins`` bins from ``start``."""
    t, x = _times(ts), _values(ts)
    k = _bin_of(t, start, width)
    inside = (k >= 0) & (k < n_bins)
    total = np.zeros((n_bins, x.shape[1]))
    np.add.at(total, k[inside], x[inside])
    if how == "sum":
        return total
    count = np.bincount(k[inside], minlength=n_bins)[:, None]
    out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    # the last sample at or before each bin's start, for bins without a sample
    last = np.searchsorted(k, np.arange(n_bins), side="right") - 1
    hold = np.where(last[:, None] >= 0, x[np.maximum(last, 0)], 0.0)
    return np.where(np.isnan(out), hold, out)


def _spike_counts(nwb, start: float, width: float, n_bins: int, units,
                  problems: list[str], key: str = "units") -> np.ndarray | None:
    """Spike counts per bin of the rows ``units`` (None: all) of the Units table (rows
    named by ``task.nwb.<key>``)."""
    if nwb.units is None or "spike_times" not in nwb.units.colnames:
        what = "inputs" if key == "input_units" else "activity"
        problems.append(f"{what} = 'units': the file has no Units table with spike_times")
        return None
    n = len(nwb.units)
    chosen = list(range(n)) if units is None else list(units)
    bad = [u for u in chosen if not (isinstance(u, int) and 0 <= u < n)]
    if bad:
        problems.append(f"task.nwb.{key}: {bad} are not rows of the Units table "
                        f"(0..{n - 1})")
        return None
    out = np.zeros((n_bins, len(chosen)))
    for c, u in enumerate(chosen):
        k = _bin_of(np.asarray(nwb.units["spike_times"][u], np.float64), start, width)
        out[:, c] = np.bincount(k[(k >= 0) & (k < n_bins)], minlength=n_bins)
    return out


def _trial_intervals(nwb, use: bool | None, problems: list[str]):
    has = nwb.trials is not None and len(nwb.trials) > 0
    if use and not has:
        problems.append("trials = true but the file has no trials table")
        return None
    if not (has if use is None else use):
        return None
    return np.stack([np.asarray(nwb.trials["start_time"][:], np.float64),
                     np.asarray(nwb.trials["stop_time"][:], np.float64)], axis=1)


def _session_span(nwb, series: list) -> tuple[float, float]:
    times = [_times(ts) for ts in series if ts is not None]
    if nwb.units is not None and "spike_times" in nwb.units.colnames and len(nwb.units):
        times += [np.asarray(nwb.units["spike_times"][u]) for u in range(len(nwb.units))]
    times = [t for t in times if len(t)]
    return (min(float(t.min()) for t in times), max(float(t.max()) for t in times))


def _by_bins(nwb, spec: dict, problems: list[str]) -> list[dict[str, np.ndarray]]:
    if not spec.get("inputs"):
        problems.append("task.nwb.inputs: name the TimeSeries the network receives")
    if not spec.get("activity"):
        problems.append("task.nwb.activity: 'units' (spike counts) or the name of a series "
                        "of ΔF/F or rates")
    spiking_in = spec.get("inputs") == "units"
    if spiking_in and not spec.get("input_units"):
        problems.append("task.nwb.inputs = 'units': name the presynaptic rows of the Units "
                        "table in task.nwb.input_units")
    if spiking_in and spec.get("activity") == "units":
        shared = sorted(set(spec.get("input_units") or ()) & set(spec.get("units") or ()))
        if not spec.get("units"):
            problems.append("task.nwb: inputs and activity are both 'units': name the "
                            "output rows in task.nwb.units")
        elif shared:
            problems.append(f"task.nwb: rows {shared} are in both input_units and units")
    inputs = (_find(nwb, spec["inputs"], "inputs", problems)
              if spec.get("inputs") and not spiking_in else None)
    observed = (None if spec.get("activity") in (None, "units")
                else _find(nwb, spec["activity"], "activity", problems))
    rewards = _find(nwb, spec["rewards"], "rewards", problems) if spec.get("rewards") else None
    hidden = {l: _find(nwb, name, f"hidden layer {l}", problems)
              for l, name in sorted(spec.get("hidden", {}).items())}
    intervals = _trial_intervals(nwb, spec.get("trials"), problems)
    if problems:
        return []
    width = float(spec["bin"])
    if intervals is None:  # the whole session: up to the bin of its last sample or spike
        first, last = _session_span(nwb, [inputs, observed, rewards])
        intervals = np.array([[first, first + width * (_bin_of(np.array([last]), first,
                                                               width)[0] + 1)]])
    out = []
    for start, stop in intervals:
        n = max(int(np.floor((stop - start) / width + 1e-9)), 1)
        if spiking_in:
            spikes = _spike_counts(nwb, start, width, n, spec.get("input_units"), problems,
                                   "input_units")
            if spikes is None:
                return []
            traj = {"inputs": spikes}
        else:
            traj = {"inputs": _binned(inputs, start, width, n, "mean")}
        if observed is not None:
            traj["activity"] = _binned(observed, start, width, n, "mean")
        else:
            counts = _spike_counts(nwb, start, width, n, spec.get("units"), problems)
            if counts is None:
                return []
            traj["activity"] = counts
        if rewards is not None:
            traj["rewards"] = _binned(rewards, start, width, n, "sum")[:, 0]
        for l, series in hidden.items():
            traj[f"activity_{l}"] = _binned(series, start, width, n, "mean")
        out.append(traj)
    return out


def _column(nwb, name: str, what: str, problems: list[str]) -> np.ndarray | None:
    if name not in nwb.trials.colnames:
        problems.append(f"{what}: the trials table has no column {name!r} (it has: "
                        f"{', '.join(nwb.trials.colnames)})")
        return None
    values = np.asarray(nwb.trials[name][:])
    if values.dtype.kind not in "biuf":
        problems.append(f"{what}: trial column {name!r} holds {values.dtype}, not numbers")
        return None
    return values.astype(np.float64)


def _by_trials(nwb, spec: dict, problems: list[str]) -> list[dict[str, np.ndarray]]:
    if nwb.trials is None or not len(nwb.trials):
        problems.append("steps = 'trials' needs a trials table; the file has none")
        return []
    names = spec.get("inputs")
    names = [names] if isinstance(names, str) else list(names or [])
    if not names:
        problems.append("task.nwb.inputs: the trial column(s) the network receives")
    cols = [_column(nwb, n, "inputs", problems) for n in names]
    traj: dict[str, np.ndarray] = {}
    for key in ("choices", "rewards", "outcomes"):
        if spec.get(key):
            traj[key] = _column(nwb, spec[key], key, problems)
    if spec.get("activity") or spec.get("hidden"):
        problems.append("steps = 'trials' reads behaviour: activity is read with "
                        "steps = 'bins'")
    if problems:
        return []
    traj["inputs"] = np.concatenate([c.reshape(len(c), -1) for c in cols], axis=1)
    if "choices" in traj:
        c = traj["choices"]
        if not np.all(c == np.round(c)) or c.min() < 0:
            problems.append("choices: the trial column must hold 0, 1, ... (whole numbers)")
            return []
        traj["choices"] = c.astype(np.int64)
    return [traj]


def read(spec: dict) -> dict[str, np.ndarray]:
    """The recordings (layout of :mod:`metaplastic.tasks.recorded`) that ``spec`` (the
    ``task.nwb`` table) describes; one ConfigError naming every missing or ambiguous
    piece, file by file."""
    spec = check_spec(spec)
    pynwb = _pynwb()
    trajectories, problems = [], []
    for f in spec["files"]:
        mine: list[str] = []
        try:
            with pynwb.NWBHDF5IO(f, "r") as io:
                nwb = io.read()
                read_one = _by_bins if spec["steps"] == "bins" else _by_trials
                trajectories += read_one(nwb, spec, mine)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001  an unreadable file: its name and why
            mine.append(f"cannot read it as NWB ({type(e).__name__}: {e})")
        problems += [f"{Path(f).name}: {p}" for p in mine]
    if problems:
        raise ConfigError("task.nwb: " + "; ".join(problems))
    return stack(trajectories)


def stack(trajectories: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Trajectories of different lengths as the layout's arrays, padded with zeros after
    each one's ``lengths``; every trajectory must hold the same arrays and widths."""
    keys = set(trajectories[0])
    for t in trajectories[1:]:
        if set(t) != keys:
            raise ConfigError(f"task.nwb: the sessions differ in what they hold "
                              f"({sorted(keys)} vs {sorted(t)})")
    lengths = np.array([len(t["inputs"]) for t in trajectories])
    n, t_max = len(trajectories), int(lengths.max())
    out = {"lengths": lengths}
    for k in sorted(keys):
        widths = {v[k].shape[1:] for v in trajectories}
        if len(widths) > 1:
            raise ConfigError(f"task.nwb: {k} has different widths across trajectories: "
                              f"{sorted(widths)}")
        first = trajectories[0][k]
        arr = np.zeros((n, t_max, *first.shape[1:]), first.dtype)
        for i, v in enumerate(trajectories):
            arr[i, :len(v[k])] = v[k]
        out[k] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    return out
