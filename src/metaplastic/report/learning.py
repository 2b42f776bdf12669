"""Figures of inner learning, drawn from a run's ``episode.npz`` alone.

* ``inner.png``: the task's metrics through inner learning (mean over the recorded tasks,
  shaded 95% CI) for the learned rule, the starting rule and the reference;
* ``weights.png``: every layer's weights before and after learning (one task);
* ``abcd.png``: the per-synapse ABCD coefficients of every layer (ABCD rules);
* spiking networks: ``raster.png`` (the first and the last steps of one task, every
  layer), ``rates.png`` (each layer's firing rate through the task, learned vs start, the
  target rate and phase boundaries when the task has them), ``stdp_window.png`` (Δw(Δt)
  of the learned rule beside the start and pair STDP's).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metaplastic import _npz  # noqa: E402
from metaplastic.errors import ConfigError  # noqa: E402

FILE = "episode.npz"
RASTER_STEPS = 300  # steps shown in each raster panel


def _layers(data: dict, prefix: str) -> list[int]:
    return sorted(int(k.rsplit(".", 1)[1]) for k in data if k.startswith(prefix + "."))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_inner(data: dict, path: Path) -> Path | None:
    """Learning curves: one panel per metric, one line (mean, shaded 95% CI) per rule."""
    keys = [k for k in data if k.startswith("curve.")]
    if not keys or "curve_steps" not in data:
        return None
    rules = list(dict.fromkeys(k.split(".")[1] for k in keys))
    metrics = list(dict.fromkeys(k.split(".", 2)[2] for k in keys))
    same = _same_as(data, rules, metrics)  # e.g. CartPole: return = length, step by step
    metrics = [m for m in metrics if m not in same]
    steps = data["curve_steps"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6),
                             squeeze=False)
    lines = 0
    for ax, metric in zip(axes[0], metrics, strict=True):
        for rule in rules:
            v = data.get(f"curve.{rule}.{metric}")
            if v is None or v.ndim != 2 or v.shape[1] != steps.size:
                continue
            lines += 1
            mean = np.nanmean(v, axis=0)
            ci = 1.96 * np.nanstd(v, axis=0) / np.sqrt(max(v.shape[0], 1))
            low = mean - ci
            if np.nanmin(v) >= 0:  # a rate, a length: the band stops at 0
                low = np.maximum(low, 0.0)
            (line,) = ax.plot(steps, mean, lw=1.6, label=_rule_label(data, rule))
            ax.fill_between(steps, low, mean + ci, color=line.get_color(), alpha=0.2)
        twins = [m for m, of in same.items() if of == metric]
        name = metric + "".join(f" (= {t})" for t in twins)
        ax.set(xlabel="inner step", ylabel=name, title=f"{name} during inner learning")
        if ax.get_lines():  # a damaged curve leaves its panel empty: no legend
            ax.legend(fontsize=8)
    if not lines:  # nothing matched the steps: a damaged file
        plt.close(fig)
        return None
    n = data[keys[0]].shape[0]
    fig.suptitle(f"Inner-loop learning on {n} fresh tasks (mean, 95% CI)", fontsize=10)
    return _save(fig, path)


def _same_as(data: dict, rules: list[str], metrics: list[str]) -> dict[str, str]:
    """Metrics whose curves equal an earlier metric's for every rule (CartPole's return
    and length): drawn once, the panel named for both."""
    out: dict[str, str] = {}
    for i, m in enumerate(metrics):
        for first in metrics[:i]:
            if first in out:
                continue
            pairs = [(data.get(f"curve.{r}.{m}"), data.get(f"curve.{r}.{first}"))
                     for r in rules]
            if all(a is not None and b is not None and a.shape == b.shape
                   and np.allclose(a, b, equal_nan=True) for a, b in pairs):
                out[m] = first
                break
    return out


#: how a starting rule's name reads in a legend
START_NAMES = {"stdp": "pair STDP", "pseudo_grad": "feedback alignment (pseudo-gradient)",
               "oja": "Oja's rule", "hebb": "Hebb", "trace_delta": "delta rule on traces"}


def _rule_label(data: dict, rule: str) -> str:
    """``learned θ``; ``start θ (pair STDP)`` where the file names the start."""
    if rule == "start" and "start_name" in data:
        name = str(data["start_name"])
        return f"start θ ({START_NAMES.get(name, name)})"
    return f"{rule} θ"


def plot_weights(data: dict, path: Path) -> Path | None:
    layers = _layers(data, "w_before")
    if not layers:
        return None
    fig, axes = plt.subplots(1, len(layers), figsize=(max(4.2 * len(layers), 7.0), 3.4),
                             squeeze=False)
    for ax, l in zip(axes[0], layers, strict=True):
        a, b = data[f"w_before.{l}"].ravel(), data[f"w_after.{l}"].ravel()
        both = np.concatenate([a, b])
        both = both[np.isfinite(both)]
        lo, hi = (both.min(), both.max()) if both.size else (-1.0, 1.0)
        # about two synapses per bin at least: 10 synapses are not spread over 40 bins
        n_bins = int(np.clip(np.sqrt(a.size) * 2, 5, 40))
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, n_bins + 1)
        ax.hist(a[np.isfinite(a)], bins=bins, alpha=0.55, label="before learning")
        ax.hist(b[np.isfinite(b)], bins=bins, alpha=0.55, label="after learning")
        ax.set(xlabel="weight", ylabel="synapses", title=f"layer {l + 1} ({a.size} synapses)")
        ax.legend(fontsize=8)
    fig.suptitle("Weights before and after inner learning (one task, learned θ)", fontsize=10)
    return _save(fig, path)


def plot_abcd(data: dict, path: Path) -> Path | None:
    keys = [k for k in data if k.startswith("abcd.")]
    if not keys:
        return None
    layers = sorted({int(k.split(".")[1]) for k in keys})
    coefs = list(dict.fromkeys(k.split(".")[2] for k in keys))
    # one row per layer (histograms of layers side by side hid each other), one column
    # per coefficient with a shared x axis
    fig, axes = plt.subplots(len(layers), len(coefs), figsize=(2.9 * len(coefs),
                                                              1.9 * len(layers) + 0.6),
                             squeeze=False, sharex="col")
    for row, l in enumerate(layers):
        for ax, c in zip(axes[row], coefs, strict=True):
            v = data.get(f"abcd.{l}.{c}")
            if v is None:
                ax.set_visible(False)
                continue
            v = v.ravel()
            ax.hist(v[np.isfinite(v)], bins=40, color=f"C{row}", alpha=0.8)
            ax.set_title(f"layer {l + 1}, {c}: mean {np.nanmean(v):+.3g}", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(layers) - 1:
                ax.set_xlabel(c)
            if c == coefs[0]:
                ax.set_ylabel("synapses", fontsize=8)
    fig.suptitle("Learned per-synapse ABCD coefficients", fontsize=10)
    return _save(fig, path)


def plot_raster(data: dict, path: Path, rule: str = "learned") -> Path | None:
    layers = _layers(data, f"spikes.{rule}")
    if not layers:
        return None
    spikes = [data[f"spikes.{rule}.{l}"] for l in layers]
    n_steps = spikes[0].shape[0]
    show = min(RASTER_STEPS, n_steps)
    spans = [(0, show, "first")] + ([(n_steps - show, n_steps, "last")] if n_steps > show
                                     else [])
    fig, axes = plt.subplots(1, len(spans), figsize=(6 * len(spans), 4.2), squeeze=False)
    for ax, (a, b, which) in zip(axes[0], spans, strict=True):
        offset = 0
        for l, s in zip(layers, spikes, strict=True):
            t, i = np.nonzero(s[a:b])
            ax.scatter(t + a, i + offset, s=12, marker="|", lw=0.9,
                       label="input" if l == 0 else f"layer {l}")
            offset += s.shape[1]
            ax.axhline(offset - 0.5, color="0.6", lw=0.5)
        ax.set(xlim=(a, b), ylim=(-0.5, offset - 0.5), xlabel="step", ylabel="neuron",
               title=f"{which} {b - a} steps")
        ax.legend(fontsize=7, loc="upper right", markerscale=4)
    fig.suptitle(f"Spikes of every layer through one task ({rule} θ)", fontsize=10)
    return _save(fig, path)


def plot_rates(data: dict, path: Path) -> Path | None:
    rules = list(dict.fromkeys(k.split(".")[1] for k in data if k.startswith("spikes.")))
    if not rules:
        return None
    layers = [l for l in _layers(data, f"spikes.{rules[0]}") if l > 0]
    n_steps = data[f"spikes.{rules[0]}.0"].shape[0]
    width = max(10, n_steps // 100)
    fig, axes = plt.subplots(1, len(layers), figsize=(5.2 * len(layers), 3.6), squeeze=False)
    for ax, l in zip(axes[0], layers, strict=True):
        for rule in rules:
            s = data[f"spikes.{rule}.{l}"].astype(float).mean(axis=1)
            cut = s[: n_steps // width * width].reshape(-1, width).mean(axis=1)
            ax.plot((np.arange(cut.size) + 0.5) * width, cut, lw=1.4, label=f"{rule} θ")
        if "target_rate" in data and l == layers[-1]:
            ax.axhline(float(data["target_rate"]), color="k", ls="--", lw=1, label="target")
        if "phase_steps" in data:
            for x in range(int(data["phase_steps"]), n_steps, int(data["phase_steps"])):
                ax.axvline(x, color="0.6", lw=0.6, ls=":")
        ax.set(xlabel="step (1 ms)", ylabel=f"spikes per neuron per step (mean over {width})",
               title=f"layer {l} firing rate")
        ax.set_ylim(bottom=0)
        hz = ax.secondary_yaxis("right", functions=(lambda r: r * 1000.0,
                                                    lambda f: f / 1000.0))
        hz.set_ylabel("Hz at 1 ms steps")
        ax.legend(fontsize=8)
    fig.suptitle("Firing rates through one task" + (" (dotted: phase boundaries)"
                                                   if "phase_steps" in data else ""),
                 fontsize=10)
    return _save(fig, path)


def plot_window(data: dict, path: Path) -> Path | None:
    keys = [k for k in data if k.startswith("window.")]
    if not keys or "window_dt" not in data:
        return None
    dt = data["window_dt"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k in keys:
        v = data[k]
        peak = np.nanmax(np.abs(v)) if np.isfinite(v).any() else 0.0
        scale = 1.0 / peak if peak > 0 else 1.0
        ax.plot(dt, v * scale, lw=1.6, marker=".", ms=3,
                label=f"{k.split('.', 1)[1]} (peak |Δw| {peak:.2g})")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="Δt = t_post − t_pre (steps)", ylabel="Δw / peak |Δw|",
           title=f"STDP window (one pre/post pair, w = {float(data.get('window_w', 0)):.3g})")
    ax.legend(fontsize=8)
    return _save(fig, path)


FIGURES = {"inner.png": plot_inner, "weights.png": plot_weights, "abcd.png": plot_abcd,
           "raster.png": plot_raster, "rates.png": plot_rates,
           "stdp_window.png": plot_window}


def plot_learning(run_path: str | Path) -> list[Path]:
    """Every figure above that applies to the run (none without ``episode.npz``, or when
    the file is damaged)."""
    run_path = Path(run_path)
    try:
        data = _npz.read(run_path / FILE, "episode recording")
    except (FileNotFoundError, ConfigError):
        return []
    drawn = []
    for name, draw in FIGURES.items():
        try:
            drawn.append(draw(data, run_path / name))
        except (KeyError, ValueError, IndexError, TypeError):  # a hand-edited, damaged file
            plt.close("all")
    return [p for p in drawn if p is not None]
