"""One lifecycle for every kind of run (:mod:`metaplastic.experiments.study`).

``train(study, cfg, run)`` and ``train_seeds(study, cfgs, runs)`` start a run (θ0, keys,
the study's checks, ``config.toml``) or resume it from ``checkpoint.npz``, meta-train with
the study's outer loop through the one driver (chunks, a checkpoint after every chunk,
metrics appended), and finish it however it ends — finished, diverged, interrupted
(Ctrl-C, SIGTERM) or crashed: θ of the last whole chunk, ``summary.json`` (status, steps,
seconds, the study's own entries, provenance) and the study's plots. Pure pieces return
numbers; this module is the edge that writes files. Progress goes to an optional
``progress(records)`` callback (the command line draws a progress bar with it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from metaplastic import devices
from metaplastic.errors import NonFiniteError
from metaplastic.experiments import study as studies
from metaplastic.experiments.provenance import provenance
from metaplastic.experiments.rundir import RunDir
from metaplastic.interrupts import deferred
from metaplastic.meta import driver


def run_keys(cfg: Any) -> tuple[jax.Array, jax.Array]:
    """(the key of θ0's draw, the key of meta-training) of a run."""
    k_init, key = jax.random.split(jax.random.key(cfg.seed))
    return k_init, key


def _stopped(e: BaseException, attr: str = "result") -> Any:
    """What an exception that stopped training carries: the state after the last chunk."""
    return e.__dict__.get(attr)


def crash_status(e: BaseException) -> str:
    """The status of a run stopped by an exception: a lost peer process of a
    multi-process run (``metaplastic resume`` with every process continues it), or a crash."""
    why = devices.lost_peer(e)
    return f"lost a peer process: {why}" if why else f"crashed: {type(e).__name__}: {e}"


def train(study: studies.Study, cfg: Any, run: RunDir,
          progress: Callable[[list], None] | None = None, built: Any = None,
          resume: bool = False) -> dict:
    """Meta-train one run into ``run`` (module docstring). ``built``: the study's pieces
    if already built. ``resume``: continue from ``checkpoint.npz`` (same numbers as a run
    that was never stopped). Returns the summary; re-raises what stopped training once
    θ and the summary are saved."""
    built = study.build(cfg) if built is None else built
    start = Start(study, cfg, run, built, resume)
    status, result = "finished", None
    try:
        start.bound_memory()
        built = start.built  # with checkpointing switched on where memory needs it
        result = built.outer.run(built.objective, start.theta0, key=start.key,
                                 progress=start.on_chunk(progress), state=start.state,
                                 checkpoint=run.save_checkpoint, guard=start.guard)
    except NonFiniteError as e:
        status, result = f"diverged: {e}", e.result
        raise
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM from the command line
        status, result = "interrupted", _stopped(e)
        raise
    except Exception as e:
        status, result = crash_status(e), _stopped(e)
        raise
    finally:
        summary = start.finish(result, status)
    return start.conclude(result, summary)


def train_seeds(study: studies.Study, cfgs: list[Any], runs: list[RunDir],
                progress: Callable[[int, list], None] | None = None, built: Any = None,
                batching: str = "loop", resume: bool = False) -> list[dict]:
    """Meta-train several seeds of one configuration (``cfgs`` differ only in ``seed``)
    as one program (:mod:`metaplastic.meta.seeds`), each into its own run directory with
    everything :func:`train` writes. A seed that diverges stops alone (its summary says
    so). ``resume``: every seed continues from its run directory's checkpoint."""
    from metaplastic.meta.seeds import run_seeds

    built = study.build(cfgs[0]) if built is None else built
    starts = [Start(study, cfg, run, built, resume) for cfg, run in zip(cfgs, runs, strict=True)]
    results, status = None, "finished"
    try:
        for s in starts:  # every seed decides alike: the same program and budget
            s.bound_memory()
        built = starts[0].built
        results = run_seeds(
            built.outer, built.objective, [s.theta0 for s in starts],
            [s.key for s in starts], batching=batching,
            states=None if all(s.state is None for s in starts) else [
                s.state if s.state is not None
                else driver.init(built.outer, built.objective, s.theta0, s.key)
                for s in starts],
            progress=lambda i, records: starts[i].on_chunk(
                None if progress is None else lambda r: progress(i, r))(records),
            checkpoint=lambda i, state: runs[i].save_checkpoint(state),
            guard=starts[0].guard)
    except KeyboardInterrupt as e:
        status, results = "interrupted", _stopped(e, "results")
        raise
    except Exception as e:
        status, results = crash_status(e), _stopped(e, "results")
        raise
    finally:
        summaries = []
        for i, s in enumerate(starts):
            r = results[i] if results is not None else None
            why = status
            if r is not None and r.error is not None and status == "finished":
                why = f"diverged: {r.error}"
            summaries.append(s.finish(r, why, together=[c.seed for c in cfgs]))
    return [s.conclude(r, summary) for s, r, summary
            in zip(starts, results, summaries, strict=True)]


def config_changes(study: studies.Study, cfg: Any, run: RunDir) -> list[str]:
    """``key: before -> now`` for every value of ``cfg`` that differs from the
    configuration the run started with (its summary's ``config_at_start``)."""
    import json

    try:
        start = run.read_json("summary.json").get("config_at_start")
    except Exception:  # noqa: BLE001 - a damaged summary: nothing to compare with
        return []
    if not isinstance(start, dict):
        return []
    from metaplastic.report.compare import flat_config

    now = json.loads(json.dumps(study.to_dict(cfg), default=str))
    flat_start, flat_now = flat_config(start), flat_config(now)
    return [f"{k}: {flat_start.get(k, '(absent)')} -> {flat_now.get(k, '(absent)')}"
            for k in sorted(set(flat_start) | set(flat_now))
            if flat_start.get(k) != flat_now.get(k)]


def _stores_unroll(built: Any) -> bool:
    """Whether the run's meta-gradient backpropagates through stored unrolls (what
    ``meta.checkpoint`` changes): an outer loop that differentiates, on objectives that
    unroll in reverse mode without checkpointing."""
    from metaplastic import capabilities as cap

    parts = cap.parts(built.objective)
    return cap.differentiates(built.outer) and bool(parts) and all(
        isinstance(p, cap.Unrolled) and p.grad_mode == "reverse" and not p.checkpoint
        for p in parts)


def _finite(theta: Any) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(theta))


