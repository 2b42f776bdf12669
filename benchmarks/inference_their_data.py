"""Rule inference on MetaLearnPlasticity's own simulated fly data: their fit and ours,
scored the same way on the same held-out trajectories.

    python benchmarks/inference_their_data.py --theirs PATH --python PYTHON
                                              [--flyids 1 2 3 4 5] [--out FILE]

For each ``flyid`` (their data seed) their default behavioural setting runs unchanged
from a local checkout (never copied here; the in-memory shims of
``bench_inference.py``): 3 simulated training trajectories and 5 evaluation
trajectories of 3 blocks x 80 trials under x·r, 250 epochs of Adam on the 18-term rule,
then their own evaluation (percent deviance explained against the same network without
plasticity, R² of the plastic weights and of the hidden activity against the true rule
replayed from the same start). Hooks record their data, their fitted θ, the initial
weights their fit and evaluation use, and what their evaluation printed.

Their trajectories are written as a recordings file (``tasks/recorded.py`` layout): each
odour presentation is a step (input, accept/refuse choice); a trial's synapses change
once, at its last presentation (``update_mask``), by the rule with modulator ``reward −
expected reward`` (their definition, a running mean of the last 10 rewards); the network
is theirs: 2 inputs -> 10 tanh units (the plastic layer, ``eta = 1/2`` as their
``lr = 1/input_dim``) -> a fixed readout of 0.5 each (the logit); no biases. The first 3
trajectories are fitted, the 5 evaluation ones held out (``heldout = 0.625``).

Checks and scores, all on those 5 held-out trajectories:
* **their θ replayed by the library** must give the percent deviance explained their
  evaluation printed (to 1e-3 percentage points): the conversion is exact;
* **ours**: ``metaplastic run`` of a config that is the ``infer-reward-behaviour`` preset
  with the task pointing at the file and their network (its fit as shipped: 300 steps of 6
  trajectories, L1 1e-3, from θ = 0), scored the same way;
* the true rule (x·r), the upper reference.

``--legacy-rng`` draws their data with JAX's random bits of before version 0.5
(``jax_threefry_partitionable`` off): with it, flyid 1 is the data set of the 63.7% their
code printed when it was first run here.

Writes benchmarks/results/inference_their_data.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import write_results
from bench_inference import THEIR_SHIMS

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "inference_their_data.json"

#: their run with hooks that keep what it simulates, fits and evaluates (argv: checkout,
#: flyid, log dir, output .npz)
EXPORT = THEIR_SHIMS + r"""
import os
if os.environ.get("THEIR_LEGACY_RNG"):  # JAX's random bits before 0.5 (their release)
    jax.config.update("jax_threefry_partitionable", False)
import numpy as np
import plasticity.model as model
saved, calls, inits, state = {}, [], [], {"eval": False}
_load, _eval, _sim, _init = dl.load_data, model.evaluate, model.simulate, model.initialize_params

def load_data(key, cfg, mode="train"):
    saved[mode] = out = _load(key, cfg, mode)
    return out

def initialize_params(*a, **k):
    out = _init(*a, **k)
    inits.append((state["eval"], out))
    return out

def simulate(params, coeff, func, *rest):
    out = _sim(params, coeff, func, *rest)
    if state["eval"]:
        calls.append(params)
    return out

def evaluate(key, cfg, coeff, func):
    saved["theta"] = np.asarray(coeff)
    state["eval"] = True
    return _eval(key, cfg, coeff, func)

dl.load_data, model.simulate, model.initialize_params = load_data, simulate, initialize_params
model.evaluate = evaluate
out_path = sys.argv[4]
sys.argv = [sys.argv[0], f"flyid={sys.argv[2]}", "log_expdata=False", f"log_dir={sys.argv[3]}"]
runpy.run_module("plasticity.run", run_name="__main__")

