"""The learned evolution strategy against tuned hand-designed ones, by the protocol fixed in
benchmarks/learned_es_protocol.toml (read it first: searches, budgets, scores, grids,
statistics).

    python benchmarks/learned_es_protocol.py tune [--searches ...] [--strategies ...]
    python benchmarks/learned_es_protocol.py evaluate [--searches ...] [--phi PATH]
    python benchmarks/learned_es_protocol.py table
    python benchmarks/learned_es_protocol.py develop --phi PATH   # φ on the development
                  searches, tuning seeds, against the best tuned strategy (never a test search)
    ... --quick   a smoke run: 2 seeds, 1 tuning seed, a fifth of the generations, a
                  corner of the grid, written to --out (default /tmp), never to results

``tune`` runs every hand-designed strategy at every grid point on the tuning seeds, on
the test and the development searches, and keeps each grid point's mean generalising
score (``benchmarks/results/learned_es_tuning.json``). ``evaluate`` runs every strategy on
the evaluation seeds with both tunings (per test search; from the development searches)
and the learned ES once per seed, scores the mean every ``score_every`` generations on
fixed fresh tasks, counts every fitness evaluation, and writes
``benchmarks/results/learned_es_protocol.json``; ``table`` prints the Markdown table with
the paired statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
import tomllib
from pathlib import Path

import jax
import numpy as np
from _cli import write_results

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "benchmarks" / "learned_es_protocol.toml"
RESULTS = ROOT / "benchmarks" / "results"
#: fresh-task keys: the evaluation's and the tuning's streams (disjoint from every search)
EVAL_STREAM, TUNE_STREAM = 99_991, 77_777

STRATEGIES = {
    "learned-es": {"outer": "learned-es"},
    "openai-es": {"outer": "es", "strategy": "open_es", "optimizer": "sgd",
                  "fitness_shaping": "centered_rank"},
    "openai-es-adam": {"outer": "es", "strategy": "open_es", "optimizer": "adam",
                       "fitness_shaping": "centered_rank"},
    "snes": {"outer": "es", "strategy": "snes"},
    "cma-es": {"outer": "es", "strategy": "cma_es"},
    "evosax-les": {"outer": "es", "strategy": "LES"},
    "pes": {"outer": "es", "strategy": "pes"},
}
HAS_LR = {"openai-es", "openai-es-adam", "snes"}
#: a final score beyond this many times the search's median score (every strategy's
#: seeds) is counted as a blow-up in the table (a finite divergence is divergence too)
BLOWN = 100.0


def load_protocol() -> dict:
    p = tomllib.loads(PROTOCOL.read_text())
    p["searches"] = {s["name"]: {**s, "role": role}
                     for role in ("test", "development") for s in p[role]}
    return p


def applies(protocol: dict, search: dict, strategy: str, dim: int) -> str | None:
    """Why ``strategy`` does not run on ``search`` (None: it runs)."""
    if strategy == "cma-es" and dim > protocol["strategies"]["cma_max_dim"]:
        return f"θ has {dim} numbers > cma_max_dim"
    if strategy == "pes" and not search.get("truncation"):
        return "the search uses no truncation"
    return None


def config(search: dict, strategy: str, seed: int, sigma: float, lr: float | None,
           generations: int, chunk: int):
    from metaplastic.experiments import config as cfgmod
    from metaplastic.experiments import presets

    base = presets.get(search["preset"])
    meta = {**STRATEGIES[strategy], "population": search["population"], "sigma": sigma,
            "steps": generations, "tasks_per_step": search["tasks"], "chunk": chunk}
    for key in ("l1", "weight_bound", "early_exit"):
        if key in base.meta:
            meta[key] = base.meta[key]
    if lr is not None:
        meta["lr"] = lr
    cfg = dataclasses.replace(base, meta=meta, seed=seed)
    return cfgmod.from_dict(cfgmod.to_dict(cfg))


def dimension(search: dict) -> int:
    from metaplastic.experiments.build import build

    cfg = config(search, "openai-es", 0, 0.1, None, 1, 1)
    p = build(cfg)
    theta = p.rule.init(jax.random.key(0), p.network.shapes)
    return int(sum(np.size(x) for x in jax.tree.leaves(theta)))


def scorer(search: dict, cfg, n_tasks: int):
    """θ -> the generalising score on ``n_tasks`` fresh tasks (the protocol's overrides)."""
    from metaplastic.experiments.build import build

    fresh = dataclasses.replace(cfg, meta={**cfg.meta, "tasks_per_step": n_tasks})
    pieces = build(fresh, **search["fresh"])
    fn = jax.jit(pieces.objective.__call__)
    metric = search["metric"]

    def score(theta, key) -> float:
        _, aux = fn(theta, key)
        return float(aux["task_loss"] if metric == "loss" else aux[metric])

    return score


def run_one(protocol: dict, search: dict, strategy: str, seed: int, sigma: float,
            lr: float | None, generations: int, stream: int, curve: bool) -> dict:
    """One search: the final mean's generalising score, (optionally) the score every
    ``score_every`` generations, evaluations counted, wall time."""
    from metaplastic.errors import NonFiniteError
    from metaplastic.experiments.build import build
    from metaplastic.meta import driver
    from metaplastic.meta.guard import DEFAULT_GUARD

    every = protocol["evaluation"]["score_every"]
    cfg = config(search, strategy, seed, sigma, lr, generations, every)
    pieces = build(cfg)
    k_init, k_meta = jax.random.split(jax.random.key(cfg.seed))
    theta0 = pieces.rule.init(k_init, pieces.network.shapes)
    snapshots, stamps = [], [time.perf_counter()]

    def keep(state):
        stamps.append(time.perf_counter())
        if curve:
            snapshots.append(jax.device_get(driver.result_theta(pieces.outer, state,
                                                                DEFAULT_GUARD)))

    t0 = time.perf_counter()
    stopped = None
    try:  # under the preset's own safeguards (e.g. the Hebbian presets' weight bound)
        res = driver.run(pieces.outer, pieces.objective, theta0, key=k_meta,
                         checkpoint=keep, guard=cfg.meta_section.build_guard())
    except NonFiniteError as e:  # stopped by the safeguards: its last good θ is scored
        res, stopped = e.result, str(e).split(". ")[0]
    wall = time.perf_counter() - t0
    score = scorer(search, cfg, protocol["evaluation"]["fresh_tasks"])
    key = jax.random.key(stream + seed)
    skipped = sum(bool(r.get("skipped")) for r in res.history)
    # every generation run counts, those of a chunk the safeguards undid and re-ran too
    run_generations = max(len(res.history), (len(stamps) - 1) * every)
    evaluations = run_generations * (search["population"] + 1) + (
        skipped if strategy == "learned-es" else 0)
    out = {"final": score(res.theta, key), "stopped": stopped, "evaluations": evaluations,
           "rejected_steps": skipped, "seconds": wall,
           "seconds_per_generation": float(np.median(np.diff(stamps[2:]))) / every
           if len(stamps) > 3 else float("nan"),
           "train_curve": [r["loss"] for r in res.history]}
    if curve:
        out["curve"] = [score(t, key) for t in snapshots]
        out["curve_evaluations"] = [(i + 1) * every * (search["population"] + 1)
                                    for i in range(len(snapshots))]
    return out


def selection_overhead(search: dict, strategy: str, sigma: float, lr: float | None,
                       generations: int = 60, chunk: int = 10) -> float:
    """Seconds per generation of ``strategy``'s own work (sampling, selection, the update
    of the mean and scale) at the search's θ size and population: the same outer loop run
    on a cheap objective of θ (a sum of squared tanh, bounded, vmapped over members like
    any objective), median over chunks after the first (compiled) one."""
    from metaplastic.experiments.build import build
    from metaplastic.meta import driver

    cfg = config(search, strategy, 0, sigma, lr, generations, chunk)
    pieces = build(cfg)
    theta0 = pieces.rule.init(jax.random.key(0), pieces.network.shapes)

    def cheap(theta, key):  # bounded whatever the steps: no safeguard ever stops it
        loss = sum(jax.numpy.sum(jax.numpy.tanh(x) ** 2) for x in jax.tree.leaves(theta))
        return loss, {"task_loss": loss}

    from metaplastic.meta.guard import Guard

    stamps = [time.perf_counter()]
    loose = Guard(loss_bound=math.inf, grad_bound=math.inf, weight_bound=math.inf)
    driver.run(pieces.outer, cheap, theta0, key=jax.random.key(1), progress=False,
               checkpoint=lambda state: stamps.append(time.perf_counter()), guard=loose)
    return float(np.median(np.diff(stamps[2:]))) / chunk


def grid(protocol: dict, strategy: str, quick: bool) -> list[tuple[float, float | None]]:
    t = protocol["tuning"]
    sigmas, lrs = t["sigma"], t["lr"]
    if quick:
        sigmas, lrs = sigmas[1:2], lrs[1:2]
    if strategy in HAS_LR:
        return list(itertools.product(sigmas, lrs))
    return [(s, None) for s in sigmas]


def better(direction: str, a: float, b: float) -> bool:
    return a > b if direction == "maximise" else a < b


def opened(out: Path, **header) -> tuple[dict, dict]:
    """(the results file's data so far with ``header`` updated, its ``results`` table):
    a rerun continues what an earlier one wrote."""
    data = json.loads(out.read_text()) if out.is_file() else {}
    data.update({"protocol_sha256": sha256(PROTOCOL), "machine": machine(), **header})
    return data, data.setdefault("results", {})


def searches(args, protocol: dict):
    """(name, search, θ's dimension, generations) of every search asked for."""
    for name in args.searches:
        search = protocol["searches"][name]
        yield name, search, dimension(search), generations(search, args.quick)


def tune(args, protocol: dict) -> None:
    out = args.out / "learned_es_tuning.json"
    data, results = opened(out)
    seeds = protocol["tuning"]["seeds"][:1 if args.quick else None]
    for name, search, dim, gens in searches(args, protocol):
        for strategy in args.strategies:
            if strategy == "learned-es" or applies(protocol, search, strategy, dim):
                continue
            rows = results.setdefault(name, {}).setdefault(strategy, {})
            for sigma, lr in grid(protocol, strategy, args.quick):
                label = f"sigma={sigma}" + ("" if lr is None else f",lr={lr}")
                if label in rows and not args.redo:
                    continue
                finals, stopped = [], 0
                for seed in seeds:
                    r = run_one(protocol, search, strategy, seed, sigma, lr, gens,
                                TUNE_STREAM, curve=False)
                    finals.append(r["final"])
                    stopped += r["stopped"] is not None
                # a setting whose search diverged or was stopped is not chosen
                ok = all(map(math.isfinite, finals)) and not stopped
                rows[label] = {"sigma": sigma, "lr": lr, "finals": finals,
                               "stopped": stopped,
                               "mean": float(np.mean(finals)) if ok else None}
                print(f"tune {name} {strategy} {label}: {rows[label]['mean']}", flush=True)
                write_results(out, data)


def chosen(protocol: dict, tuning: dict, name: str, strategy: str, mode: str) -> dict:
    """The tuned grid point of ``strategy`` for search ``name`` (``mode`` per the protocol),
    with whether it lies on the grid's edge."""
    def best_of(rows: dict, direction: str) -> str:
        ok = {k: v for k, v in rows.items() if v["mean"] is not None}
        sign = -1 if direction == "maximise" else 1
        return min(ok, key=lambda k: sign * ok[k]["mean"])

    if mode == "per_test_search":
        rows = tuning[name][strategy]
        label = best_of(rows, protocol["searches"][name]["direction"])
    else:  # from_development: the best mean rank over the development searches
        ranks: dict[str, list[float]] = {}
        for dev in (s["name"] for s in protocol["development"]):
            rows = tuning.get(dev, {}).get(strategy, {})
            direction = protocol["searches"][dev]["direction"]
            ordered = sorted((k for k in rows if rows[k]["mean"] is not None),
                             key=lambda k: (-1 if direction == "maximise" else 1)
                             * rows[k]["mean"])
            for r, k in enumerate(ordered):
                ranks.setdefault(k, []).append(r)
        devs = [s["name"] for s in protocol["development"]]
        if not ranks:
            raise SystemExit(f"no tuning of {strategy} on the development searches: run "
                             f"`tune --searches {' '.join(devs)}`")
        label = min(ranks, key=lambda k: np.mean(ranks[k]))
        rows = next(tuning[dev][strategy] for dev in devs
                    if label in tuning.get(dev, {}).get(strategy, {}))
    point = rows[label]
    t = protocol["tuning"]
    edge = point["sigma"] in (t["sigma"][0], t["sigma"][-1]) or (
        point["lr"] is not None and point["lr"] in (t["lr"][0], t["lr"][-1]))
    return {"label": label, "sigma": point["sigma"], "lr": point["lr"], "on_edge": edge}


def evaluate(args, protocol: dict) -> None:
    tuning_file = args.out / "learned_es_tuning.json"
    if not tuning_file.is_file():
        raise SystemExit(f"no tuning results at {tuning_file}: run `tune` first")
    tuning = json.loads(tuning_file.read_text())["results"]
    out = args.out / "learned_es_protocol.json"
    phi = {"path": args.phi or "shipped"}
    if args.phi:
        phi["sha256"] = sha256(Path(args.phi))
    data, results = opened(out, phi=phi, command=" ".join(["python", *sys.argv]))
    seeds = range(2 if args.quick else protocol["evaluation"]["seeds"])
    for name, search, dim, gens in searches(args, protocol):
        for strategy in args.strategies:
            why = applies(protocol, search, strategy, dim)
            if why:
                results.setdefault(name, {})[strategy] = {"skipped": why}
                continue
            if strategy == "learned-es":
                settings = {"untuned": {"sigma": search["sigma"], "lr": None, "phi": phi,
                                        "options": args.learned}}
            else:
                modes = protocol["tuning"]["modes"] if search["role"] == "test" else \
                    ["per_test_search"]
                settings = {m: chosen(protocol, tuning, name, strategy, m) for m in modes
                            if m in args.modes}
            for mode, point in settings.items():
                entry = {"setting": point, "runs": [],
                         "budget": gens * (search["population"] + 1)}
                before = results.get(name, {}).get(strategy, {}).get(mode)
                if before and not args.redo and all(before.get(k) == entry[k]
                                                    for k in ("setting", "budget")):
                    # a rerun continues: the seeds done with the same setting are kept
                    entry["runs"] = before["runs"][:len(seeds)]
                results.setdefault(name, {}).setdefault(strategy, {})[mode] = entry
                if before and "overhead_s_per_generation" in before and entry["runs"]:
                    entry["overhead_s_per_generation"] = before["overhead_s_per_generation"]
                for seed in seeds[len(entry["runs"]):]:
                    entry["runs"].append(run_one(protocol, search, strategy, seed,
                                                 point["sigma"], point["lr"], gens,
                                                 EVAL_STREAM, curve=True))
                    print(f"{name} {strategy} {mode} seed {seed}: "
                          f"{entry['runs'][-1]['final']:.4g} "
                          f"({entry['runs'][-1]['seconds']:.0f} s)", flush=True)
                    write_results(out, data)
                if "overhead_s_per_generation" not in entry:
                    entry["overhead_s_per_generation"] = selection_overhead(
                        search, strategy, point["sigma"], point["lr"])
                    write_results(out, data)
    print(table(protocol, data))


def develop(args, protocol: dict) -> None:
    """A φ on the development searches (only: the protocol lets them steer φ's design),
    on the tuning seeds and the tuning stream, beside the best tuned hand-designed
    strategy's mean there (``learned_es_tuning.json``). Writes nothing to results."""
    tuning = json.loads((RESULTS / "learned_es_tuning.json").read_text())["results"]
    seeds = protocol["tuning"]["seeds"][:1 if args.quick else None]
    rows = []
    for name, search, _, gens in searches(args, protocol):
        if search["role"] != "development":
            raise SystemExit(f"`develop` runs development searches only; {name!r} is a "
                             f"test search (evaluated once, by `evaluate`)")
        finals = [run_one(protocol, search, "learned-es", seed, search["sigma"], None, gens,
                          TUNE_STREAM, curve=False)["final"] for seed in seeds]
        best = {}
        for strategy, grid_rows in tuning.get(name, {}).items():
            if any(v["mean"] is not None for v in grid_rows.values()):
                label = chosen(protocol, tuning, name, strategy, "per_test_search")["label"]
                best[strategy] = grid_rows[label]["mean"]
        sign = 1.0 if search["direction"] == "maximise" else -1.0
        top = max(best, key=lambda s: sign * best[s])
        rows.append((name, float(np.mean(finals)), finals, top, best[top]))
        print(f"{name}: learned ES {np.mean(finals):.4g} {np.round(finals, 4).tolist()}; "
              f"best tuned {top} {best[top]:.4g}", flush=True)
    if args.out and not args.quick and args.out.resolve() != RESULTS.resolve():
        write_results(args.out / "develop.json",
                      {"phi": args.phi or "shipped", "options": args.learned, "rows": rows})


def paired(protocol: dict, data: dict, name: str) -> dict | None:
    """The learned ES against the best tuned hand-designed strategy (best seed-mean
    score) on ``name``, for each tuning mode: the paired difference over seeds."""
    from scipy import stats

    from metaplastic._stats import mean_ci

    by = data["results"].get(name, {})
    if "learned-es" not in by:
        return None
    ours = np.array([r["final"] for r in by["learned-es"]["untuned"]["runs"]])
    direction = protocol["searches"][name]["direction"]
    sign = 1.0 if direction == "maximise" else -1.0
    out = {}
    for mode in protocol["tuning"]["modes"]:
        found = best_tuned(protocol, data, name, mode)
        if found is None:
            continue
        best, theirs = found
        diff = sign * (ours - theirs[:len(ours)])  # > 0: the learned ES is better
        mean, half, n = mean_ci(diff)
        p = float(stats.ttest_1samp(diff, 0.0).pvalue) if n > 1 else float("nan")
        out[mode] = {"best": best, "difference": mean, "ci95": half, "n": n, "p": p}
    return out


def holm(pvalues: dict) -> dict:
    """Holm-adjusted p-values (step-down), keyed as given."""
    items = sorted(pvalues.items(), key=lambda kv: kv[1])
    m, running, out = len(items), 0.0, {}
    for i, (k, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def counted(protocol: dict, search: dict, run: dict) -> int:
    """The fitness evaluations a run spent: its own count, or — for results written
    before chunks the safeguards undid and re-ran were counted — its scored chunks."""
    every = protocol["evaluation"]["score_every"]
    chunks = len(run.get("curve", [])) * every * (search["population"] + 1)
    return max(int(run["evaluations"]), chunks + int(run.get("rejected_steps", 0)))


def table(protocol: dict, data: dict) -> str:
    from metaplastic._stats import mean_ci

    lines = ["| search | strategy | tuning | setting | final score (mean ± 95% CI) | median | "
             "blown up | evaluations | s / generation | selection s / generation |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    medians = {n: float(np.median([r["final"] for modes in by.values() for v in
                                   modes.values() if isinstance(v, dict) and "runs" in v
                                   for r in v["runs"]]))
               for n, by in data["results"].items()}
    for name, by in data["results"].items():
        for strategy, modes in by.items():
            if "skipped" in modes:
                lines.append(f"| {name} | {strategy} | | not run: {modes['skipped']} | | | "
                             f"| | | |")
                continue
            for mode, v in modes.items():
                m, h, _ = mean_ci([r["final"] for r in v["runs"]])
                ev = int(np.max([counted(protocol, protocol["searches"][name], r)
                                 for r in v["runs"]]))
                stops = sum(r.get("stopped") is not None for r in v["runs"])
                if stops:
                    setting_note = f" ({stops} seed(s) stopped by the safeguards)"
                else:
                    setting_note = ""
                flag = " (over budget)" if ev > 1.01 * v["budget"] else ""
                edge = " (grid edge)" if v["setting"].get("on_edge") else ""
                setting = f"σ {v['setting']['sigma']}" + (
                    f", lr {v['setting']['lr']}" if v["setting"].get("lr") else "")
                spg = np.median([r["seconds_per_generation"] for r in v["runs"]])
                over = v.get("overhead_s_per_generation")
                over = "" if over is None else f"{over:.4f}"
                finals = np.array([r["final"] for r in v["runs"]], float)
                blown = int(np.sum(~np.isfinite(finals)
                                   | (np.abs(finals) > BLOWN * max(abs(medians[name]), 1e-12))))
                lines.append(f"| {name} | {strategy} | {mode} | {setting}{edge}{setting_note} | "
                             f"{m:.4g} ± {h:.2g} | {np.median(finals):.4g} | {blown} | "
                             f"{ev}{flag} | {spg:.3f} | {over} |")
    tests = [s["name"] for s in protocol["test"] if s["name"] in data["results"]]
    rows = {n: paired(protocol, data, n) for n in tests}
    for mode in protocol["tuning"]["modes"]:
        ps = {n: r[mode]["p"] for n, r in rows.items() if r and mode in r}
        adj = holm(ps)
        lines += ["", f"Learned ES − best tuned strategy ({mode}), paired over seeds "
                  f"(> 0: the learned ES is better):", "",
                  "| search | best tuned | difference ± 95% CI | p | Holm p |",
                  "|---|---|---|---|---|"]
        for n in ps:
            r = rows[n][mode]
            lines.append(f"| {n} | {r['best']} | {r['difference']:+.4g} ± {r['ci95']:.2g} "
                         f"| {r['p']:.3g} | {adj[n]:.3g} |")
        share = protocol["evaluation"]["reach_share"]
        lines += ["", f"Evaluations the learned ES needs to reach the best tuned strategy's "
                  f"final score ({mode}; target: <= {share:.0%} of the budget):", "",
                  "| search | best tuned (final, seed mean) | reached at | within target |",
                  "|---|---|---|---|"]
        for n in tests:
            r = reach(protocol, data, n, mode)
            if r:
                at = "never" if r["share"] is None else f"{r['share']:.0%} of the budget"
                lines.append(f"| {n} | {r['best']} ({r['target']:.4g}) | {at} | "
                             f"{'yes' if r['met'] else 'no'} |")
    return "\n".join(lines)


