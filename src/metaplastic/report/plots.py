"""PNG plots of a run, drawn from ``metrics.jsonl`` (so they can be redrawn any time)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from metaplastic._records import read_metrics
from metaplastic.report.learning import plot_learning
from metaplastic.report.recovery_plots import plot_recovery

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _smooth(y: np.ndarray, k: int = 25) -> np.ndarray:
    """Centred running mean over ``k`` points (fewer at the ends), NaN ignored: unlike a
    trailing mean it does not lag behind a loss that drops fast."""
    ok = np.isfinite(y)
    vals = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(y.size)
    lo, hi = np.maximum(i - k // 2, 0), np.minimum(i + k // 2 + 1, y.size)
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (vals[hi] - vals[lo]) / n, np.nan)


def _col(history: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else r[key] for r in history], dtype=float)


def plot_meta_loss(history: list[dict], path: str | Path, score: str | None = None) -> Path:
    """Meta-loss (raw and a centred running mean, shaded between the running means of the
    tasks' quartiles when logged) and, if given, the task score over meta-training.
    Evolution strategies: per generation, with the population's best and mean; a loss
    that is minus a reward (RL) is drawn as the reward."""
    steps = _col(history, "step")
    panels = 2 if score and score in history[0] else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
    ax = axes[0, 0]
    loss = _col(history, "task_loss")
    sign, what = 1.0, "task loss"
    if np.isfinite(loss).any() and np.nanmax(loss) <= 0:  # minus a return: draw the return
        sign, what = -1.0, "−task loss (the reward)"
    x = "generation" if "pop_best" in history[0] else "meta-step"
    ax.plot(steps, sign * loss, alpha=0.3, lw=0.8, label=f"{what} (mean over tasks)")
    (mean_line,) = ax.plot(steps, sign * _smooth(loss), lw=1.8,
                           label="centred running mean (25)")
    if "task_loss_q25" in history[0]:  # the spread across the tasks of each step
        lo, hi = (sign * _smooth(_col(history, k)) for k in ("task_loss_q25", "task_loss_q75"))
        ax.fill_between(steps, np.fmin(lo, hi), np.fmax(lo, hi), color=mean_line.get_color(),
                        alpha=0.18, lw=0, label="tasks' quartiles (running mean)")
    if "pop_best" in history[0]:
        ax.plot(steps, sign * _col(history, "pop_best"), lw=0.9, label="population best")
        ax.plot(steps, sign * _col(history, "pop_mean"), lw=0.9, ls="--",
                label="population mean")
    drawn = sign * loss
    finite = drawn[np.isfinite(drawn)]
    # a log axis for a loss that spans decades; a reward (a return) stays linear
    log = (sign > 0 and finite.size > 0 and finite.min() > 0
           and finite.max() / finite.min() > 100)
    ax.set(xlabel=x, ylabel=what, yscale="log" if log else "linear",
           title="Meta-loss" if sign > 0 else "Reward (minus the meta-loss)")
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[0, 1]
        s = _col(history, score)
        ax.plot(steps, s, alpha=0.3, lw=0.8)
        ax.plot(steps, _smooth(s), lw=1.8)
        ax.set(xlabel=x, ylabel=score, title=f"{score} after inner learning")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_coefficients(
    history: list[dict], names: list[str], path: str | Path, label_top: int = 6,
    reference: list[float] | None = None, reference_name: str = "reference",
) -> Path:
    """Every rule coefficient over meta-training; the largest at the end are labelled,
    each with a dashed line at the reference rule's value for it (when given)."""
    steps = _col(history, "step")
    theta = np.array([r["theta"] for r in history], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    top = set(np.argsort(-np.abs(theta[-1]))[:label_top].tolist())
    for k in range(theta.shape[1]):
        name = names[k] if k < len(names) else f"theta[{k}]"
        if k in top:
            (line,) = ax.plot(steps, theta[:, k], lw=1.8, label=name)
            if reference is not None and k < len(reference):
                ax.axhline(reference[k], color=line.get_color(), lw=0.9, ls="--")
        else:
            ax.plot(steps, theta[:, k], lw=0.6, color="0.7")
    ax.axhline(0, color="k", lw=0.5)
    x = "generation" if "pop_best" in history[0] else "meta-step"
    title = "Rule coefficients" + (f" (dashed: {reference_name}'s)" if reference else "")
    ax.set(xlabel=x, ylabel="coefficient", title=title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_eval(run_path: str | Path, name: str = "eval") -> Path | None:
    """The held-out evaluation (``NAME.json``, default ``eval.json``) as ``NAME.png``: a
    panel for the score and one for the loss (logarithmic where it spans decades), one
    group per evaluation row (dataset, depth, ...), one point per rule (learned and
    baselines) with its 95% CI; rows where tasks diverged are marked. None without
    ``NAME.json``."""
    run_path = Path(run_path)
    try:
        data = json.loads((run_path / f"{name}.json").read_text())
        rows = data["rows"]
        score = rows[0]["score"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    rules, variants = [], []
    for r in rows:
        for seen, x in ((rules, r["rule"]), (variants, r["variant"])):
            if x not in seen:
                seen.append(x)
    cell = {(r["rule"], r["variant"]): r for r in rows}
    # two panels: the score and the loss, each as points with 95% CI bars on an axis fitted
    # to the values (bars from 0 hid differences of a score that saturates near 1, and a
    # loss of 1e14 beside one of 0.1 showed only on the loss's own, logarithmic, axis)
    metrics = [score] + (["loss"] if score != "loss" else [])
    width = 0.8 / len(rules)
    fig, axes = plt.subplots(1, len(metrics), squeeze=False, figsize=(
        max(7.0, len(metrics) * (1.6 + len(variants) * (0.45 + 0.22 * len(rules)))), 4.6))
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = []
        for i, ru in enumerate(rules):
            x, mean, ci = [], [], []
            for j, va in enumerate(variants):
                r = cell.get((ru, va))
                stats = r.get(metric) if r is not None else None
                if not isinstance(stats, dict) or stats.get("mean") is None:
                    continue
                x.append(j - 0.4 + (i + 0.5) * width)
                mean.append(float(stats["mean"]))
                c = stats.get("ci95")
                ci.append(float(c) if c is not None and np.isfinite(c) else 0.0)
                if r.get("diverged") and metric == score:
                    ax.annotate(f"{r['diverged']} div.", (x[-1], mean[-1]), fontsize=6,
                                ha="center", va="bottom", rotation=90,
                                xytext=(0, 4), textcoords="offset points")
            values += [m for m in mean if np.isfinite(m)]
            ax.errorbar(x, mean, yerr=ci, fmt="o", ms=4, capsize=2, lw=0.9,
                        color=f"C{i}", label=ru)
        finite = np.array(values)
        if (metric == "loss" and finite.size and finite.min() > 0
                and finite.max() / finite.min() > 30):
            ax.set_yscale("log")
        ax.set_xticks(range(len(variants)), [v.replace(", ", ",\n") for v in variants],
                      fontsize=7, rotation=30 if len(variants) > 4 else 0,
                      ha="right" if len(variants) > 4 else "center")
        ax.set_xlim(-0.6, len(variants) - 0.4)
        ax.grid(axis="y", lw=0.4, alpha=0.5)
        ax.set(ylabel=f"{metric} (mean over {data.get('tasks_per_row', '?')} tasks)",
               title=metric + (" (log axis)" if ax.get_yscale() == "log" else ""))
    fig.suptitle("Held-out evaluation: mean and 95% CI per row and rule", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.05 * ((len(labels) + 3) // 4) + 0.02, 1, 1))
    out = run_path / f"{name}.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def make_report(run_path: str | Path) -> list[Path]:
    """(Re)draw a run's plots from its saved files only; returns the PNG paths.

    Reads ``metrics.jsonl`` and the ``plot`` entry of ``summary.json`` (the task's score
    name and θ's names, written by the run): nothing is rebuilt, no dataset is loaded.
    """
    run_path = Path(getattr(run_path, "path", run_path))
    history = read_metrics(run_path / "metrics.jsonl")
    if not history:
        return []
    try:
        summary = json.loads((run_path / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    if not isinstance(summary, dict):  # damaged: plots from the metrics alone
        summary = {}
    plot = summary.get("plot", {})
    plot = plot if isinstance(plot, dict) else {}
    out = [plot_meta_loss(history, run_path / "meta_loss.png", score=plot.get("score"))]
    if "theta" in history[0]:
        names = plot.get("theta_names") or []
        ref = summary.get("reference_theta")
        if not (isinstance(ref, list) and all(isinstance(v, int | float) for v in ref)):
            ref = None  # absent, or a damaged summary: no reference lines
        out.append(plot_coefficients(history, names, run_path / "coefficients.png",
                                     reference=ref,
                                     reference_name=str(summary.get("reference", "reference"))))
    drawn = plot_eval(run_path)
    return (out + ([drawn] if drawn is not None else []) + plot_learning(run_path)
            + plot_recovery(run_path))
