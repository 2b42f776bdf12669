"""mixture-fewshot over meta-training seeds: the headline columns with every control.

    metaplastic run mixture-fewshot --seeds 0-4 --no-eval --out runs/seeds
    python benchmarks/mixture_seeds.py runs/seeds/mixture-fewshot-seeds-*/ [--evaluate]

With ``--evaluate [headline] [farther] [last] [matrix]``, every seed's θ is evaluated (``metaplastic
eval RUN --name headline|farther|last --set ...``) on the two depth-5 headline columns — MNIST-5k
(never in the mixture) and digits, held-out classes 5-9, 200 tasks per cell — and on two
farther columns (procedural shapes at depth 5; digits at width 128 with 500 inner
updates; 100 tasks per cell) against the preset's baselines and
controls in their classical form: FA and backprop-Adam on the whole network, Adam on the
output layer only (learning rates tuned per column on meta-training classes, grids of 5),
the learned rule on the output layer only and with the hidden neurons' errors ablated in
hidden-layer synapses, and FA with per-layer learning rates meta-learned for each column
on its meta-training classes (step sizes without learned credit assignment); ``last``
evaluates the last meta-step's θ instead of the kept-best one (the keep-best ablation,
no training again); ``matrix`` the preset's whole matrix (13 columns) with every learner
that needs no meta-training of its own (aggregated apart: its columns share labels with
the headline's but are other tasks). Then (always) the seeds are aggregated: per column
and learner the mean over seeds ± 95% CI (t over seeds), the fraction of the FA-to-Adam
gap per seed and its mean ± CI, the seeds that ended flagged (status other than finished)
and the rollbacks of each. Writes benchmarks/results/mixture_seeds.json (or ``--out``)
and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _cli import write_results

from metaplastic._stats import mean_ci
from metaplastic.experiments import presets
from metaplastic.experiments.config import set_arguments

OUT = Path(__file__).parent / "results" / "mixture_seeds.json"
NAMES = ("headline", "farther", "last", "matrix")
#: the row name of the "last" evaluation's learned rule (θ of the last meta-step)
LAST = "learned, last θ (no keep-best)"
HEADLINE = [dict(c) for c in presets.MIXTURE_HEADLINE]
COLUMNS = [*HEADLINE, *map(dict, presets.MIXTURE_FARTHER)]
WANTED = presets.MIXTURE_HEADLINE_LEARNERS


def evaluate(run: Path, name: str, tasks: int | None = None) -> None:
    settings = presets.mixture_headline_eval(name)
    if tasks:
        settings["tasks"] = tasks
    args = [sys.executable, "-m", "metaplastic.cli", "eval", str(run), "--name", name,
            *set_arguments("eval", settings)]
    subprocess.run(args, check=True)


def alignment(run: Path, n_tasks: int) -> dict:
    """Per headline column: the learned rule's per-layer cosine with backprop's gradient
    step over the episode (metaplastic.analysis.alignment); FA's beside it."""
    import dataclasses

    import jax

    from metaplastic.analysis.alignment import gradient_alignment
    from metaplastic.experiments.build import build
    from metaplastic.experiments.evaluate import eval_key
    from metaplastic.experiments.rule_runs import run_theta
    from metaplastic.experiments.rundir import RunDir

    rd = RunDir(run)
    cfg = rd.config()
    theta = run_theta(rd, build(cfg))
    out = {}
    for i, col in enumerate(HEADLINE):
        var = {k: v for k, v in col.items() if k != "label"}
        key = jax.random.fold_in(eval_key(cfg.seed), 1000 + i)
        pieces = build(cfg, **var)
        fa_cfg = dataclasses.replace(cfg, rule={"name": "sgd", "eta": 0.03})
        fa = build(fa_cfg, **{**var, "network": {**var["network"], "update_fan_in": 0,
                                                 "update_bound_w": 0.0,
                                                 "update_bound_init": 0.0,
                                                 "feedback_plasticity": "none"}})
        out[col["label"]] = {
            "learned": gradient_alignment(pieces.objective, theta, key, n_tasks),
            "FA": gradient_alignment(fa.objective, fa.rule.init(
                jax.random.key(0), fa.network.shapes), key, n_tasks)}
    write_results(run / "alignment.json", out)
    return out


