"""The ``metaplastic`` command line: parse, dispatch, print.

``run`` and ``resume`` take any kind of run (:mod:`metaplastic.experiments.study`) through
the one lifecycle; the other commands read a run or a config and apply to the studies
that declare them. Errors a user can cause (bad config keys or values, unknown names,
NaN during inner learning) are printed as one readable message with a non-zero exit
status.
"""

from __future__ import annotations

import os

# Do not grab the whole GPU when a run starts (JAX's default); must precede importing jax.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import errno  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

from rich.markup import escape  # noqa: E402

from metaplastic.cli import analyses, training  # noqa: E402
from metaplastic.cli.console import (  # noqa: E402
    EXIT_CONSTRAINT,
    EXIT_CRASHED,
    EXIT_ERROR,
    EXIT_PEER,
    STARTUP,
    abandon,
    check_processes,
    console,
    exit_status,
    multi_process,
    processes,
    stop_signals,
    supervised,
)
from metaplastic.cli.tables import tuned_label  # noqa: E402
from metaplastic.cli.training import parse_seeds  # noqa: E402
from metaplastic.devices import PEER_TIMEOUT, lost_peer  # noqa: E402
from metaplastic.errors import MetaplasticError, PeerLostError  # noqa: E402

__all__ = ["main", "parse_seeds", "parser", "tuned_label"]


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
    g.add_argument("--peer-timeout", type=int, default=PEER_TIMEOUT, metavar="SECONDS",
                   help="seconds to wait for every process to join, and for a silent peer "
                        f"before it counts as lost (default {PEER_TIMEOUT}): then every "
                        "process stops with one message, exit 5 (docs/runs.md)")


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
    r.set_defaults(func=training.cmd_run)

    e = sub.add_parser("eval", help="evaluate a finished run on held-out tasks")
    e.add_argument("run", help="run directory")
    e.add_argument("--tasks", "--episodes", type=int, default=None, dest="tasks",
                   help="tasks (episodes) per row (default: from the config)")
    e.add_argument("--set", action="append", default=[], metavar="eval.KEY=VALUE",
                   dest="sets", help="override an evaluation setting (rows, baselines, "
                   "controls) of the trained run, e.g. --set eval.tasks=50 (repeatable)")
    e.add_argument("--name", default=None,
                   help="write NAME.json and NAME.png (default: eval; eval-set with --set)")
    e.set_defaults(func=analyses.cmd_eval)

    rp = sub.add_parser("report", help="redraw a run's plots from its saved metrics")
    rp.add_argument("run", help="run directory")
    rp.add_argument("--tensorboard", action="store_true",
                    help="also (re)write TensorBoard event files from metrics.jsonl")
    rp.set_defaults(func=analyses.cmd_report)

    cp = sub.add_parser("compare", help="aggregate seeds of the same config and compare "
                                        "runs: table and curves with 95%% CI")
    cp.add_argument("runs", nargs="+", help="run directories or glob patterns (runs/oja-*)")
    cp.add_argument("--out", default=".", help="where compare.json and compare.png go "
                                               "(default: the current directory)")
    cp.set_defaults(func=analyses.cmd_compare)

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
    x.set_defaults(func=analyses.cmd_explain)

    rc = sub.add_parser("recover", help="rule recovery of a fit to recordings: every "
                                        "trajectory scored once, bootstrap CIs, L1 path")
    rc.add_argument("run", help="run directory of a fit to recordings (task 'recorded')")
    rc.add_argument("--bootstrap", type=int, default=0, metavar="B",
                    help="refit on B resamples of the training trajectories for a 95%% "
                         "interval of every coefficient (default 0: none)")
    rc.add_argument("--parametric", action="store_true",
                    help="with --bootstrap B: refit on B data sets simulated from the "
                         "fitted rule as task.simulate made the recordings (a parametric "
                         "bootstrap; basic intervals), instead of resampled trajectories")
    rc.add_argument("--profile", type=int, default=0, metavar="K",
                    help="the profile likelihood along the K least determined directions "
                         "of the observed information (Newton refits; default 0: none)")
    rc.add_argument("--profile-terms", nargs="+", default=None, metavar="TERM",
                    help="the profile likelihood of each named coefficient on its own "
                         "(held at each value, every other coefficient refitted), e.g. "
                         "--profile-terms 'pre*modulator'; 'all': every free one")
    rc.add_argument("--calibrate", type=int, default=0, metavar="B",
                    help="with --profile K (or --profile-terms): the profile intervals' "
                         "threshold calibrated on B data sets simulated from the fitted "
                         "rule corrected for its bias and refitted (the 95%% quantile of "
                         "the profile's rise there), instead of chi-squared's (default 0: "
                         "chi-squared)")
    rc.add_argument("--calibrate-at", default="bias-corrected",
                    choices=("bias-corrected", "fit"),
                    help="with --calibrate B: simulate from the fitted rule minus the mean "
                         "bias of B refits of data simulated from it (default; 2B refits), "
                         "or from the fitted rule itself (B refits)")
    rc.add_argument("--l1", type=float, nargs="+", default=None, metavar="STRENGTH",
                    help="L1 strengths to refit with, each cross-validated over folds of "
                         "the training trajectories (e.g. --l1 0 1e-4 1e-3 1e-2)")
    rc.add_argument("--folds", type=int, default=0,
                    help="folds for --l1 (default: min(5, training trajectories))")
    rc.set_defaults(func=analyses.cmd_recover)

    ex = sub.add_parser("export", help="write a run's rule out whole: every term and "
                                       "coefficient (csv, json), the update (sympy, latex)")
    ex.add_argument("run", help="run directory")
    ex.add_argument("--format", nargs="+", default=["csv", "json", "sympy", "latex"],
                    choices=["csv", "json", "sympy", "latex", "nir", "brian2"],
                    help="nir: the spiking network after one inner episode with the "
                         "learned rule, in the neuromorphic exchange format; brian2: the "
                         "network and the rule as a runnable Brian2 script with one "
                         "episode's inputs, run and compared with the library's weights "
                         "when Brian2 is installed")
    ex.add_argument("--latex-threshold", type=float, default=0.0, metavar="X",
                    help="LaTeX: leave out terms below X times the largest coefficient "
                         "(default 0: every term)")
    ex.add_argument("--task-seed", type=int, default=None,
                    help="nir, brian2: the seed of the task the network learns in the "
                         "exported episode (default: the run's seed)")
    ex.set_defaults(func=analyses.cmd_export)

    sm = sub.add_parser("simulate", help="write the recordings a config's task.simulate "
                                         "describes (ground truth for rule inference)")
    sm.add_argument("config", help="preset name or .toml file with a task.simulate table")
    sm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. task.simulate.noise=0.2")
    sm.add_argument("--out", required=True, help="the .npz file to write")
    sm.set_defaults(func=analyses.cmd_simulate)

    c = sub.add_parser("check", help="measure which plausibility constraints a config or a "
                                     "finished run keeps")
    c.add_argument("config", help="run directory, preset name or .toml file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    c.add_argument("--require", nargs="+", default=None, metavar="CONSTRAINT",
                   help="constraints that must hold (default: the config's `constraints`)")
    c.set_defaults(func=analyses.cmd_check)

    rs = sub.add_parser("resume", help="continue a stopped run from its checkpoint.npz "
                                       "(same numbers as an uninterrupted run)")
    rs.add_argument("run", help="run directory (or a --seeds group directory: its seeds "
                                "resume as one program)")
    rs.add_argument("--no-eval", action="store_true", help="skip held-out evaluation")
    rs.add_argument("--log", choices=["jsonl", "tensorboard", "wandb"], default="jsonl",
                    help="also write TensorBoard event files (RUN/tensorboard) or a W&B run "
                         "(RUN/wandb)")
    _process_options(rs)
    rs.set_defaults(func=training.cmd_resume)

    ls = sub.add_parser("list", help="list presets, rules, tasks and options")
    ls.add_argument("what", nargs="?", choices=analyses.LISTS, default=None,
                    help="one list only (default: all)")
    ls.set_defaults(func=analyses.cmd_list)

    sh = sub.add_parser("show", help="print a preset's or a TOML file's full resolved config "
                                     "as TOML, ready to save, edit and run")
    sh.add_argument("config", help="a preset name or a .toml file")
    sh.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value (repeatable)")
    sh.add_argument("--seed", type=int, default=None)
    sh.set_defaults(func=analyses.cmd_show)
    return p


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """The library's own warnings as one line, ``note: ...``; others as Python shows them."""
    if f"{os.sep}metaplastic{os.sep}" in str(filename) and file is None:
        console.print(f"[yellow]note:[/] {escape(str(message))}", soft_wrap=True)
        return
    _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    # user pieces named "module:Class" in a config are imported from the current
    # directory, as `python -m` would
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    args = parser().parse_args(argv)
    if not multi_process(args):
        rc = _dispatch(args)
        _say_if_compiling()
        return rc
    # several processes: this one is watched by a parent process (a lost peer is one
    # message); a process that stops early leaves at once, so that its peers learn it
    # from the closed connection instead of waiting for it at JAX's shutdown barrier
    try:
        check_processes(args)
    except MetaplasticError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return EXIT_ERROR
    rc = supervised(sys.argv[1:] if argv is None else list(argv), args.peer_timeout)
    if rc is not None:
        return rc
    rc = _dispatch(args)
    if rc != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _say_if_compiling() -> None:
    """A process stopped early (Ctrl-C, a failed check) while the first chunk's program
    compiles in the background waits for it at exit: say so, instead of hanging silently."""
    driver = sys.modules.get("metaplastic.meta.driver")  # not imported: nothing compiles
    if driver is not None and driver.compiling_in_background():
        console.print("[yellow]note:[/] waiting for a compilation in progress to end "
                      "before exiting (XLA cannot stop one midway)")


