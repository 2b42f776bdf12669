"""The safeguards of meta-training (meta.guard): one definition of divergence, rollback
with the step size cut, keep-best θ, and the safeguards inside objective and network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError, NonFiniteError
from metaplastic.experiments.evaluate import summarise
from metaplastic.meta import driver
from metaplastic.meta.guard import Guard, episode_diverged
from metaplastic.meta.objective import WholeEpisodes, clip_losses


class Quadratic(WholeEpisodes):
    """0.5 · 3 · θ²: plain SGD with lr 1 multiplies θ by -2 every step (a finite blow-up);
    at a third of that step size it converges."""

    def __call__(self, theta, key):
        return 1.5 * jnp.sum(theta["x"] ** 2), {"nonfinite": jnp.zeros(())}

    def value_and_grad(self, theta, key):
        (value, aux), g = jax.value_and_grad(self, has_aux=True)(theta, key)
        return value, aux, g


quadratic = Quadratic()


SGD = mp.MetaGradient(steps=40, lr=1.0, optimizer="sgd", clip=0, chunk=10)
THETA0 = {"x": jnp.ones(3)}


def test_the_issue_blow_up_is_flagged_at_the_default_bounds():
    # the meta-loss of the issue: 1.1 at the start, 3.1e10 at meta-step 77 (finite)
    g, active = Guard(), jnp.asarray(True)
    state = g.init(THETA0)
    state, first = g.step(state, {"loss": 1.1, "grad_norm": 2.0, "w_max": 0.5}, active, 1.0)
    assert not first and np.allclose(state.ref, [1.1, 2.0, 0.5])
    for loss, flagged in ((1.5, False), (90.0, False), (3.1e10, True)):
        _, blown = g.step(state, {"loss": loss, "grad_norm": 2.0, "w_max": 0.5}, active, 1.0)
        assert bool(blown) == flagged, loss
    # gradient norm 4.8e13 and weights 1e4 x their start are blow-ups too
    assert bool(g.step(state, {"loss": 1.0, "grad_norm": 4.8e13, "w_max": 0.5}, active, 1.0)[1])
    assert bool(g.step(state, {"loss": 1.0, "grad_norm": 2.0, "w_max": 5e3}, active, 1.0)[1])
    # a maximising loop: a *drop* of its objective is the blow-up
    state_max, _ = g.step(g.init(THETA0), {"loss": 10.0}, active, -1.0)
    assert bool(g.step(state_max, {"loss": -5000.0}, active, -1.0)[1])
    assert not bool(g.step(state_max, {"loss": 5000.0}, active, -1.0)[1])


def test_a_start_of_zero_waits_for_the_first_positive_value():
    """Weights that all collapsed to 0 in the first meta-step gave a bound of 0 x 1000:
    any later weight flagged a blow-up (an ES search of spiking-homeostasis stopped at
    meta-step 5 on w_max 0.02)."""
    g, active = Guard(), jnp.asarray(True)
    state, blown = g.step(g.init(THETA0), {"loss": 0.0, "grad_norm": 0.0, "w_max": 0.0},
                          active, 1.0)
    assert not blown and float(state.ref[0]) == 0.0 and np.isnan(state.ref[1:]).all()
    state, blown = g.step(state, {"loss": 0.5, "grad_norm": 1.0, "w_max": 0.02}, active, 1.0)
    assert not blown and np.allclose(state.ref, [0.0, 1.0, 0.02])
    assert bool(g.step(state, {"loss": 0.5, "grad_norm": 1.0, "w_max": 30.0}, active, 1.0)[1])


def test_the_weights_start_is_never_below_the_initial_weights():
    """A first θ that shrank every weight to ~0 (spiking-homeostasis: w_max 2.3e-5 after
    learning, initial weights ~0.5) made ordinary weights of later steps (0.04) a blow-up
    and stopped searches: the start is the larger of w_max and the initial w0_max."""
    g, active = Guard(), jnp.asarray(True)
    first = {"loss": 1.0, "grad_norm": 1.0, "w_max": 2.3e-5, "w0_max": 0.5}
    state, blown = g.step(g.init(THETA0), first, active, 1.0)
    assert not blown and float(state.ref[2]) == pytest.approx(0.5)
    later = {"loss": 1.0, "grad_norm": 1.0, "w0_max": 0.5}
    assert not bool(g.step(state, {**later, "w_max": 0.04}, active, 1.0)[1])
    assert not bool(g.step(state, {**later, "w_max": 400.0}, active, 1.0)[1])
    assert bool(g.step(state, {**later, "w_max": 600.0}, active, 1.0)[1])  # > 1000 x 0.5
    # where learning grows the weights, the first w_max stays the start (bound unchanged)
    state, _ = g.step(g.init(THETA0), {**first, "w_max": 3.0}, active, 1.0)
    assert float(state.ref[2]) == pytest.approx(3.0)
    assert bool(g.step(state, {**later, "w_max": 3.1e3}, active, 1.0)[1])


def test_rollback_cuts_the_step_and_the_run_then_converges():
    result = SGD.run(quadratic, THETA0, key=jax.random.key(0))
    assert len(result.rollbacks) == 1, result.rollbacks
    event = result.rollbacks[0]
    assert event["back_to_step"] == 0 and "loss" in event["why"]
    assert event["step_size_scale"] == pytest.approx(0.3)
    assert int(result.state.step) == 40 and int(result.state.guard.rollbacks) == 1
    assert float(jnp.max(jnp.abs(result.theta["x"]))) < 1e-3  # converged at 0.3x
    assert not any(r["blowup"] for r in result.history)  # the undone chunk is not logged
    assert [r["step"] for r in result.history] == list(range(1, 41))


def test_spent_rollbacks_stop_the_run_as_diverged_with_the_last_good_theta():
    with pytest.raises(NonFiniteError, match="blew up at meta-step .*loss") as e:
        SGD.run(quadratic, THETA0, key=jax.random.key(0), guard=Guard(max_rollbacks=0))
    assert "max_rollbacks = 0" in str(e.value)
    result = e.value.result
    assert int(result.state.step) == 0 and bool(result.state.stopped)
    np.testing.assert_array_equal(result.theta["x"], THETA0["x"])
    assert any(r["blowup"] for r in result.history)  # the blow-up is in the metrics


def test_keep_best_returns_the_best_validated_theta():
    obj = mp.Objective(mp.tasks.make("pca", n_in=3, n_steps=30), mp.Network(sizes=(3, 1)),
                       mp.rules.make("polynomial", eta=0.05), tasks_per_step=2)
    outer = mp.MetaGradient(steps=30, lr=3e-2, chunk=10)
    theta0 = obj.rule.init(jax.random.key(0))
    plain = outer.run(obj, theta0, key=jax.random.key(1))
    best = outer.run(obj, theta0, key=jax.random.key(1), guard=Guard(keep_best=True))
    # the path is the same; only the θ returned differs
    for a, b in zip(jax.tree.leaves(plain.state.outer), jax.tree.leaves(best.state.outer),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    g = best.state.guard
    assert int(g.best_step) in (10, 20, 30)
    np.testing.assert_array_equal(best.theta["coef"], g.best_theta["coef"])
    value = driver.validate(obj, best.theta, jax.random.key(1), Guard().validation_batches)
    assert value == pytest.approx(float(g.best_value), rel=1e-6)


def test_the_guard_state_saves_and_an_older_checkpoint_still_loads():
    result = SGD.run(quadratic, THETA0, key=jax.random.key(0))
    like = driver.init(SGD, quadratic, THETA0, jax.random.key(0))
    arrays = driver.state_arrays(result.state)
    back = driver.state_from_arrays(like, arrays)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(result.state), strict=True):
        np.testing.assert_array_equal(a, b)
    n_guard = len(jax.tree.leaves(like.guard))
    old = {f"leaf_{i}": arrays[f"leaf_{i}"] for i in range(len(arrays) - n_guard)}
    loaded = driver.state_from_arrays(like, old)  # saved before the guard existed
    assert int(loaded.guard.rollbacks) == 0 and int(loaded.step) == 40


def test_task_loss_clip_is_continuous_and_keeps_direction():
    losses = jnp.array([1.0, 5.0, 50.0, jnp.nan])
    out = np.asarray(clip_losses(losses, 5.0))
    assert out[:2].tolist() == [1.0, 5.0]
    assert out[2] == pytest.approx(5.0 * (1 + np.log(10.0)))
    assert np.isnan(out[3])
    slope = jax.grad(lambda x: clip_losses(x, 5.0))(50.0)
    assert float(slope) == pytest.approx(0.1)  # c / L
    np.testing.assert_array_equal(clip_losses(losses, 0.0), losses)


def test_task_loss_clip_scales_each_task_gradient(small_pca):
    task, net, rule, _ = small_pca
    theta = {"coef": jnp.asarray(rule.coefficients("oja"))}
    key = jax.random.key(3)
    plain = mp.Objective(task, net, rule, tasks_per_step=2)
    loss, aux, g = plain.value_and_grad(theta, key)
    c = 0.5 * float(aux["task_loss"])  # at least one task's loss is above c
    clipped = mp.Objective(task, net, rule, tasks_per_step=2, task_loss_clip=c)
    loss_c, aux_c, g_c = clipped.value_and_grad(theta, key)
    assert float(aux_c["task_loss"]) == pytest.approx(float(aux["task_loss"]))  # unclipped
    assert float(loss_c) < float(loss)
    norm, norm_c = (float(jnp.linalg.norm(x["coef"])) for x in (g, g_c))
    assert norm_c < norm


def test_part_clip_bounds_every_part_gradient(small_pca):
    task, net, rule, _ = small_pca
    part = mp.Objective(task, net, rule, tasks_per_step=2)
    theta = {"coef": jnp.asarray(rule.coefficients("oja")) * 3}
    from metaplastic.meta.mixture import Mixture

    raw = Mixture((part, part), labels=("a", "b"))
    clip = Mixture((part, part), labels=("a", "b"), part_clip=1e-3)
    _, _, g = raw.value_and_grad(theta, jax.random.key(0))
    _, aux, gc = clip.value_and_grad(theta, jax.random.key(0))
    assert float(jnp.linalg.norm(g["coef"])) > 1e-3
    assert float(jnp.linalg.norm(gc["coef"])) <= 1e-3 * (1 + 1e-5)
    assert float(aux["grad_norm[a]"]) > 1e-3
    with pytest.raises(ConfigError, match="part_clip"):
        Mixture((part,), part_clip=-1.0)


def test_bounded_rule_outputs():
    net = mp.Network(sizes=(4, 3), update_bound_w=0.5, update_bound_init=1.0)
    w = jnp.array([[0.0, 1.0, -2.0, 0.1]] * 3)
    dw = jnp.array([[10.0, -10.0, 1e-4, 0.0]] * 3)
    out = np.asarray(net.bound_update(0, w, dw))
    bound = 0.5 * np.abs(np.asarray(w)) + 1.0 * net.weight_scale(0)
    assert np.all(np.abs(out) <= bound + 1e-7)
    assert out[0, 2] == pytest.approx(1e-4, rel=1e-3)  # small updates pass unchanged
    assert net.weight_scale(0) == pytest.approx(0.5)  # init_scale / sqrt(4)
    np.testing.assert_array_equal(mp.Network(sizes=(4, 3)).bound_update(0, w, dw), dw)
    with pytest.raises(ConfigError, match="update_bound_w"):
        mp.Network(sizes=(4, 3), update_bound_w=-1.0)


def test_evaluation_counts_a_finite_blow_up_as_diverged_and_keeps_its_score():
    per_task = {"loss": np.array([1.0, 2.0, np.inf, 3.0]),
                "w_max": np.array([1.0, 5e3, 1.0, 1.0]),
                "w0_max": np.ones(4), "accuracy": np.array([0.5, 0.1, 0.9, 0.3])}
    stats = summarise(per_task)
    assert stats["diverged"] == 2  # the inf one and the one whose weights grew 5000x
    assert stats["accuracy"]["mean"] == pytest.approx(0.3)  # finite tasks, blow-up kept
    assert bool(episode_diverged(jnp.asarray(1.0), jnp.asarray(2e3), jnp.asarray(1.0)))


def test_guard_options_are_checked():
    for bad in (dict(loss_bound=0), dict(max_rollbacks=-1), dict(rollback_lr=1.5),
                dict(validation_batches=0)):
        with pytest.raises(ConfigError):
            Guard(**bad)


def test_a_resumed_run_keeps_its_rollbacks_and_best_theta():
    # stopped after 10 meta-steps and resumed from the saved arrays: the same run
    guard = Guard(keep_best=True)
    whole = SGD.run(quadratic, THETA0, key=jax.random.key(0), guard=guard)
    short = mp.MetaGradient(steps=10, lr=1.0, optimizer="sgd", clip=0, chunk=10)
    first = short.run(quadratic, THETA0, key=jax.random.key(0), guard=guard)
    like = driver.init(SGD, quadratic, THETA0, jax.random.key(0))
    saved = driver.state_from_arrays(like, driver.state_arrays(first.state))
    rest = SGD.run(quadratic, THETA0, key=jax.random.key(0), guard=guard, state=saved)
    for a, b in zip(jax.tree.leaves(rest.state), jax.tree.leaves(whole.state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(rest.state.guard.rollbacks) == 1
    np.testing.assert_array_equal(rest.theta["x"], whole.theta["x"])


@pytest.mark.parametrize("preset", ["oja", "cartpole-hebbian"])
def test_evaluation_flags_the_finite_blow_ups_of_real_presets(preset):
    """The faults issue's two cases: Hebb on `oja` (a finite loss of ~1e12) and a Hebbian
    CartPole controller whose weights grow from ±0.1 by 100 per step are counted as
    diverged by the one definition; Oja's rule and a still controller are not."""
    from metaplastic import rules
    from metaplastic.experiments import build, config, presets
    from metaplastic.experiments.evaluate import evaluate

    cfg = presets.get(preset)
    if preset == "cartpole-hebbian":
        cfg = config.override(cfg, ["task.n_steps=50"])
    p = build(cfg)
    if preset == "oja":
        pairs = [(rules.make(n, eta=p.rule.eta), n == "hebb") for n in ("hebb", "oja")]
        cases = [(r, r.init(jax.random.key(0)), bad) for r, bad in pairs]
    else:
        zero = jax.tree.map(jnp.zeros_like, p.rule.init(jax.random.key(0), p.network.shapes))
        grow = tuple({**t, "D": jnp.full_like(t["D"], 100.0), "eta": jnp.ones_like(t["eta"])}
                     for t in zero)
        cases = [(p.rule, grow, True), (p.rule, zero, False)]
    for rule, theta, blows_up in cases:
        per_task = evaluate(mp.Objective(p.task, p.network, rule), theta,
                            key=jax.random.key(1), n_tasks=8)
        stats = summarise(per_task)
        assert np.all(np.isfinite(per_task["loss"]))  # finite: NaN checks alone miss it
        assert (stats["diverged"] >= 2) if blows_up else (stats["diverged"] == 0), rule