arrays = {"theta": saved["theta"],
          # the fit's initial weights: the first initialize_params call of train()
          "fit_w1": np.asarray(inits[0][1][0][0]), "fit_w2": np.asarray(inits[0][1][1][0]),
          # evaluation: each trajectory replayed from one start (3 calls: fit, null, truth)
          "eval_w1": np.stack([np.asarray(p[0][0]) for p in calls[::3]]),
          "eval_w2": np.stack([np.asarray(p[1][0]) for p in calls[::3]])}
for mode in ("train", "eval"):
    xs, _, decisions, rewards, expected = saved[mode]
    for name, d in (("xs", xs), ("decisions", decisions), ("rewards", rewards),
                    ("expected", expected)):
        for i in sorted(d, key=int):
            arrays[f"{mode}_{name}_{i}"] = np.asarray(d[i], np.float64)
np.savez(out_path, **arrays)
"""


def run_theirs(python: str, checkout: str, flyid: int, work: Path,
               legacy_rng: bool = False) -> dict:
    """Their default run for one flyid; the hooks' arrays and their printed evaluation."""
    out = work / f"theirs_{flyid}.npz"
    t0 = time.perf_counter()
    env = {**os.environ, **({"THEIR_LEGACY_RNG": "1"} if legacy_rng else {})}
    done = subprocess.run([python, "-c", EXPORT, checkout, str(flyid), str(work) + "/",
                           str(out)], capture_output=True, text=True, cwd=work,
                          timeout=1800, env=env)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"MetaLearnPlasticity failed (flyid {flyid}, exit "
                         f"{done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    text = done.stdout
    pd = re.search(r"^percent deviance: (\[.*\])$", text, re.M)
    r2 = re.search(r"^r2 score: (\{.*\})$", text, re.M)
    if pd is None or r2 is None:
        raise SystemExit(f"MetaLearnPlasticity printed no evaluation (flyid {flyid})")
    r2 = ast.literal_eval(r2.group(1))
    return {"path": out, "seconds": time.perf_counter() - t0,
            "percent_deviance": [float(v) for v in ast.literal_eval(pd.group(1))],
            "r2_weights": [float(v) for v in r2["weights"]],
            "r2_activity": [float(v) for v in r2["activity"]]}


def to_recordings(theirs: Path, out: Path) -> dict:
    """Their trajectories (3 training, then 5 evaluation) in the recordings layout."""
    d = np.load(theirs)
    rows = []
    for mode, w1, w2 in (("train", None, None), ("eval", d["eval_w1"], d["eval_w2"])):
        n = sum(1 for k in d.files if k.startswith(f"{mode}_xs_"))
        for i in range(n):
            xs, dec = d[f"{mode}_xs_{i}"], d[f"{mode}_decisions_{i}"]
            r, e = d[f"{mode}_rewards_{i}"], d[f"{mode}_expected_{i}"]
            lengths = np.sum(~np.isnan(dec), axis=1).astype(int)
            steps = [(xs[t, k], dec[t, k], k == lengths[t] - 1, r[t] - e[t])
                     for t in range(len(lengths)) for k in range(lengths[t])]
            rows.append({"inputs": np.stack([s[0] for s in steps]),
                         "choices": np.array([s[1] for s in steps], int),
                         "learn": np.array([s[2] for s in steps], float),
                         "mod": np.array([s[3] if s[2] else 0.0 for s in steps]),
                         "w1": (d["fit_w1"] if w1 is None else w1[i]).T,
                         "w2": (d["fit_w2"] if w2 is None else w2[i]).T})
    t_max = max(len(r["choices"]) for r in rows)

    def pad(a):
        return np.concatenate([a, np.zeros((t_max - len(a),) + a.shape[1:], a.dtype)])

    np.savez(out, inputs=np.stack([pad(r["inputs"]) for r in rows]).astype(np.float32),
             lengths=np.array([len(r["choices"]) for r in rows]),
             choices=np.stack([pad(r["choices"]) for r in rows]),
             rewards=np.stack([pad(r["mod"]) for r in rows]).astype(np.float32),
             update_mask=np.stack([pad(r["learn"]) for r in rows]),
             w0_1=np.stack([r["w1"] for r in rows]).astype(np.float32),
             w0_2=np.stack([r["w2"] for r in rows]).astype(np.float32))
    return {"trajectories": len(rows), "steps": [len(r["choices"]) for r in rows],
            "theta": d["theta"]}