def resume_from(run: RunDir) -> str:
    """What ``metaplastic resume`` of this run directory does, in words."""
    if (run.path / "checkpoint.npz").is_file():
        return "continues from the checkpoint of the last whole chunk"
    if run.metrics():
        return "refused: metrics were written but no checkpoint.npz (damaged)"
    return "starts from meta-step 0 (nothing trained was kept; the configuration is saved)"


class Start:
    """One run's start (θ0, keys, resumed state, the study's checks) and its finish (θ,
    summary, plots): what :func:`train` and :func:`train_seeds` share."""

    def __init__(self, study: studies.Study, cfg: Any, run: RunDir, built: Any,
                 resume: bool):
        self.study, self.cfg, self.run, self.built = study, cfg, run, built
        if resume and not (run.path / "checkpoint.npz").is_file() and not run.metrics():
            # stopped before its first chunk ended: nothing trained was kept; the saved
            # configuration starts again from meta-step 0 (a run that trained and lost its
            # checkpoint is refused by load_checkpoint below, never restarted)
            resume = False
        self.resume = resume
        self.guard = study.guard(cfg)
        self.rollbacks: list[dict] = []  # rollbacks before this call (a resumed run)
        if not resume:  # first: a run stopped at any later moment can be resumed
            studies.save(study, cfg, run.path / "config.toml")
        k_init, self.key = run_keys(cfg)
        self.theta0 = study.init(cfg, built, k_init)
        self.state, self.resumed_at = None, None
        if resume:
            self.state = run.load_checkpoint(driver.init(built.outer, built.objective,
                                                         self.theta0, self.key))
            self.resumed_at = int(self.state.step)
            run.keep_metrics_until(self.resumed_at)
            saved = run.read_json("summary.json")
            self.rollbacks = [e for e in saved.get("guard", {}).get("events", [])
                              if e.get("back_to_step", 0) < self.resumed_at]
            # what `before` gave is kept (run directories older than studies: constraints)
            before = saved.get("before", ["constraints"])
            self.kept = {k: v for k, v in saved.items() if k in before}
        else:  # the study's checks, and the configuration as it started (resume compares)
            # the memory budget read now (a bad METAPLASTIC_MEMORY_BUDGET stops the run
            # here), used by bound_memory once the first chunk's program is compiled
            from metaplastic.meta import memory

            self.checkpointed = study.checkpointed(cfg)
            self.budget = memory.budget() if self.checkpointed is not None else (0, "")
            # while the first chunk's program compiles in the background
            driver.precompile(built.outer, built.objective, self.theta0, self.key, self.guard)
            self.kept = {**study.before(cfg, built, self.theta0, run),
                         "config_at_start": study.to_dict(cfg)}
        self.started = time.perf_counter()

    def bound_memory(self) -> None:
        """``meta.checkpoint = "auto"`` (the default) on a meta-gradient run that stores its
        unroll, started afresh: once the first chunk's program is compiled, its size by
        XLA's memory analysis against the memory budget
        (:func:`metaplastic.meta.memory.budget`); over it, the run switches checkpointing
        on (``meta.checkpoint = true``: every inner step recomputed in the backward pass)
        and saves that in ``config.toml``, so that a resume computes as the run began.
        What was measured and decided goes into the summary (``memory``); nothing is done
        with checkpointing set, another outer loop or gradient mode, or on a resume."""
        if self.resume:
            return
        bound = self._bound_memory()
        if bound:
            self.kept = {**self.kept, "memory": bound,
                         "config_at_start": self.study.to_dict(self.cfg)}

    def _bound_memory(self) -> dict:
        from metaplastic.meta import memory

        built = self.built
        if self.checkpointed is None or not _stores_unroll(built):
            return {}
        limit, what = self.budget
        need = driver.first_chunk_memory(built.outer, built.objective, self.theta0,
                                         self.key, self.guard)
        if need is None or not limit:
            return {}
        out = {"checkpoint": "auto", "program_bytes": need, "budget_bytes": limit,
               "budget": what, "switched_on": need > limit}
        if need > limit:
            import warnings

            self.cfg = self.checkpointed
            self.built = self.study.build(self.cfg)
            studies.save(self.study, self.cfg, self.run.path / "config.toml")
            warnings.warn(f"the meta-step program would hold {memory.gib(need)} at once, "
                          f"more than the budget of {memory.gib(limit)} ({what}): "
                          f"checkpointing is switched on (meta.checkpoint = true, saved in "
                          f"config.toml: every inner step is recomputed in the backward "
                          f"pass, slower but within memory; set meta.checkpoint = false "
                          f"to keep the stored unroll)", stacklevel=2)
            # compiled here, the program the run then executes
            out["program_bytes_checkpointed"] = driver.first_chunk_memory(
                self.built.outer, self.built.objective, self.theta0, self.key, self.guard)
        return out

    def on_chunk(self, progress: Callable[[list], None] | None) -> Callable[[list], None]:
        # wall-clock seconds of meta-training at each record (``wall_s``; a resumed run
        # continues from its last record's): exact at each chunk's end, spread evenly
        # over the chunk's meta-steps (compilation included: the user's cost too)
        last = self.run.metrics()[-1:] if self.resume else []
        base = float(last[0].get("wall_s", 0.0)) if last else 0.0
        previous = [0.0]

        def on_chunk(records):
            now = time.perf_counter() - self.started
            for i, r in enumerate(records):
                r["wall_s"] = round(base + previous[0] + (now - previous[0]) * (i + 1)
                                    / len(records), 3)
            previous[0] = now
            self.run.append_metrics(records)
            if progress is not None:
                progress(records)

        return on_chunk

    def finish(self, result, status: str, together: list[int] | None = None) -> dict:
        """Save θ after the last whole chunk (θ0 only when not one meta-step was taken:
        the summary then says meta_steps 0) and the summary. ``together``: the seeds
        meta-trained in the same program (``seconds`` is then that program's)."""
        theta = result.theta if result is not None else self.theta0
        done = int(result.state.step) if result is not None and result.state is not None else 0
        finite = _finite(theta)
        with deferred():  # a second Ctrl-C does not cut the saving of θ and summary short
            if status != "finished" and (self.run.path / "metrics.jsonl").is_file():
                # a stop or a write that failed (a full disk) may have left metrics of a
                # chunk whose checkpoint was not written: drop them, so the files agree
                with contextlib.suppress(OSError):
                    self.run.keep_metrics_until(done)
            if finite:
                self.study.save_theta(self.run, theta)
            else:  # never a non-finite θ on disk (nor an older θ that disagrees)
                (self.run.path / self.study.theta_file).unlink(missing_ok=True)
            summary: dict[str, Any] = {
                "study": self.study.name, "status": status,
                "seconds": round(time.perf_counter() - self.started, 2),
                "meta_steps": done,
                **(self.study.summary(self.cfg, self.built, theta, status, self.run)
                   if finite else {}),
                "theta": (f"saved ({self.study.theta_file})" if finite else
                          "none: θ was not finite"),
                "guard": self.guard_summary(result),
                "resume": resume_from(self.run),
                **self.kept, "before": sorted(self.kept), "provenance": provenance()}
            if self.resume:
                summary["provenance"]["resumed_at_step"] = self.resumed_at
            if together:
                summary["provenance"]["seeds_in_one_program"] = together
            self.run.write_json("summary.json", summary)
        self.theta = theta
        if status != "finished":  # training stopped: plots of what was saved, then re-raise
            self.study.report(self.run)
        return summary

    def guard_summary(self, result) -> dict:
        """What the safeguards did: rollbacks (each: where, why, the step size after) and,
        with keep-best, which θ was kept."""
        events = self.rollbacks + (list(result.rollbacks) if result is not None else [])
        state = result.state if result is not None else None
        out: dict[str, Any] = {"rollbacks": len(events), "events": events}
        if self.guard.keep_best:
            best = -1 if state is None else int(state.guard.best_step)
            out["kept_theta"] = ("the last (nothing validated yet)" if best < 0 else
                                 f"best on validation tasks, from meta-step {best}")
            if best >= 0:
                out["best_step"] = best
                out["validation_loss"] = float(state.guard.best_value)
        return out

    def conclude(self, result, summary: dict) -> dict:
        """Once training ended without an exception: the study's concluding work (when it
        finished), then its plots."""
        if summary["status"] != "finished":  # finish drew the plots of what was saved
            return summary
        if summary["meta_steps"] > 0:
            summary = {**summary, **self.study.conclude(self.cfg, self.built, self.theta,
                                                        self.theta0, self.run)}
            self.run.write_json("summary.json", summary)
        self.study.report(self.run)
        return summary


__all__ = ["Start", "run_keys", "train", "train_seeds"]
