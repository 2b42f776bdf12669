"""Compare runs: seeds of the same configuration aggregated, configurations side by side.

``metaplastic compare RUN... [--out DIR]`` reads each run directory's files only
(``config.toml``, ``metrics.jsonl``, ``summary.json``, ``eval.json``): runs whose
configurations differ only in ``seed`` form one group; each group gets the mean ± 95% CI
(Student t over seeds) of its final meta-loss (mean of the last 10 meta-steps), final
score and every held-out evaluation cell (rule × row), the fitness evaluations and
seconds it spent, and one curve of the meta-loss with a CI band and each seed as a thin
line, against meta-steps, fitness evaluations and wall time (up to the shortest run of the
group). Writes ``compare.json`` and ``compare.png`` to ``--out``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

from metaplastic import _stats as stats
from metaplastic._records import flatten, read_json, read_metrics, read_toml
from metaplastic.errors import ConfigError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LAST = 10  # meta-steps averaged for the final meta-loss


def mean_ci(values) -> tuple[float, float]:
    """(mean, 95% CI half-width) over the finite values (:mod:`metaplastic._stats`)."""
    mean, ci, _ = stats.mean_ci(values)
    return mean, ci


@dataclass
class Run:
    path: Path
    config: dict
    metrics: list[dict]
    summary: dict
    evaluation: dict

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def key(self) -> str:
        """The configuration without its seed (runs of one group share it)."""
        return json.dumps({k: v for k, v in self.config.items() if k != "seed"},
                          sort_keys=True, default=str)


@dataclass
class Group:
    label: str
    runs: list[Run] = field(default_factory=list)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    cfg_path = path / "config.toml"
    if not cfg_path.is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.toml)")
    config = read_toml(cfg_path)
    metrics = read_metrics(path / "metrics.jsonl") if (path / "metrics.jsonl").is_file() else []
    return Run(path, config, metrics, read_json(path / "summary.json", strict=False),
               read_json(path / "eval.json", strict=False))


def expand(specs: list[str]) -> list[Path]:
    """Run directories from paths and glob patterns (``runs/oja-*``), in order, once each."""
    out: list[Path] = []
    for spec in specs:
        if any(c in spec for c in "*?["):
            base = Path(spec).anchor or "."
            rel = str(Path(spec).relative_to(base)) if Path(spec).is_absolute() else spec
            hits = sorted(p for p in Path(base).glob(rel) if p.is_dir())
            if not hits:
                raise ConfigError(f"no run directories match {spec!r}")
            out += [q for p in hits for q in _seeds_of(p)]
        else:
            out += _seeds_of(Path(spec))
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def _seeds_of(path: Path) -> list[Path]:
    """A ``--seeds`` group directory as its seed runs (in seed order); a run as itself."""
    if (path / "config.toml").exists() or not path.is_dir():
        return [path]
    seeds = sorted((p.parent for p in path.glob("seed-*/config.toml")),
                   key=lambda p: int(p.name.split("-")[1]) if p.name[5:].isdigit() else 0)
    return seeds or [path]


def distinct(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """Runs with a configuration (seed included) met before — a copied run, or the same
    seed reached through two paths — counted once; and notes that say which, and which
    runs have no metrics to compare (named, not shown as numbers)."""
    seen: dict[str, Run] = {}
    kept, notes = [], []
    for run in runs:
        key = json.dumps(run.config, sort_keys=True, default=str)
        if key in seen:
            notes.append(f"{run.path} has the configuration and seed of {seen[key].path}: "
                         f"counted once")
            continue
        seen[key] = run
        kept.append(run)
        if not run.metrics:
            notes.append(f"{run.path} has no readable metrics.jsonl (missing or damaged): "
                         f"it adds no meta-loss")
    return kept, notes


def group(runs: list[Run]) -> list[Group]:
    """Runs whose configurations differ only in ``seed``, labelled by name and by what
    differs from the other groups."""
    groups: dict[str, Group] = {}
    for run in runs:
        groups.setdefault(run.key(), Group("", [])).runs.append(run)
    flat = {k: flat_config(g.runs[0].config) for k, g in groups.items()}
    shared = set.intersection(*(set(f.items()) for f in flat.values())) if flat else set()
    for k, g in groups.items():
        diff = sorted(f"{a}={b}" for a, b in flat[k].items()
                      if (a, b) not in shared and a not in ("seed", "name"))
        name = g.runs[0].config.get("name", "run")
        g.label = name + (f" [{', '.join(diff)}]" if diff and len(groups) > 1 else "")
    return list(groups.values())


def flat_config(d: dict, prefix: str = "") -> dict[str, str]:
    """A nested configuration as ``{"meta.steps": "300", ...}`` (values as JSON text)."""
    return {k: json.dumps(v, sort_keys=True, default=str)
            for k, v in flatten(d, prefix).items()}


def _final(run: Run, key: str) -> float | None:
    vals = [r.get(key) for r in run.metrics[-LAST:]]
    vals = [v for v in vals if isinstance(v, int | float) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def evaluations_per_step(config: dict) -> int:
    """Fitness evaluations of one meta-step, as the learned-ES benchmark counts them: one
    evaluation = one member's (or one gradient step's) objective on one step's tasks. A
    population loop evaluates its members and its mean (population + 1); a gradient step
    is one."""
    meta = config.get("meta", {}) if isinstance(config.get("meta"), dict) else {}
    if meta.get("outer") in ("es", "learned-es"):
        return int(meta.get("population", 64)) + 1
    return 1


def _x(run: Run, axis: str, n: int) -> np.ndarray:
    """The first ``n`` records' position on ``axis``: meta-step, evaluations or wall
    seconds (``wall_s`` of the records; NaN for runs written before it was recorded)."""
    steps = np.array([r.get("step", i + 1) for i, r in enumerate(run.metrics[:n])], float)
    if axis == "evaluations":
        return steps * evaluations_per_step(run.config)
    if axis == "seconds":
        return np.array([r["wall_s"] if isinstance(r.get("wall_s"), int | float) else np.nan
                         for r in run.metrics[:n]], float)
    return steps


def summarise(g: Group) -> dict:
    """One group's numbers: seeds, final meta-loss and score, evaluations and seconds
    spent, held-out cells."""
    score = next((r.summary.get("plot", {}).get("score") for r in g.runs
                  if r.summary.get("plot")), None)
    out: dict[str, Any] = {
        "label": g.label, "runs": [str(r.path) for r in g.runs],
        "seeds": [r.seed for r in g.runs],
        "final_meta_loss": mean_ci(_final(r, "task_loss") for r in g.runs),
        "evaluations": mean_ci(len(r.metrics) * evaluations_per_step(r.config)
                               for r in g.runs if r.metrics),
        "seconds": mean_ci(r.summary.get("seconds") for r in g.runs
                           if isinstance(r.summary.get("seconds"), int | float)),
    }
    if score:
        out["score"] = score
        out["final_score"] = mean_ci(_final(r, score) for r in g.runs)
    cells: dict[tuple[str, str, str], list[float]] = {}
    for r in g.runs:
        for row in r.evaluation.get("rows", []):
            metric = row.get("score")
            cell = row.get(metric) if metric else None
            if isinstance(cell, dict) and "mean" in cell:
                cells.setdefault((row.get("variant", ""), row.get("rule", ""), metric),
                                 []).append(cell["mean"])
    out["heldout"] = [{"variant": v, "rule": rule, "metric": m, "n_runs": len(vals),
                       "value": mean_ci(vals)} for (v, rule, m), vals in cells.items()]
    return out


def curve(g: Group, key: str = "task_loss") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, 95% CI half-width) over the group's seeds, up to the shortest run."""
    series = [np.array([r.get(key, np.nan) if r.get(key) is not None else np.nan
                        for r in run.metrics], float) for run in g.runs if run.metrics]
    if not series:
        return np.array([]), np.array([]), np.array([])
    n = min(len(s) for s in series)
    stack = np.stack([s[:n] for s in series])
    steps = np.array([r.get("step", i + 1) for i, r in enumerate(g.runs[0].metrics[:n])])
    mean = np.nanmean(stack, 0)
    ci = (stats.t95(len(series)) * np.nanstd(stack, 0, ddof=1) / math.sqrt(len(series))
          if len(series) > 1 else np.full(n, np.nan))
    return steps, mean, ci


