"""A kind of run of the user's own (a study defined here, registered here) gets the whole
lifecycle with no change to the library: run, Ctrl-C, resume (bitwise), --seeds, eval,
report and compare."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.cli import main
from metaplastic.errors import ConfigError
from metaplastic.experiments.rundir import RunDir
from metaplastic.experiments.study import Study
from metaplastic.meta.objective import WholeEpisodes


@dataclass(frozen=True)
class ToyConfig:
    name: str = "toy"
    seed: int = 0
    steps: int = 6
    chunk: int = 2
    dim: int = 3
    study: str = "toy"


@dataclass(frozen=True)
class Target(WholeEpisodes):
    """Find x near a target drawn per meta-step (mean 1)."""

    dim: int

    def __call__(self, theta, key):
        target = 1.0 + 0.1 * jax.random.normal(key, (self.dim,))
        loss = jnp.mean((theta["x"] - target) ** 2)
        return loss, {"task_loss": loss, "nonfinite": jnp.zeros(())}

    def value_and_grad(self, theta, key):
        (value, aux), grads = jax.value_and_grad(self.__call__, has_aux=True)(theta, key)
        return value, aux, grads


@dataclass(frozen=True)
class Built:
    outer: object
    objective: object


@dataclass(frozen=True)
class ToyStudy(Study):
    name = "toy"
    analyses = ("eval",)
    after_training = ("eval",)

    def from_dict(self, d):
        try:
            return ToyConfig(**d)
        except TypeError as e:
            raise ConfigError(f"toy config: {e}") from None

    def to_dict(self, cfg):
        return dataclasses.asdict(cfg)

    def build(self, cfg, evaluation=True):
        return Built(mp.MetaGradient(steps=cfg.steps, lr=0.1, chunk=cfg.chunk),
                     Target(cfg.dim))

    def init(self, cfg, built, key):
        return {"x": jnp.zeros(cfg.dim)}

    def summary(self, cfg, built, theta, status, run):
        return {"x": np.asarray(theta["x"]).tolist()}

    def describe(self, summary, run):
        return [f"learned x: {summary['x']}"]

    def report(self, run):
        from metaplastic.report import plot_meta_loss

        metrics = run.metrics()
        return [plot_meta_loss(metrics, run.path / "meta_loss.png")] if metrics else []

    def has_evaluation(self, cfg):
        return True

    def evaluate(self, run, n_tasks=None, progress=None, sets=(), name="eval"):
        x = run.theta()["x"]
        losses = [float(np.mean((x - 1.0) ** 2))] * (n_tasks or 4)
        row = {"rule": "learned", "variant": "default", "score": "loss", "tasks": len(losses),
               "loss": {"mean": losses[0], "ci95": 0.0}, "diverged": 0}
        run.write_json("eval.json", {"tasks_per_row": len(losses), "rows": [row]})
        return [row]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    mp.register("study", "toy", ToyStudy, replace=True)
    path = tmp_path_factory.mktemp("cfg") / "toy.toml"
    path.write_text('study = "toy"\nname = "toy"\nsteps = 6\nchunk = 2\n')
    return str(path)


def test_an_own_study_runs_and_resumes_bitwise_after_ctrl_c(toy, tmp_path, monkeypatch,
                                                            capsys):
    assert main(["run", toy, "--out", str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    out = capsys.readouterr().out
    assert "learned x:" in out and "held-out evaluation" in out
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["meta_steps"] == 6
    assert summary["study"] == "toy" and "provenance" in summary
    assert 'study = "' in (whole / "config.toml").read_text()
    assert (whole / "checkpoint.npz").is_file() and (whole / "meta_loss.png").is_file()

    save = RunDir.save_checkpoint

    def save_then_stop(self, state):  # Ctrl-C right after the first chunk's checkpoint
        save(self, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_stop)
    assert main(["run", toy, "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    (cut,) = (tmp_path / "cut").iterdir()
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    assert "metaplastic resume" in capsys.readouterr().out
    assert main(["resume", str(cut)]) == 0
    assert [r["step"] for r in RunDir(cut).metrics()] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(RunDir(cut).theta()["x"], RunDir(whole).theta()["x"])

    assert main(["eval", str(whole), "--tasks", "3"]) == 0
    assert json.loads((whole / "eval.json").read_text())["rows"][0]["tasks"] == 3
    (whole / "meta_loss.png").unlink()
    assert main(["report", str(whole)]) == 0 and (whole / "meta_loss.png").is_file()
    assert main(["compare", str(whole), str(cut), "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "compare.json").read_text())
    capsys.readouterr()
    assert main(["explain", str(whole)]) == 2  # not an analysis it declares: one message
    assert "toy run" in capsys.readouterr().out


def test_an_own_study_runs_seeds_as_one_program(toy, tmp_path, capsys):
    assert main(["run", toy, "--seeds", "0-2", "--out", str(tmp_path)]) == 0
    (group,) = tmp_path.iterdir()
    runs = sorted(p.name for p in group.iterdir() if p.is_dir())
    assert runs == ["seed-0", "seed-1", "seed-2"]
    for s in range(3):
        summary = json.loads((group / f"seed-{s}" / "summary.json").read_text())
        assert summary["status"] == "finished"
        assert summary["provenance"]["seeds_in_one_program"] == [0, 1, 2]
    assert (group / "compare.json").is_file()
    assert "seeds compared" in capsys.readouterr().out
