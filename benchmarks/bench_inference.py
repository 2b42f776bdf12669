"""Rule inference from choices: our fit beside MetaLearnPlasticity's (Mehta et al. 2023).

    python benchmarks/bench_inference.py [--theirs PATH_TO_CHECKOUT] [--python PYTHON]
                                         [--repeats 3] [--out FILE]

The fit compared: 250 epochs over 3 trajectories of 240 trials (3 blocks x 80), an
18-term polynomial rule over (pre, reward, w) on the output synapses of a 2-10-1 network,
Adam on the choices' negative log-likelihood: 750 trajectory gradients in all.
MetaLearnPlasticity takes one Adam step per trajectory (750 steps); ours batches the 3
trajectories into one meta-step (250 steps of ``infer-reward-behaviour`` with
``tasks_per_step`` = 3; the preset itself draws 6 per step over 300 steps).

Measured the same way for both, each in fresh processes (interpreter start, imports,
data simulation and compilation included; the persistent compilation cache off):

* ``whole``: wall seconds of the whole process for the full fit (no evaluation);
* ``fit``: the fit itself without start-up and compilation: the process's own training
  time for the full 250 epochs minus that for 25 epochs (both include the same start-up
  and compilation), scaled by 250/225; for ours also ``fit_direct``: the same fit run a
  second time in the same process (compiled), timed alone (the fit figure quoted).

``--theirs`` runs MetaLearnPlasticity from a local checkout (never copied here) with
in-memory shims for three JAX/OmegaConf changes since its release (``jax.lib.xla_bridge``
removed, ``float()`` of a 1-element array refused, unhashable ``DictConfig`` as a static
argument); its files are not modified. ``--python``: an interpreter with its dependencies
(omegaconf, pandas, ...). The processes alternate (ours, theirs, ours, theirs, ...) so
that the machine's load falls on both alike; medians over ``--repeats``. The fit's ratio
uses ours timed directly (``fit_direct``) against theirs by subtraction. Without
``--theirs`` only ours is measured, and compared with their figures stored in the
previous results file (``theirs_stored``, labelled with its date: not interleaved).
Writes benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cli import write_results

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "inference.json"
EPOCHS, SHORT = 250, 25

OURS = """
import json, sys, time
t0 = time.perf_counter()
import jax
from metaplastic.experiments import presets
from metaplastic.experiments.build import build
from metaplastic.experiments.config import override
steps = int(sys.argv[1])
cfg = override(presets.get("infer-reward-behaviour"),
               [f"meta.steps={steps}", "meta.chunk=25", "meta.tasks_per_step=3"])
pieces = build(cfg)
theta0 = pieces.rule.init(jax.random.key(0), pieces.network.shapes)
t1 = time.perf_counter()
result = pieces.outer.run(pieces.objective, theta0, key=jax.random.key(1))
jax.block_until_ready(result.theta)
t2 = time.perf_counter()
again = pieces.outer.run(pieces.objective, theta0, key=jax.random.key(1))  # compiled
jax.block_until_ready(again.theta)
print(json.dumps({"train": t2 - t1, "whole": t2 - t0, "direct": time.perf_counter() - t2}))
"""

#: MetaLearnPlasticity under current JAX/OmegaConf (argv[1]: its checkout), in memory
THEIR_SHIMS = """
import json, runpy, sys, time, types
t0 = time.perf_counter()
import jax
import jax.numpy as jnp
sys.path.insert(0, sys.argv[1])
jax.lib.xla_bridge = types.SimpleNamespace(
    get_backend=lambda: types.SimpleNamespace(platform=jax.default_backend()))
import plasticity.data_loader as dl
dl.bernoulli = lambda key, p, *a: jax.random.bernoulli(key, jnp.squeeze(p), *a)
import omegaconf
omegaconf.DictConfig.__hash__ = lambda self: hash(str(self))
"""

THEIRS = THEIR_SHIMS + """
sys.argv = [sys.argv[0], f"num_epochs={sys.argv[2]}", "num_eval=0", "log_expdata=False",
            f"log_dir={sys.argv[3]}"]
