"""Experiments: configs, presets, building the pieces, run directories, evaluation."""

from metaplastic.experiments.build import Pieces, build
from metaplastic.experiments.config import RunConfig, from_dict, load, override
from metaplastic.experiments.presets import PRESETS
from metaplastic.experiments.rundir import RunDir, load_theta, save_theta
from metaplastic.experiments.study import Study

__all__ = ["PRESETS", "Pieces", "RunConfig", "RunDir", "Study", "build", "from_dict", "load",
           "load_theta", "override", "save_theta"]
