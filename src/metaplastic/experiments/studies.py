"""The built-in kinds of run, registered under the ``study`` kind of piece.

* ``"rule"``: discover a plasticity rule by meta-learning (every preset but the two
  below); held-out evaluation against baselines; explain, export, check.
* ``"inference"``: fit a rule to recordings (``task.name = "recorded"``, whose task
  declares this study); evaluation scores every trajectory once, then rule recovery.
* ``"selection-meta"``: train the learned ES's selection network φ
  (:mod:`metaplastic.experiments.selection_run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaplastic import capabilities, registry
from metaplastic.experiments import config, presets
from metaplastic.experiments import rule_runs as runner
from metaplastic.experiments.selection_run import SelectionStudy
from metaplastic.experiments.study import Study


@dataclass(frozen=True)
class RuleStudy(Study):
    """Rule discovery: a :class:`~metaplastic.experiments.config.RunConfig` built into
    task, network, rule, objective and outer loop (:func:`~.build.build`)."""

    name = "rule"
    what = "rule discovery"
    analyses = ("eval", "explain", "export", "check")
    after_training = ("eval",)

    def presets(self):
        return dict(presets.PRESETS)

    def from_dict(self, d: dict) -> config.RunConfig:
        return config.from_dict(d)

    def to_dict(self, cfg: config.RunConfig) -> dict:
        return config.to_dict(config.portable(cfg))

    def override(self, cfg: config.RunConfig, assignments: list[str]) -> config.RunConfig:
        return config.override(cfg, assignments)

    def build(self, cfg: config.RunConfig, evaluation: bool = True):
        return runner.validate(cfg, evaluation=evaluation)

    def init(self, cfg, built, key):
        return built.rule.init(key, built.network.shapes)

    def checkpointed(self, cfg):
        if not cfg.meta_section.auto_checkpoint:
            return None
        return config.override(cfg, ["meta.checkpoint=true"])

    def guard(self, cfg):
        return cfg.meta_section.build_guard()

    def before(self, cfg, built, theta0, run) -> dict:
        return {"constraints": runner.check_constraints(cfg, built, theta0, run)}

    def summary(self, cfg, built, theta, status, run) -> dict:
        return runner.summary(cfg, built, theta, run.metrics())

    def conclude(self, cfg, built, theta, theta0, run) -> dict:
        return {"episode": runner.record_episode(cfg, built, theta, theta0, run)}

    def score(self, built) -> str:
        return built.task.score

    def log_names(self, built) -> list[str]:
        return capabilities.term_names(built.rule)

    def describe(self, summary: dict, run: Any) -> list[str]:
        from rich.markup import escape

        lines = [f"learned rule:  [bold]{escape(summary['formula'])}[/]"]
        if summary.get("constraints"):
            lines.append("constraints:   " + ", ".join(
                f"{k} {escape(v)}" for k, v in summary["constraints"].items()))
        if "reference_cosine" in summary:
            lines.append(f"cosine with {summary['reference']}'s coefficients: "
                         f"[bold]{summary['reference_cosine']:.3f}[/]")
        elif "reference_note" in summary:
            lines.append(f"reference: {escape(summary['reference_note'])}")
        return lines

    def report(self, run) -> list[Path]:
        from metaplastic.report import make_report  # matplotlib: only when plotting

        return make_report(run.path)

    def evaluate(self, run, n_tasks=None, progress=None, sets=(), name="eval") -> list[dict]:
        return runner.evaluate_run(run, n_tasks=n_tasks, progress=progress, sets=sets,
                                   name=name)

    def has_evaluation(self, cfg) -> bool:
        return cfg.eval.tasks > 0


@dataclass(frozen=True)
class InferenceStudy(RuleStudy):
    """A rule inferred from recordings: rule discovery whose task replays recorded
    trajectories; after evaluation, rule recovery (``metaplastic recover``)."""

    name = "inference"
    what = "a rule fitted to recordings: task 'recorded'"
    analyses = ("eval", "explain", "export", "check", "recover")
    after_training = ("eval", "recover")

    def presets(self):
        return {}  # the infer-* presets are the rule study's table; their task says so


def _register() -> None:
    for cls in (RuleStudy, InferenceStudy, SelectionStudy):
        registry.register("study", cls.name, cls, replace=True)


_register()

__all__ = ["InferenceStudy", "RuleStudy", "SelectionStudy", "Study"]