class Cliff(WholeEpisodes):
    """Two tasks, the first pulling θ towards 2, the second towards 0.5; the second
    diverges (its loss and gradient NaN, as an inner learning that blew up) wherever
    θ > 1. Together they have their minimum at 1.4 / 2.2 = 0.636. From θ = 0, SGD at lr 1
    jumps to 1.4 in one step and stays past 1 (the first task's gradient alone pulls it
    on); at 0.3 × that step size θ converges to 0.636 from below."""

    def __call__(self, theta, key):
        x = theta["x"]
        first = 0.1 * jnp.sum((x - 2.0) ** 2)
        second = jnp.where(jnp.all(x <= 1.0), jnp.sum((x - 0.5) ** 2), jnp.nan)
        nonfinite = (~jnp.isfinite(second)).astype(jnp.float32) / 2
        return first + jnp.nan_to_num(second, nan=0.0), {"nonfinite": nonfinite}

    def value_and_grad(self, theta, key):
        (value, aux), g = jax.value_and_grad(self, has_aux=True)(theta, key)
        return value, aux, g


def test_on_nan_rollback_undoes_a_streak_of_diverging_steps():
    cliff, theta0 = Cliff(), {"x": jnp.zeros(1)}
    kw = dict(steps=30, lr=1.0, optimizer="sgd", clip=0, chunk=10, max_nan_skips=5)
    with pytest.raises(NonFiniteError, match="meta-step 2 .*meta-steps in a row diverged"):
        mp.MetaGradient(**kw).run(cliff, theta0, key=jax.random.key(0))  # "skip": stops
    result = mp.MetaGradient(on_nan="rollback", **kw).run(cliff, theta0,
                                                          key=jax.random.key(0))
    assert len(result.rollbacks) == 1, result.rollbacks
    event = result.rollbacks[0]
    assert event["back_to_step"] == 0 and event["step_size_scale"] == pytest.approx(0.3)
    assert "50% of its tasks diverged" in event["why"] and "in a row" in event["why"]
    assert int(result.state.step) == 30 and not any(r["diverged"] for r in result.history)
    assert float(result.theta["x"][0]) == pytest.approx(1.4 / 2.2, abs=1e-3)
    # rollbacks spent: the run stops as diverged, saying what diverged
    with pytest.raises(NonFiniteError, match="NaN/inf from meta-step 2 on: 50% of its "
                                             "tasks diverged.*max_rollbacks = 0.*meta-step 0, "
                                             "where the last chunk"):
        mp.MetaGradient(on_nan="rollback", **kw).run(cliff, theta0, key=jax.random.key(0),
                                                     guard=Guard(max_rollbacks=0))


