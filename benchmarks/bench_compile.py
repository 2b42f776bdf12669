"""What a researcher waits for before a preset's first meta-step: compilation, import, the
whole process, memory — with a cold and a warm persistent compilation cache.

    python benchmarks/bench_compile.py [--presets oja mixture-fewshot ...] [--timeout 600]
        [--set KEY=VALUE ...] [--out F]

Every preset is started as the command line starts it (``metaplastic run PRESET
--no-eval`` in a fresh process, a fresh output folder) twice: with an empty persistent
compilation cache (cold: every program compiled on this machine) and again with the cache
the cold run filled (warm); the library's data cache (``METAPLASTIC_CACHE``: simulated
recordings) likewise, empty for the cold start. JAX's own monitoring events
(``jax.monitoring``) are recorded in the child: every XLA program compiled or read from
the cache (``backend_compile``), tracing and lowering to MLIR, persistent-cache hits. The
parent watches the run's ``metrics.jsonl``: the first record is written after the first
chunk of meta-steps, the next after the second; the time to the first meta-step is the
first record's time less the rest of its chunk (the second chunk's time per meta-step,
which compiles nothing, times the chunk's other steps). Then the run is stopped with
SIGINT (it saves and exits). Also recorded: when the first chunk's program was ready
(the end of its compilation; with keep-best the first record also waits for the
validation program). Peak RSS is the child's VmHWM at the first record. Import
time is the child's own time to import JAX and the command line.

Writes benchmarks/results/compile.json (``--out``) and prints a Markdown table.

    python benchmarks/bench_compile.py --threefry [--rounds 2] [--presets ...]

compares the two lowerings of JAX's threefry random-number hash on the CPU as the
process's default (``METAPLASTIC_THREEFRY=rolled``: JAX's own, a loop over the hash's
rounds; ``unrolled``: the library's straight-line lowering, :mod:`metaplastic.xla`;
programs that choose their own — those run once, and a run whose config sets
``meta.threefry``, as ``oja``'s does — keep their choice): every
preset started cold and warm with each, the lowerings alternating within each round, into
benchmarks/results/compile_threefry.json, with the medians' ratios (unrolled / rolled) of
the compile seconds, the time to the first meta-step and the time per meta-step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cli import check_presets, known_presets, main_of, results_to_extend, write_results

OUT = Path(__file__).parent / "results" / "compile.json"
EVENTS = {"/jax/core/compile/backend_compile_duration": "backend_compile",
          "/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower"}


def child(events_path: str, argv: list[str]) -> int:
    """Run the command line with JAX's compile events recorded (the subprocess's side)."""
    t0 = time.time()
    import jax.monitoring

    from metaplastic.cli import main

    imported = time.time()
    records: list[tuple[str, float, float, str]] = []
    hits: list[float] = []

    def on_duration(event: str, duration: float, **kw) -> None:
        if event in EVENTS:
            records.append((EVENTS[event], time.time(), duration, str(kw.get("fun_name"))))

    def on_event(event: str, **kw) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(time.time())

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    def dump() -> None:
        Path(events_path).write_text(json.dumps(
            {"start": t0, "imported": imported, "events": records, "cache_hits": hits}))

    try:
        return main(argv)
    finally:
        dump()


def _lines(path: Path) -> int:
    try:
        return sum(1 for ln in path.read_text().splitlines() if ln.strip())
    except OSError:
        return 0


def _settled(path: Path, n: int) -> int:
    """The number of records once the chunk being written is whole (two equal reads)."""
    while True:
        time.sleep(0.05)
        m = _lines(path)
        if m == n:
            return n
        n = m


def _hwm(pid: int) -> float | None:
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) / 1024  # MiB
    except OSError:
        return None
    return None


def measure(preset: str, cache: Path, timeout: float, env_extra: dict | None = None,
            sets: tuple[str, ...] = ()) -> dict:
    """One start of ``preset`` with the persistent cache at ``cache`` (``env_extra``: more
    environment variables for the child; ``sets``: the run's ``--set`` overrides)."""
    with tempfile.TemporaryDirectory() as tmp:
        out, events = Path(tmp) / "runs", Path(tmp) / "events.json"
        # the library's data cache (simulated recordings) beside the compilation cache:
        # empty for the cold start (a user's first run simulates them), kept for the warm
        data = cache.parent / "data"
        env = {**os.environ, "METAPLASTIC_CACHE_DIR": str(cache),
               "METAPLASTIC_CACHE": str(data), **(env_extra or {})}
        start = time.time()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(events), "run", preset, "--no-eval",
             "--out", str(out), *(a for s in sets for a in ("--set", s))], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = second = None
        lines_first = 0
        hwm = None
        while proc.poll() is None and time.time() - start < timeout:
            metrics = next(out.glob("*/metrics.jsonl"), None) if out.exists() else None
            n = _lines(metrics) if metrics else 0
            if n and first is None:
                first, hwm = time.time(), _hwm(proc.pid)
                lines_first = _settled(metrics, n)  # a chunk's records, written at once
            elif first is not None and n > lines_first:
                second = time.time()
                break
            time.sleep(0.02)
        finished_early = proc.poll() is not None
        if not finished_early:
            proc.send_signal(signal.SIGINT)
        try:
            tail = proc.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            tail = proc.communicate()[0]
        if finished_early and proc.returncode in (130, -signal.SIGINT):
            raise KeyboardInterrupt  # the run was stopped by Ctrl-C too: stop here
        if not events.exists():
            return {"error": f"no events written (exit {proc.returncode}): {tail[-400:]}"}
        ev = json.loads(events.read_text())
        if first is None:
            when = ("the run ended before its first record" if finished_early
                    else f"no metrics record within {timeout:.0f} s")
            return {"error": f"{when} (exit {proc.returncode}): {tail[-400:]}"}
        chunk = lines_first
        per_step = (second - first) / chunk if second else None
        before = [e for e in ev["events"] if e[1] <= first]
        compiles = [e for e in before if e[0] == "backend_compile"]
        # when the first chunk's program was ready (its compilation's end): the first
        # meta-step starts then; with keep-best the first record also waits for the
        # validation program, compiled after it (driver.precompile)
        ready = [e[1] for e in compiles if e[3] == "jit(run_chunk)"]
        return {
            "load_1min": round(os.getloadavg()[0], 1),
            "import_s": round(ev["imported"] - ev["start"], 2),
            "process_to_import_s": round(ev["imported"] - start, 2),
            "first_record_s": round(first - start, 2),
            "chunk": chunk,
            "meta_step_s": None if per_step is None else round(per_step, 3),
            "to_first_meta_step_s": round(first - start - (chunk - 1) * (per_step or 0), 2),
            "chunk_program_ready_s": round(min(ready) - start, 2) if ready else None,
            "programs": len(compiles),
            "distinct_names": len({e[3] for e in compiles}),
            "backend_compile_s": round(sum(e[2] for e in compiles), 2),
            "trace_s": round(sum(e[2] for e in before if e[0] == "trace"), 2),
            "lower_s": round(sum(e[2] for e in before if e[0] == "lower"), 2),
            "cache_hits": sum(t <= first for t in ev["cache_hits"]),
            "peak_rss_mib": None if hwm is None else round(hwm),
            "slowest": sorted(((round(e[2], 2), e[3]) for e in compiles), reverse=True)[:3],
        }


