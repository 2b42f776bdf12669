"""The ``metaplastic`` command line: run, eval, report, list.

Errors a user can cause (bad config keys or values, unknown names, NaN during inner
learning) are printed as one readable message with a non-zero exit status.
"""

from __future__ import annotations

import os

# Do not grab the whole GPU when a run starts (JAX's default); must precede importing jax.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from metaplastic.errors import MetaplasticError, NonFiniteError, Terminated  # noqa: E402

#: piped into a file or a log (no terminal to ask), lines of up to 160 columns: a table of
#: rules x datasets stays one line per row instead of wrapping at rich's default 80
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
EXIT_ERROR, EXIT_NONFINITE, EXIT_CONSTRAINT = 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM


@contextlib.contextmanager
def _stop_signals():
    """Ctrl-C (SIGINT) and SIGTERM (timeout, SLURM, Kubernetes) stop a run the same way:
    the first raises KeyboardInterrupt (SIGTERM: its subclass Terminated) and results are
    saved; further ones are ignored until the process exits, so they cannot cut the saving
    short or land in a garbage-collector callback."""
    stopping = []

    def handler(signum, frame):
        stopping.append(signum)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if signum == signal.SIGTERM:
            raise Terminated(f"signal {signum}")
        raise KeyboardInterrupt

    try:
        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        if not stopping:
            for sig, handler_before in old.items():
                signal.signal(sig, handler_before)


def _enable_compile_cache() -> None:
    """Persist compiled programs across CLI runs (JAX's persistent compilation cache)."""
    import jax

    if jax.config.jax_compilation_cache_dir:  # already set up (by the caller, or JAX's env)
        return
    default = Path.home() / ".cache" / "metaplastic" / "jax"
    cache = os.environ.get("METAPLASTIC_CACHE_DIR", str(default))
    if cache.lower() in ("", "0", "off", "none"):
        return
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    except OSError as e:  # a read-only home must not stop a run
        console.print(f"[yellow]compilation cache disabled: {e}[/]")


def _multi_process(args) -> bool:
    return bool(getattr(args, "distributed", False) or getattr(args, "coordinator", None)
                or getattr(args, "num_processes", None) is not None
                or getattr(args, "process_id", None) is not None)


@contextlib.contextmanager
def _processes(args):
    """Join a multi-process run when asked (``--coordinator/--num-processes/--process-id``
    or ``--distributed`` to let JAX detect the cluster). Every process runs the same
    programs; only process 0 prints and writes the run directory — the others write into
    a scratch directory that is removed at the end (a resumed run is copied there)."""
    if not _multi_process(args):
        yield
        return
    import shutil
    import tempfile

    import jax

    from metaplastic import devices

    devices.initialize(args.coordinator, args.num_processes, args.process_id)
    if devices.is_main():
        console.print(f"process 0 of {jax.process_count()}: {jax.device_count()} devices in "
                      f"all ({jax.local_device_count()} here)")
        yield
        return
    scratch = Path(tempfile.mkdtemp(prefix="metaplastic-process-"))
    console.quiet = True
    try:
        if getattr(args, "out", None) is not None:
            args.out = str(scratch)
        if getattr(args, "run", None) is not None:
            copy = scratch / Path(args.run).resolve().name
            shutil.copytree(args.run, copy)
            args.run = str(copy)
        yield
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def resolve_config(spec: str, sets: list[str], seed: int | None):
    """A preset name or a TOML file, with ``--set`` overrides and ``--seed`` applied."""
    from metaplastic.experiments import config, presets

    if spec.endswith(".toml") or Path(spec).is_file():
        cfg = config.load(spec)
    else:
        cfg = presets.get(spec)
    if seed is not None:
        sets = [*sets, f"seed={seed}"]
    return config.override(cfg, sets) if sets else cfg


def parse_seeds(spec: str) -> list[int]:
    """``"0-4"``, ``"0,3,7"`` or ``"0-2,7"`` -> the seeds, in order, each once."""
    from metaplastic.errors import ConfigError

    seeds: list[int] = []
    try:
        for part in spec.split(","):
            lo, dash, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if dash else int(lo)
            if first < 0 or last < first:
                raise ValueError
            seeds += [s for s in range(first, last + 1) if s not in seeds]
    except ValueError:
        raise ConfigError(f"--seeds takes seeds >= 0 as a range or a list, e.g. 0-4 or "
                          f"0,3,7; got {spec!r}") from None
    if len(seeds) > 10_000:
        raise ConfigError(f"--seeds {spec}: {len(seeds)} seeds is more than one program "
                          f"should hold (at most 10,000)")
    return seeds