def config(recordings: Path, path: Path) -> None:
    """The infer-reward-behaviour preset on these recordings, with their network."""
    from metaplastic.experiments import config as cfgmod
    from metaplastic.experiments import presets

    d = cfgmod.to_dict(presets.get("infer-reward-behaviour"))
    d["task"] = {"name": "recorded", "path": str(recordings), "fit": "choices",
                 "heldout": 0.625}
    d["network"] = {"hidden": [10], "activation": "tanh", "output_activation": "linear",
                    "plastic": [1]}
    d["rule"]["eta"] = 0.5
    d["name"] = "infer-their-data"
    cfgmod.save(cfgmod.from_dict(d), path)


def score(run: Path, their_theta: np.ndarray) -> dict:
    """Per held-out trajectory: % deviance explained of our θ, their θ and the truth
    (x·r) against no plasticity; R² (their definitions) of the plastic weights after each
    trial's update and of the hidden activity at every presentation, against the truth."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from metaplastic.analysis.recovery_scores import Frozen, check_recorded
    from metaplastic.experiments import config as cfgmod
    from metaplastic.experiments.build import build
    from metaplastic.inner import trace
    from metaplastic.rules import make

    cfg = cfgmod.load(run / "config.toml")
    pieces = build(cfg)
    net, rule = pieces.network, pieces.rule
    task = check_recorded(pieces.objective)
    heldout = dataclasses.replace(task, split="heldout").indices
    with np.load(run / "theta.npz") as f:
        ours = {"coef": jnp.asarray(f["coef"])}
    # their θ as they left it: the w^2 terms keep their random start (~1e-5), so it is
    # replayed by the same polynomial without the exclusion
    whole = make("polynomial", variables=["pre", "modulator", "w"], degree=2, eta=0.5)
    truth = make("xr", eta=0.5)
    thetas = {"ours": (rule, ours),
              "theirs": (whole, {"coef": jnp.asarray(their_theta, jnp.float32)}),
              "truth": (truth, truth.init(jax.random.key(0), net.shapes)),
              "none": (Frozen(rule), ours)}

    def replay(r, th, i):
        inst = task.instance(i)
        _, end, (w, h, y) = trace(net, r, th, task, inst, jax.random.key(0),
                                  lambda s: (s[0].w, s[1].pre, s[-1].post[0]))
        # the weights before every step, then after the last one
        return jnp.concatenate([w, end[0].weights[0][None]]), h, y

    got = {k: jax.jit(jax.vmap(lambda i, r=r, th=th: replay(r, th, i)))(
        jnp.asarray(heldout)) for k, (r, th) in thetas.items()}
    out: dict = {k: {"percent_deviance": [], "r2_weights": [], "r2_activity": []}
                 for k in thetas}
    for j, i in enumerate(heldout):
        inst = task.instance(int(i))
        n = int(inst.length)
        c = np.asarray(inst.choices[:n])
        after = np.flatnonzero(np.asarray(inst.learn[:n]) > 0) + 1  # weights after updates

        null = _nll(got["none"][2][j], c)
        w_t = np.asarray(got["truth"][0][j])[after].reshape(len(after), -1)
        h_t = np.asarray(got["truth"][1][j])[:n]
        for k in thetas:
            w, h, y = (np.asarray(a[j]) for a in got[k])
            out[k]["percent_deviance"].append(100 * (1 - _nll(y, c) / null))
            out[k]["r2_weights"].append(_r2(w_t, w[after].reshape(len(after), -1)))
            out[k]["r2_activity"].append(_r2(h_t, h[:n]))
    del out["none"]
    return out


def _nll(logits, choices: np.ndarray) -> float:
    """The choices' negative log-likelihood under accept-logits (their deviance)."""
    y = np.asarray(logits[:len(choices)], np.float64)
    return float(np.sum(np.logaddexp(0, np.where(choices > 0, -y, y))))