def table(results: dict) -> str:
    rows = ["| preset | cache | import s | to 1st meta-step s | compile s (backend + trace "
            "+ lower) | programs | cache hits | peak RSS MiB |", "|---" * 8 + "|"]
    for preset, by in results.items():
        for which in ("cold", "warm"):
            r = by.get(which, {})
            if "error" in r:
                rows.append(f"| {preset} | {which} | {r['error'][:60]} |||||||")
                continue
            total = r["backend_compile_s"] + r["trace_s"] + r["lower_s"]
            rows.append(f"| {preset} | {which} | {r['import_s']} | {r['to_first_meta_step_s']} "
                        f"| {total:.1f} ({r['backend_compile_s']} + {r['trace_s']} + "
                        f"{r['lower_s']}) | {r['programs']} | {r['cache_hits']} | "
                        f"{r['peak_rss_mib']} |")
    return "\n".join(rows)


#: what this process has written (said on Ctrl-C)
WRITTEN: dict = {"out": None, "presets": []}


def write(out: Path, results: dict, name: str) -> None:
    """The results so far, ``name``'s just measured, to ``out``."""
    write_results(out, {"machine": f"{platform.processor() or platform.machine()}, "
                                   f"{os.cpu_count()} cores",
                        "command": "python benchmarks/bench_compile.py "
                                   + shlex.join(sys.argv[1:]),
                        "presets": results})
    WRITTEN.update(out=out, presets=[*WRITTEN["presets"], name])


