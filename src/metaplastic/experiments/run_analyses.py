"""The analyses of a finished rule run, on its run directory: ``explain`` (distil the rule
into a sparse polynomial: ``explain.json``, ``explain.png``), ``export`` (the rule and
explain's formula written out whole into ``export/``) and the spiking network after
learning as NIR with its round trip checked. The command line prints what they return."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metaplastic import capabilities
from metaplastic.analysis import brian2_export, export, neuromorphic
from metaplastic.analysis.explain import check_options, collect, distil, heatmaps
from metaplastic.errors import ConfigError
from metaplastic.experiments.build import build
from metaplastic.experiments.rule_runs import run_theta
from metaplastic.experiments.rundir import RunDir
from metaplastic.rules.composed import synapses_part
from metaplastic.streams import EPISODE, EXPLAIN, stream_key

SUFFIX = {"csv": ".csv", "json": ".json", "sympy": "_sympy.txt",
          "sympy_full": "_sympy_full.txt", "latex": ".tex"}


def explain_run(run: RunDir, cfg: Any, *, tasks: int, synapses: int, every: int,
                inputs: list[str] | None, degree: int, threshold: float):
    """Re-run inner learning with the run's θ, sample (signals, dw) and distil them;
    writes explain.json and explain.png. Returns ``(pieces, theta, data, fit, png)``."""
    check_options(degree, threshold)
    pieces = build(cfg)
    theta = run_theta(run, pieces)
    data = collect(pieces.task, pieces.network, pieces.rule, theta,
                   key=stream_key(cfg.seed, EXPLAIN), tasks=tasks, synapses=synapses,
                   every=every)
    fit = distil(data, inputs, degree=degree, threshold=threshold,
                 scale=capabilities.eta(pieces.rule))
    png = heatmaps(pieces.rule, theta, data, fit, run.path / "explain.png")
    run.write_json("explain.json", {**fit.to_json(), "samples": int(data["dw"].size),
                                    "tasks": tasks, "degree": degree, "threshold": threshold})
    return pieces, theta, data, fit, png


@dataclass
class Written:
    """One exported text: what (``rule`` or ``explained``), its format, file and text."""

    what: str
    fmt: str
    path: Path
    text: str


def export_rule(run: RunDir, cfg: Any, formats: list[str], check_nir: bool = False,
                latex_threshold: float = 0.0, check_brian2: bool = False):
    """The run's rule written out whole (the synapses' own rule: a fitted start or learned
    neurons stay in theta.npz), and explain's formula when the run has one, into
    ``RUN/export/``. ``check_nir``, ``check_brian2``: refuse a network or rule NIR or the
    Brian2 script cannot take before anything is written. Returns ``(pieces, theta,
    [Written])``."""
    pieces = build(cfg)
    theta = run_theta(run, pieces)
    if check_nir:
        neuromorphic.check_exportable(pieces.network)
    if check_brian2:
        brian2_export.check_exportable(pieces.network, *synapses_part(pieces.rule, theta))
    path = run.path / "explain.json"
    explained = run.read_json("explain.json") if path.exists() else None
    texts: dict[tuple[str, str], str] = {}
    if "sympy" in formats:  # the rounded file for people, the full one for sympify
        formats = [*formats, "sympy_full"]
    own, own_theta = synapses_part(pieces.rule, theta)
    if formats and (explained is None or export.exportable(own)):
        # rules of named terms, abcd; a network rule without explain.json: the message
        texts = {("rule", f): export.render(own, own_theta, f, latex_threshold)
                 for f in formats}
    if explained is not None:  # the formula `metaplastic explain` distilled, too
        texts |= {("explained", f): export.render_distilled(explained, f, latex_threshold)
                  for f in formats}
    out = run.path / "export"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder: move it away to export")
    out.mkdir(exist_ok=True)
    written = []
    for (what, fmt), text in texts.items():
        written.append(Written(what, fmt, out / f"{what}{SUFFIX[fmt]}", text))
        written[-1].path.write_text(text)
    return pieces, theta, written


def export_brian2(cfg: Any, pieces, theta, seed: int, out: Path, source: str,
                  check: bool = True):
    """brian2_model.py and brian2_inputs.npz (one inner episode of the task drawn with
    ``seed``, as the command line's other exports draw it), then — with ``check`` and
    Brian2 installed — the script run and its weights compared with the library's.
    Returns ``(script, inputs, Comparison or None)``."""
    import jax

    k_task, k_net = jax.random.split(stream_key(seed, EPISODE))
    instance = pieces.task.sample(k_task)
    script, inputs = brian2_export.write(out, pieces.network, pieces.rule, theta,
                                         pieces.task, instance, k_net, source)
    done = brian2_export.compare(out) if check and brian2_export.brian2_available() else None
    return script, inputs, done


@dataclass
class RoundTrip:
    """The NIR file of a network after learning and its check: spikes of the original
    (``total``), how many differ when the file is read back and rerun (``differ``)."""

    path: Path
    check: Path
    seed: int
    steps: int
    total: int
    differ: int
    exact_reset: bool


def export_nir(cfg: Any, pieces, theta, seed: int, out: Path) -> RoundTrip:
    """network.nir (the network after one inner episode with the learned θ on the task
    drawn with ``seed``) and network_check.npz (that network's spikes, weights frozen, on
    the task's input); then read back and rerun."""
    from metaplastic._version import __version__
    from metaplastic.experiments.episode import after_learning

    weights, spikes = after_learning(cfg, pieces, theta, seed)
    path = neuromorphic.write(out / "network.nir", pieces.network, weights,
                              source=f"metaplastic {__version__}")
    check = out / "network_check.npz"
    np.savez(check, task_seed=np.asarray(seed), input_spikes=spikes[0],
             **{f"spikes_layer{l}": s for l, s in enumerate(spikes[1:], start=1)})
    network, back = neuromorphic.from_nir(path)
    again = neuromorphic.simulate(network, back, spikes[0])
    differ = sum(int(np.sum(a != b)) for a, b in zip(again[1:], spikes[1:], strict=True))
    total = sum(int(s.sum()) for s in spikes[1:])
    return RoundTrip(path, check, seed, int(spikes[0].shape[0]), total, differ,
                     pieces.network.neuron_model.reset == "zero")
