"""Kinds of run ("studies"): one declared piece each, one lifecycle for all of them.

A *study* is a kind of run: rule discovery (``"rule"``), inference of a rule from
recordings (``"inference"``), training the learned ES's selection network
(``"selection-meta"``), or a user's own. It declares what is particular to it —

* its configuration: ``from_dict(d) -> cfg`` and ``to_dict(cfg) -> d`` (a TOML table;
  ``cfg`` has at least ``name``, ``seed`` and ``study``), ``presets()``;
* how it is built: ``build(cfg, evaluation) -> built`` (anything with ``outer`` and
  ``objective``: the outer loop and what it optimises, checked before anything is written)
  and ``init(cfg, built, key) -> θ0``;
* what it adds around training: ``before`` (checks before the first step, e.g. declared
  constraints), ``summary`` (numbers of the trained θ, cheap), ``conclude`` (slower work
  once training finished, e.g. recording an episode), ``save_theta``;
* what follows: ``evaluate`` (held-out rows, or None when it has none), ``report`` (its
  plots, from saved files only), ``analyses`` (which of ``metaplastic explain / export /
  check / recover`` apply) and ``after_training`` (what the command line shows next);

— and :mod:`metaplastic.experiments.lifecycle` does the rest for every study alike:
start, chunks, checkpoints, interruption, divergence, resume, seeds (one program),
provenance and finish. The command line dispatches once, on the ``study`` recorded in a
run's ``config.toml``.

A study is registered like any piece (``mp.register("study", "my-study", MyStudy)``) or
named ``"module:Class"`` in a config's ``study`` key; docs/extending.md has a worked one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from metaplastic import registry
from metaplastic._records import read_toml
from metaplastic.errors import ConfigError, MetaplasticError
from metaplastic.experiments.config import apply_assignments, task_study

#: what follows training on the command line (unless --no-eval): held-out evaluation
#: rows (``evaluate``) and rule recovery (``metaplastic recover``)
AFTER_TRAINING = ("eval", "recover")
#: analyses a study may declare (``metaplastic eval/explain/export/check/recover RUN``)
ANALYSES = ("eval", "explain", "export", "check", "recover")


class Study:
    """Base class of a kind of run (see the module docstring); subclasses are frozen
    dataclasses without fields, registered under the ``study`` kind."""

    #: the registered name; recorded in every run's config.toml as ``study``
    name: ClassVar[str] = "study"
    #: what its runs are, in a few words (messages, ``metaplastic list``)
    what: ClassVar[str] = ""
    #: what the progress bar calls training and its loss
    training: ClassVar[str] = "meta-training"
    loss_name: ClassVar[str] = "meta-loss"
    #: the file θ is saved to (``theta.npz``; the selection network: ``phi.npz``)
    theta_file: ClassVar[str] = "theta.npz"
    #: which of :data:`ANALYSES` apply to its runs
    analyses: ClassVar[tuple[str, ...]] = ()
    #: what the command line does after training (a subset of :data:`AFTER_TRAINING`)
    after_training: ClassVar[tuple[str, ...]] = ()
    #: how its result is used, said when an analysis does not apply
    hint: ClassVar[str] = ""

    # --- configuration --------------------------------------------------------------------
    def presets(self) -> dict[str, Callable[[], Any]]:
        return {}

    def from_dict(self, d: dict) -> Any:
        raise NotImplementedError

    def to_dict(self, cfg: Any) -> dict:
        raise NotImplementedError

    def override(self, cfg: Any, assignments: list[str]) -> Any:
        """``key=value`` overrides (dotted keys, TOML values), re-validated."""
        return self.from_dict(apply_assignments(self.to_dict(cfg), assignments))

    # --- building and training --------------------------------------------------------------
    def build(self, cfg: Any, evaluation: bool = True) -> Any:
        """What the lifecycle trains: an object with ``outer`` and ``objective``.
        ``evaluation``: also check what evaluation will need (before anything is written)."""
        raise NotImplementedError

    def init(self, cfg: Any, built: Any, key: Any) -> Any:
        raise NotImplementedError

    def checkpointed(self, cfg: Any) -> Any | None:
        """``cfg`` with the meta-gradient's unroll checkpointed (recomputed in the backward
        pass instead of stored), where the configuration leaves that to the memory budget
        (a rule study's ``meta.checkpoint = "auto"``, the default); None where it does not.
        The lifecycle switches to it when the first meta-step's program would hold more
        than the budget (:meth:`metaplastic.experiments.lifecycle.Start.bound_memory`)."""
        return None

    def guard(self, cfg: Any) -> Any:
        """The safeguards of its meta-training (a :class:`~metaplastic.meta.guard.Guard`:
        divergence bounds, rollback, keep-best θ); the defaults unless it has options."""
        from metaplastic.meta.guard import Guard

        return Guard()

    def before(self, cfg: Any, built: Any, theta0: Any, run: Any) -> dict:
        """Checks before the first meta-step of a new run; what it returns is kept in the
        summary (also when the run is resumed). May raise to stop the run."""
        return {}

    def summary(self, cfg: Any, built: Any, theta: Any, status: str, run: Any) -> dict:
        """Summary entries of ``theta`` (written however the run ended: keep it cheap)."""
        return {}

    def conclude(self, cfg: Any, built: Any, theta: Any, theta0: Any, run: Any) -> dict:
        """Work once training finished (at least one meta-step); summary entries."""
        return {}

    def save_theta(self, run: Any, theta: Any) -> None:
        run.save_theta(theta)

    def score(self, built: Any) -> str | None:
        """The metrics key shown beside the loss on the progress bar (or None)."""
        return None

    def log_names(self, built: Any) -> list[str]:
        """Names of θ's logged entries (TensorBoard, W&B)."""
        return []

    def describe(self, summary: dict, run: Any) -> list[str]:
        """Lines (rich markup) the command line prints after training."""
        return []

    # --- afterwards ---------------------------------------------------------------------------
    def report(self, run: Any) -> list[Path]:
        """(Re)draw the run's plots from its saved files; the paths written."""
        return []

    def evaluate(self, run: Any, n_tasks: int | None = None,
                 progress: Callable[[int, int, str], None] | None = None,
                 sets: tuple[str, ...] = (), name: str = "eval") -> list[dict]:
        """Held-out evaluation rows (written to ``NAME.json``, default ``eval.json``);
        ``sets``: ``eval.KEY=VALUE`` overrides of the run's evaluation settings."""
        raise MetaplasticError(f"{self.name} runs have no held-out evaluation")

    def has_evaluation(self, cfg: Any) -> bool:
        return False


def get(name: str) -> Study:
    """The study registered as ``name`` (or ``"module:Class"``)."""
    return registry.make("study", name)


def name_of(d: dict) -> str:
    """The study a configuration table names: its ``study`` key; else a table with
    ``kind = "selection-meta"`` (run directories written before studies existed); else
    the study its task declares (``Task.study``: recordings -> ``"inference"``); else
    ``"rule"``."""
    if d.get("study"):
        if not isinstance(d["study"], str):
            raise ConfigError(f"study must be a name, got {d['study']!r}")
        return d["study"]
    if d.get("kind") == "selection-meta":
        return "selection-meta"
    task = d.get("task")
    if isinstance(task, dict) and isinstance(task.get("name"), str):
        return task_study(task["name"])
    return "rule"


def check_finite(d: Any, where: str = "") -> None:
    """A ConfigError naming the first non-finite number (inf, nan) of a configuration:
    no run starts from one (an infinite learning rate would make every θ infinite)."""
    if isinstance(d, dict):
        for k, v in d.items():
            check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(d, list | tuple):
        for i, v in enumerate(d):
            check_finite(v, f"{where}[{i}]")
    elif isinstance(d, float) and not math.isfinite(d):
        raise ConfigError(f"{where} = {d}: a config's numbers must be finite")


def from_dict(d: dict) -> tuple[Study, Any]:
    """(study, configuration) of a configuration table (a parsed TOML file)."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a table, got {type(d).__name__}")
    check_finite(d)
    study = get(name_of(d))
    return study, study.from_dict({k: v for k, v in d.items() if k != "kind"
                                   or v != "selection-meta"})


def load(path: str | Path) -> tuple[Study, Any]:
    """(study, configuration) of a TOML file, validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    data = read_toml(path)
    if not data:
        raise ConfigError(f"{path} is empty: a config names at least its task and rule (or "
                          f"a study); see docs/config.md, or start from a preset")
    return from_dict(data)


def dumps(study: Study, cfg: Any) -> str:
    """``cfg`` as TOML with its study named, so that another process can rebuild it."""
    import tomli_w

    name, _ = registry.portable("study", study.name)
    return tomli_w.dumps({**study.to_dict(cfg), "study": name})


def save(study: Study, cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as TOML (:func:`dumps`)."""
    Path(path).write_text(dumps(study, cfg))


def presets() -> dict[str, tuple[Study, Callable[[], Any]]]:
    """Every registered study's presets: name -> (study, function)."""
    out: dict[str, tuple[Study, Callable[[], Any]]] = {}
    for name in registry.names("study"):
        study = get(name)
        for preset, fn in study.presets().items():
            out.setdefault(preset, (study, fn))
    return out


def resolve(spec: str, sets: list[str], seed: int | None) -> tuple[Study, Any]:
    """A preset name or a TOML file, with ``--set`` overrides and ``--seed`` applied."""
    if spec.endswith(".toml") or Path(spec).is_file():
        study, cfg = load(spec)
    else:
        table = presets()
        if spec not in table:
            from metaplastic.errors import unknown_name

            raise unknown_name("preset", spec, table)
        study, fn = table[spec]
        cfg = fn()
        study = get(cfg.study) if cfg.study != study.name else study
    if seed is not None:
        sets = [*sets, f"seed={seed}"]
    if sets:
        cfg = study.override(cfg, sets)
        check_finite(study.to_dict(cfg))
    return study, cfg


def of_run(path: str | Path) -> tuple[Study, Any]:
    """(study, configuration) of a run directory (its ``config.toml``)."""
    path = Path(path)
    if not (path / "config.toml").is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.toml)")
    return load(path / "config.toml")


def named_by_run(path: str | Path) -> Study:
    """The study a run directory's ``config.toml`` names, without checking the rest of
    its configuration (``metaplastic report`` needs the run's files only)."""
    path = Path(path)
    file = path / "config.toml"
    if not file.is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.toml)")
    return get(name_of(read_toml(file)))


def require(study: Study, analysis: str, what: str) -> None:
    """A clear message when ``analysis`` does not apply to ``study``'s runs."""
    if analysis not in study.analyses:
        raise MetaplasticError(
            f"{what} is a {study.name} run: `metaplastic {analysis}` applies to "
            f"{' and '.join(_studies_with(analysis)) or 'no'} runs; `metaplastic report "
            f"RUN` redraws its plots" + (f"; {study.hint}" if study.hint else ""))


def _studies_with(analysis: str) -> list[str]:
    studies = [get(n) for n in registry.names("study")]
    return [f"{s.name} ({s.what})" if s.what else s.name for s in studies
            if analysis in s.analyses]