def _r2(truth: np.ndarray, got: np.ndarray) -> float:
    """sklearn's r2_score with uniform averaging over columns (their definition)."""
    ss_res = np.sum((truth - got) ** 2, axis=0)
    ss_tot = np.sum((truth - truth.mean(axis=0)) ** 2, axis=0)
    ok = ss_tot > 0
    return float(np.mean(1 - ss_res[ok] / ss_tot[ok]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--theirs", required=True, help="a local checkout of MetaLearnPlasticity")
    p.add_argument("--python", required=True,
                   help="interpreter for MetaLearnPlasticity (with its dependencies)")
    p.add_argument("--flyids", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--seed", type=int, default=0, help="our run's seed")
    p.add_argument("--legacy-rng", action="store_true",
                   help="their data drawn with JAX's random bits before 0.5 "
                        "(jax_threefry_partitionable off), as when their code was released")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    if not (Path(args.theirs) / "plasticity" / "run.py").is_file():
        raise SystemExit(f"--theirs {args.theirs!r} is not a MetaLearnPlasticity checkout "
                         f"(no plasticity/run.py)")
    result: dict = {"date": time.strftime("%Y-%m-%d"), "legacy_rng": args.legacy_rng,
                    "flyids": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for flyid in args.flyids:
            theirs = run_theirs(args.python, str(Path(args.theirs).resolve()), flyid, work,
                                args.legacy_rng)
            rec = work / f"recordings_{flyid}.npz"
            info = to_recordings(theirs["path"], rec)
            cfg_path = work / f"config_{flyid}.toml"
            config(rec, cfg_path)
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "metaplastic.cli", "run",
                                   str(cfg_path), "--seed", str(args.seed), "--no-eval",
                                   "--out", str(work / f"runs_{flyid}")],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"metaplastic run failed (flyid {flyid}):\n"
                                 f"{done.stdout[-3000:]}")
            run = next((work / f"runs_{flyid}").iterdir())
            scores = score(run, info["theta"])
            row = {"their_printed": {k: theirs[k] for k in ("percent_deviance",
                                                            "r2_weights", "r2_activity")},
                   "their_seconds": round(theirs["seconds"], 1),
                   "our_seconds": round(time.perf_counter() - t0, 1),
                   "steps_per_trajectory": info["steps"], **scores}
            gap = np.max(np.abs(np.subtract(scores["theirs"]["percent_deviance"],
                                            theirs["percent_deviance"])))
            row["replay_gap_percent_points"] = float(gap)
            result["flyids"][str(flyid)] = row
            print(f"flyid {flyid}: % deviance explained, mean of 5 held-out: theirs "
                  f"{np.mean(theirs['percent_deviance']):.1f} (printed; replayed here "
                  f"{np.mean(scores['theirs']['percent_deviance']):.1f}, max gap {gap:.1e}), "
                  f"ours {np.mean(scores['ours']['percent_deviance']):.1f}, truth "
                  f"{np.mean(scores['truth']['percent_deviance']):.1f}; activity R² theirs "
                  f"{np.mean(theirs['r2_activity']):.3f} ours "
                  f"{np.mean(scores['ours']['r2_activity']):.3f}", flush=True)
    mean = {k: {m: float(np.mean([np.mean(r[k][m]) for r in result["flyids"].values()]))
                for m in ("percent_deviance", "r2_weights", "r2_activity")}
            for k in ("ours", "theirs", "truth")}
    mean["their_printed"] = {m: float(np.mean([np.mean(r["their_printed"][m])
                                               for r in result["flyids"].values()]))
                             for m in ("percent_deviance", "r2_weights", "r2_activity")}
    result["mean_over_flyids"] = mean
    write_results(Path(args.out), result)
    print(json.dumps(mean, indent=1))


if __name__ == "__main__":
    main()