def cmd_run(args) -> int:
    from metaplastic.experiments import selection_run
    from metaplastic.experiments.rundir import RunDir, new_run_dir
    from metaplastic.experiments.runner import validate

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if seeds is not None and args.seed is not None:
        from metaplastic.errors import ConfigError

        raise ConfigError("give --seed or --seeds, not both")
    meta_meta = selection_run.resolve(args.config, args.set, args.seed)
    if meta_meta is not None and seeds is not None:
        from metaplastic.errors import ConfigError

        raise ConfigError("--seeds is for rule runs; selection-meta takes one --seed")
    if meta_meta is not None:
        _enable_compile_cache()
        run = RunDir(new_run_dir(args.out, meta_meta.name))
        console.print(f"run directory: [bold]{run.path}[/]")
        return _train_selection(meta_meta, run, resume=False)
    cfg = resolve_config(args.config, args.set, args.seed)
    pieces = validate(cfg, evaluation=not args.no_eval)  # before anything is created
    _check_log(args)
    _enable_compile_cache()
    if seeds is not None:
        if args.seeds_vmap:  # the seeds' working memory side by side
            from metaplastic.meta.memory import check_fits

            check_fits(pieces.outer, pieces.objective, pieces.objective.theta_like,
                       copies=len(seeds))
        return _new_seeds(cfg, seeds, pieces, args)
    run = RunDir(new_run_dir(args.out, cfg.name))
    console.print(f"run directory: [bold]{run.path}[/]")
    return _train(cfg, run, pieces, args, resume=False)


def cmd_resume(args) -> int:
    from metaplastic.experiments import selection_run
    from metaplastic.experiments.build import build
    from metaplastic.experiments.rundir import RunDir

    if selection_run.is_selection_run(args.run):
        run = RunDir(args.run)
        _enable_compile_cache()
        console.print(f"resuming [bold]{run.path}[/]")
        return _train_selection(selection_run.load_config(run.path / "config.toml"), run,
                                resume=True)
    group = _seed_group(args.run)
    if group is not None:  # a --seeds group: the seeds resume as one program again
        runs, cfgs = group
        pieces = build(cfgs[0])
        _check_log(args)
        _enable_compile_cache()
        return _train_seeds(Path(args.run), runs, cfgs, pieces, args, resume=True)
    run = RunDir.open(args.run)
    cfg = run.config()
    pieces = build(cfg)
    _check_log(args)
    _enable_compile_cache()
    console.print(f"resuming [bold]{run.path}[/]")
    return _train(cfg, run, pieces, args, resume=True)