def test_on_nan_rollback_undoes_a_streak_that_began_chunks_earlier():
    """A streak that began in an earlier chunk (here at meta-step 2 of chunks of 4) is
    rolled back from where it began: the chunks since then were held back, reported and
    checkpointed never (a run that only skipped stopped 'at meta-step 5', the first
    diverged step of its last chunk, although the streak began at 2)."""
    cliff, theta0 = Cliff(), {"x": jnp.zeros(1)}
    kw = dict(steps=30, lr=1.0, optimizer="sgd", clip=0, chunk=4, max_nan_skips=5)
    with pytest.raises(NonFiniteError, match="from meta-step 2 on .*7 meta-steps in a row"):
        mp.MetaGradient(**kw).run(cliff, theta0, key=jax.random.key(0), progress=False)
    seen, saved = [], []
    result = mp.MetaGradient(on_nan="rollback", **kw).run(
        cliff, theta0, key=jax.random.key(0), progress=seen.extend,
        checkpoint=lambda s: saved.append(int(s.step)))
    (event,) = result.rollbacks
    assert event["at_step"] == 2 and event["back_to_step"] == 0
    assert "7 meta-steps in a row" in event["why"]
    # every step reported once, in order, none of the undone ones
    assert [r["step"] for r in seen] == list(range(1, 31))
    assert [r["step"] for r in result.history] == list(range(1, 31))
    assert not any(r["diverged"] for r in seen) and saved[0] == 0 and saved[-1] == 30
    assert float(result.theta["x"][0]) == pytest.approx(1.4 / 2.2, abs=1e-3)


