"""Tables the command line prints: held-out evaluation, rule recovery, compared runs."""

from __future__ import annotations

import math
import time

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from metaplastic.cli.console import console
from metaplastic.errors import MetaplasticError


def tuned_label(row: dict) -> str:
    """A row's rule with the tuned values it was evaluated with: ``pair STDP (eta 0.03)``
    (a label that says "(eta tuned)" gets the value in its place)."""
    name, tuned = row["rule"], row.get("tuned", {})
    if not tuned:
        return name
    edge = set(row.get("tuned_on_grid_edge", ()))
    values = ", ".join((f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}")
                       + (" at the grid's edge" if k in edge else "")
                       for k, v in tuned.items())
    placeholder = "(" + " ".join(f"{k} tuned" for k in tuned) + ")"
    if placeholder in name:
        return name.replace(placeholder, f"({values})")
    return f"{name} ({values})"


def print_eval(study, run, n_tasks=None, sets=(), name="eval") -> None:
    """Evaluate a run (its study's held-out rows) with a progress bar; print the table."""
    t0 = time.perf_counter()
    columns = [TextColumn("evaluating"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=True) as bar:
        tid = bar.add_task("eval", total=None, info="compiling...")

        def progress(done, total, what):
            bar.update(tid, completed=done, total=total, info=escape(what))

        rows = study.evaluate(run, n_tasks=n_tasks, progress=progress, sets=sets, name=name)
    score = rows[0]["score"]
    counts = [r["tasks"] for r in rows]
    what = ("every trajectory once" if rows[0].get("each_once")
            else f"{counts[0]} fresh tasks per row")
    table = Table(title=f"held-out evaluation ({what}, mean ± 95% CI)")
    for col in ("rule", "evaluated on", score, "loss", "diverged"):
        table.add_column(col, justify="left" if col in ("rule", "evaluated on") else "right")
    for r in rows:
        def fmt(m):
            return f"{m['mean']:.4g} ± {m['ci95']:.2g}"
        table.add_row(escape(tuned_label(r)), escape(r["variant"]), fmt(r[score]),
                      fmt(r["loss"]), str(r["diverged"]))
    console.print(table)
    edges = sorted({r["rule"] for r in rows if r.get("tuned_on_grid_edge")})
    if edges:
        console.print(f"[yellow]note:[/] tuned at the edge of its grid: "
                      f"{escape(', '.join(edges))} — the best setting may lie outside the "
                      f"grid (eval.baselines' tune)")
    console.print(f"evaluation took {time.perf_counter() - t0:.1f} s; saved to "
                  f"{run.path / (name + '.json')}")


def warn_if_unfinished(run) -> None:
    """A run that did not finish is used with the θ it reached, and the user is told."""
    try:
        summary = run.read_json("summary.json")
    except MetaplasticError:
        summary = {"status": "damaged summary.json"}
    status = summary.get("status")
    if status == "finished":
        return
    if status is None:
        what = "has no summary.json (killed before it finished?)"
    else:
        what = f"did not finish ({status}; {summary.get('meta_steps', '?')} meta-steps)"
    hint = (f"; continue it with: metaplastic resume {run.path}"
            if (run.path / "checkpoint.npz").is_file() else "")
    console.print(f"[yellow]warning:[/] {escape(str(run.path))} {escape(what)}: using the "
                  f"θ it reached{escape(hint)}")


def print_compare(summaries: list[dict]) -> None:
    for note in (summaries[0].get("notes", []) if summaries else []):
        console.print(f"[yellow]note:[/] {escape(note)}")

    def fmt(v):
        mean, ci = v
        if mean != mean:  # NaN
            return "-"
        return f"{mean:.4g}" + (f" ± {ci:.2g}" if ci == ci else "")

    table = Table(title="runs compared (mean ± 95% CI over seeds)")
    for col in ("group", "seeds", f"final meta-loss (last {10})", "final score",
                "evaluations", "seconds"):
        table.add_column(col)
    for g in summaries:
        score = f"{g['score']} {fmt(g['final_score'])}" if "score" in g else "-"
        table.add_row(escape(g["label"]), ", ".join(str(s) for s in g["seeds"]),
                      fmt(g["final_meta_loss"]), score,
                      fmt(g.get("evaluations", (math.nan, math.nan))),
                      fmt(g.get("seconds", (math.nan, math.nan))))
    console.print(table)
    cells = {(c["variant"], c["rule"], c["metric"]) for g in summaries for c in g["heldout"]}
    if cells:
        held = Table(title="held-out evaluation (eval.json): mean over seeds ± 95% CI")
        for col in ("row", "rule", "metric", *[escape(g["label"]) for g in summaries]):
            held.add_column(col)
        for variant, rule, metric in sorted(cells):
            vals = []
            for g in summaries:
                c = next((c for c in g["heldout"] if (c["variant"], c["rule"], c["metric"])
                          == (variant, rule, metric)), None)
                vals.append(fmt(c["value"]) + f" (n={c['n_runs']})" if c else "-")
            held.add_row(escape(variant), escape(rule), metric, *vals)
        console.print(held)


def print_recovery(run, bootstrap: int = 0, l1: tuple = (), folds: int = 0,
                   profile: int = 0, parametric: bool = False, calibrate: int = 0,
                   calibrate_at: str = "bias-corrected",
                   profile_terms: tuple[str, ...] = ()) -> None:
    from metaplastic.experiments.rule_recovery import analyse
    from metaplastic.progress import bar
    from metaplastic.report.recovery_plots import plot_recovery

    with bar("rule recovery", None, console=console) as update:  # with the time left
        out = analyse(run, bootstrap=bootstrap, l1=l1, folds=folds, profile=profile,
                      parametric=parametric, calibrate=calibrate,
                      calibrate_at=calibrate_at, profile_terms=profile_terms,
                      progress=lambda done, total, what: update(done, escape(what), total))
    fit = out["fit"]
    table = Table(title="every trajectory scored once (mean ± 95% CI over trajectories)")
    metric = "r2" if fit == "activity" else "nll"
    for col in ("split", "rule", metric, *(["% deviance explained"] if fit == "choices"
                                           else [])):
        table.add_column(col)
    for split, data in out["splits"].items():
        for name, row in data["rules"].items():
            cells = [f"{split} ({data['trajectories']})", name,
                     f"{row[metric]['mean']:.4g} ± {row[metric]['ci95']:.2g}"]
            if fit == "choices":
                cells.append(f"{100 * row['deviance_explained']:.1f}")
            table.add_row(*cells)
    console.print(table)
    for split, data in out["splits"].items():
        if "weight_r2" in data:
            def r2(v, why, data=data):
                ok = isinstance(v, int | float) and math.isfinite(v)
                if data.get("replay_diverged"):
                    why = "inferred rule's replay diverged: not finite"
                return f"{v:.3f}" if ok else f"undefined (the {why})"
            weights = r2(data["weight_r2"], "truth's weights never change")
            activity = r2(data["activity_r2"], "truth's activity is constant")
            console.print(f"against the truth, {split}: weight-change R² [bold]{weights}[/], "
                          f"output-activity R² {activity}")
    coef = out.get("coefficients", {})
    if "cosine" in coef:
        who = ("the simulated truth" if coef["reference"] == "simulated truth"
               else f"{coef['reference']}'s")
        what = ("the rule read out onto the polynomial's terms (least squares over the "
                "signals met)" if coef.get("kind") == "readout" else "coefficients")
        console.print(f"{what} against {who}: cosine "
                      f"[bold]{coef['cosine']:.3f}[/], R² {coef['r2']:.3f}")
        if "readout_r2" in coef:
            console.print(f"  (the polynomial explains {coef['readout_r2']:.3f} of the "
                          f"variance of the rule's weight changes there)")
    if "ci_low" in coef:
        free = [i for i, f in enumerate(coef["free"]) if f]
        order = sorted(free, key=lambda i: -abs(coef["inferred"][i]))
        how = (f"data sets simulated from the fitted rule, basic interval; "
               f"{coef['refits_diverged']} diverged"
               if coef.get("bootstrap_kind") == "parametric" else
               f"resampled training trajectories, {coef.get('distinct_resamples', '?')} "
               f"distinct")
        t = Table(title=f"{'read-out ' if coef.get('kind') == 'readout' else ''}"
                        f"coefficients, bootstrap 95% CI ({coef['bootstrap']} refits on "
                        f"{how})")
        for col in ("term", "inferred", "95% CI", *([_compared(coef)] if coef["truth_values"]
                                                    is not None else [])):
            t.add_column(col)
        for i in order:
            cells = [coef["names"][i], f"{coef['inferred'][i]:+.3f}",
                     f"[{coef['ci_low'][i]:+.3f}, {coef['ci_high'][i]:+.3f}]"]
            if coef["truth_values"] is not None:
                cells.append(f"{coef['truth_values'][i]:+.3g}")
            t.add_row(*cells)
        console.print(t)
        if "truth_inside_ci" in coef:
            console.print(f"the truth lies inside {coef['truth_inside_ci']} of the "
                          f"{len(free)} intervals")
    if "identifiability" in out:
        from metaplastic.analysis.identifiability import describe, describe_profile

        ident = out["identifiability"]
        rows = ident.get("profile", []) + ident.get("profile_terms", [])
        for line in describe(ident) + describe_profile(rows,
                                                        ident.get("profile_calibration")):
            console.print(escape(line))
        withheld = bool(ident.get("intervals_withheld"))
        if ident.get("finite"):
            t = Table(title="coefficients, Wald 95% intervals from the observed information "
                            + ("(withheld: see above)" if withheld else
                               "(local: see --bootstrap)"))
            truth = coef.get("truth_values")
            free = [i for i, f in enumerate(coef["free"]) if f]
            step = ident.get("centre") == "one-step"
            for col in ("term", "inferred", *(["one-step"] if step else []), "Wald 95%",
                        *([_compared(coef)] if truth is not None else [])):
                t.add_column(col)
            for j in sorted(range(len(free)), key=lambda j: -abs(coef["inferred"][free[j]])):
                lo, hi = ident["wald_low"][j], ident["wald_high"][j]
                cells = [ident["names"][j], f"{coef['inferred'][free[j]]:+.3f}",
                         *([f"{ident['estimate'][j]:+.3f}"] if step else []),
                         "withheld" if withheld else f"[{lo:+.3g}, {hi:+.3g}]"]
                if truth is not None:
                    cells.append(f"{truth[free[j]]:+.3g}")
                t.add_row(*cells)
            console.print(t)
        if "truth_inside_wald" in ident and not withheld:
            console.print(f"the truth lies within the interval along "
                          f"{ident['truth_inside_determined']} of the "
                          f"{ident['determined_directions']} determined directions; "
                          f"{ident['wald_bounded']} of the {ident['free_directions']} "
                          f"coefficients' Wald intervals are bounded, "
                          f"{ident['truth_inside_bounded_wald']} of them hold the truth")
    path = out.get("l1_path")
    if path:
        for lam, m, se in zip(path["l1"], path["cv_loss"], path["cv_se"], strict=True):
            console.print(f"L1 {lam:<8g} cross-validated loss {m:.4g} ± {se:.2g} (SE)")
        kept = (f"; terms kept: {', '.join(path['kept_terms'])}" if "kept_terms" in path
                else "")  # a rule without named terms (an MLP) keeps no terms
        console.print(f"chosen L1 {path['chosen']:g} (the largest within one SE of the best,"
                      f" {path['best']:g}){kept}")
        if len(path["l1"]) >= 2 and path["chosen"] in (min(path["l1"]), max(path["l1"])):
            console.print(f"[yellow]note:[/] the chosen L1 {path['chosen']:g} is at the edge "
                          f"of the grid {min(path['l1']):g}-{max(path['l1']):g}: the best "
                          f"strength may lie outside it; widen --l1")
    drawn = plot_recovery(run.path)
    console.print(f"wrote {run.path / 'recovery.json'}"
                  + "".join(f", {p.name}" for p in drawn))


def _compared(coef: dict) -> str:
    """The column of the coefficients an inferred rule is compared with: the simulation's
    own ("truth"), or ``reference``'s where the truth is outside the fitted family."""
    return "truth" if coef.get("is_truth", True) else f"{coef.get('reference')} (not the truth)"
