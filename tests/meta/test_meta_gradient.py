import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError, NonFiniteError
from metaplastic.meta import driver

try:
    enable_x64 = jax.enable_x64
except AttributeError:  # older JAX
    from jax.experimental import enable_x64


def test_meta_gradient_matches_float64_finite_differences():
    with enable_x64(True):
        task = mp.tasks.make("pca", n_in=3, n_steps=30, scale_range=[0.5, 2.0])
        rule = mp.rules.make("polynomial", eta=0.05)
        obj = mp.Objective(task, mp.Network(sizes=(3, 1)), rule, tasks_per_step=2, l1=0.0)
        theta = {"coef": jnp.asarray(rule.coefficients("oja"), jnp.float64)
                 + 0.1 * jax.random.normal(jax.random.key(0), (3, 3, 3), jnp.float64)}
        key = jax.random.key(1)
        f = jax.jit(lambda c: obj({"coef": c}, key)[0])
        grad = np.asarray(jax.grad(f)(theta["coef"])).ravel()
        assert grad.dtype == np.float64
        c0, h = np.asarray(theta["coef"]), 1e-5
        fd = np.zeros(c0.size)
        for i in range(c0.size):
            e = np.zeros(c0.size)
            e[i] = h
            e = e.reshape(c0.shape)
            fd[i] = (float(f(c0 + e)) - float(f(c0 - e))) / (2 * h)
        rel = np.linalg.norm(grad - fd) / np.linalg.norm(fd)
        assert rel < 1e-4, rel


@pytest.fixture(scope="module")
def short_run(small_pca):
    _, _, rule, objective = small_pca
    outer = mp.MetaGradient(steps=150, lr=1e-2, schedule="cosine", chunk=50)
    return outer.run(objective, rule.init(jax.random.key(0)), key=jax.random.key(1))


def test_meta_training_moves_towards_oja(short_run, small_pca):
    # "it learns": from theta = 0, 150 steps already point the rule towards Oja's
    _, _, rule, _ = small_pca
    coef = np.asarray(short_run.theta["coef"])
    oja = rule.coefficients("oja")
    cos = float(coef.ravel() @ oja.ravel() / np.linalg.norm(coef) / np.linalg.norm(oja))
    assert cos > 0.8, rule.formula(short_run.theta)
    first = np.nanmean([r["task_loss"] for r in short_run.history[:10]])
    last = np.mean([r["task_loss"] for r in short_run.history[-10:]])
    assert last < 0.3 * first
    assert len(short_run.history) == 150 and short_run.history[-1]["step"] == 150


def test_same_seed_same_numbers(short_run, small_pca):
    _, _, rule, objective = small_pca
    outer = mp.MetaGradient(steps=150, lr=1e-2, schedule="cosine", chunk=50)
    again = outer.run(objective, rule.init(jax.random.key(0)), key=jax.random.key(1))
    np.testing.assert_array_equal(again.theta["coef"], short_run.theta["coef"])


def test_resume_from_state_continues_the_same_run(small_pca):
    _, _, rule, objective = small_pca
    theta0, key = rule.init(jax.random.key(0)), jax.random.key(2)
    full = mp.MetaGradient(steps=20, chunk=10).run(objective, theta0, key=key)
    half = mp.MetaGradient(steps=10, chunk=10).run(objective, theta0, key=key)
    rest = mp.MetaGradient(steps=20, chunk=10).run(objective, None, key=key, state=half.state)
    np.testing.assert_allclose(rest.theta["coef"], full.theta["coef"], rtol=1e-6)


def test_no_recompilation_between_chunks(small_pca):
    _, _, rule, objective = small_pca
    outer = mp.MetaGradient(steps=7, chunk=3)
    run_chunk = driver.chunk_fn(outer, objective)
    state = driver.init(outer, objective, rule.init(jax.random.key(0)), jax.random.key(0))
    total = jnp.asarray(outer.steps, jnp.int32)
    for _ in range(3):
        state, metrics = run_chunk(state, jax.random.key(0), total)
    assert run_chunk._cache_size() == 1
    # the last chunk ran past `steps`: the extra steps are inactive and change nothing
    assert int(state.step) == 7 and np.asarray(metrics["active"]).tolist() == [True, False, False]