def written() -> str:
    done = WRITTEN["presets"]
    return (f"{', '.join(done)} measured and written to {WRITTEN['out']}" if done
            else "no preset was measured whole; nothing was written")


LOWERINGS = ("rolled", "unrolled")
COMPARED = ("backend_compile_s", "to_first_meta_step_s", "meta_step_s")


def threefry(names: list[str], rounds: int, timeout: float, out: Path,
             results: dict) -> dict:
    """Each preset cold and warm under each threefry lowering, alternating, ``rounds``
    times; medians and their ratios (unrolled / rolled), added to ``results`` (those of
    ``out`` already) and written to ``out`` after each preset."""
    import statistics

    for name in names:
        runs = {m: {"cold": [], "warm": []} for m in LOWERINGS}
        for _ in range(rounds):
            for mode in LOWERINGS:
                with tempfile.TemporaryDirectory() as tmp:
                    env, cache = {"METAPLASTIC_THREEFRY": mode}, Path(tmp) / "compile"
                    runs[mode]["cold"].append(measure(name, cache, timeout, env))
                    runs[mode]["warm"].append(measure(name, cache, timeout, env))
        summary = {}
        for which in ("cold", "warm"):
            for key in COMPARED:
                med = {}
                for mode in LOWERINGS:
                    vals = [r[key] for r in runs[mode][which] if r.get(key) is not None]
                    med[mode] = statistics.median(vals) if vals else None
                ratio = (round(med["unrolled"] / med["rolled"], 3)
                         if med["rolled"] and med["unrolled"] is not None else None)
                summary[f"{which}/{key}"] = {**med, "ratio": ratio}
            for mode in LOWERINGS:
                summary[f"{which}/programs/{mode}"] = [r.get("programs")
                                                       for r in runs[mode][which]]
        results[name] = {"runs": runs, "summary": summary}
        print(name, json.dumps(summary), flush=True)
        write(out, results, name)
    rows = ["| preset | cache | compile s rolled → unrolled (ratio) | to 1st meta-step s "
            "(ratio) | per meta-step s (ratio) |", "|---" * 5 + "|"]
    for name in names:
        sm = results[name]["summary"]
        for which in ("cold", "warm"):
            cells = [f"{sm[f'{which}/{k}']['rolled']} → {sm[f'{which}/{k}']['unrolled']} "
                     f"({sm[f'{which}/{k}']['ratio']})" for k in COMPARED]
            rows.append(f"| {name} | {which} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    return results


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="*", default=None, help="default: every preset")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for a run's second record")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threefry", action="store_true",
                   help="compare JAX's threefry lowering with the library's (see above)")
    p.add_argument("--rounds", type=int, default=2, help="with --threefry")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override for every run, as metaplastic run --set (the results "
                        "are kept under the preset's name followed by the overrides)")
    args = p.parse_args()
    names = check_presets(p, args.presets) if args.presets else known_presets()
    if args.set:
        if args.threefry:
            p.error("--set is not taken with --threefry")
        from metaplastic.errors import ConfigError
        from metaplastic.experiments.study import resolve

        for name in names:
            try:
                resolve(name, args.set, None)
            except ConfigError as e:
                p.error(f"{name} with --set {' --set '.join(args.set)}: {e}")
    if args.timeout <= 0 or args.rounds < 1:
        p.error("--timeout must be positive and --rounds at least 1")
    args.out = args.out or (OUT.with_name("compile_threefry.json") if args.threefry else OUT)
    results = results_to_extend(p, args.out)
    if args.threefry:
        threefry(names, args.rounds, args.timeout, args.out, results)
        return
    labels = []
    for name in names:
        label = name + "".join(f" --set {s}" for s in args.set)
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "compile"  # (and the data cache beside it: measure)
            results[label] = {"cold": measure(name, cache, args.timeout, sets=args.set)}
            results[label]["warm"] = measure(name, cache, args.timeout, sets=args.set)
        print(label, json.dumps(results[label]), flush=True)
        write(args.out, results, label)
        labels.append(label)
    print(table({n: results[n] for n in labels}))


if __name__ == "__main__":
    main_of(main, written)
