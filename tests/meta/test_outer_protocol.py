"""Every registered outer loop implements one protocol (init / step / theta / restart) and
runs under the one driver; its whole state is a pytree of arrays that saves to .npz and
loads exactly, so a run resumes where it stopped — whole episodes and truncated."""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import registry
from metaplastic.meta import driver
from metaplastic.meta.es import strategy_names
from metaplastic.meta.outer import OuterLoop

#: small settings, each given to the loops that take the option (read from the registry)
SETTINGS = {"lr": 1e-2, "population": 4, "sigma": 0.05}
#: every outer loop the library registers (a test's own loops are not among them)
BUILT_IN = [n for n, e in registry.entries("outer").items()
            if e.cls.__module__.startswith("metaplastic.")]
SMALL = {n: {k: v for k, v in SETTINGS.items() if k in registry.options("outer", n)}
         for n in BUILT_IN}


@pytest.fixture(scope="module")
def tiny():
    task = mp.tasks.make("pca", n_in=3, n_steps=100)
    rule = mp.rules.make("polynomial", eta=0.03, degree=1)
    return rule, mp.Objective(task, mp.Network(sizes=(3, 1)), rule, tasks_per_step=2)


def test_the_protocol_is_run_for_every_built_in_loop():
    assert {"gradient", "es", "learned-es"} <= set(SMALL)
    assert all(SMALL.values())  # each takes at least one small setting


