"""Scaling out, measured through the command line: devices, processes, seeds in one program.

    python benchmarks/bench_scale.py [--preset oja] [--steps 1000] [--seeds 5]
                                     [--parts devices processes seeds] [--out FILE]

Every case runs ``metaplastic run PRESET --no-eval`` as fresh processes (interpreter
start, imports and compilation included, the persistent compilation cache off — what a
user pays for a cold run) and reads back the θ each wrote:

* ``devices``: one process with 1 and with 2 host devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=2``): wall time, and θ's largest
  difference relative to its largest entry;
* ``processes``: 2 processes on 127.0.0.1 (``--coordinator/--num-processes/--process-id``,
  one device each, gloo collectives) against one process;
* ``seeds``: ``--seeds 0-(S-1)`` (in turn inside one program; and ``--seeds-vmap``) against
  S separate ``--seed s`` runs one after another: wall time, the speed-up, and whether each
  seed's θ equals its separate run's bitwise.

Writes benchmarks/results/scale.json (or --out). The host's cores are shared by the two
processes and the two forced devices: on 2 cores this measures the overhead of the
machinery, not a gain from more hardware.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import check_presets, main_of, write_results

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "scale.json"


def _cmd(preset: str, steps: int, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "metaplastic.cli", "run", preset, "--no-eval",
            "--set", f"meta.steps={steps}", "--out", str(out), *extra]


def _env(devices: int = 1) -> dict:
    env = dict(os.environ, METAPLASTIC_CACHE_DIR="off")
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _timed(cmds: list[list[str]], env: dict) -> float:
    """Wall seconds for the commands started together (all must succeed)."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for c in cmds]
    outs = [p.communicate()[0] for p in procs]
    for p, o in zip(procs, outs, strict=True):
        if p.returncode:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(p.args)}\n{o[-3000:]}")
    return time.perf_counter() - start


def _theta(path: Path) -> np.ndarray:
    with np.load(path) as z:
        return np.concatenate([z[k].ravel() for k in sorted(z.files)])


def _only_run(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


def devices_case(preset, steps, tmp: Path) -> dict:
    out = {}
    for n in (1, 2):
        out[f"wall_s_{n}_devices"] = round(_timed([_cmd(preset, steps, tmp / f"d{n}")],
                                                  _env(n)), 2)
    a, b = (_theta(_only_run(tmp / f"d{n}") / "theta.npz") for n in (1, 2))
    out["theta_max_rel_diff"] = _rel(a, b)
    out["theta_bitwise_equal"] = bool(np.array_equal(a, b))
    return out


def processes_case(preset, steps, tmp: Path) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one = _timed([_cmd(preset, steps, tmp / "p1")], _env())
    cmds = [_cmd(preset, steps, tmp / "p2", "--coordinator", f"127.0.0.1:{port}",
                 "--num-processes", "2", "--process-id", str(i)) for i in range(2)]
    two = _timed(cmds, _env())
    a, b = (_theta(_only_run(tmp / d) / "theta.npz") for d in ("p1", "p2"))
    return {"wall_s_1_process": round(one, 2), "wall_s_2_processes": round(two, 2),
            "theta_max_rel_diff": _rel(a, b), "theta_bitwise_equal": bool(np.array_equal(a, b))}


def seeds_case(preset, steps, n_seeds, tmp: Path) -> dict:
    seeds = list(range(n_seeds))
    sequential = 0.0
    for s in seeds:
        sequential += _timed([_cmd(preset, steps, tmp / f"s{s}", "--seed", str(s))], _env())
    out = {"seeds": seeds, "wall_s_sequential_runs": round(sequential, 2)}
    for mode, extra in (("loop", []), ("vmap", ["--seeds-vmap"])):
        wall = _timed([_cmd(preset, steps, tmp / mode, "--seeds", f"0-{n_seeds - 1}",
                            *extra)], _env())
        group = _only_run(tmp / mode)
        diffs = [_rel(_theta(_only_run(tmp / f"s{s}") / "theta.npz"),
                      _theta(group / f"seed-{s}" / "theta.npz")) for s in seeds]
        out[mode] = {"wall_s": round(wall, 2), "speedup": round(sequential / wall, 2),
                     "theta_max_rel_diff": max(diffs),
                     "theta_bitwise_equal": all(d == 0 for d in diffs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="oja")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--parts", nargs="+", default=["devices", "processes", "seeds"],
                    choices=["devices", "processes", "seeds"])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    check_presets(ap, [args.preset])
    if args.steps < 1 or args.seeds < 1:
        ap.error("--steps and --seeds must be at least 1")
    import jax

    result = {"preset": args.preset, "meta_steps": args.steps,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "jax": jax.__version__, "backend": jax.default_backend()},
              "command": " ".join(["python", "benchmarks/bench_scale.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "devices" in args.parts:
            result["devices"] = devices_case(args.preset, args.steps, tmp)
            print("devices", result["devices"], flush=True)
        if "processes" in args.parts:
            result["processes"] = processes_case(args.preset, args.steps, tmp)
            print("processes", result["processes"], flush=True)
        if "seeds" in args.parts:
            result["seeds"] = seeds_case(args.preset, args.steps, args.seeds, tmp)
            print("seeds", result["seeds"], flush=True)
    write_results(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main_of(main, "nothing was written")
