"""Run configuration: frozen dataclasses, TOML files that map onto them, overrides.

A run is described by :class:`RunConfig`. ``task`` and ``rule`` are tables holding a
registry ``name`` and that entry's options (checked when the pieces are built); the other
sections are dataclasses whose keys and types are checked here, so a typo such as
``meta.stepz`` stops the run with a message listing the valid keys.

``--set key=value`` overrides use dotted keys (``meta.steps=300``, ``task.n_in=25``);
values are read as TOML (``300``, ``3e-3``, ``true``, ``[10, 25]``, ``"tanh"``); a bare
word that is not TOML is taken as a string (``network.activation=tanh``).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from metaplastic._fields import coerce_kwargs
from metaplastic.errors import ConfigError


@dataclass(frozen=True)
class NetworkConfig:
    """The network between the task's inputs and outputs (sizes come from the task)."""

    hidden: tuple[int, ...] = ()
    activation: str = "linear"
    output_activation: str | None = None
    feedback: str = "none"
    init_scale: float = 1.0
    init_dist: str = "normal"
    feedback_scale: float = 1.0
    dale: bool = False  # excitatory/inhibitory neurons whose weights keep their sign
    excitatory: float = 0.8
    normalize: str = "none"  # or "max_abs": each layer / its max |w| after every update
    # spiking networks (neuron = "lif" or "alif"): see docs/spiking.md
    neuron: str = "rate"
    tau_mem: float = 20.0
    threshold: float = 1.0
    reset: str = "subtract"
    refractory: int = 0
    tau_adapt: float = 200.0
    beta: float = 0.0  # alif: threshold increase per spike (default 0.5 when neuron = alif)
    encoder: str = "poisson"
    rate: float = 0.1
    gain: float = 1.0
    window: int = 10
    tau_trace: float = 20.0


@dataclass(frozen=True)
class MetaConfig:
    """The outer loop and the meta-objective."""

    outer: str = "gradient"  # "gradient" (backprop through the unroll) or "es" (evosax)
    steps: int = 600  # meta-steps, or ES generations
    tasks_per_step: int = 8
    lr: float = 3e-3
    schedule: str = "constant"
    optimizer: str = "adam"
    clip: float = 1.0  # 0 disables clipping
    l1: float = 0.0
    checkpoint: bool = False
    grad_mode: str = "reverse"  # or "forward": forward-mode meta-gradients (small θ)
    on_nan: str = "skip"
    max_nan_skips: int = 20
    chunk: int = 25
    # ES: run episodes in chunks of this many steps and stop once every one has ended
    # (results unchanged; 0: always the full length); evaluate the population in
    # sequential vmapped batches of this size (0: all at once)
    early_exit: int = 0
    population_batch: int = 0
    # truncated unrolls: a meta-update every `truncation` inner steps (0: whole episodes);
    # gradient: schedule [[from_step, length], ...]; es: strategy "pes" is unbiased
    truncation: int = 0
    truncation_schedule: tuple[tuple[int, ...], ...] = ()
    # evolution strategies (outer = "es"); lr and optimizer serve OpenAI-ES / PGPE / SNES
    strategy: str = "open_es"
    population: int = 64
    sigma: float = 0.1
    antithetic: bool = True
    fitness_shaping: str = "default"


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: ``tasks`` fresh tasks per row.

    Rows come from ``variants`` — a list of task-option overrides, each one row, with an
    optional ``label`` (e.g. ``{label = "heavy", ranges = {}, params = {masspole = 0.3}}``)
    — or else from ``vary``, which maps task options to values and makes one row per
    combination (e.g. ``{n_in = [10, 25]}``). ``baselines`` are registered rules evaluated
    alongside the learned one.
    """

    tasks: int = 100
    vary: dict = field(default_factory=dict)
    variants: tuple[dict, ...] = ()
    baselines: tuple[Any, ...] = ()  # rule names, or tables {label, rule, network, tune}


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    reference: str | None = None  # a hand-designed rule the learned one is compared with
    task: dict = field(default_factory=lambda: {"name": "pca"})
    rule: dict = field(default_factory=lambda: {"name": "polynomial"})
    network: NetworkConfig = field(default_factory=NetworkConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    #: plausibility constraints checked at the start of the run (metaplastic check):
    #: locality, no_weight_transport, online, dale, spikes_only
    constraints: tuple[str, ...] = ()


_SECTIONS = {"network": NetworkConfig, "meta": MetaConfig, "eval": EvalConfig}
_OUTERS = ("gradient", "es")


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Validate a nested dict (e.g. a parsed TOML file) and build a RunConfig."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a table, got {type(d).__name__}")
    top = {k: v for k, v in d.items() if k not in _SECTIONS}
    kw = coerce_kwargs(RunConfig, top, "config")
    for key in ("task", "rule"):
        if key in kw:
            if "name" not in kw[key]:
                raise ConfigError(f"[{key}] needs a 'name'")
            kw[key] = dict(kw[key])
    for name, cls in _SECTIONS.items():
        if name in d:
            if not isinstance(d[name], dict):
                raise ConfigError(f"[{name}] must be a table, got {d[name]!r}")
            kw[name] = cls(**coerce_kwargs(cls, d[name], name))
    cfg = RunConfig(**kw)
    if cfg.meta.outer not in _OUTERS:
        raise ConfigError(f"unknown meta.outer {cfg.meta.outer!r}; valid: {', '.join(_OUTERS)}")
    return cfg


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """A plain nested dict (TOML-writable: no None values)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v is not None}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return clean(dataclasses.asdict(cfg))


def load(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return from_dict(data)


def save(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(tomli_w.dumps(to_dict(cfg)))


def parse_value(text: str) -> Any:
    """A TOML value, or the text itself if it is not one."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def override(cfg: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply ``key=value`` overrides (dotted keys) and re-validate."""
    d = to_dict(cfg)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs key=value, got {item!r}")
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section of the config")
            node = node[p]
        node[parts[-1]] = parse_value(text.strip())
    return from_dict(d)