def _stop_save_resume(full, objective, theta0, key, path):
    """θ of an uninterrupted run, and of the same run stopped after its first chunk, its
    state saved to .npz, loaded and resumed: they must be bitwise equal."""
    whole = full.run(objective, theta0, key=key)
    run_chunk = driver.chunk_fn(full, objective, full.truncation_at(0))
    half, _ = run_chunk(driver.init(full, objective, theta0, key), key,
                        jnp.asarray(full.steps, jnp.int32))
    assert run_chunk._cache_size() == 1  # one program for every chunk of a run
    assert int(half.step) == full.chunk
    np.savez(path, **driver.state_arrays(half))
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    state = driver.state_from_arrays(driver.init(full, objective, theta0, key), arrays)
    rest = full.run(objective, None, key=key, state=state)
    assert [r["step"] for r in rest.history] == list(range(full.chunk + 1, full.steps + 1))
    for a, b in zip(jax.tree.leaves(rest.theta), jax.tree.leaves(whole.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    return whole


@pytest.mark.parametrize("truncation", [0, 50], ids=["whole", "truncated"])
@pytest.mark.parametrize("name", list(SMALL))
def test_protocol_state_saves_and_resumes_exactly(name, truncation, tiny, tmp_path):
    rule, objective = tiny
    full = registry.make("outer", name, steps=4, chunk=2, truncation=truncation, **SMALL[name])
    assert isinstance(full, OuterLoop)
    for method in ("init", "step", "theta", "restart"):
        assert callable(getattr(full, method))
    whole = _stop_save_resume(full, objective, rule.init(jax.random.key(0)),
                              jax.random.key(5), tmp_path / "state.npz")
    assert [r["step"] for r in whole.history] == [1, 2, 3, 4]
    assert all(("truncation" in r) == bool(truncation) for r in whole.history)


@pytest.mark.parametrize("options", [{"checkpoint": True}, {"grad_mode": "forward"}],
                         ids=["jax.checkpoint", "forward-mode"])
def test_meta_gradients_resume_exactly_with_checkpointing_or_forward_mode(options, tiny,
                                                                         tmp_path):
    rule, objective = tiny
    objective = dataclasses.replace(objective, **options)
    _stop_save_resume(mp.MetaGradient(steps=4, chunk=2, lr=1e-2), objective,
                      rule.init(jax.random.key(0)), jax.random.key(5), tmp_path / "s.npz")


def test_a_saved_state_of_another_shape_is_refused(tiny):
    rule, objective = tiny
    outer = mp.MetaGradient(steps=1)
    state = driver.init(outer, objective, rule.init(jax.random.key(0)), jax.random.key(0))
    arrays = driver.state_arrays(state)
    arrays["leaf_0"] = np.zeros((5,), np.int32)
    with pytest.raises(ValueError, match="saved state array 0"):
        driver.state_from_arrays(state, arrays)


@pytest.mark.tier2
@pytest.mark.parametrize("strategy", strategy_names())
def test_every_strategy_the_cli_accepts_resumes_exactly(strategy, tmp_path):
    """Each evosax algorithm the CLI accepts runs under the driver, and a run stopped
    after its first chunk and resumed from its saved state ends at the same θ, bitwise."""
    persistent = strategy in ("pes", "persistent_es", "PersistentES")
    es = mp.meta.EvolutionStrategy(strategy=strategy, population=8, steps=4, chunk=2,
                                   sigma=0.1, truncation=5 if persistent else 0)
    if persistent:  # needs an inner problem in segments
        rule = mp.rules.make("polynomial", degree=1)
        task = mp.tasks.make("pca", n_in=3, n_steps=20)
        objective = mp.Objective(task, mp.Network(sizes=(3, 1)), rule, tasks_per_step=2)
        theta0 = rule.init(jax.random.key(0))
    else:
        objective = driver.as_objective(lambda th, k: ((th["x"] - 1.0) ** 2).sum())
        theta0 = {"x": np.zeros(3, np.float32)}
    whole = _stop_save_resume(es, objective, theta0, jax.random.key(0), tmp_path / "s.npz")
    assert len(whole.history) == 4
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(whole.theta))


@dataclasses.dataclass(frozen=True)
class HillClimb(OuterLoop):
    """A user's outer loop: keep a random perturbation of θ when it lowers the loss."""

    steps: int = 10
    chunk: int = 5
    max_nan_skips: int = 20
    step_size: float = 0.05

    class State(NamedTuple):
        theta: dict
        best: jax.Array

    def init(self, objective, theta0, key):
        return self.State(theta0, jnp.asarray(jnp.inf, jnp.float32))

    def theta(self, state):
        return state.theta

    def step(self, objective, state, key, t):
        k_try, k_eval = jax.random.split(jax.random.fold_in(key, t))
        leaves, tree = jax.tree.flatten(state.theta)
        noise = [self.step_size * jax.random.normal(k, x.shape)
                 for k, x in zip(jax.random.split(k_try, len(leaves)), leaves, strict=True)]
        trial = jax.tree.unflatten(tree, [x + n for x, n in zip(leaves, noise, strict=True)])
        value, aux, _ = objective.step_value(trial, k_eval, ())
        better = jnp.isfinite(value) & (value < state.best)
        new = self.State(jax.tree.map(lambda a, b: jnp.where(better, a, b), trial, state.theta),
                         jnp.where(better, value, state.best))
        return new, {"loss": value, "diverged": ~jnp.isfinite(value), "skipped": ~better}


def test_a_user_outer_loop_is_first_class(tiny):
    from metaplastic.experiments import config, presets
    from metaplastic.experiments.build import build

    rule, objective = tiny
    mp.register_outer("test-hill", HillClimb)
    try:
        cfg = config.override(presets.get("oja"), ['meta.outer="test-hill"',
                                                   "meta.step_size=0.1", "meta.steps=6"])
        outer = build(cfg).outer
        assert isinstance(outer, HillClimb) and outer.step_size == 0.1
        res = outer.run(objective, rule.init(jax.random.key(0)), key=jax.random.key(1))
        assert [r["step"] for r in res.history] == list(range(1, 7))
        losses = [r["loss"] for r in res.history]
        assert np.isfinite(losses).all()
        with pytest.raises(mp.ConfigError, match="unknown option.*'stepsize'"):
            config.override(cfg, ["meta.stepsize=1"])
    finally:
        registry._REGISTRIES["outer"].pop("test-hill")
