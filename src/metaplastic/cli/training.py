"""``metaplastic run`` and ``metaplastic resume``: any kind of run (study), one seed or a
``--seeds`` group, through the one lifecycle, with a progress bar."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from metaplastic.cli.console import (
    EXIT_CRASHED,
    EXIT_NONFINITE,
    check_log,
    console,
    enable_compile_cache,
    exit_status,
    log_hint,
    note_run_dir,
    open_log,
    stop_signals,
)
from metaplastic.cli.tables import print_compare, print_eval, print_recovery
from metaplastic.errors import ConfigError, MetaplasticError, NonFiniteError, PeerLostError
from metaplastic.experiments import lifecycle
from metaplastic.experiments import study as studies
from metaplastic.experiments.rundir import RunDir, new_run_dir


def guard_words(summary: dict) -> str:
    """What the safeguards did (rollbacks, the θ kept), in words; "" when nothing."""
    guard = summary.get("guard")
    if not isinstance(guard, dict):
        return ""
    words = []
    if guard.get("rollbacks"):
        words.append(f"{guard['rollbacks']} rollback(s), at meta-step(s) "
                     + ", ".join(str(e.get("at_step")) for e in guard.get("events", [])))
    if "best_step" in guard:
        words.append(f"θ kept from meta-step {guard['best_step']} (best on validation "
                     f"tasks, loss {guard['validation_loss']:.4g})")
    return "; ".join(words)

def parse_seeds(spec: str) -> list[int]:
    """``"0-4"``, ``"0,3,7"`` or ``"0-2,7"`` -> the seeds, in order, each once."""
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
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if seeds is not None and args.seed is not None:
        raise ConfigError("give --seed or --seeds, not both")
    if args.seeds_vmap and seeds is None:
        raise ConfigError("--seeds-vmap batches the seeds of --seeds; give --seeds too")
    study, cfg = studies.resolve(args.config, args.set, args.seed)
    built = study.build(cfg, evaluation=not args.no_eval)  # before anything is created
    check_log(args)
    enable_compile_cache()
    if seeds is not None:
        if args.seeds_vmap:  # the seeds' working memory side by side
            from metaplastic.meta.memory import check_fits

            check_fits(built.outer, built.objective, built.objective.theta_like,
                       copies=len(seeds))
        group = new_run_dir(args.out, f"{cfg.name}-seeds")
        runs = [RunDir(group / f"seed-{s}") for s in seeds]
        for run in runs:
            run.path.mkdir()
        cfgs = [dataclasses.replace(cfg, seed=s) for s in seeds]
        return train_seeds(study, group, runs, cfgs, built, args, resume=False)
    run = RunDir(new_run_dir(args.out, cfg.name))
    console.print(f"run directory: [bold]{run.path}[/]")
    return train(study, cfg, run, built, args, resume=False)


def cmd_resume(args) -> int:
    group = seed_group(args.run)
    if group is not None:  # a --seeds group: the seeds resume as one program again
        study, runs, cfgs = group
        built = study.build(cfgs[0], evaluation=False)
        check_log(args)
        enable_compile_cache()
        return train_seeds(study, Path(args.run), runs, cfgs, built, args, resume=True)
    study, cfg = studies.of_run(args.run)
    run = RunDir(args.run)
    built = study.build(cfg, evaluation=False)
    check_log(args)
    enable_compile_cache()
    console.print(f"resuming [bold]{run.path}[/]")
    from metaplastic._records import unreadable_lines

    torn = unreadable_lines(run.path / "metrics.jsonl")
    if torn:
        console.print(f"[yellow]note:[/] {torn} line(s) of metrics.jsonl could not be read "
                      f"(cut by a kill, or garbled): they are dropped")
    changed = lifecycle.config_changes(study, cfg, run)
    if changed:
        console.print("[yellow]note:[/] config.toml was changed since the run started: "
                      + escape("; ".join(changed)))
    return train(study, cfg, run, built, args, resume=True)


def _bar(what: str) -> Progress:
    return Progress(TextColumn(what), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console,
                    transient=False)


def q(path) -> str:
    """A path as it can be pasted into a shell."""
    return shlex.quote(str(path))


def say_stopped(run: RunDir, stopped: BaseException) -> int:
    """What an interrupted run kept, truthfully; the exit status (130, 143)."""
    done = run.summary()
    if done.get("status") == "finished":  # stopped after training, before or in evaluation
        console.print(f"[yellow]interrupted[/] after training: the trained run is saved in "
                      f"{q(run.path)} (evaluate it with: metaplastic eval {q(run.path)})")
    elif (run.path / "checkpoint.npz").is_file():
        steps = done.get("meta_steps", "?")
        console.print(f"[yellow]interrupted[/] after {steps} meta-steps; θ of the last "
                      f"finished chunk, metrics and summary saved in {q(run.path)} "
                      f"(continue with: metaplastic resume {q(run.path)})")
    elif (run.path / "config.toml").is_file():
        console.print(f"[yellow]interrupted[/] before the first meta-step finished: nothing "
                      f"trained was kept; the configuration is saved in {q(run.path)} "
                      f"(start it again with: metaplastic resume {q(run.path)})")
    else:
        with contextlib.suppress(OSError):
            run.path.rmdir()  # empty: nothing to keep
        console.print("[yellow]interrupted[/] before anything was saved (no run directory "
                      "was kept)")
    return exit_status(stopped)


def _stopped_after_training(group: Path, stopped: BaseException) -> int:
    """A --seeds group stopped once every seed had finished training: what was kept."""
    console.print(f"[yellow]interrupted[/] after training: every seed's trained run is "
                  f"saved under {q(group)} (evaluate one with: metaplastic eval "
                  f"{q(group)}/seed-N)")
    return exit_status(stopped)


def train(study, cfg, run: RunDir, built, args, *, resume: bool) -> int:
    """Meta-train with a progress bar; then what the study shows after training."""
    note_run_dir(run.path)
    try:
        with run.writer(), peer_lost(run.path):
            return _train(study, cfg, run, built, args, resume=resume)
    except KeyboardInterrupt as e:  # before training started, or after it ended
        return say_stopped(run, e)
    except MetaplasticError as e:
        return crashed(run, e)


def crashed(run: RunDir, e: MetaplasticError) -> int:
    """An error raised once the run directory exists (by a user's piece while the first
    program is traced, say) is a crash, as summary.json says: exit 1 and where the run
    is, not the exit 2 of bad input that creates nothing. A failed declared constraint
    (4), a lost peer (5) and NaN (3) keep their own statuses."""
    from metaplastic.analysis.plausibility import ConstraintError

    if isinstance(e, ConstraintError | PeerLostError | NonFiniteError):
        raise e
    status = run.summary().get("status", "")
    if not status.startswith("crashed"):
        raise e
    console.print(f"[red]error:[/] {escape(str(e))}")
    console.print(f"the run crashed after its directory was created; summary.json says "
                  f"how, and what was saved is in {q(run.path)}")
    return EXIT_CRASHED


@contextlib.contextmanager
def peer_lost(where: Path):
    """A lost peer process of a multi-process run, as one PeerLostError saying what
    was kept in ``where`` (a run or a --seeds group) and how to continue."""
    import jax

    from metaplastic import devices

    try:
        yield
    except Exception as e:
        why = devices.lost_peer(e)
        if why is None:
            raise
        raise PeerLostError(
            f"a peer process of this {jax.process_count()}-process run was lost "
            f"({why}). θ, metrics and summary of the last whole chunk are saved in "
            f"{q(where)} (summary.json: status 'lost a peer process'); once every "
            f"process can run again, continue with: metaplastic resume {q(where)} and the "
            f"same process options") from None


def _train(study, cfg, run: RunDir, built, args, *, resume: bool) -> int:
    score = study.score(built)
    log = open_log(args, run, study, cfg, built)
    with contextlib.ExitStack() as stack, _bar(study.training) as bar:
        if log is not None:  # closed however the run ends
            stack.callback(log.close)
        tid = bar.add_task("meta", total=built.outer.steps, info="compiling...")

        def progress(records):
            if log is not None:
                log.write(records)
            last, tail = records[-1], records[-10:]
            info = f"{study.loss_name} {sum(r['task_loss'] for r in tail) / len(tail):.4g}"
            if score in last and last[score] is not None:
                info += f"  {score} {last[score]:.4g}"
            skipped = sum(r.get("skipped", 0) for r in records)
            if skipped:
                info += f"  [yellow]{skipped} NaN steps skipped[/]"
            bar.update(tid, completed=last["step"], info=info)

        stopped = None
        try:
            with stop_signals():
                summary = lifecycle.train(study, cfg, run, progress, built=built,
                                          resume=resume)
        except (NonFiniteError, KeyboardInterrupt) as e:
            stopped = e  # said below, once the progress bar is closed
    if isinstance(stopped, NonFiniteError):
        console.print(f"[red]error:[/] {escape(str(stopped))}")
        kept = ("the last finite θ" if (run.path / study.theta_file).is_file()
                else "no θ (it was not finite)")
        console.print(f"partial results ({kept}, metrics, summary) saved in {q(run.path)}")
        return EXIT_NONFINITE
    if stopped is not None:
        return say_stopped(run, stopped)
    log_hint(log)
    console.print(f"{study.training}: {summary['meta_steps']} steps in "
                  f"{summary['seconds']:.1f} s")
    for line in study.describe(summary, run):
        console.print(line)
    if guard_words(summary):
        console.print(f"safeguards:    {guard_words(summary)}")
    try:
        _after_training(study, cfg, run, args)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM during evaluation or recovery
        console.print(f"[yellow]interrupted[/] after training: the trained run is saved in "
                      f"{q(run.path)} (evaluate it with: metaplastic eval {q(run.path)})")
        return exit_status(e)
    if args.log == "tensorboard":  # the evaluation, the config and the figures too
        from metaplastic.report.tensorboard import write_results

        write_results(run.path, summary["meta_steps"])
    if "eval" in study.after_training:
        console.print(f"results in {q(run.path)}  (metaplastic eval {q(run.path)} · "
                      f"metaplastic report {q(run.path)})")
    return 0


def _after_training(study, cfg, run: RunDir, args) -> None:
    """What the study shows after training (evaluation, rule recovery) unless --no-eval."""
    if args.no_eval:
        return
    if "eval" in study.after_training and study.has_evaluation(cfg):
        print_eval(study, run)
    elif "eval" in study.after_training:
        console.print("no held-out evaluation: eval.tasks = 0 (metaplastic eval RUN "
                      "--tasks N evaluates later)")
    if "recover" in study.after_training:
        print_recovery(run)


def seed_group(path: str):
    """(study, runs, configs) of a ``--seeds`` group directory, or None if ``path`` is
    not one."""
    root = Path(path)
    if (root / "config.toml").exists() or not root.is_dir():
        return None
    runs = sorted((RunDir(p) for p in root.glob("seed-*")
                   if p.is_dir() and p.name[5:].isdigit()),
                  key=lambda r: int(r.path.name[5:]))
    loaded = {r.path.name: studies.of_run(r.path) for r in runs
              if (r.path / "config.toml").is_file()}
    if not loaded:
        return None
    study, first = next(iter(loaded.values()))
    # a seed stopped before its config.toml was written (Ctrl-C at start-up) starts
    # from meta-step 0 with the group's configuration and its own seed
    cfgs = [loaded[r.path.name][1] if r.path.name in loaded
            else dataclasses.replace(first, seed=int(r.path.name[5:])) for r in runs]
    if any(dataclasses.replace(c, seed=0) != dataclasses.replace(cfgs[0], seed=0)
           for c in cfgs):
        raise ConfigError(f"{path}: the seed-* runs differ in more than their seed; resume "
                          f"them one by one")
    return study, runs, cfgs


def train_seeds(study, group: Path, runs: list[RunDir], cfgs, built, args, *,
                resume: bool) -> int:
    """Seeds as one program (new, or resumed from each seed's checkpoint); then each
    seed's evaluation and the comparison across seeds."""
    seeds = [c.seed for c in cfgs]
    console.print(f"{'resuming' if resume else 'run directories:'} [bold]{group}[/]/seed-"
                  f"{{{','.join(map(str, seeds))}}} ({len(seeds)} seeds as one program)")
    note_run_dir(group)
    with peer_lost(group):
        return _train_seeds(study, group, runs, cfgs, built, args, resume=resume, seeds=seeds)


def _train_seeds(study, group: Path, runs: list[RunDir], cfgs, built, args, *,
                 resume: bool, seeds: list[int]) -> int:
    logs = [open_log(args, run, study, c, built) for run, c in zip(runs, cfgs, strict=True)]
    with contextlib.ExitStack() as stack, \
            _bar(f"{study.training} {len(seeds)} seeds") as bar:
        for log in logs:
            if log is not None:  # closed however the run ends
                stack.callback(log.close)
        tid = bar.add_task("meta", total=built.outer.steps, info="compiling...")
        last: dict[int, dict] = {}

        def progress(i, records):
            if logs[i] is not None:
                logs[i].write(records)
            last[i] = records[-1]
            if len(last) == len(seeds) or i == len(seeds) - 1:
                losses = [r["task_loss"] for r in last.values() if r["task_loss"] is not None]
                info = (f"{study.loss_name} {min(losses):.4g}..{max(losses):.4g}"
                        if losses else "")
                bar.update(tid, completed=max(r["step"] for r in last.values()), info=info)

        stopped = None
        try:
            with stop_signals(), contextlib.ExitStack() as locks:
                for run in runs:
                    locks.enter_context(run.writer())
                summaries = lifecycle.train_seeds(
                    study, cfgs, runs, progress, built=built, resume=resume,
                    batching="vmap" if getattr(args, "seeds_vmap", False) else "loop")
        except KeyboardInterrupt as e:
            stopped = e  # said below, once the progress bar is closed
    if stopped is not None:
        if all(r.summary().get("status") == "finished" for r in runs):
            return _stopped_after_training(group, stopped)
        console.print(f"[yellow]interrupted[/]; what each seed kept is saved under "
                      f"{q(group)} (its summary.json says: `resume`); continue with: "
                      f"metaplastic resume {q(group)}")
        return exit_status(stopped)
    seconds = max(s["seconds"] for s in summaries)
    console.print(f"{study.training}: {len(seeds)} seeds in {seconds:.1f} s")
    diverged = []
    for seed, run, summary in zip(seeds, runs, summaries, strict=True):
        lines = study.describe(summary, run)
        line = f"seed {seed}: {summary['meta_steps']} steps  " + (
            lines[0].partition(":")[2].strip() if lines else "")
        if "reference_cosine" in summary:
            line += f"  (cosine with {summary['reference']}: {summary['reference_cosine']:.3f})"
        if guard_words(summary):
            line += f"  ({guard_words(summary)})"
        if summary["status"] != "finished":
            diverged.append(seed)
            line += f"  [red]{escape(summary['status'][:200])}[/]"
        console.print(line)
    try:
        for seed, run, cfg in zip(seeds, runs, cfgs, strict=True):
            if seed not in diverged and not args.no_eval and study.after_training:
                console.print(f"[bold]seed {seed}[/]")
                _after_training(study, cfg, run, args)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM during a seed's evaluation
        return _stopped_after_training(group, e)
    from metaplastic.report.compare import compare

    compared, js, png = compare([str(r.path) for r in runs], group)
    print_compare(compared)
    console.print(f"seeds compared: {js} and {png}  (metaplastic compare "
                  f"{q(group)}/seed-*)")
    return EXIT_NONFINITE if diverged else 0
