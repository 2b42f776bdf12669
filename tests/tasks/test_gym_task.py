import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError
from metaplastic.tasks.gym import ENVS


def _manual_return(task, params, weights, key, steps=None):
    """Step gymnax by hand with the documented key scheme and an argmax policy on the
    observation flattened row-major; ``steps`` (a list) gets the episode's length."""
    env, _ = gymnax.make(task.env)
    k_reset, k = jax.random.split(jax.random.fold_in(key, 0x5EED))
    obs, state = env.reset_env(k_reset, params)
    total = 0.0
    n = 0
    for _ in range(task.n_steps):
        y = jnp.ravel(obs).astype(jnp.float32)
        n += 1
        for w in weights:
            y = w @ y
        k, k_step = jax.random.split(k)
        obs, state, r, done, _ = env.step_env(k_step, state, int(jnp.argmax(y)), params)
        total += float(r)
        if bool(done):
            break
    if steps is not None:
        steps.append(n)
    return total


def test_hand_set_policy_returns_what_stepping_gymnax_by_hand_returns():
    task = mp.tasks.make("cartpole", n_steps=200)
    net = mp.Network(sizes=(4, 2))
    rule = mp.rules.make("static")
    # push left when the pole falls left: a decent hand-made controller
    w = jnp.array([[0.0, 0.0, -1.0, -0.5], [0.0, 0.0, 1.0, 0.5]])
    theta = {"w": (w,)}
    params = task.sample(jax.random.key(0))
    key = jax.random.key(7)
    out = mp.unroll(net, rule, theta, task, params, key=key)
    expected = _manual_return(task, params, [w], key)
    assert float(out.env.ret) == pytest.approx(expected)
    assert expected > 50  # the controller does something: the comparison is not trivial
    assert int(out.env.steps) == int(expected)  # +1 per step in CartPole


def test_image_observations_are_flattened_row_major():
    """MinAtar's 10x10x4 Breakout screen: 400 inputs, and the episode is exactly the one
    a policy on the row-major flattened screen plays by hand."""
    task = mp.tasks.make("gym", env="Breakout-MinAtar", n_steps=100)
    assert (task.n_in, task.n_out) == (400, 3)
    net = mp.Network(sizes=(400, 3))
    w = jax.random.normal(jax.random.key(3), (3, 400))
    params = task.sample(jax.random.key(0))
    key = jax.random.key(11)
    out = mp.unroll(net, mp.rules.make("static"), {"w": (w,)}, task, params, key=key)
    steps = []
    expected = _manual_return(task, params, [w], key, steps)
    assert float(out.env.ret) == pytest.approx(expected)
    assert int(out.env.steps) == steps[0] > 5


def test_plasticity_stops_when_the_episode_ends():
    task = mp.tasks.make("cartpole", n_steps=300)
    net = mp.Network(sizes=(4, 2))
    rule = mp.rules.make("abcd", shared=True)
    theta = ({"A": 0.0, "B": 0.0, "C": 0.0, "D": 1.0, "eta": 0.01},)  # dw = 0.01 every step
    theta = jax.tree.map(jnp.asarray, theta)
    params = task.sample(jax.random.key(0))
    out = mp.unroll(net, rule, theta, task, params, key=jax.random.key(1))
    w0 = net.init(jax.random.key(1)).weights[0]
    steps = int(out.env.steps)
    assert steps < 300 and bool(out.env.done)
    np.testing.assert_allclose(out.state.weights[0] - w0, 0.01 * steps, rtol=1e-4)


def test_physics_ranges_are_sampled_and_derived_parameters_follow():
    task = mp.tasks.make("cartpole", ranges={"length": [0.3, 0.7], "masspole": [0.05, 0.2]},
                         params={"gravity": 11.0})
    ps = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 200))
    length, mp_, = np.asarray(ps.length), np.asarray(ps.masspole)
    assert length.min() >= 0.3 and length.max() <= 0.7 and length.std() > 0.05
    np.testing.assert_allclose(ps.polemass_length, mp_ * length, rtol=1e-6)
    np.testing.assert_allclose(ps.total_mass, 1.0 + mp_, rtol=1e-6)
    assert np.all(np.asarray(ps.gravity) == 11.0)


@pytest.mark.parametrize("env", ENVS)
def test_every_environment_runs_an_episode(env):
    task = mp.tasks.make("gym", env=env, n_steps=20)
    net = mp.Network(sizes=(task.n_in, 8, task.n_out), activation="tanh")
    obj = mp.Objective(task, net, mp.rules.make("abcd"), tasks_per_step=2)
    theta = obj.rule.init(jax.random.key(0), net.shapes)
    loss, aux = obj(theta, jax.random.key(1))
    assert np.isfinite(float(loss)) and float(loss) == pytest.approx(-float(aux["return"]))
    assert 0 < float(aux["length"]) <= 20


def test_continuous_actions_map_onto_the_bounds():
    task = mp.tasks.make("pendulum")
    assert not task.discrete and task.n_out == 1
    np.testing.assert_allclose(task.action(jnp.array([-5.0])), [-2.0])
    np.testing.assert_allclose(task.action(jnp.array([0.5])), [1.0])
    assert mp.tasks.make("acrobot").n_out == 3


@pytest.mark.parametrize("kw, msg", [
    ({"ranges": {"lenght": [0.1, 0.2]}}, "no physics parameter"),
    ({"ranges": {"length": [0.5, 0.1]}}, "low <= high"),
    ({"params": {"colour": 1.0}}, "no physics parameter"),
    ({"n_steps": -3}, "n_steps"),
])
def test_bad_gym_options(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        mp.tasks.make("cartpole", **kw)


def test_unknown_environment():
    with pytest.raises(ConfigError, match="unknown gymnax environment"):
        mp.tasks.make("gym", env="CartPole-v9")


def test_network_must_fit_the_environment():
    task = mp.tasks.make("cartpole")
    with pytest.raises(ConfigError, match="needs a network 4 -> ... -> 2"):
        mp.Objective(task, mp.Network(sizes=(4, 3)), mp.rules.make("abcd"))