runpy.run_module("plasticity.run", run_name="__main__")
print(json.dumps({"whole": time.perf_counter() - t0}))
"""


def _run(cmd: list[str], cwd: str | None = None, env: dict | None = None) -> tuple[dict, str]:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=1800)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(cmd[:3])} ...\n{text[-2000:]}")
    return json.loads(text.strip().splitlines()[-1] if out.stdout.strip().endswith("}")
                      else [l for l in out.stdout.splitlines() if l.startswith("{")][-1]), text


def ours(python: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:  # the recordings simulated afresh
        env = dict(os.environ, METAPLASTIC_CACHE=cache, JAX_ENABLE_COMPILATION_CACHE="false")
        data, _ = _run([python, "-c", OURS, str(epochs)], env=env)
    return data


def theirs(python: str, checkout: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as logs:
        env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")
        data, text = _run([python, "-c", THEIRS, checkout, str(epochs), logs + "/"],
                          cwd=logs, env=env)
    train = re.search(r"train time: ([0-9.]+)s", text)
    if train is None:
        raise SystemExit("MetaLearnPlasticity printed no 'train time'")
    return {"train": float(train.group(1)), "whole": data["whole"]}


def summarise(full: list[dict], short: list[dict]) -> dict:
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    fit = (med(full, "train") - med(short, "train")) * EPOCHS / (EPOCHS - SHORT)
    direct = {"fit_direct_s": round(med(full, "direct"), 3)} if "direct" in full[0] else {}
    return direct | {"whole_s": round(med(full, "whole"), 2),
                     "train_s": round(med(full, "train"), 2),
                     "train_25_epochs_s": round(med(short, "train"), 2),
                     "fit_subtracted_s": round(fit, 3), "runs": {"full": full, "short": short}}


def measure(fns: dict, repeats: int) -> dict:
    """Every learner's processes interleaved (ours, theirs, ours, theirs, ...), so that a
    change of the machine's load falls on both alike; medians per learner."""
    rows = {name: {"full": [], "short": []} for name in fns}
    for _ in range(repeats):
        for epochs, kind in ((EPOCHS, "full"), (SHORT, "short")):
            for name, fn in fns.items():
                rows[name][kind].append(fn(epochs))
    return {name: summarise(r["full"], r["short"]) for name, r in rows.items()}


def ratios(ours: dict, theirs: dict) -> dict:
    """Theirs over ours. The fit: ours timed directly (the same fit run again, compiled)
    against theirs by subtraction (250 − 25 epochs of their training clock, scaled):
    their code offers no other handle; ours by subtraction beside it."""
    return {"whole": round(theirs["whole_s"] / ours["whole_s"], 2),
            "train": round(theirs["train_s"] / ours["train_s"], 2),
            "fit": round(theirs["fit_subtracted_s"] / ours["fit_direct_s"], 1),
            "fit_both_subtracted": round(theirs["fit_subtracted_s"]
                                         / ours["fit_subtracted_s"], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--theirs", help="a local checkout of MetaLearnPlasticity")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for MetaLearnPlasticity (with its dependencies)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    fns = {"ours": lambda e: ours(sys.executable, e)}
    if args.theirs:
        fns["theirs"] = lambda e: theirs(args.python, args.theirs, e)
    stored = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    result = {"machine": platform.platform(), "cpus": os.cpu_count(),
              "load_1min_at_start": round(os.getloadavg()[0], 1),
              "date": time.strftime("%Y-%m-%d"), "epochs": EPOCHS,
              "interleaved": bool(args.theirs), **measure(fns, args.repeats)}
    if args.theirs:
        result["ratios"] = ratios(result["ours"], result["theirs"])
    else:  # their figures from the stored results: another run, not interleaved with ours
        old = stored.get("theirs") or stored.get("theirs_stored")
        if old:
            old.setdefault("fit_subtracted_s", old.get("fit_s"))  # results before the rename
            result["theirs_stored"] = {**old, "measured": stored.get("theirs_measured",
                                                                      stored.get("date"))}
            result["ratios_vs_stored"] = ratios(result["ours"], old)
    write_results(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("ours", "theirs",
                                                                   "theirs_stored")}
                     | {w: {k: v for k, v in result[w].items() if k != "runs"}
                        for w in ("ours", "theirs", "theirs_stored") if w in result},
                     indent=2))


if __name__ == "__main__":
    main()
