"""Plots of a meta-meta run (``selection-meta``), from its saved files only.

``selection.png``: the meta-meta loss over training; the learned recombination weight
by fitness rank beside OpenAI-ES's (centred ranks) and CMA-ES's (log weights on the
better half); the scale σ chosen over generations on a 10-dimensional sphere.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from metaplastic._records import read_metrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_selection(run: str | Path) -> Path:
    run = Path(run)
    history = read_metrics(run / "metrics.jsonl")
    info = json.loads((run / "selection.json").read_text())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    steps = np.array([r["step"] for r in history], dtype=float)
    for key in sorted({k for r in history[:1] for k in r if k.startswith("task_loss[")}):
        ax.plot(steps, [r[key] for r in history], lw=0.8, alpha=0.6, label=key[10:-1])
    ax.plot(steps, [r["task_loss"] for r in history], lw=2, color="k", label="all")
    ax.set(xlabel="meta-meta step", ylabel="mean log(f(m_t) / f(m_0))",
           title="Meta-meta loss (lower: faster search)")
    ax.legend(fontsize=7)
    ax = axes[1]
    for n, styles in zip(info["weights"], ("-", "--", ":"), strict=False):
        w = info["weights"][n]
        x = np.linspace(0, 1, len(w["learned"]))
        ax.plot(x, w["learned"], "C0" + styles, label=f"learned, N={n}")
        ax.plot(x, w["openai_es"], "C1" + styles, label=f"OpenAI-ES, N={n}")
        ax.plot(x, w["cma_es"], "C2" + styles, label=f"CMA-ES, N={n}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="fitness rank (0 = best, 1 = worst)", ylabel="recombination weight",
           title="Selection: weight by rank")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[2]
    sphere = info["sphere10"]
    gens = np.arange(1, len(sphere["sigma"]) + 1)
    ax.plot(gens, sphere["sigma"], "C0", label="learned ES: σ")
    ax.plot(gens, np.sqrt(sphere["fitness"]), "C0:", label="learned ES: distance / √D")
    if "cma_es_sigma" in sphere:
        ax.plot(gens, sphere["cma_es_sigma"], "C2", label="CMA-ES: σ")
        ax.plot(gens, np.sqrt(sphere["cma_es_fitness"]), "C2:", label="CMA-ES: distance / √D")
        ax.axhline(sphere["openai_es_sigma"], color="C1", label="OpenAI-ES: σ (fixed)")
    ax.set(xlabel="generation", yscale="log",
           title="Variation: σ on a 10-d sphere from σ0 = 1 (N=16)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = run / "selection.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
