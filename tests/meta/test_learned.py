"""The learned evolution strategy: gradient-free deployment, invariances, the shipped φ,
meta-meta training by backprop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError
from metaplastic.errors import GradientRequested
from metaplastic.meta import metameta, selection
from metaplastic.meta.outer import measure_kind
from metaplastic.meta.segments import RefusesGradients

TARGET = jnp.array([3.0, -1.0, 0.5, 2.0])


def _sq(theta, key):
    return jnp.sum((theta["x"] - TARGET) ** 2)


def test_refuses_gradients_blocks_every_derivative(small_pca, oja_theta):
    *_, objective = small_pca
    wrapped = RefusesGradients(objective)
    key = jax.random.key(0)
    value, _ = wrapped(oja_theta, key)  # values pass
    assert np.isclose(float(value), float(objective(oja_theta, key)[0]))
    with pytest.raises(GradientRequested):
        jax.grad(lambda th: wrapped(th, key)[0])(oja_theta)
    with pytest.raises(GradientRequested):
        jax.jvp(lambda th: wrapped(th, key)[0], (oja_theta,), (oja_theta,))
    with pytest.raises(GradientRequested):
        wrapped.step_grad(oja_theta, key, ())
    with pytest.raises(GradientRequested):  # the gradient loop, on the same wrapper
        mp.meta.MetaGradient(steps=1, chunk=1).run(wrapped, oja_theta, key=key)


def test_learned_es_searches_a_rule_seeing_only_values(small_pca):
    """Deployment is gradient-free: the learned ES runs on an objective that raises if
    anything differentiates it, and the search still improves the rule."""
    _, net, rule, objective = small_pca
    theta0 = rule.init(jax.random.key(0), net.shapes)
    es = mp.meta.LearnedES(population=8, steps=30, sigma=0.1, chunk=10)
    res = es.run(RefusesGradients(objective), theta0, key=jax.random.key(1))
    losses = np.array([r["loss"] for r in res.history])
    skipped = np.array([r["skipped"] for r in res.history], bool)
    assert len(losses) == 30 and np.all(np.isfinite(losses[~skipped])) and skipped.sum() < 5
    assert np.nanmean(losses[-5:]) < 0.8 * np.nanmean(losses[:3])
    kind, evidence = measure_kind(es, objective, theta0, jax.random.key(0))
    assert kind == "learned-evolutionary" and "no derivative" in evidence


def test_measured_kinds(small_pca):
    _, net, rule, objective = small_pca
    theta0 = rule.init(jax.random.key(0), net.shapes)
    key = jax.random.key(0)
    assert measure_kind(mp.meta.MetaGradient(steps=1), objective, theta0, key)[0] == "gradient"
    assert measure_kind(mp.meta.EvolutionStrategy(population=4, steps=1), objective, theta0,
                        key)[0] == "evolutionary"


def test_shipped_phi_solves_a_quadratic():
    es = mp.meta.LearnedES(population=16, steps=100, sigma=0.5, chunk=50)
    res = es.run(_sq, {"x": jnp.zeros(4)}, key=jax.random.key(0))
    assert res.history[-1]["loss"] < 1e-3 * res.history[0]["loss"]
    np.testing.assert_allclose(res.theta["x"], TARGET, atol=0.05)


def test_direction_is_honoured():
    neg = lambda th, k: -_sq(th, k)  # noqa: E731
    es = mp.meta.LearnedES(population=16, steps=60, sigma=0.5, chunk=30, direction="maximize")
    res = es.run(neg, {"x": jnp.zeros(4)}, key=jax.random.key(2))
    assert float(jnp.linalg.norm(res.theta["x"] - TARGET)) < 0.1
    assert res.history[-1]["pop_best"] <= 0


def test_diverging_members_get_the_worst_fitness():
    def f(theta, key):
        x = theta["x"]
        return jnp.where(x[0] > 0.7, jnp.nan, jnp.sum((x - 0.5) ** 2))

    es = mp.meta.LearnedES(population=8, steps=20, sigma=1.0, chunk=10)
    res = es.run(f, {"x": jnp.zeros(3)}, key=jax.random.key(3))
    assert np.all(np.isfinite(np.asarray(res.theta["x"])))
    assert any(r["pop_nonfinite"] > 0 for r in res.history)
    assert res.history[-1]["loss"] < 0.1


def test_selection_is_invariant_to_fitness_scale_and_permutation():
    phi = selection.load_phi()
    f = jax.random.normal(jax.random.key(0), (12,))
    w = selection.recombination_weights(phi, f)
    np.testing.assert_allclose(np.sum(w), 1.0, rtol=1e-6)
    assert np.all(np.asarray(w) >= 0) and int(jnp.argmax(w)) == int(jnp.argmin(f))
    np.testing.assert_allclose(selection.recombination_weights(phi, 7.0 * f - 3.0), w,
                               rtol=1e-5)
    perm = jax.random.permutation(jax.random.key(1), 12)
    np.testing.assert_allclose(selection.recombination_weights(phi, f[perm]), w[perm],
                               rtol=1e-5)


def test_variation_is_per_dimension():
    """Adding dimensions does not change what happens in the others, except through the
    population-wide path lengths (equal here: the new dimensions copy the old)."""
    phi = selection.load_phi()
    eps = selection.perturbations(jax.random.key(0), 8, 3)
    fit = jnp.sum(eps, axis=1)
    s3 = selection.init_search(3, 0.2)
    m3, n3, _ = selection.update(phi, s3, jnp.zeros(3), eps, fit, jnp.float32(0.1))
    eps6 = jnp.concatenate([eps, eps], axis=1)
    m6, n6, _ = selection.update(phi, selection.init_search(6, 0.2), jnp.zeros(6), eps6, fit,
                                 jnp.float32(0.1))
    np.testing.assert_allclose(m6[:3], m3, rtol=1e-5)
    np.testing.assert_allclose(n6.log_sigma[:3], n3.log_sigma, rtol=1e-5)


def test_phi_files(tmp_path):
    phi = selection.init_phi(jax.random.key(0), hidden=4)
    selection.save_phi(tmp_path / "phi.npz", phi)
    back = selection.load_phi(tmp_path / "phi.npz")
    assert all(np.array_equal(back[k], phi[k]) for k in phi)
    with pytest.raises(ConfigError, match="does not exist"):
        selection.load_phi(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(ConfigError, match="a damaged .npz archive"):
        selection.load_phi(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", member_gain=np.zeros(2))
    with pytest.raises(ConfigError, match="missing"):
        selection.load_phi(tmp_path / "short.npz")
    np.savez(tmp_path / "shape.npz", **{**{k: np.asarray(v) for k, v in phi.items()},
                                        "dim_w2": np.zeros((4, 2))})
    with pytest.raises(ConfigError, match="dim_w2"):
        selection.load_phi(tmp_path / "shape.npz")
    with pytest.raises(ConfigError, match="does not exist"):
        mp.meta.LearnedES(phi=str(tmp_path / "nope.npz"))
    for bad in (dict(population=3), dict(population=1, antithetic=False), dict(sigma=0.0),
                dict(direction="up"), dict(steps=0)):
        with pytest.raises(ConfigError):
            mp.meta.LearnedES(**bad)


@pytest.fixture(scope="module")
def tiny_meta_meta():
    return metameta.SelectionObjective(
        problems=({"name": "quadratic", "dim": 3, "population": 6, "instances": 4},
                  {"name": "delta-rule", "n_in": 3, "n_out": 2, "inner_steps": 5,
                   "tasks": 2, "population": 6, "instances": 2}),
        generations=8)


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_meta_meta_gradient_reaches_phi_and_training_helps(tiny_meta_meta):
    """Backprop through unrolled generations: φ's gradient is finite and non-zero in
    both networks, and a few Adam steps lower the loss on fresh problem draws."""
    phi0 = selection.init_phi(jax.random.key(0), hidden=4)
    value, aux, grads = jax.jit(tiny_meta_meta.value_and_grad)(phi0, jax.random.key(1))
    assert np.isfinite(float(value)) and aux["nonfinite"] == 0
    for k in ("member_w2", "dim_w2", "member_gain"):
        assert 0 < float(jnp.linalg.norm(grads[k])) < np.inf, k
    res = mp.meta.MetaGradient(steps=40, lr=1e-2, chunk=20).run(
        tiny_meta_meta, phi0, key=jax.random.key(2))
    f = jax.jit(lambda p, k: tiny_meta_meta(p, k)[0])
    before = np.mean([float(f(phi0, jax.random.key(100 + s))) for s in range(6)])
    after = np.mean([float(f(res.theta, jax.random.key(100 + s))) for s in range(6)])
    assert after < before - 0.1


def test_meta_meta_problems_are_checked():
    with pytest.raises(ConfigError, match="unknown training problem"):
        metameta.SelectionObjective(problems=({"name": "sphere"},))
    with pytest.raises(ConfigError, match="population must be even"):
        metameta.SelectionObjective(problems=({"name": "quadratic", "dim": 2,
                                               "population": 5},))
    with pytest.raises(ConfigError, match="quadratic"):
        metameta.SelectionObjective(problems=({"name": "quadratic", "size": 2},))
    with pytest.raises(ConfigError):
        metameta.SelectionObjective(generations=0)


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_meta_meta_memory_is_bounded_by_recomputing_generations():
    """XLA's buffer plan for the meta-meta gradient: with generations recomputed in the
    backward pass only the carried state is kept per generation; without, every
    generation's intermediates are (memory ~linear in generations)."""
    phi = selection.init_phi(jax.random.key(0), hidden=4)

    def temp(generations, remat):
        obj = metameta.SelectionObjective(
            problems=({"name": "quadratic", "dim": 32, "population": 16, "instances": 1},),
            generations=generations, remat=remat)
        compiled = jax.jit(obj.value_and_grad).lower(phi, jax.random.key(0)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    short, long = temp(10, True), temp(40, True)
    stored_short, stored_long = temp(10, False), temp(40, False)
    # bytes kept per generation: the carried state only, against every intermediate
    assert (long - short) < (stored_long - stored_short) / 8
    assert stored_long > 3 * stored_short and long < stored_long / 5


def test_sigma_floor_holds_the_scale_and_only_that():
    """With a floor, no dimension's scale goes below floor x σ0; above it the network's
    decision stands (the same update as without the floor)."""
    phi = selection.load_phi()
    eps = selection.perturbations(jax.random.key(0), 8, 5)
    fit = jnp.sum(eps ** 2, axis=1)
    s = selection.init_search(5, 0.2)
    s = s._replace(log_sigma=s.log_sigma.at[0].set(jnp.log(0.2 * 0.31)))  # just above
    free = selection.update(phi, s, jnp.zeros(5), eps, fit, jnp.float32(0.5))
    held = selection.update(phi, s, jnp.zeros(5), eps, fit, jnp.float32(0.5), 0.3)
    np.testing.assert_allclose(held[0], free[0])  # the mean moves the same
    floor = np.log(0.2 * 0.3)
    assert np.all(np.asarray(held[1].log_sigma) >= floor - 1e-6)
    above = np.asarray(free[1].log_sigma) >= floor
    np.testing.assert_allclose(np.asarray(held[1].log_sigma)[above],
                               np.asarray(free[1].log_sigma)[above])
    assert not above.all()  # the case is exercised: some dimension was held
    # deployed: on a sphere the scale shrinks freely but stops at the floor
    es = mp.meta.LearnedES(population=16, steps=60, sigma=0.5, chunk=30, sigma_floor=0.1)
    res = es.run(_sq, {"x": jnp.zeros(4)}, key=jax.random.key(0))
    assert 0.05 * 0.99 <= res.history[-1]["es_sigma"] <= 0.06
    with pytest.raises(ConfigError, match="sigma_floor"):
        mp.meta.LearnedES(sigma_floor=1.5)


def test_late_weighting_counts_later_generations_more():
    """``weighting = "late"`` weighs generation t by t: the loss equals the t-weighted
    mean of the search curves (recomputed here from the same draws), which differs from
    the uniform mean of the same curves."""
    spec = {"name": "quadratic", "dim": 3, "population": 6, "instances": 2}
    late = metameta.SelectionObjective(problems=(spec,), generations=8, weighting="late")
    uniform = metameta.SelectionObjective(problems=(spec,), generations=8)
    phi = selection.init_phi(jax.random.key(0), hidden=4)
    key = jax.random.key(7)
    problem, pop, inst = late._made[0]
    k_params, k_run = jax.random.split(jax.random.fold_in(key, 0))
    params = jax.vmap(problem.sample)(jax.random.split(k_params, inst))
    w = np.arange(1, 9)
    weighted, plain = [], []
    for j, k in enumerate(jax.random.split(k_run, inst)):
        p = jax.tree.map(lambda x, j=j: x[j], params)
        curve, f0 = metameta.search_curve(phi, problem, p, k, population=pop,
                                          generations=8, sigma_range=late.sigma_range)
        logs = np.log(np.maximum(np.asarray(curve) / float(f0), late.floor))
        weighted.append(np.sum(w * logs) / w.sum())
        plain.append(np.mean(logs))
    np.testing.assert_allclose(float(late(phi, key)[0]), np.mean(weighted), rtol=1e-4)
    np.testing.assert_allclose(float(uniform(phi, key)[0]), np.mean(plain), rtol=1e-4)
    assert abs(np.mean(weighted) - np.mean(plain)) > 1e-3
    with pytest.raises(ConfigError, match="weighting"):
        metameta.SelectionObjective(weighting="end")
    # the unrolled searches run with the deployed floor when one is set (the shipped φ
    # shrinks the scale; φ at initialisation leaves it)
    floored = metameta.SelectionObjective(problems=(spec,), generations=8, sigma_floor=0.9)
    shipped = selection.load_phi()
    v = float(floored(shipped, key)[0])
    assert np.isfinite(v) and abs(v - float(uniform(shipped, key)[0])) > 1e-4
    with pytest.raises(ConfigError, match="sigma_floor"):
        metameta.SelectionObjective(sigma_floor=1.0)