def best_tuned(protocol: dict, data: dict, name: str, mode: str
               ) -> tuple[str, np.ndarray] | None:
    """(the hand-designed strategy with the best seed-mean final score on ``name`` under
    tuning ``mode``, its finals over seeds); a mean made non-finite by a diverged seed
    ranks last. None where no strategy ran."""
    sign = 1.0 if protocol["searches"][name]["direction"] == "maximise" else -1.0
    finals = {s: np.array([r["final"] for r in v[mode]["runs"]], float)
              for s, v in data["results"].get(name, {}).items()
              if s != "learned-es" and v.get(mode, {}).get("runs")}
    if not finals:
        return None

    def ranked(s):
        m = sign * np.mean(finals[s])
        return float(m) if np.isfinite(m) else -math.inf

    best = max(finals, key=ranked)
    return best, finals[best]


def curves_of(entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """(evaluations, seeds x points): the scores every ``score_every`` generations; a seed
    stopped by the safeguards keeps its last θ, so its score is carried forward."""
    longest = max(entry["runs"], key=lambda r: len(r["curve"]))
    x = np.asarray(longest["curve_evaluations"], float)
    return x, np.array([[float(v) for v in r["curve"]]
                        + [float(r["curve"][-1]) if r["curve"] else np.nan]
                        * (x.size - len(r["curve"])) for r in entry["runs"]])


def reach(protocol: dict, data: dict, name: str, mode: str) -> dict | None:
    """The protocol's "reaches in <= reach_share of the evaluations": the first scored
    point where the learned ES's seed-mean score reaches the best tuned strategy's final
    seed-mean, as a share of the budget (None where it never does)."""
    ours = data["results"].get(name, {}).get("learned-es", {}).get("untuned")
    found = best_tuned(protocol, data, name, mode)
    if not ours or found is None or "curve" not in ours["runs"][0]:
        return None
    best, theirs = found
    target = float(np.mean(theirs))
    sign = 1.0 if protocol["searches"][name]["direction"] == "maximise" else -1.0
    x, c = curves_of(ours)
    m = np.nanmean(c, 0)
    hit = np.flatnonzero(sign * m >= sign * target)
    budget = ours["budget"]
    share = float(x[hit[0]] / budget) if hit.size else None
    return {"best": best, "target": target, "share": share,
            "met": share is not None and share <= protocol["evaluation"]["reach_share"]}


def plot(protocol: dict, data: dict, path: Path, mode: str = "per_test_search") -> None:
    """Fitness vs evaluations: per test search, the search mean's generalising score every
    ``score_every`` generations (mean over seeds, 95% t band) of the learned ES and every
    tuned hand-designed strategy (``mode``'s tuning)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    names = [s["name"] for s in protocol["test"] if s["name"] in data["results"]]
    if not names:
        return
    cols = min(3, len(names))
    rows = -(-(len(names) + 1) // cols)  # a free panel for the legend
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.5 * rows), squeeze=False)
    flat = list(axes.ravel())
    colours = {}
    for ax, name in zip(flat, names, strict=False):
        search = protocol["searches"][name]
        for strategy, modes in data["results"][name].items():
            entry = modes.get("untuned" if strategy == "learned-es" else mode)
            if not entry or not entry.get("runs") or "curve" not in entry["runs"][0]:
                continue
            x, curves = curves_of(entry)
            m = np.nanmean(curves, 0)
            n = np.sum(np.isfinite(curves), 0)
            half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * np.nanstd(
                curves, 0, ddof=1) / np.sqrt(np.maximum(n, 1))
            learned = strategy == "learned-es"
            colour = "black" if learned else colours.setdefault(
                strategy, f"C{len(colours)}")
            ax.plot(x, m, lw=2.2 if learned else 1.2, color=colour,
                    label=f"{strategy} ({len(curves)} seeds)")
            ax.fill_between(x, m - half, m + half, alpha=0.12, color=colour)
        if search["metric"] == "loss":
            ax.set_yscale("log")
        ax.set_title(f"{name} (test)", fontsize=10)
        ax.set_xlabel("fitness evaluations")
        ax.set_ylabel(f"{search['metric']} of the mean on fresh tasks"
                      + (" (lower is better)" if search["direction"] == "minimise" else ""),
                      fontsize=8)
        ax.grid(alpha=0.3)
    seen = {}
    for ax in flat[:len(names)]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab.split(" (")[0], (h, lab))
    for ax in flat[len(names):]:
        ax.axis("off")
    flat[len(names)].legend(*zip(*seen.values(), strict=True), loc="center", fontsize=9,
                            frameon=False, title=f"tuning: {mode}; mean, 95% CI band")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def generations(search: dict, quick: bool) -> int:
    return max(search["generations"] // (5 if quick else 1), 2)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "jax": jax.__version__, "backend": jax.default_backend()}


def main() -> None:
    protocol = load_protocol()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("tune", "evaluate", "table", "develop", "merge"))
    ap.add_argument("--from", dest="source", default="",
                    help="merge: the --out of another evaluate whose entries are taken "
                         "where they have more seeds")
    ap.add_argument("--searches", nargs="+", choices=list(protocol["searches"]),
                    default=list(protocol["searches"]))
    ap.add_argument("--strategies", nargs="+", choices=list(STRATEGIES),
                    default=list(STRATEGIES))
    ap.add_argument("--phi", default="", help="a phi.npz from selection-meta (default: "
                                              "the shipped φ)")
    ap.add_argument("--learned", nargs="+", default=[], metavar="KEY=VALUE",
                    help="options of the learned ES (e.g. sigma_floor=0.3); recorded with "
                         "its results")
    ap.add_argument("--modes", nargs="+", choices=protocol["tuning"]["modes"],
                    default=protocol["tuning"]["modes"],
                    help="the tuning modes to evaluate (default: both, as the protocol "
                         "reports)")
    ap.add_argument("--figure", default="",
                    help="table: also draw fitness vs evaluations on the test searches here")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--redo", action="store_true",
                    help="redo tuning grid points and evaluation seeds already done")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.out is None:
        args.out = Path("/tmp/learned_es_protocol_quick") if args.quick else RESULTS
    if args.quick and args.out.resolve() == RESULTS.resolve():
        raise SystemExit("--quick never writes to benchmarks/results: pass another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.phase == "evaluate" and args.out.resolve() != RESULTS.resolve() and not (
            args.out / "learned_es_tuning.json").exists() and not args.quick:
        (args.out / "learned_es_tuning.json").write_bytes(
            (RESULTS / "learned_es_tuning.json").read_bytes())  # the committed tuning
    if args.phase == "develop" and args.searches == list(protocol["searches"]):
        args.searches = [s["name"] for s in protocol["development"]]
    for kv in args.learned:
        k, _, v = kv.partition("=")
        STRATEGIES["learned-es"] = {**STRATEGIES["learned-es"], k: float(v)}
    if args.phi:
        STRATEGIES["learned-es"] = {**STRATEGIES["learned-es"], "phi": args.phi}
    if args.phase == "merge":  # results evaluated in another --out (a parallel process)
        if not args.source:
            raise SystemExit("merge needs --from DIR (another evaluate's --out)")
        source = Path(args.source) / "learned_es_protocol.json"
        if not source.is_file():
            raise SystemExit(f"{source} does not exist: --from names another evaluate's "
                             f"--out")
        theirs = json.loads(source.read_text())
        if theirs.get("protocol_sha256") != sha256(PROTOCOL):
            raise SystemExit(f"{args.source} was evaluated under another protocol file")
        data, results = opened(args.out / "learned_es_protocol.json")
        for name, by in theirs["results"].items():
            for strategy, modes in by.items():
                mine = results.setdefault(name, {}).setdefault(strategy, {})
                for mode, entry in modes.items():
                    if mode not in mine or len(entry.get("runs", [])) > len(
                            mine[mode].get("runs", [])):
                        mine[mode] = entry
        write_results(args.out / "learned_es_protocol.json", data)
        print(f"merged {args.source} into {args.out}")
        return
    if args.phase == "table":
        data = json.loads((args.out / "learned_es_protocol.json").read_text())
        print(table(protocol, data))
        if args.figure:
            plot(protocol, data, Path(args.figure))
            print(f"wrote {args.figure}")
        return
    jax.config.update("jax_compilation_cache_dir",
                      str(Path.home() / ".cache" / "metaplastic" / "jax"))
    {"tune": tune, "evaluate": evaluate, "develop": develop}[args.phase](args, protocol)


if __name__ == "__main__":
    main()