def _dispatch(args) -> int:
    """Run the parsed command; errors a user can cause are one message and an exit status."""
    if getattr(args, "tasks", None) is not None and args.tasks < 1:
        console.print("[red]error:[/] --tasks must be >= 1")
        return EXIT_ERROR
    from metaplastic.analysis.plausibility import ConstraintError

    try:
        with processes(args), stop_signals():  # SIGTERM at start-up: exit 143, said
            return args.func(args)
    except ConstraintError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return EXIT_CONSTRAINT
    except PeerLostError as e:  # the distributed service must not hold this process
        return abandon(f"error: {e}", EXIT_PEER)
    except MetaplasticError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return EXIT_ERROR
    except KeyboardInterrupt as e:
        console.print("[yellow]interrupted[/] during start-up, before anything was written"
                      if str(e) == STARTUP else "[yellow]interrupted[/]")
        return exit_status(e)
    except OSError as e:  # a full disk or a file-size limit while writing a run
        if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        what = escape(str(e.filename)) if e.filename else "the run's files"
        console.print(f"[red]error:[/] cannot write {what}: "
                      f"{escape(e.strerror or str(e))}. The files written before stay as "
                      f"they were: a run keeps its last checkpoint whole, and `metaplastic "
                      f"resume RUN` continues from it once there is space")
        return EXIT_CRASHED
    except MemoryError as e:
        console.print(f"[red]error:[/] out of memory: {escape(str(e))[:300]}. Try smaller "
                      f"sizes, fewer tasks per step, meta.checkpoint = true or "
                      f"meta.population_batch")
        return EXIT_ERROR
    except Exception as e:  # XLA's out-of-memory arrives as a runtime error
        why = lost_peer(e)
        if why:  # outside training (evaluation, start-up): nothing more to save
            abandon(f"error: a peer process of this multi-process run was lost ({why}); "
                    f"this process stops", EXIT_PEER)
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        console.print(f"[red]error:[/] out of memory ({escape(str(e).splitlines()[0])[:300]}). "
                      f"Try smaller sizes, fewer tasks per step, meta.checkpoint = true or "
                      f"meta.population_batch")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
