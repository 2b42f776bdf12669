"""The commands that read a finished run or a config: eval, report, compare, explain,
recover, export, simulate, check, list. Each applies to the studies that declare it
(``Study.analyses``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from metaplastic.cli.console import EXIT_CONSTRAINT, console, enable_compile_cache
from metaplastic.cli.tables import print_compare, print_eval, print_recovery, warn_if_unfinished
from metaplastic.errors import ConfigError, MetaplasticError
from metaplastic.experiments import study as studies
from metaplastic.experiments.rundir import RunDir


def _open(path: str, analysis: str):
    """(study, config, run) of a run directory whose study declares ``analysis``."""
    study, cfg = studies.of_run(path)
    studies.require(study, analysis, path)
    return study, cfg, RunDir(path)


def cmd_eval(args) -> int:
    study, _, run = _open(args.run, "eval")
    warn_if_unfinished(run)
    enable_compile_cache()
    name = args.name or ("eval-set" if args.sets else "eval")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or name.endswith(".json"):
        raise ConfigError(f"--name must be a plain file name stem (letters, digits, '_', "
                          f"'-', '.'), got {name!r}")
    print_eval(study, run, n_tasks=args.tasks, sets=tuple(args.sets), name=name)
    return 0


def cmd_report(args) -> int:
    from metaplastic._records import unreadable_lines

    study, run = studies.named_by_run(args.run), RunDir(args.run)
    torn = unreadable_lines(run.path / "metrics.jsonl")
    if torn:
        console.print(f"[yellow]warning:[/] {torn} line(s) of metrics.jsonl could not be "
                      f"read (cut by a kill, or garbled): the plots skip them")
    paths = study.report(run)
    if not paths:
        raise MetaplasticError(f"{run.path} has no metrics to plot")
    try:
        summary = run.read_json("summary.json")
    except MetaplasticError as e:  # the plots need only metrics.jsonl
        console.print(f"[yellow]warning:[/] {escape(str(e))}")
        summary = {}
    if not isinstance(summary, dict):
        console.print(f"[yellow]warning:[/] {run.path / 'summary.json'} is damaged (not a "
                      f"table); its numbers are not used")
        summary = {}
    if args.tensorboard:
        from metaplastic.report.tensorboard import write_run

        plot = summary.get("plot")
        names = plot.get("theta_names", []) if isinstance(plot, dict) else []
        paths.append(write_run(run.path, names))
    if summary.get("formula"):
        console.print(f"learned rule: {summary['formula']}")
    for p in paths:
        console.print(f"wrote {p}")
    return 0


def cmd_compare(args) -> int:
    from metaplastic.report.compare import compare

    summaries, js, png = compare(args.runs, args.out)
    print_compare(summaries)
    console.print(f"wrote {js} and {png}")
    return 0


def cmd_export(args) -> int:
    """The run's rule written out whole into RUN/export/ (sympy and latex also printed);
    also the formula ``metaplastic explain`` distilled, when the run has one; ``nir``: the
    spiking network after learning; ``brian2``: the network and rule as a Brian2 script,
    run and compared with the library when Brian2 is installed."""
    from metaplastic.analysis.brian2_export import brian2_python
    from metaplastic.experiments.run_analyses import export_brian2, export_nir, export_rule

    _, cfg, run = _open(args.run, "export")
    formats = [f for f in args.format if f not in ("nir", "brian2")]
    if not 0 <= args.latex_threshold < 1:
        raise ConfigError(f"--latex-threshold must be in [0, 1), got {args.latex_threshold}")
    pieces, theta, written = export_rule(run, cfg, formats, check_nir="nir" in args.format,
                                         latex_threshold=args.latex_threshold,
                                         check_brian2="brian2" in args.format)
    first_text = next((f for f in formats if f in ("sympy", "latex")), None)
    for w in written:
        if w.fmt in ("sympy", "latex"):
            if w.what == "explained" and w.fmt == first_text:
                console.print("distilled by metaplastic explain:")
            console.print(w.text.rstrip(), markup=False, soft_wrap=True)
    paths = [w.path for w in written]
    seed = cfg.seed if args.task_seed is None else args.task_seed
    if "nir" in args.format:
        trip = export_nir(cfg, pieces, theta, seed, run.path / "export")
        _print_round_trip(trip)
        paths += [trip.path, trip.check]
    if "brian2" in args.format:
        with console.status("writing the Brian2 script and running it..."):
            script, inputs, done = export_brian2(cfg, pieces, theta, seed,
                                                 run.path / "export", str(run.path))
        paths += [script, inputs]
        if done is None:
            console.print(f"[yellow]note:[/] Brian2 is not installed for "
                          f"{brian2_python()}, so the script was not run (`pip install "
                          f"brian2`, or set METAPLASTIC_BRIAN2_PYTHON to a Python with it; "
                          f"then `python {script}`)", soft_wrap=True)
        else:
            console.print(f"Brian2 (task seed {seed}, {done.steps} steps): weights within "
                          f"{done.max_abs:.3g} of the library's after every step "
                          f"({done.relative:.2g} of the largest weight, {done.max_weight:.3g}"
                          f"); Brian2 ran for {done.seconds:.1f} s")
            if done.spikes is not None:
                console.print(f"spikes: {done.spikes} in the library's episode, "
                              f"{done.spike_mismatches} (step, neuron) pairs where "
                              f"Brian2's differ")
            paths.append(script.parent / "brian2_check.json")
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _print_round_trip(trip) -> None:
    if not trip.exact_reset:
        console.print("[yellow]note:[/] this network resets by subtraction, which NIR's "
                      "LIF node cannot express: the file resets to 0 "
                      "(network.reset = 'zero' exports exactly)")
    console.print(f"NIR round trip (task seed {trip.seed}, {trip.steps} steps, weights "
                  f"after learning, frozen): {trip.total} spikes of the original, "
                  f"{trip.differ} differ after reading the file back"
                  + (" — identical" if trip.differ == 0 and trip.total else ""))
    if not trip.total:
        console.print("[yellow]note:[/] the network after learning does not fire on this "
                      "task, so the round trip compared no spikes; try another --task-seed")


def cmd_explain(args) -> int:
    from metaplastic.analysis.explain import check_options
    from metaplastic.experiments.run_analyses import explain_run

    check_options(args.degree, args.threshold)
    for name in ("tasks", "synapses", "every"):
        if getattr(args, name) < 1:
            raise MetaplasticError(f"--{name} must be >= 1")
    _, cfg, run = _open(args.run, "explain")
    warn_if_unfinished(run)
    enable_compile_cache()
    with console.status("re-running inner learning to sample the rule's inputs..."):
        pieces, theta, data, fit, png = explain_run(
            run, cfg, tasks=args.tasks, synapses=args.synapses, every=args.every,
            inputs=args.inputs, degree=args.degree, threshold=args.threshold)
    console.print(f"{data['dw'].size} samples of (signals, dw) from {args.tasks} tasks")
    console.print(f"learned rule:    {pieces.rule.formula(theta)}")
    console.print(f"distilled:       [bold]{fit.formula()}[/]")
    console.print(f"R² on held-out samples: [bold]{fit.r2_heldout:.4f}[/] "
                  f"(fit {fit.r2_train:.4f}; degree {args.degree}, threshold {args.threshold})")
    table = Table(title="terms, largest contribution first")
    for col in ("term", "coefficient", "contribution (|c| x RMS)"):
        table.add_column(col, justify="right" if col != "term" else "left")
    labels = fit.labels()
    for k in fit.active():
        table.add_row(labels[k], f"{fit.coef[k] / fit.scale:+.4g}", f"{fit.importance[k]:.3g}")
    console.print(table)
    console.print(f"wrote {run.path / 'explain.json'} and {png}")
    return 0


def cmd_recover(args) -> int:
    """Rule recovery of a fit to recordings: scores per trajectory, bootstrap intervals,
    an L1 path (``recovery.json``, ``recovery.png``, ``l1_path.png``)."""
    _, _, run = _open(args.run, "recover")
    warn_if_unfinished(run)
    enable_compile_cache()
    print_recovery(run, bootstrap=args.bootstrap, l1=tuple(args.l1 or ()), folds=args.folds,
                   profile=args.profile, parametric=args.parametric,
                   calibrate=args.calibrate, calibrate_at=args.calibrate_at,
                   profile_terms=tuple(args.profile_terms or ()))
    return 0


def cmd_simulate(args) -> int:
    """Write the recordings a config's ``task.simulate`` describes to ``--out`` (.npz)."""
    import shutil

    from metaplastic.errors import ConfigError
    from metaplastic.experiments.recordings import materialise

    _, cfg = studies.resolve(args.config, args.set, None)
    spec = cfg.task.get("simulate")
    if not isinstance(spec, dict):
        raise ConfigError(f"{args.config} has no task.simulate table to simulate from "
                          f"(e.g. metaplastic simulate infer-oja-activity --out rec.npz)")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out must name a .npz file, got {args.out!r}")
    made = materialise(spec, cfg.network)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made, out)
    from metaplastic.tasks.recorded import load

    data = load(str(out))
    n, t, n_in = data["inputs"].shape
    console.print(f"wrote {out}: {n} trajectories of {t} steps, {n_in} inputs, "
                  f"{', '.join(sorted(data))}")
    return 0