def safeguards(run: Path, part_clip: float = 1.0) -> dict:
    """What the safeguards saw in a run's metrics: the largest ratio of each bounded
    quantity to its start (the bounds: 100 for the loss, 1e4 gradient norm, 1e3 weights),
    and per mixture part the share of meta-steps whose gradient the part clip shortened
    (norm above ``part_clip``) with the median norm."""
    import numpy as np

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    first = records[0]
    out = {"steps": len(records),
           "max_loss_over_start": max(r["loss"] for r in records) / first["loss"],
           "max_grad_norm_over_start": max(r["grad_norm"] for r in records)
           / first["grad_norm"],
           "max_w_max_over_start": max(r["w_max"] for r in records) / first["w_max"],
           "blowups": sum(bool(r["blowup"]) for r in records), "parts": {}}
    for key in first:
        if key.startswith("grad_norm["):
            norms = np.array([r[key] for r in records])
            out["parts"][key[10:-1]] = {"clipped_share": float(np.mean(norms > part_clip)),
                                        "median_norm": float(np.median(norms))}
    return out


def aggregate(runs: list[Path]) -> dict:
    seeds = []
    for run in runs:
        try:
            summary = json.loads((run / "summary.json").read_text())
        except FileNotFoundError:  # still training, or killed
            summary = {"status": "no summary.json (running, or killed)", "meta_steps": None,
                       "seconds": None, "config_at_start": {"seed": int(run.name[5:])}}
        entry = {"run": str(run), "seed": int(run.name.split("-")[1]),
                 "status": summary["status"],
            "rollbacks": summary.get("guard", {}).get("rollbacks"),
            "kept_theta": summary.get("guard", {}).get("kept_theta"),
            "meta_steps": summary["meta_steps"], "seconds": summary["seconds"]}
        if (run / "metrics.jsonl").is_file():
            entry["safeguards"] = safeguards(run)
        if (run / "alignment.json").is_file():
            entry["alignment"] = json.loads((run / "alignment.json").read_text())
        entry["cells"], entry["matrix"] = {}, {}
        for name in NAMES:
            path = run / f"{name}.json"
            if path.is_file():
                rows = json.loads(path.read_text())["rows"]
                # the matrix has columns of the same labels, on other tasks: kept apart
                entry["matrix" if name == "matrix" else "cells"].update({
                    f"{LAST if name == 'last' else r['rule']}|{r['variant']}": {
                        "mean": r["accuracy"]["mean"], "ci95": r["accuracy"]["ci95"],
                        "tasks": r["tasks"], "diverged": r["diverged"],
                        "tuned": r.get("tuned")} for r in rows})
        seeds.append(entry)
    table: dict = {}
    for col in COLUMNS:
        c = col["label"]
        evaluated = [s for s in seeds if f"learned|{c}" in s["cells"]]
        if not evaluated:
            continue
        out = {}
        for rule in ("learned", *WANTED, LAST):
            if not all(f"{rule}|{c}" in s["cells"] for s in evaluated):
                continue  # evaluated before this learner was in the study
            vals = [s["cells"][f"{rule}|{c}"]["mean"] for s in evaluated]
            m, ci, n = mean_ci(vals)
            out[rule] = {"mean": m, "ci95": ci, "n": n, "per_seed": vals}
        gaps = [(s["cells"][f"learned|{c}"]["mean"] - s["cells"][f"FA|{c}"]["mean"])
                / (s["cells"][f"backprop Adam|{c}"]["mean"] - s["cells"][f"FA|{c}"]["mean"])
                for s in evaluated]
        m, ci, n = mean_ci(gaps)
        out["gap_fraction"] = {"mean": m, "ci95": ci, "n": n, "per_seed": gaps}
        diffs = [s["cells"][f"learned|{c}"]["mean"]
                 - s["cells"][f"Adam, output layer only|{c}"]["mean"] for s in evaluated]
        m, ci, n = mean_ci(diffs)
        out["learned_minus_output_only_adam"] = {"mean": m, "ci95": ci, "n": n,
                                                 "per_seed": diffs}
        if all("alignment" in s and c in s["alignment"] for s in seeds):
            out["alignment_episode_cosine"] = {}
            for who in ("learned", "FA"):
                layers = seeds[0]["alignment"][c][who]
                out["alignment_episode_cosine"][who] = {
                    layer: dict(zip(("mean", "ci95", "n"), mean_ci(
                        [s["alignment"][c][who][layer]["episode"]["mean"] for s in seeds]),
                        strict=True)) for layer in layers}
        table[c] = out
    return {"seeds": seeds, "flagged": [s["seed"] for s in seeds if s["status"] != "finished"],
            "columns": table, "matrix": matrix_table(seeds)}


