"""Compare runs: seeds of the same configuration aggregated, configurations side by side.

``metaplastic compare RUN... [--out DIR]`` reads each run directory's files only
(``config.toml``, ``metrics.jsonl``, ``summary.json``, ``eval.json``): runs whose
configurations differ only in ``seed`` form one group; each group gets the mean ± 95% CI
(Student t over seeds) of its final meta-loss (mean of the last 10 meta-steps), final
score and every held-out evaluation cell (rule × row), and one curve of the meta-loss
with a CI band, aligned by meta-step (up to the shortest run of the group). Writes
``compare.json`` and ``compare.png`` to ``--out``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

from metaplastic import _stats as stats
from metaplastic._records import read_json, read_metrics, read_toml
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
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flat_config(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


def _final(run: Run, key: str) -> float | None:
    vals = [r.get(key) for r in run.metrics[-LAST:]]
    vals = [v for v in vals if isinstance(v, int | float) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarise(g: Group) -> dict:
    """One group's numbers: seeds, final meta-loss and score, held-out cells."""
    score = next((r.summary.get("plot", {}).get("score") for r in g.runs
                  if r.summary.get("plot")), None)
    out: dict[str, Any] = {
        "label": g.label, "runs": [str(r.path) for r in g.runs],
        "seeds": [r.seed for r in g.runs],
        "final_meta_loss": mean_ci(_final(r, "task_loss") for r in g.runs),
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


def plot(groups: list[Group], path: Path, smooth: int = 10) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    positive = True
    for i, g in enumerate(groups):
        steps, mean, ci = curve(g)
        if not steps.size:
            continue
        k = max(1, min(smooth, steps.size // 5))
        kernel = np.ones(k) / k
        sm = np.convolve(np.pad(mean, (k - 1, 0), mode="edge"), kernel, mode="valid")
        ax.plot(steps, sm, color=f"C{i}", label=f"{g.label} ({len(g.runs)} seeds)")
        positive &= bool(np.nanmin(mean) > 0)
        if np.isfinite(ci).any():
            sc = np.convolve(np.pad(ci, (k - 1, 0), mode="edge"), kernel, mode="valid")
            low = np.maximum(sm - sc, sm / 10) if positive else sm - sc
            ax.fill_between(steps, low, sm + sc, color=f"C{i}", alpha=0.15)
    ax.set(xlabel="meta-step (generation)", ylabel=f"meta-loss (running mean of {smooth})",
           yscale="log" if positive else "linear",
           title="Runs compared: mean over seeds, 95% CI"
                 + (" (bands clipped at mean/10)" if positive else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
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