def cmd_check(args) -> int:
    import jax

    from metaplastic.analysis.plausibility import check_names
    from metaplastic.experiments.build import build
    from metaplastic.experiments.rule_runs import plausibility, run_theta

    path = Path(args.config)
    if path.is_dir():
        _, cfg, run = _open(args.config, "check")
        warn_if_unfinished(run)
        pieces = build(cfg)
        theta = run_theta(run, pieces)
        what = f"run {path} (its learned θ)"
    else:
        study, cfg = studies.resolve(args.config, args.set, None)
        studies.require(study, "check", args.config)
        pieces = study.build(cfg)
        k_init, _ = jax.random.split(jax.random.key(cfg.seed))
        theta = pieces.rule.init(k_init, pieces.network.shapes)
        what = f"config {args.config} (θ at initialisation)"
    declared = check_names(args.require) if args.require else cfg.constraints
    enable_compile_cache()
    with console.status("measuring the computation..."):
        results = plausibility(cfg, pieces, theta)
    # the rule as the config names it (a registered name or "module:Class"), never the
    # base class's generic family
    rule_name = cfg.rule.get("name", type(pieces.rule).__name__)
    table = Table(title=f"plausibility of {what}: rule {rule_name!r}, feedback "
                        f"{pieces.network.feedback!r}")
    for col in ("constraint", "declared", "result", "how / where"):
        table.add_column(col)
    failed = []
    for r in results:
        is_declared = r.constraint in declared
        if is_declared and not r.holds:
            failed.append(r.constraint)
        mark = "[green]holds[/]" if r.holds else (
            "[red]FAILS[/]" if is_declared else "[yellow]fails[/]")
        table.add_row(r.constraint, "yes" if is_declared else "", mark, r.detail)
    console.print(table)
    _print_outer_kind(cfg, pieces, theta)
    if failed:
        console.print(f"[red]declared constraint(s) fail:[/] {', '.join(failed)}")
        return EXIT_CONSTRAINT
    console.print("all declared constraints hold" if declared else
                  "no constraints declared (config key `constraints`, or --require)")
    return 0