def matrix_table(seeds: list[dict]) -> dict:
    """The whole matrix over the seeds that have it: per column and learner the mean
    over seeds ± 95% CI, the cells flagged diverged (episodes, summed over seeds) and,
    per column, the learned rule's share of the FA-to-Adam gap."""
    evaluated = [s for s in seeds if s["matrix"]]
    if not evaluated:
        return {}
    keys = [k for k in evaluated[0]["matrix"] if all(k in s["matrix"] for s in evaluated)]
    columns = list(dict.fromkeys(k.split("|", 1)[1] for k in keys))
    learners = list(dict.fromkeys(k.split("|", 1)[0] for k in keys))
    table = {}
    for c in columns:
        out = {}
        for rule in learners:
            cells = [s["matrix"][f"{rule}|{c}"] for s in evaluated]
            m, ci, n = mean_ci([x["mean"] for x in cells])
            out[rule] = {"mean": m, "ci95": ci, "n": n,
                         "per_seed": [x["mean"] for x in cells],
                         "diverged": sum(x["diverged"] for x in cells)}
        gaps = [(s["matrix"][f"learned|{c}"]["mean"] - s["matrix"][f"FA|{c}"]["mean"])
                / (s["matrix"][f"backprop Adam|{c}"]["mean"] - s["matrix"][f"FA|{c}"]["mean"])
                for s in evaluated]
        m, ci, n = mean_ci(gaps)
        out["gap_fraction"] = {"mean": m, "ci95": ci, "n": n, "per_seed": gaps}
        table[c] = out
    return {"seeds": [s["seed"] for s in evaluated], "columns": table}


def matrix_markdown(matrix: dict) -> str:
    """The matrix as a Markdown table (columns of the evaluation as rows)."""
    cols = matrix["columns"]
    learners = [k for k in next(iter(cols.values())) if k != "gap_fraction"]
    lines = ["| evaluated on | " + " | ".join(learners) + " | share of FA→Adam gap |",
             "|---" * (len(learners) + 2) + "|"]
    for c, out in cols.items():
        g = out["gap_fraction"]
        lines.append(f"| {c} | " + " | ".join(
            f"{out[r]['mean']:.3f} ± {out[r]['ci95']:.3f}" for r in learners)
            + f" | {100 * g['mean']:.0f} ± {100 * g['ci95']:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("parent", type=Path, help="the --seeds run directory (seed-N inside)")
    p.add_argument("--evaluate", nargs="*", choices=NAMES, default=None,
                   help="evaluate every seed first on these columns (default: headline "
                   "and farther)")
    p.add_argument("--tasks", type=int, default=None, help="tasks per cell and tuning "
                   "point (default: 200 headline, 100 farther)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    runs = sorted(args.parent.glob("seed-*"), key=lambda r: int(r.name.split("-")[1]))
    if not runs:
        raise SystemExit(f"no seed-N run directories in {args.parent}")
    if args.evaluate is not None:
        for name in args.evaluate or ("headline", "farther"):
            for run in runs:
                evaluate(run, name, args.tasks)
                if name == "headline":
                    alignment(run, min(args.tasks or 50, 50))
    result = aggregate(runs)
    write_results(args.out, result)
    print(f"seeds: {len(runs)}, flagged: {result['flagged']}, rollbacks: "
          f"{[s['rollbacks'] for s in result['seeds']]}")
    for col, out in result["columns"].items():
        print(col)
        for rule, v in out.items():
            if rule == "alignment_episode_cosine":
                for who, layers in v.items():
                    print(f"  cos with backprop, {who}: " + ", ".join(
                        f"{k} {x['mean']:+.2f}±{x['ci95']:.2f}" for k, x in layers.items()))
                continue
            print(f"  {rule:34s} {v['mean']:.3f} ± {v['ci95']:.3f} (n={v['n']})")
    if result["matrix"]:
        print(f"matrix over seeds {result['matrix']['seeds']} (mean ± 95% CI over seeds):")
        print(matrix_markdown(result["matrix"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
