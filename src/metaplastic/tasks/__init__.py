"""Task families and their registry: ``make(name, **kw)``.

* ``pca`` — online principal component analysis with random covariances;
* ``gym`` — an episode of any gymnax environment (``env`` option), with the aliases
  ``cartpole``, ``acrobot``, ``pendulum`` and ``mountaincar`` (continuous);
* ``fewshot`` — online N-way K-shot classification with meta-training / held-out classes;
* ``homeostasis`` — hold a target firing rate while the input statistics change;
* ``mujoco`` — an episode of a MuJoCo Playground (MJX) DM Control Suite environment
  (optional: ``pip install 'metaplastic[mujoco]'``);
* ``recorded`` — replay recorded trajectories (activity, choices) through the plastic
  network, to infer the rule that produced them;
* ``odour-choice`` — two odours, accept or refuse, probabilistic rewards in blocks.
"""

from __future__ import annotations

from metaplastic.registry import make as _make
from metaplastic.registry import options as _options
from metaplastic.registry import register
from metaplastic.tasks.base import Task
from metaplastic.tasks.fewshot import FewShotTask
from metaplastic.tasks.gym import GymTask
from metaplastic.tasks.homeostasis import HomeostasisTask
from metaplastic.tasks.mujoco import MujocoTask
from metaplastic.tasks.odour import OdourChoiceTask
from metaplastic.tasks.pca import PCAInstance, PCATask
from metaplastic.tasks.recorded import RecordedTask

register("task", "pca", PCATask)
register("task", "gym", GymTask)
register("task", "fewshot", FewShotTask)
register("task", "homeostasis", HomeostasisTask)
register("task", "mujoco", MujocoTask)
register("task", "recorded", RecordedTask)
register("task", "odour-choice", OdourChoiceTask)
for _alias, _env in {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1",
                     "pendulum": "Pendulum-v1",
                     "mountaincar": "MountainCarContinuous-v0"}.items():
    register("task", _alias, GymTask, fixed={"env": _env}, doc=f"gymnax's {_env}.")



def options(name: str) -> list[str]:
    """The keyword options task ``name`` accepts (a registered name or "module:Class")."""
    return _options("task", name)


def make(name: str, **kw) -> Task:
    """Build a task; unknown names or options raise a ConfigError listing valid ones."""
    return _make("task", name, **kw)


__all__ = ["FewShotTask", "GymTask", "HomeostasisTask", "MujocoTask", "OdourChoiceTask",
           "PCAInstance",
           "PCATask", "RecordedTask", "Task", "make", "options", "register"]