def _train_selection(cfg, run, *, resume: bool) -> int:
    """Meta-meta training of the learned ES's selection network, with a progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from metaplastic.experiments.selection_run import train

    columns = [TextColumn("meta-meta training"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=False) as bar:
        tid = bar.add_task("meta", total=cfg.outer().steps, info="compiling...")

        def progress(records):
            tail = records[-10:]
            loss = sum(r["task_loss"] for r in tail) / len(tail)
            bar.update(tid, completed=records[-1]["step"], info=f"meta-meta loss {loss:.4g}")

        try:
            with _stop_signals():
                summary = train(cfg, run, progress, resume=resume)
        except KeyboardInterrupt as e:
            console.print(f"[yellow]interrupted[/]; φ of the last finished chunk and metrics "
                          f"saved in {run.path} (continue with: metaplastic resume "
                          f"{run.path})")
            return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    held = summary["held_in"]
    console.print(f"meta-meta training: {summary['meta_steps']} steps in "
                  f"{summary['seconds']:.1f} s")
    console.print(f"held-in meta-meta loss: trained {held['trained'][0]:.3f} ± "
                  f"{held['trained'][1]:.3f}, at initialisation {held['initial'][0]:.3f} ± "
                  f"{held['initial'][1]:.3f} (lower: faster search)")
    console.print(f"selection network: {run.path / 'phi.npz'}  (use it: --set "
                  f"meta.outer=learned-es --set meta.phi={run.path / 'phi.npz'})")
    return 0


def _train(cfg, run, pieces, args, *, resume: bool) -> int:
    """Meta-train with a progress bar; report; evaluate unless --no-eval."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from metaplastic.experiments.runner import train

    columns = [TextColumn("meta-training"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}")]
    score = pieces.task.score
    log = _open_log(args, run, cfg, pieces)
    with contextlib.ExitStack() as stack, \
            Progress(*columns, console=console, transient=False) as bar:
        if log is not None:  # closed however the run ends
            stack.callback(log.close)
        tid = bar.add_task("meta", total=pieces.outer.steps, info="compiling...")

        def progress(records):
            if log is not None:
                log.write(records)
            last = records[-1]
            tail = records[-10:]
            loss = sum(r["task_loss"] for r in tail) / len(tail)
            info = f"meta-loss {loss:.4g}"
            if score in last and last[score] is not None:
                info += f"  {score} {last[score]:.4g}"
            skipped = sum(r["skipped"] for r in records)
            if skipped:
                info += f"  [yellow]{skipped} NaN steps skipped[/]"
            bar.update(tid, completed=last["step"], info=info)

        stopped = None
        try:
            with _stop_signals():
                summary = train(cfg, run, progress, pieces=pieces, resume=resume)
        except (NonFiniteError, KeyboardInterrupt) as e:
            stopped = e  # said below, once the progress bar is closed
    if isinstance(stopped, NonFiniteError):
        console.print(f"[red]error:[/] {escape(str(stopped))}")
        console.print(f"partial results (last finite θ, metrics) saved in {run.path}")
        return EXIT_NONFINITE
    if stopped is not None:
        steps = run.read_json("summary.json").get("meta_steps", 0)
        console.print(f"[yellow]interrupted[/] after {steps} meta-steps; θ of the last "
                      f"finished chunk, metrics and summary saved in {run.path} "
                      f"(continue with: metaplastic resume {run.path})")
        return EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED
    _log_hint(log)
    console.print(f"meta-training: {summary['meta_steps']} steps in {summary['seconds']:.1f} s")
    console.print(f"learned rule:  [bold]{summary['formula']}[/]")
    if summary.get("constraints"):
        console.print("constraints:   " + ", ".join(
            f"{k} {v}" for k, v in summary["constraints"].items()))
    if "reference_cosine" in summary:
        console.print(f"cosine with {summary['reference']}'s coefficients: "
                      f"[bold]{summary['reference_cosine']:.3f}[/]")
    elif "reference_note" in summary:
        console.print(f"reference: {summary['reference_note']}")
    if not args.no_eval and cfg.eval.tasks > 0:
        _print_eval(run)
    if not args.no_eval and cfg.task.get("name") == "recorded":
        _print_recovery(run)
    console.print(f"results in {run.path}  (metaplastic eval {run.path} · "
                  f"metaplastic report {run.path})")
    return 0


def _new_seeds(cfg, seeds: list[int], pieces, args) -> int:
    """``--seeds``: one run directory per seed under a new group directory."""
    import dataclasses

    from metaplastic.experiments.rundir import RunDir, new_run_dir

    group = new_run_dir(args.out, f"{cfg.name}-seeds")
    runs = [RunDir(group / f"seed-{s}") for s in seeds]
    for run in runs:
        run.path.mkdir()
    cfgs = [dataclasses.replace(cfg, seed=s) for s in seeds]
    return _train_seeds(group, runs, cfgs, pieces, args, resume=False)


def _seed_group(path: str):
    """(runs, configs) of a ``--seeds`` group directory, or None if ``path`` is not one."""
    import dataclasses

    from metaplastic.errors import ConfigError
    from metaplastic.experiments.rundir import RunDir

    root = Path(path)
    if (root / "config.toml").exists() or not root.is_dir():
        return None
    runs = sorted((RunDir(p.parent) for p in root.glob("seed-*/config.toml")),
                  key=lambda r: int(r.path.name.split("-")[1]))
    if not runs:
        return None
    cfgs = [r.config() for r in runs]
    if any(dataclasses.replace(c, seed=0) != dataclasses.replace(cfgs[0], seed=0)
           for c in cfgs):
        raise ConfigError(f"{path}: the seed-* runs differ in more than their seed; resume "
                          f"them one by one")
    return runs, cfgs


def _train_seeds(group, runs, cfgs, pieces, args, *, resume: bool) -> int:
    """Seeds as one program (new, or resumed from each seed's checkpoint); then each
    seed's evaluation and the comparison across seeds."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from metaplastic.experiments.runner import train_seeds

    seeds = [c.seed for c in cfgs]
    cfg = cfgs[0]
    console.print(f"{'resuming' if resume else 'run directories:'} [bold]{group}[/]/seed-"
                  f"{{{','.join(map(str, seeds))}}} ({len(seeds)} seeds as one program)")
    columns = [TextColumn(f"meta-training {len(seeds)} seeds"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}")]
    logs = [_open_log(args, run, c, pieces) for run, c in zip(runs, cfgs, strict=True)]
    with contextlib.ExitStack() as stack, \
            Progress(*columns, console=console, transient=False) as bar:
        for log in logs:
            if log is not None:  # closed however the run ends
                stack.callback(log.close)
        tid = bar.add_task("meta", total=pieces.outer.steps, info="compiling...")
        last: dict[int, dict] = {}

        def progress(i, records):
            if logs[i] is not None:
                logs[i].write(records)
            last[i] = records[-1]
            if len(last) == len(seeds) or i == len(seeds) - 1:
                losses = [r["task_loss"] for r in last.values() if r["task_loss"] is not None]
                info = (f"meta-loss {min(losses):.4g}..{max(losses):.4g}" if losses else "")
                bar.update(tid, completed=max(r["step"] for r in last.values()), info=info)

        stopped = None
        try:
            with _stop_signals():
                summaries = train_seeds(
                    cfgs, runs, progress, pieces=pieces, resume=resume,
                    batching="vmap" if getattr(args, "seeds_vmap", False) else "loop")
        except KeyboardInterrupt as e:
            stopped = e  # said below, once the progress bar is closed
    if stopped is not None:
        console.print(f"[yellow]interrupted[/]; each seed's θ of the last finished chunk, "
                      f"metrics and summary saved under {group} (continue with: "
                      f"metaplastic resume {group})")
        return EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED
    seconds = max(s["seconds"] for s in summaries)
    console.print(f"meta-training: {len(seeds)} seeds in {seconds:.1f} s")
    diverged = []
    for seed, summary in zip(seeds, summaries, strict=True):
        line = f"seed {seed}: {summary['meta_steps']} steps  [bold]{summary['formula']}[/]"
        if "reference_cosine" in summary:
            line += f"  (cosine with {summary['reference']}: {summary['reference_cosine']:.3f})"
        if summary["status"] != "finished":
            diverged.append(seed)
            line += f"  [red]{escape(summary['status'][:200])}[/]"
        console.print(line)
    if not args.no_eval:
        for seed, run in zip(seeds, runs, strict=True):
            if seed not in diverged:
                console.print(f"[bold]seed {seed}[/]")
                if cfg.eval.tasks > 0:
                    _print_eval(run)
                if cfg.task.get("name") == "recorded":
                    _print_recovery(run)
    _compare_seeds(group, runs)
    return EXIT_NONFINITE if diverged else 0


def _compare_seeds(group, runs) -> None:
    from metaplastic.report.compare import compare

    summaries, js, png = compare([str(r.path) for r in runs], group)
    _print_compare(summaries)
    console.print(f"seeds compared: {js} and {png}  (metaplastic compare {group}/seed-*)")


def _check_log(args) -> None:
    from metaplastic.report.loggers import check_available

    check_available(getattr(args, "log", "jsonl"))


def _open_log(args, run, cfg, pieces):
    """The ``--log`` writer of a run directory (None for jsonl only)."""
    import dataclasses

    from metaplastic.experiments.config import portable

    kind, names = getattr(args, "log", "jsonl"), list(getattr(pieces.rule, "term_names", []))
    if kind == "tensorboard":
        from metaplastic.report.tensorboard import TensorBoardLog

        return TensorBoardLog(run.path, names)
    if kind == "wandb":
        from metaplastic.report.wandb_log import WandbLog

        return WandbLog(run.path, names, dataclasses.asdict(portable(cfg)))
    return None


def _log_hint(log) -> None:
    if log is None:
        return
    if log.path.name == "tensorboard":
        console.print(f"TensorBoard: tensorboard --logdir {log.path}")
    else:
        console.print(f"W&B run (offline unless WANDB_MODE=online) in {log.path}; upload "
                      f"with: wandb sync {log.path}/offline-run-*")


def _tuned_label(row: dict) -> str:
    """A row's rule with the tuned values it was evaluated with: ``pair STDP (eta 0.03)``
    (a label that says "(eta tuned)" gets the value in its place)."""
    name, tuned = row["rule"], row.get("tuned", {})
    if not tuned:
        return name
    values = ", ".join(f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}"
                       for k, v in tuned.items())
    placeholder = "(" + " ".join(f"{k} tuned" for k in tuned) + ")"
    if placeholder in name:
        return name.replace(placeholder, f"({values})")
    return f"{name} ({values})"


def _print_eval(run, n_tasks=None) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from metaplastic.experiments.runner import evaluate_run

    t0 = time.perf_counter()
    columns = [TextColumn("evaluating"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=True) as bar:
        tid = bar.add_task("eval", total=None, info="compiling...")

        def progress(done, total, what):
            bar.update(tid, completed=done, total=total, info=escape(what))

        rows = evaluate_run(run, n_tasks=n_tasks, progress=progress)
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
        table.add_row(escape(_tuned_label(r)), escape(r["variant"]), fmt(r[score]),
                      fmt(r["loss"]), str(r["diverged"]))
    console.print(table)
    console.print(f"evaluation took {time.perf_counter() - t0:.1f} s; saved to "
                  f"{run.path / 'eval.json'}")


def _warn_if_unfinished(run) -> None:
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


def _not_for_meta_meta(spec: str, command: str) -> None:
    """A clear message when a rule-run command is given a selection-meta run or preset."""
    from metaplastic.experiments import selection_run

    if spec in selection_run.PRESETS or selection_run.is_selection_run(spec):
        raise MetaplasticError(
            f"{spec} trains the learned ES's selection network (a selection-meta run), not a "
            f"rule: `metaplastic {command}` applies to rule runs. Use it with "
            f"--set meta.outer=learned-es --set meta.phi=RUN/phi.npz; "
            f"`metaplastic report RUN` redraws its plots")


def cmd_eval(args) -> int:
    from metaplastic.experiments.rundir import RunDir

    _not_for_meta_meta(args.run, "eval")
    run = RunDir.open(args.run)
    _warn_if_unfinished(run)
    _enable_compile_cache()
    _print_eval(run, n_tasks=args.tasks)
    return 0


def cmd_report(args) -> int:
    from metaplastic.experiments import selection_run
    from metaplastic.experiments.rundir import RunDir
    from metaplastic.report import make_report

    if selection_run.is_selection_run(args.run):
        from metaplastic.report.selection import plot_selection

        console.print(f"wrote {plot_selection(args.run)}")
        return 0
    run = RunDir.open(args.run)
    paths = make_report(run.path)
    if not paths:
        raise MetaplasticError(f"{run.path} has no metrics to plot")
    if args.tensorboard:
        from metaplastic.report.tensorboard import write_run

        names = run.read_json("summary.json").get("plot", {}).get("theta_names", [])
        paths.append(write_run(run.path, names))
    try:
        summary = run.read_json("summary.json")
    except MetaplasticError as e:  # the plots need only metrics.jsonl
        console.print(f"[yellow]warning:[/] {escape(str(e))}")
        summary = {}
    if summary.get("formula"):
        console.print(f"learned rule: {summary['formula']}")
    for p in paths:
        console.print(f"wrote {p}")
    return 0


def cmd_compare(args) -> int:
    from metaplastic.report.compare import compare

    summaries, js, png = compare(args.runs, args.out)
    _print_compare(summaries)
    console.print(f"wrote {js} and {png}")
    return 0


def _print_compare(summaries: list[dict]) -> None:
    def fmt(v):
        mean, ci = v
        if mean != mean:  # NaN
            return "-"
        return f"{mean:.4g}" + (f" ± {ci:.2g}" if ci == ci else "")

    table = Table(title="runs compared (mean ± 95% CI over seeds)")
    for col in ("group", "seeds", f"final meta-loss (last {10})", "final score"):
        table.add_column(col)
    for g in summaries:
        score = f"{g['score']} {fmt(g['final_score'])}" if "score" in g else "-"
        table.add_row(escape(g["label"]), ", ".join(str(s) for s in g["seeds"]),
                      fmt(g["final_meta_loss"]), score)
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


def cmd_export(args) -> int:
    """The run's rule written out whole into RUN/export/ (sympy and latex also printed);
    also the formula ``metaplastic explain`` distilled, when the run has one; ``nir``: the
    spiking network after learning."""
    from metaplastic import export
    from metaplastic.experiments.build import build
    from metaplastic.experiments.rundir import RunDir
    from metaplastic.experiments.runner import run_theta
    from metaplastic.rules.joint import synapses_part

    _not_for_meta_meta(args.run, "export")
    run = RunDir.open(args.run)
    pieces = build(run.config())
    theta = run_theta(run, pieces)
    rule_formats = [f for f in args.format if f != "nir"]
    if "nir" in args.format:
        from metaplastic.neuromorphic import _check_exportable

        _check_exportable(pieces.network)  # before anything is computed or written
    explained = run.read_json("explain.json") if (run.path / "explain.json").exists() else None
    texts = {}
    # the synapses' own rule (a fitted start or learned neurons stay in theta.npz)
    own, own_theta = synapses_part(pieces.rule, theta)
    if rule_formats and (explained is None or hasattr(own, "term_values")
                         or getattr(own, "family", "") == "abcd"):
        # rules of named terms, abcd; a network rule without explain.json: the message
        texts = {("rule", f): export.render(own, own_theta, f) for f in rule_formats}
    if explained is not None:  # the formula `metaplastic explain` distilled, too
        texts |= {("explained", f): export.render_distilled(explained, f)
                  for f in rule_formats}
    out = run.path / "export"
    out.mkdir(exist_ok=True)
    suffix = {"csv": ".csv", "json": ".json", "sympy": "_sympy.txt", "latex": ".tex"}
    written = []
    for (what, fmt), text in texts.items():
        written.append(out / f"{what}{suffix[fmt]}")
        written[-1].write_text(text)
        if fmt in ("sympy", "latex"):
            if what == "explained" and fmt == next(f for f in rule_formats
                                                 if f in ("sympy", "latex")):
                console.print("distilled by metaplastic explain:")
            console.print(text.rstrip(), markup=False, soft_wrap=True)
    if "nir" in args.format:
        seed = run.config().seed if args.task_seed is None else args.task_seed
        written += _export_nir(run, pieces, theta, seed, out)
    console.print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _export_nir(run, pieces, theta, seed: int, out) -> list:
    """network.nir (the network after one inner episode with the learned θ on the task
    drawn with ``seed``) and network_check.npz (that network's spikes, weights frozen, on
    the task's input): then read back and rerun, the round trip is checked and reported."""
    import numpy as np

    from metaplastic import neuromorphic
    from metaplastic.experiments.episode import after_learning

    weights, spikes = after_learning(run.config(), pieces, theta, seed)
    from metaplastic import __version__

    path = neuromorphic.write(out / "network.nir", pieces.network, weights,
                              source=f"metaplastic {__version__}")
    check = out / "network_check.npz"
    np.savez(check, task_seed=np.asarray(seed), input_spikes=spikes[0],
             **{f"spikes_layer{l}": s for l, s in enumerate(spikes[1:], start=1)})
    network, back = neuromorphic.from_nir(path)
    again = neuromorphic.simulate(network, back, spikes[0])
    differ = sum(int(np.sum(a != b)) for a, b in zip(again[1:], spikes[1:], strict=True))
    total = sum(int(s.sum()) for s in spikes[1:])
    lif = pieces.network.neuron_model
    if lif.reset != "zero":
        console.print("[yellow]note:[/] this network resets by subtraction, which NIR's "
                      "LIF node cannot express: the file resets to 0 "
                      "(network.reset = 'zero' exports exactly)")
    console.print(f"NIR round trip (task seed {seed}, {spikes[0].shape[0]} steps, weights "
                  f"after learning, frozen): {total} spikes of the original, {differ} "
                  f"differ after reading the file back"
                  + (" — identical" if differ == 0 and total else ""))
    if not total:
        console.print("[yellow]note:[/] the network after learning does not fire on this "
                      "task, so the round trip compared no spikes; try another --task-seed")
    return [path, check]


def cmd_explain(args) -> int:
    import jax

    _not_for_meta_meta(args.run, "explain")
    from metaplastic.experiments.build import build
    from metaplastic.experiments.rundir import RunDir
    from metaplastic.experiments.runner import run_theta
    from metaplastic.explain import EXPLAIN_STREAM, check_options, collect, distil, heatmaps

    check_options(args.degree, args.threshold)
    for name in ("tasks", "synapses", "every"):
        if getattr(args, name) < 1:
            raise MetaplasticError(f"--{name} must be >= 1")
    run = RunDir.open(args.run)
    _warn_if_unfinished(run)
    _enable_compile_cache()
    cfg = run.config()
    pieces = build(cfg)
    theta = run_theta(run, pieces)
    key = jax.random.fold_in(jax.random.key(cfg.seed), EXPLAIN_STREAM)
    with console.status("re-running inner learning to sample the rule's inputs..."):
        data = collect(pieces.task, pieces.network, pieces.rule, theta, key=key,
                       tasks=args.tasks, synapses=args.synapses, every=args.every)
    fit = distil(data, args.inputs, degree=args.degree, threshold=args.threshold,
                 scale=float(getattr(pieces.rule, "eta", 1.0)))
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
    png = heatmaps(pieces.rule, theta, data, fit, run.path / "explain.png")
    run.write_json("explain.json", {**fit.to_json(), "samples": int(data["dw"].size),
                                    "tasks": args.tasks, "degree": args.degree,
                                    "threshold": args.threshold})
    console.print(f"wrote {run.path / 'explain.json'} and {png}")
    return 0


def cmd_recover(args) -> int:
    """Rule recovery of a fit to recordings: scores per trajectory, bootstrap intervals,
    an L1 path (``recovery.json``, ``recovery.png``, ``l1_path.png``)."""
    from metaplastic.experiments.rundir import RunDir

    _not_for_meta_meta(args.run, "recover")
    run = RunDir.open(args.run)
    _warn_if_unfinished(run)
    _enable_compile_cache()
    _print_recovery(run, bootstrap=args.bootstrap, l1=tuple(args.l1 or ()), folds=args.folds)
    return 0


def _print_recovery(run, bootstrap: int = 0, l1: tuple = (), folds: int = 0) -> None:
    from metaplastic.experiments.recovery import analyse
    from metaplastic.report.recovery import plot_recovery

    with console.status("rule recovery...") as status:
        out = analyse(run, bootstrap=bootstrap, l1=l1, folds=folds,
                      progress=lambda what: status.update(f"rule recovery: {what}..."))
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
            console.print(f"against the truth, {split}: weight-change R² "
                          f"[bold]{data['weight_r2']:.3f}[/], output-activity R² "
                          f"{data['activity_r2']:.3f}")
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
        t = Table(title=f"{'read-out ' if coef.get('kind') == 'readout' else ''}"
                        f"coefficients, bootstrap 95% CI ({coef['bootstrap']} refits on "
                        f"resampled training trajectories)")
        for col in ("term", "inferred", "95% CI", *(["truth"] if coef["truth_values"]
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
    path = out.get("l1_path")
    if path:
        for lam, m, se in zip(path["l1"], path["cv_loss"], path["cv_se"], strict=True):
            console.print(f"L1 {lam:<8g} cross-validated loss {m:.4g} ± {se:.2g} (SE)")
        kept = (f"; terms kept: {', '.join(path['kept_terms'])}" if "kept_terms" in path
                else "")  # a rule without named terms (an MLP) keeps no terms
        console.print(f"chosen L1 {path['chosen']:g} (the largest within one SE of the best,"
                      f" {path['best']:g}){kept}")
    drawn = plot_recovery(run.path)
    console.print(f"wrote {run.path / 'recovery.json'}"
                  + "".join(f", {p.name}" for p in drawn))


def cmd_simulate(args) -> int:
    """Write the recordings a config's ``task.simulate`` describes to ``--out`` (.npz)."""
    import shutil

    from metaplastic.errors import ConfigError
    from metaplastic.experiments.recordings import materialise

    cfg = resolve_config(args.config, args.set, None)
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

    _not_for_meta_meta(args.config, "check")
    from metaplastic.experiments.build import build
    from metaplastic.experiments.rundir import RunDir
    from metaplastic.experiments.runner import plausibility, run_theta, validate
    from metaplastic.plausibility import check_names

    path = Path(args.config)
    if path.is_dir():
        run = RunDir.open(path)
        _warn_if_unfinished(run)
        cfg = run.config()
        pieces = build(cfg)
        theta = run_theta(run, pieces)
        what = f"run {path} (its learned θ)"
    else:
        cfg = resolve_config(args.config, args.set, None)
        validate(cfg)
        pieces = build(cfg)
        k_init, _ = jax.random.split(jax.random.key(cfg.seed))
        theta = pieces.rule.init(k_init, pieces.network.shapes)
        what = f"config {args.config} (θ at initialisation)"
    declared = check_names(args.require) if args.require else cfg.constraints
    _enable_compile_cache()
    with console.status("measuring the computation..."):
        results = plausibility(cfg, pieces, theta)
    table = Table(title=f"plausibility of {what}: rule {pieces.rule.family!r}, feedback "
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

    from metaplastic.meta.outer import KINDS, measure_kind

    name = cfg.meta.get("outer", "gradient")
    with console.status("tracing one meta-step..."):
        kind, evidence = measure_kind(pieces.outer, pieces.objective, theta,
                                      jax.random.key(cfg.seed))
    console.print(f"outer loop {name!r}: [bold]{kind}[/] — {KINDS.get(kind, '')}. "
                  f"Evidence: {evidence}.")


def cmd_list(args) -> int:
    from metaplastic import registry
    from metaplastic.experiments.presets import PRESETS
    from metaplastic.meta.es import strategy_names
    from metaplastic.meta.gradient import OPTIMIZERS
    from metaplastic.network import FEEDBACK
    from metaplastic.neurons import ACTIVATIONS

    table = Table(title="presets (metaplastic run NAME)")
    table.add_column("preset")
    table.add_column("what it does")
    from metaplastic.experiments.selection_run import PRESETS as META_META

    for name, fn in {**PRESETS, **META_META}.items():
        first_paragraph = (fn.__doc__ or "").strip().split("\n\n")[0]
        table.add_row(name, " ".join(first_paragraph.split()))
    console.print(table)
    titles = {"rule": "rules", "task": "tasks", "outer": "outer loops (meta.outer)",
              "neuron": "neurons (network.neuron)", "check": "constraints"}
    for kind, title in titles.items():
        items = registry.entries(kind)
        if kind == "check":
            console.print(f"{title}: " + ", ".join(items), markup=False)
            continue
        console.print(f"{title}: " + ", ".join(f"{n} ({', '.join(e.options())})"
                                               for n, e in items.items()), markup=False)
    console.print("activations: " + ", ".join(ACTIVATIONS))
    console.print("feedback:    " + ", ".join(FEEDBACK))
    console.print("optimizers:  " + ", ".join(OPTIMIZERS))
    console.print("ES strategies (meta.strategy): " + ", ".join(strategy_names()),
                  markup=False)
    console.print("your own piece: name = \"module:Class\" in a config (see docs/extending.md)",
                  markup=False)
    return 0


def _version() -> str:
    """metaplastic's version and those of the libraries results depend on."""
    from importlib.metadata import PackageNotFoundError, version

    from metaplastic import __version__

    parts = [f"metaplastic {__version__}"]
    for lib in ("jax", "optax", "evosax", "gymnax"):
        try:
            parts.append(f"{lib} {version(lib)}")
        except PackageNotFoundError:
            parts.append(f"{lib} (not installed)")
    return ", ".join(parts)


def _process_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes or machines (jax.distributed; docs/scaling.md)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0, reachable by every process")
    g.add_argument("--num-processes", type=int, default=None, metavar="N")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's number, 0..N-1 (process 0 writes the run directory)")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-process run that JAX detects (SLURM, Open MPI, ...)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metaplastic", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="meta-train a preset or a TOML config")
    r.add_argument("config", help="preset name (see 'metaplastic list') or path to a .toml file")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set meta.steps=300 (repeatable)")
    r.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    r.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="several seeds as one compiled program, e.g. 0-4 or 0,3,7: one run "
                        "directory per seed under OUT/NAME-seeds-*/seed-N")
    _process_options(r)
    r.add_argument("--seeds-vmap", action="store_true",
                   help="with --seeds: batch the seeds side by side (vmap; faster where one "
                        "run leaves the device idle, e.g. a GPU) instead of in turn inside "
                        "the program (bitwise the separate runs' numbers)")
    r.add_argument("--out", default="runs", help="where run directories go (default: runs)")
    r.add_argument("--no-eval", action="store_true", help="skip held-out evaluation")
    r.add_argument("--log", choices=["jsonl", "tensorboard", "wandb"], default="jsonl",
                   help="also write TensorBoard event files to RUN/tensorboard, or a W&B run "
                        "(offline unless WANDB_MODE=online) to RUN/wandb; metrics.jsonl is "
                        "always written")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="evaluate a finished run on held-out tasks")
    e.add_argument("run", help="run directory")
    e.add_argument("--tasks", "--episodes", type=int, default=None, dest="tasks",
                   help="tasks (episodes) per row (default: from the config)")
    e.set_defaults(func=cmd_eval)

    rp = sub.add_parser("report", help="redraw a run's plots from its saved metrics")
    rp.add_argument("run", help="run directory")
    rp.add_argument("--tensorboard", action="store_true",
                    help="also (re)write TensorBoard event files from metrics.jsonl")
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", help="aggregate seeds of the same config and compare "
                                        "runs: table and curves with 95%% CI")
    cp.add_argument("runs", nargs="+", help="run directories or glob patterns (runs/oja-*)")
    cp.add_argument("--out", default=".", help="where compare.json and compare.png go "
                                               "(default: the current directory)")
    cp.set_defaults(func=cmd_compare)

    x = sub.add_parser("explain", help="distil a run's learned rule into a sparse polynomial")
    x.add_argument("run", help="run directory")
    x.add_argument("--degree", type=int, default=3, help="highest total degree (default 3)")
    x.add_argument("--threshold", type=float, default=0.05,
                   help="drop terms contributing less than this fraction of the largest")
    x.add_argument("--tasks", type=int, default=8, help="fresh tasks to sample (default 8)")
    x.add_argument("--synapses", type=int, default=64,
                   help="synapses followed per layer and task (default 64)")
    x.add_argument("--every", type=int, default=1, help="sample every N steps (default 1)")
    x.add_argument("--inputs", nargs="+", default=None,
                   help="signals to fit over (default: every signal that varies)")
    x.set_defaults(func=cmd_explain)

    rc = sub.add_parser("recover", help="rule recovery of a fit to recordings: every "
                                        "trajectory scored once, bootstrap CIs, L1 path")
    rc.add_argument("run", help="run directory of a fit to recordings (task 'recorded')")
    rc.add_argument("--bootstrap", type=int, default=0, metavar="B",
                    help="refit on B resamples of the training trajectories for a 95%% "
                         "interval of every coefficient (default 0: none)")
    rc.add_argument("--l1", type=float, nargs="+", default=None, metavar="STRENGTH",
                    help="L1 strengths to refit with, each cross-validated over folds of "
                         "the training trajectories (e.g. --l1 0 1e-4 1e-3 1e-2)")
    rc.add_argument("--folds", type=int, default=0,
                    help="folds for --l1 (default: min(5, training trajectories))")
    rc.set_defaults(func=cmd_recover)

    ex = sub.add_parser("export", help="write a run's rule out whole: every term and "
                                       "coefficient (csv, json), the update (sympy, latex)")
    ex.add_argument("run", help="run directory")
    ex.add_argument("--format", nargs="+", default=["csv", "json", "sympy", "latex"],
                    choices=["csv", "json", "sympy", "latex", "nir"],
                    help="nir: the spiking network after one inner episode with the "
                         "learned rule, in the neuromorphic exchange format")
    ex.add_argument("--task-seed", type=int, default=None,
                    help="nir: the seed of the task the network learns before export "
                         "(default: the run's seed)")
    ex.set_defaults(func=cmd_export)

    sm = sub.add_parser("simulate", help="write the recordings a config's task.simulate "
                                         "describes (ground truth for rule inference)")
    sm.add_argument("config", help="preset name or .toml file with a task.simulate table")
    sm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. task.simulate.noise=0.2")
    sm.add_argument("--out", required=True, help="the .npz file to write")
    sm.set_defaults(func=cmd_simulate)

    c = sub.add_parser("check", help="measure which plausibility constraints a config or a "
                                     "finished run keeps")
    c.add_argument("config", help="run directory, preset name or .toml file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    c.add_argument("--require", nargs="+", default=None, metavar="CONSTRAINT",
                   help="constraints that must hold (default: the config's `constraints`)")
    c.set_defaults(func=cmd_check)

    rs = sub.add_parser("resume", help="continue a stopped run from its checkpoint.npz "
                                       "(same numbers as an uninterrupted run)")
    rs.add_argument("run", help="run directory (or a --seeds group directory: its seeds "
                                "resume as one program)")
    rs.add_argument("--no-eval", action="store_true", help="skip held-out evaluation")
    rs.add_argument("--log", choices=["jsonl", "tensorboard", "wandb"], default="jsonl",
                    help="also write TensorBoard event files (RUN/tensorboard) or a W&B run "
                         "(RUN/wandb)")
    _process_options(rs)
    rs.set_defaults(func=cmd_resume)

    ls = sub.add_parser("list", help="list presets, rules, tasks and options")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    # user pieces named "module:Class" in a config are imported from the current
    # directory, as `python -m` would
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    args = parser().parse_args(argv)
    if getattr(args, "tasks", None) is not None and args.tasks < 1:
        console.print("[red]error:[/] --tasks must be >= 1")
        return EXIT_ERROR
    from metaplastic.plausibility import ConstraintError

    try:
        with _processes(args):
            return args.func(args)
    except ConstraintError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return EXIT_CONSTRAINT
    except MetaplasticError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return EXIT_ERROR
    except KeyboardInterrupt as e:
        console.print("[yellow]interrupted[/]")
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    except MemoryError as e:
        console.print(f"[red]error:[/] out of memory: {escape(str(e))[:300]}. Try smaller "
                      f"sizes, fewer tasks per step, meta.checkpoint = true or "
                      f"meta.population_batch")
        return EXIT_ERROR
    except Exception as e:  # XLA's out-of-memory arrives as a runtime error
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        console.print(f"[red]error:[/] out of memory ({escape(str(e).splitlines()[0])[:300]}). "
                      f"Try smaller sizes, fewer tasks per step, meta.checkpoint = true or "
                      f"meta.population_batch")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
