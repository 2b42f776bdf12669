"""The mujoco task family (optional MuJoCo Playground): make test-mujoco."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.errors import ConfigError
from metaplastic.inner import unroll

pytestmark = pytest.mark.mujoco
STEPS = 30


def test_an_episode_is_the_environment_stepped_by_hand():
    from mujoco_playground import registry

    task = mp.tasks.make("mujoco", env="CartpoleBalance", n_steps=STEPS)
    assert (task.n_in, task.n_out) == (5, 1)
    net = mp.Network(sizes=(5, 1), activation="tanh")
    rule = mp.rules.make("static")
    theta = {"w": (jnp.full((1, 5), 0.3),)}
    key = jax.random.key(2)
    out = unroll(net, rule, theta, task, task.sample(key), key=key)
    # by hand: the same reset key, the action tanh(0.3 * sum(obs)) each step
    env = registry.load("CartpoleBalance", config_overrides={"impl": "jax"})
    k_reset = jax.random.split(jax.random.fold_in(key, 0x5EED))[0]
    state, ret = env.reset(k_reset), 0.0
    for _ in range(STEPS):
        state = env.step(state, jnp.tanh(0.3 * jnp.sum(state.obs))[None])
        ret += float(state.reward)
    np.testing.assert_allclose(float(out.env.ret), ret, rtol=1e-5)
    assert 0 < ret <= STEPS and int(out.env.steps) == STEPS


def test_a_preset_runs_on_a_mujoco_environment(tmp_path):
    from metaplastic.cli import main

    assert main(["run", "cartpole-hebbian", "--set", "task.name=mujoco", "--set",
                 "task.env=CartpoleBalance", "--set", f"task.n_steps={STEPS}", "--set",
                 "meta.steps=2", "--set", "meta.population=4", "--set", "meta.chunk=2",
                 "--set", "eval.tasks=3", "--set", "eval.variants=[]",
                 "--out", str(tmp_path)]) == 0
    import json

    (run,) = list(tmp_path.iterdir())
    (row,) = json.loads((run / "eval.json").read_text())["rows"]
    assert row["tasks"] == 3 and 0 < row["return"]["mean"] <= STEPS


def test_unknown_environments_and_sizes_are_one_message():
    with pytest.raises(ConfigError, match="CartpoleSwingup"):
        mp.tasks.make("mujoco", env="Cartpole")
    with pytest.raises(ConfigError, match="n_steps"):
        mp.tasks.make("mujoco", env="CartpoleBalance", n_steps=-3)