class Band(WholeEpisodes):
    """θ moves from 0 towards 3; a second task diverges while 0.5 < θ < 0.9, which SGD at
    lr 0.1 crosses in two steps (θ = 0.58, 0.82): a short streak that ends by itself."""

    def __call__(self, theta, key):
        x = theta["x"]
        inside = jnp.any((x > 0.5) & (x < 0.9))
        second = jnp.where(inside, jnp.nan, 0.01 * jnp.sum((x - 3.0) ** 2))
        return (0.5 * jnp.sum((x - 3.0) ** 2) + jnp.nan_to_num(second, nan=0.0),
                {"nonfinite": inside.astype(jnp.float32) / 2})

    def value_and_grad(self, theta, key):
        (value, aux), g = jax.value_and_grad(self, has_aux=True)(theta, key)
        return value, aux, g


def test_on_nan_rollback_commits_a_short_streak_once_it_ends():
    seen, saved = [], []
    outer = mp.MetaGradient(on_nan="rollback", steps=9, lr=0.1, optimizer="sgd", clip=0,
                            chunk=3, max_nan_skips=5)
    result = outer.run(Band(), {"x": jnp.zeros(1)}, key=jax.random.key(0),
                       progress=seen.extend, checkpoint=lambda s: saved.append(int(s.step)))
    assert not result.rollbacks
    assert [r["step"] for r in seen] == list(range(1, 10))
    assert [r["step"] for r in seen if r["diverged"]] == [3, 4]
    assert saved == [6, 9]  # the chunk that ended inside the streak was held back
    skip = mp.MetaGradient(steps=9, lr=0.1, optimizer="sgd", clip=0, chunk=3,
                           max_nan_skips=5).run(Band(), {"x": jnp.zeros(1)},
                                                key=jax.random.key(0), progress=False)
    np.testing.assert_array_equal(result.theta["x"], skip.theta["x"])  # the same run