def _print_outer_kind(cfg, pieces, theta) -> None:
    """The outer loop's kind, measured (meta.outer.measure_kind)."""
    import jax

    from metaplastic.meta.outer import SEARCH_KINDS, measure_kind

    name = cfg.meta.get("outer", "gradient")
    with console.status("tracing one meta-step..."):
        kind, evidence = measure_kind(pieces.outer, pieces.objective, theta,
                                      jax.random.key(cfg.seed))
    console.print(f"outer loop {name!r}: [bold]{kind}[/] — {SEARCH_KINDS.get(kind, '')}. "
                  f"Evidence: {evidence}.")


LISTS = ("presets", "rules", "tasks", "outer", "neurons", "constraints", "studies",
         "activations", "feedback", "optimizers", "strategies")


def cmd_list(args) -> int:
    """Every list, or the one named (``metaplastic list rules``)."""
    from metaplastic import registry
    from metaplastic.meta.es import strategy_names
    from metaplastic.meta.gradient import OPTIMIZERS
    from metaplastic.network import FEEDBACK
    from metaplastic.neurons import ACTIVATIONS

    what = args.what
    show = lambda name: what in (None, name)  # noqa: E731
    if show("presets"):
        table = Table(title="presets (metaplastic run NAME; metaplastic show NAME)")
        table.add_column("preset")
        table.add_column("what it does")
        for name, (_, fn) in studies.presets().items():
            first_paragraph = (fn.__doc__ or "").strip().split("\n\n")[0]
            table.add_row(name, " ".join(first_paragraph.split()))
        console.print(table)
    kinds = {"rules": ("rule", "rules"), "tasks": ("task", "tasks"),
             "outer": ("outer", "outer loops (meta.outer)"),
             "neurons": ("neuron", "neurons (network.neuron)"),
             "constraints": ("check", "constraints"), "studies": ("study", "kinds of run (study)")}
    for key, (kind, title) in kinds.items():
        if not show(key):
            continue
        items = registry.entries(kind)
        if kind in ("check", "study"):
            console.print(f"{title}: " + ", ".join(items), markup=False)
            continue
        console.print(f"{title}: " + ", ".join(f"{n} ({', '.join(e.options())})"
                                               for n, e in items.items()), markup=False)
    if show("activations"):
        console.print("activations (network.activation; softplus is beta 10 here, beta 1 in "
                      "an mlp rule): " + ", ".join(ACTIVATIONS), markup=False)
    if show("feedback"):
        console.print("feedback:    " + ", ".join(FEEDBACK), markup=False)
    if show("optimizers"):
        console.print("optimizers:  " + ", ".join(OPTIMIZERS), markup=False)
    if show("strategies"):
        console.print("ES strategies (meta.strategy; evosax's own class names work too): "
                      + ", ".join(strategy_names(one_per_strategy=True)), markup=False)
    if what is None:
        console.print("your own piece: name = \"module:Class\" in a config (see "
                      "docs/extending.md)", markup=False)
    return 0


def cmd_show(args) -> int:
    """The full resolved config as TOML on stdout (``metaplastic show oja > my.toml``)."""
    from metaplastic.experiments import study as study_mod

    study, cfg = studies.resolve(args.config, args.set, args.seed)
    sys.stdout.write(study_mod.dumps(study, cfg))
    return 0


