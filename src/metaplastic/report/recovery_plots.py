"""Figures of rule recovery, drawn from a run's ``recovery.json`` alone
(:mod:`metaplastic.experiments.rule_recovery` writes it):

* ``recovery.png``: left, every fitted coefficient — inferred (with its bootstrap 95%
  interval when there is one) beside the truth; right, the held-out trajectories' score
  (percent deviance explained for choices, activity R² otherwise) per trajectory for the
  inferred rule, the truth and the network without plasticity;
* ``l1_path.png``: the cross-validated loss (± one standard error) along the L1 path and
  the coefficients fitted at each strength, the chosen strength marked.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

FILE = "recovery.json"
MAX_TERMS = 30  # coefficients shown (the largest, inferred or true)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_recovery(run_path: str | Path) -> list[Path]:
    """Both figures that apply; [] without a readable ``recovery.json``."""
    run_path = Path(run_path)
    try:
        data = json.loads((run_path / FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    out = []
    for wanted, draw, name in (
            (isinstance(data.get("coefficients"), dict)
             or isinstance(data.get("splits"), dict), _plot_main, "recovery.png"),
            (isinstance(data.get("l1_path"), dict), _plot_path, "l1_path.png")):
        if not wanted:
            continue
        try:  # a damaged part costs its own figure only
            out.append(draw(data, run_path / name))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            plt.close("all")
    return out


def _plot_main(data: dict, path: Path) -> Path | None:
    coef, held = data.get("coefficients"), (data.get("splits") or {}).get("heldout")
    panels = [p for p in (coef, held) if isinstance(p, dict)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1.5, 4.6),
                             squeeze=False)
    axes = list(axes[0])
    if isinstance(coef, dict):
        _coefficients(axes.pop(0), coef)
    if isinstance(held, dict):
        _trajectories(axes.pop(0), held, data.get("fit", "activity"))
    return _save(fig, path)


def _coefficients(ax, coef: dict) -> None:
    names = list(coef["names"])
    free = np.asarray(coef.get("free", [True] * len(names)), bool)
    got = np.asarray(coef["inferred"], float)
    truth = coef.get("truth_values")
    truth = np.asarray(truth, float) if truth is not None else None
    size = np.abs(got) + (np.abs(truth) if truth is not None else 0.0)
    order = [i for i in np.argsort(-size) if free[i]][:MAX_TERMS]
    x = np.arange(len(order))
    if "ci_low" in coef:
        lo, hi = np.asarray(coef["ci_low"], float), np.asarray(coef["ci_high"], float)
        # a percentile interval need not contain the estimate: drawn as its own bar
        ax.vlines(x, lo[order], hi[order], color="C0", lw=2, alpha=0.5,
                  label=f"{'parametric ' if coef.get('bootstrap_kind') == 'parametric' else ''}"
                        f"bootstrap 95% CI ({coef['bootstrap']} refits)")
        ax.plot(x, got[order], "o", color="C0", label="inferred")
    else:
        ax.plot(x, got[order], "o", color="C0", label="inferred")
    if truth is not None:
        ax.plot(x, truth[order], "_", color="k", markersize=14, mew=2,
                label=(f"truth ({coef.get('reference', 'reference')})"
                       if coef.get("is_truth", True) else
                       f"{coef.get('reference')} (the truth is outside the family)"))
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set_xticks(x, [names[i] for i in order], rotation=70, fontsize=7)
    title = ("the rule read out onto these terms" if coef.get("kind") == "readout"
             else "coefficients")
    if "cosine" in coef:
        title += f": cosine {coef['cosine']:.3f}, R² {coef['r2']:.3f}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def _trajectories(ax, held: dict, fit: str) -> None:
    rules = held["rules"]
    key = "deviance_explained_each" if fit == "choices" else None
    width = 0.8 / max(len(rules), 1)
    for i, (name, row) in enumerate(rules.items()):
        vals = row.get(key) if key else None
        if vals is None:  # activity: R² per trajectory is not kept; mean ± CI
            stats = row.get("r2", row.get("loss"))
            ax.bar(i, stats["mean"], yerr=stats.get("ci95") or 0.0, color=f"C{i}",
                   capsize=3, label=name)
            continue
        x = np.arange(len(vals)) - 0.4 + (i + 0.5) * width
        ax.bar(x, np.asarray(vals, float) * 100.0, width, color=f"C{i}",
               label=f"{name}: {row['deviance_explained'] * 100:.1f}% overall")
    if key:
        ax.set_xlabel("held-out trajectory")
        ax.set_ylabel("% deviance explained (vs no plasticity)")
    else:
        ax.set_xticks([])
        ax.set_ylabel("activity R² (mean, 95% CI over trajectories)")
    def r2(v) -> str:  # None/NaN in the file: the truth left nothing to explain
        return f"{v:.3f}" if isinstance(v, int | float) and np.isfinite(v) else "undefined"

    extra = (f", R² vs truth: weight changes {r2(held['weight_r2'])}, output "
             f"{r2(held['activity_r2'])}" if "weight_r2" in held else "")
    ax.set_title(f"held-out trajectories ({held['trajectories']}){extra}", fontsize=10)
    ax.legend(fontsize=8)


def _plot_path(data: dict, path: Path) -> Path:
    p = data["l1_path"]
    lam = np.asarray(p["l1"], float)
    positive = lam[lam > 0]
    floor = positive.min() / 10.0 if positive.size else 1e-6
    x = np.where(lam > 0, lam, floor)  # L1 = 0 drawn a decade left of the smallest
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.errorbar(x, p["cv_loss"], yerr=p["cv_se"], fmt="o-", capsize=3)
    a.axvline(x[list(lam).index(p["chosen"])], color="C3", ls="--", label="chosen")
    a.set_xscale("log")
    a.set_xlabel(f"L1 strength (0 drawn at {floor:g})")
    a.set_ylabel(f"cross-validated loss ({p['folds']} folds)")
    a.legend(fontsize=8)
    theta = np.asarray(p["theta"], float)
    coef = data.get("coefficients") or {}
    names = coef.get("names") or []
    if coef.get("kind") == "readout" or len(names) != theta.shape[1]:  # θ's own entries
        names = [f"θ[{i}]" for i in range(theta.shape[1])]
    top = np.argsort(-np.abs(theta).max(axis=0))[:8]
    for i in range(theta.shape[1]):
        b.plot(x, theta[:, i], color="0.8" if i not in top else None, lw=0.8 if i not in top
               else 1.5, label=names[i] if i in top else None)
    b.axvline(x[list(lam).index(p["chosen"])], color="C3", ls="--")
    b.set_xscale("log")
    b.set_xlabel("L1 strength")
    b.set_ylabel("coefficient (fit on all training trajectories)")
    b.legend(fontsize=7)
    return _save(fig, path)