AXES = (("step", "meta-step (generation)"),
        ("evaluations", "fitness evaluations (members + mean per generation; 1 per "
                        "gradient step)"),
        ("seconds", "wall-clock seconds of meta-training"))


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    kernel = np.ones(k) / k
    return np.convolve(np.pad(y, (k - 1, 0), mode="edge"), kernel, mode="valid")


def plot(groups: list[Group], path: Path, smooth: int = 10) -> Path:
    """The meta-loss of every group (mean over seeds, 95% CI band, each seed a thin line
    behind) against meta-steps, fitness evaluations and wall time: gradient and ES runs
    compare on the last two."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True)
    means = [curve(g) for g in groups]
    positive = all(np.nanmin(m) > 0 for _, m, _ in means if m.size)
    for ax, (axis, label) in zip(axes, AXES, strict=True):
        for i, (g, (steps, mean, ci)) in enumerate(zip(groups, means, strict=True)):
            if not steps.size:
                continue
            n, k = steps.size, max(1, min(smooth, steps.size // 5))
            xs = [_x(run, axis, n) for run in g.runs if len(run.metrics) >= n]
            for run, x in zip(g.runs, xs, strict=False):
                y = np.array([r.get("task_loss") if isinstance(r.get("task_loss"),
                                                               int | float) else np.nan
                              for r in run.metrics[:n]], float)
                ax.plot(x, _smooth(y, k), color=f"C{i}", lw=0.6, alpha=0.35)
            stack = np.stack(xs) if xs else steps[None]
            if not np.isfinite(stack).all(axis=0).any():
                continue  # runs written before wall time was recorded
            x = np.mean(stack, 0)
            sm = _smooth(mean, k)
            ax.plot(x, sm, color=f"C{i}", lw=2, label=f"{g.label} ({len(g.runs)} seeds)")
            if np.isfinite(ci).any():
                sc = _smooth(ci, k)
                low = np.maximum(sm - sc, sm / 10) if positive else sm - sc
                ax.fill_between(x, low, sm + sc, color=f"C{i}", alpha=0.15)
        ax.set(xlabel=label, yscale="log" if positive else "linear")
    axes[0].set_ylabel(f"meta-loss (running mean of {smooth})")
    fig.suptitle("Runs compared: mean over seeds, 95% CI, seeds as thin lines"
                 + (" (bands clipped at mean/10)" if positive else ""), fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # below the panels: a long label does not squeeze them
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)),
                   fontsize=8, frameon=False)
    rows = (len(labels) + 2) // 3 if handles else 0
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _no_nan(x: Any) -> Any:
    """NaN (e.g. the CI of one seed) as null: the JSON stays standard."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_no_nan(v) for v in x]
    return x


def compare(specs: list[str], out: str | Path = ".") -> tuple[list[dict], Path, Path]:
    """Load, group, summarise, plot. Returns (group summaries, compare.json, compare.png)."""
    paths = expand(specs)
    if not paths:
        raise ConfigError("compare needs at least one run directory")
    runs, notes = distinct([load_run(p) for p in paths])
    groups = group(runs)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write to {str(out)!r}: {e.strerror or e}") from None
    summaries = [summarise(g) for g in groups]
    if summaries:
        summaries[0]["notes"] = notes  # said once, with the first group
    js = out / "compare.json"
    js.write_text(json.dumps({"groups": _no_nan(summaries), "notes": notes}, indent=1,
                             default=str) + "\n")
    return summaries, js, plot(groups, out / "compare.png")