def _exploding():
    # eta = 5 with Hebb's term makes the weights overflow within the inner loop
    task = mp.tasks.make("pca", n_in=4, n_steps=300)
    rule = mp.rules.make("polynomial", eta=5.0, start="hebb")
    return rule, mp.Objective(task, mp.Network(sizes=(4, 1)), rule, tasks_per_step=2)


def test_nan_steps_are_skipped_and_theta_stays_finite():
    rule, obj = _exploding()
    theta0 = rule.init(jax.random.key(0))
    res = mp.MetaGradient(steps=4, chunk=2, max_nan_skips=10).run(obj, theta0,
                                                                  key=jax.random.key(0))
    assert all(r["skipped"] for r in res.history)
    assert all(r["nonfinite"] > 0 for r in res.history)
    np.testing.assert_array_equal(res.theta["coef"], theta0["coef"])


def test_on_nan_stop_raises_with_partial_result():
    rule, obj = _exploding()
    with pytest.raises(NonFiniteError, match="meta-step 1 .*eta") as info:
        mp.MetaGradient(steps=10, chunk=5, on_nan="stop").run(obj, rule.init(jax.random.key(0)),
                                                              key=jax.random.key(0))
    res = info.value.result
    assert np.all(np.isfinite(res.theta["coef"])) and len(res.history) == 1


def test_too_many_nan_steps_in_a_row_stop_the_run():
    rule, obj = _exploding()
    with pytest.raises(NonFiniteError, match="3 meta-steps in a row diverged"):
        mp.MetaGradient(steps=10, chunk=3, max_nan_skips=3).run(
            obj, rule.init(jax.random.key(0)), key=jax.random.key(0))


def test_warmup_raises_the_step_size_linearly_then_follows_the_schedule():
    outer = mp.MetaGradient(steps=100, lr=0.01, schedule="cosine", warmup=10, optimizer="sgd",
                            clip=0)
    opt, theta = outer.transform(), {"x": jnp.zeros(())}
    state, sizes = opt.init(theta), []
    for _ in range(12):
        update, state = opt.update({"x": jnp.ones(())}, state)
        sizes.append(-float(update["x"]))
    np.testing.assert_allclose(sizes[:11], 0.001 + 0.0009 * np.arange(11), rtol=1e-4)
    assert 0.0099 < sizes[11] < 0.01  # then the cosine decay, over the other 90 steps
    # without warmup the transformation is the one it always was
    plain = mp.MetaGradient(steps=100, lr=0.01, schedule="cosine", optimizer="sgd", clip=0)
    update, _ = plain.transform().update({"x": jnp.ones(())}, plain.transform().init(theta))
    assert -float(update["x"]) == pytest.approx(0.01)


@pytest.mark.parametrize("kw, msg", [({"optimizer": "lion2"}, "unknown optimizer"),
                                     ({"warmup": 600}, "warmup"), ({"warmup": -1}, "warmup"),
                                     ({"on_nan": "ignore"}, "on_nan"),
                                     ({"steps": 0}, "steps"), ({"lr": 0.0}, "lr"),
                                     ({"schedule": "linear"}, "schedule")])
def test_bad_outer_loop_config(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        mp.MetaGradient(**kw)


def test_on_nan_rollback_does_not_hold_a_streak_across_a_new_truncation_length():
    """Every task explodes from θ0 on: with one truncation length the streak is rolled
    back (to step 0, where it explodes again) until the rollbacks are spent; with a new
    length after the first chunk (fresh inner problems) nothing is held across the
    switch, and the run stops as with "skip" instead of restoring an older length's
    state."""
    rule, obj = _exploding()
    kw = dict(steps=12, chunk=4, max_nan_skips=6, on_nan="rollback", truncation=100)
    with pytest.raises(NonFiniteError, match="from meta-step 1 on: .*max_rollbacks = 3"):
        mp.MetaGradient(**kw).run(obj, rule.init(jax.random.key(0)), key=jax.random.key(0),
                                  progress=False)
    with pytest.raises(NonFiniteError, match="from meta-step 1 on .*in a row diverged") as e:
        mp.MetaGradient(truncation_schedule=[[4, 150]], **kw).run(
            obj, rule.init(jax.random.key(0)), key=jax.random.key(0), progress=False)
    assert not e.value.result.rollbacks
    assert [r["truncation"] for r in e.value.result.history] == [100] * 4 + [150] * 4
