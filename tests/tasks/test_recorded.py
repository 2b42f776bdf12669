"""Recordings as a task: replaying clean recordings with the true rule reproduces them;
masks, lengths and bad files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.analysis.simulate import simulate
from metaplastic.errors import ConfigError
from metaplastic.meta.objective import Objective

STEPS, N = 120, 6


@pytest.fixture(scope="module")
def truth():
    source = mp.tasks.make("pca", n_in=5, n_steps=STEPS, scale_range=[0.5, 2.0])
    net = mp.Network(sizes=(5, 3))
    oja = mp.rules.make("oja", eta=0.02)
    return net, oja, oja.init(jax.random.key(0), net.shapes), source


def _write(tmp_path, data, name="rec.npz"):
    path = tmp_path / name
    np.savez(path, **data)
    return str(path)


def _losses(path, net, rule, theta, **kw):
    task = mp.tasks.make("recorded", path=path, split="all", **kw)
    objective = Objective(task, net, rule, tasks_per_step=N)
    keys = jax.random.split(jax.random.key(1), N)
    out = jax.jit(jax.vmap(lambda i, k: _one(objective, task, theta, i, k)))(np.arange(N),
                                                                            keys)
    return [np.asarray(v) for v in out]


def _one(objective, task, theta, i, key):
    from metaplastic.inner import unroll

    instance = task.instance(i)
    out = unroll(objective.network, objective.rule, theta, task, instance, key=key)
    return (task.loss(instance, out.state, out.env),
            task.metrics(instance, out.state, out.env)["r2"])


def test_the_true_rule_replays_clean_recordings_exactly(tmp_path, truth):
    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3))
    assert data["activity"].shape == (N, STEPS, 3) and data["w0_1"].shape == (N, 3, 5)
    path = _write(tmp_path, data)
    loss, r2 = _losses(path, net, oja, theta)
    np.testing.assert_allclose(r2, 1.0, atol=1e-5)
    assert np.all(loss < 1e-5)
    # another rule does not: Hebb's grows the weights away from the recordings
    hebb = mp.rules.make("hebb", eta=0.02)
    loss_h, r2_h = _losses(path, net, hebb, hebb.init(jax.random.key(0), net.shapes))
    assert np.all(loss_h > 100 * loss.max() + 1e-3) and np.all(r2_h < 0.999)


def test_noise_and_recording_masks(tmp_path, truth):
    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3), record=0.34, noise=0.1)
    mask = data["activity_mask"]
    assert np.all(mask.sum(axis=2) == 1)  # one of three neurons, the same at every step
    assert np.all(mask.std(axis=1) == 0)
    clean = simulate(net, oja, theta, source, N, jax.random.key(3))["activity"]
    rel = np.std(data["activity"] - clean) / np.std(clean)
    assert 0.08 < rel < 0.12
    loss, r2 = _losses(_write(tmp_path, data), net, oja, theta)
    assert np.all((r2 > 0.9) & (r2 < 1.0))  # the noise is all that is left


def test_steps_after_a_trajectory_ends_do_not_count(tmp_path, truth):
    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3))
    data["activity"][:, STEPS // 2:] += 50.0  # garbage after the end
    data["lengths"] = np.full(N, STEPS // 2)
    loss, r2 = _losses(_write(tmp_path, data), net, oja, theta)
    assert np.all(loss < 1e-5)


def test_burn_in_steps_are_learned_from_but_not_compared(tmp_path, truth):
    """Garbage in the first ``burn_in`` steps' activity costs nothing; the weights still
    learn through them (the replay from the recorded start is exact afterwards)."""
    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3))
    data["activity"][:, :10] += 50.0
    path = _write(tmp_path, data, "burn.npz")
    loss, _ = _losses(path, net, oja, theta, burn_in=10)
    assert np.all(loss < 1e-5)
    loss0, _ = _losses(path, net, oja, theta)
    assert np.all(loss0 > 1.0)
    for bad in (-1, STEPS, 2.5):
        with pytest.raises(ConfigError, match="burn_in"):
            mp.tasks.make("recorded", path=path, burn_in=bad)


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("inputs"), "need 'inputs'"),
    (lambda d: d.pop("activity"), "nothing to fit"),
    (lambda d: d.update(activity=d["activity"][:, :5]), "activity must be"),
    (lambda d: d.update(activity_mask=np.ones(7)), "activity_mask must be"),
    (lambda d: d.update(lengths=np.full(N, 10_000)), "lengths must be"),
    (lambda d: d.update(bogus=np.zeros(2)), "unknown array"),
    (lambda d: d.update(update_mask=np.ones((N, 3))), "update_mask must be"),
    (lambda d: d["inputs"].__setitem__((0, 0, 0), np.nan), "NaN"),
])
def test_bad_recordings_are_one_message(tmp_path, truth, change, words):
    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3))
    change(data)
    with pytest.raises(ConfigError, match=words):
        mp.tasks.make("recorded", path=_write(tmp_path, data))


def test_missing_damaged_and_mismatched_files(tmp_path, truth):
    with pytest.raises(ConfigError, match="not found"):
        mp.tasks.make("recorded", path=str(tmp_path / "none.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot read"):
        mp.tasks.make("recorded", path=str(tmp_path / "bad.npz"))
    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3))
    task = mp.tasks.make("recorded", path=_write(tmp_path, data, "ok.npz"))
    with pytest.raises(ConfigError, match="network 5 -> ... -> 3"):
        Objective(task, mp.Network(sizes=(5, 2)), oja)
    with pytest.raises(ConfigError, match="heldout"):
        mp.tasks.make("recorded", path=str(tmp_path / "ok.npz"), heldout=1.5)
    del data["w0_1"]
    with pytest.raises(ConfigError, match="initial = 'drawn'"):
        mp.tasks.make("recorded", path=_write(tmp_path, data, "now0.npz"))


def test_update_mask_says_when_the_synapses_change(tmp_path, truth):
    """A recording's update_mask: no 1 → the weights stay the recorded ones; a single 1 at
    step s → exactly one Oja step from w0 with step s's input; all ones = no mask."""
    from metaplastic.inner import unroll

    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3))

    def final(mask, name):
        d = dict(data) if mask is None else {**data, "update_mask": mask}
        task = mp.tasks.make("recorded", path=_write(tmp_path, d, name), split="all")
        inst = task.instance(0)
        return np.asarray(unroll(net, oja, theta, task, inst,
                                 key=jax.random.key(0)).state.weights[0])

    w0, x = data["w0_1"][0], data["inputs"][0]
    np.testing.assert_array_equal(final(np.zeros((N, STEPS)), "none.npz"), w0)
    s = 7
    one = np.zeros((N, STEPS))
    one[:, s] = 1
    y = w0 @ x[s]  # linear neurons: the activity at step s under w0
    expected = w0 + 0.02 * (np.outer(y, x[s]) - (y ** 2)[:, None] * w0)
    np.testing.assert_allclose(final(one, "one.npz"), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(final(np.ones((N, STEPS)), "all.npz"), final(None, "no.npz"))
    with pytest.raises(ConfigError, match="update_mask must hold only 0 and 1"):
        mp.tasks.make("recorded", path=_write(tmp_path, {**data, "update_mask":
                                                          np.full((N, STEPS), 0.5)}, "h.npz"))


@pytest.mark.tier2  # slow: trains end to end (second tier)
def test_a_fitted_start_is_part_of_theta_and_is_learned(tmp_path, truth):
    """initial = "fitted": θ = {rule, w0}; recordings made from one common start W* (not
    stored) are replayed exactly from θ's W*, and a meta-gradient fit moves a drawn start
    towards W* while the loss falls."""
    from metaplastic.experiments.build import build
    from metaplastic.experiments.config import from_dict
    from metaplastic.meta import driver
    from metaplastic.meta.gradient import MetaGradient
    from metaplastic.rules.composed import WithFittedStart

    net, oja, theta, source = truth
    w_star = 0.5 * np.asarray(jax.random.normal(jax.random.key(7), net.shapes[0]))
    start = WithFittedStart(oja, net)
    data = simulate(net, start, {"rule": theta, "w0": (w_star,)}, source, N,
                    jax.random.key(3))
    np.testing.assert_allclose(data["w0_1"], np.broadcast_to(w_star, data["w0_1"].shape),
                               rtol=1e-6)
    del data["w0_1"]
    path = _write(tmp_path, data, "common.npz")
    cfg = from_dict({"name": "fit-start", "task": {"name": "recorded", "path": path,
                                                   "initial": "fitted", "split": "all"},
                     "network": {"activation": "linear"},
                     "rule": {"name": "oja", "eta": 0.02},
                     "meta": {"steps": 40, "chunk": 20, "tasks_per_step": 3, "lr": 0.02}})
    pieces = build(cfg)
    assert isinstance(pieces.rule, WithFittedStart)
    exact = {"rule": theta, "w0": (jnp.asarray(w_star),)}
    loss, r2 = _losses(path, net, pieces.rule, exact, initial="fitted")
    np.testing.assert_allclose(r2, 1.0, atol=1e-5)
    theta0 = pieces.rule.init(jax.random.key(1), net.shapes)
    assert set(theta0) == {"rule", "w0"} and theta0["w0"][0].shape == net.shapes[0]
    result = driver.run(MetaGradient(steps=40, lr=0.02, chunk=20), pieces.objective, theta0,
                        key=jax.random.key(2))
    before = np.linalg.norm(np.asarray(theta0["w0"][0]) - w_star)
    after = np.linalg.norm(np.asarray(result.theta["w0"][0]) - w_star)
    assert after < 0.7 * before
    first, last = _losses(path, net, pieces.rule, theta0, initial="fitted")[0], \
        _losses(path, net, pieces.rule, result.theta, initial="fitted")[0]
    assert last.mean() < 0.5 * first.mean()


def test_hidden_layers_recorded_in_part_are_compared_too(tmp_path):
    """A 5-4-3 network learning under Oja's rule in both layers: clean recordings of the
    output and of half the hidden neurons replay exactly under the truth; garbage in a
    recorded hidden neuron costs, in an unrecorded one (simulated, not compared) not."""
    source = mp.tasks.make("pca", n_in=5, n_steps=60, scale_range=[0.5, 2.0])
    net = mp.Network(sizes=(5, 4, 3))
    oja = mp.rules.make("oja", eta=0.02)
    theta = oja.init(jax.random.key(0), net.shapes)
    data = simulate(net, oja, theta, source, N, jax.random.key(3), hidden=True, record=0.5)
    assert data["activity_1"].shape == (N, 60, 4)
    assert np.all(data["activity_mask_1"].sum(axis=2) == 2)
    path = _write(tmp_path, data, "hidden.npz")
    task = mp.tasks.make("recorded", path=path, split="all")
    assert task.hidden_layers == (1,)
    loss, _ = _losses(path, net, oja, theta)
    assert np.all(loss < 1e-5)
    hebb = mp.rules.make("hebb", eta=0.02)
    loss_h, _ = _losses(path, net, hebb, hebb.init(jax.random.key(0), net.shapes))
    assert np.all(loss_h > 1e-3)
    bad = dict(data)
    recorded = bad["activity_mask_1"][0, 0] > 0
    for which, costs in ((np.flatnonzero(recorded)[0], True),
                         (np.flatnonzero(~recorded)[0], False)):
        bad["activity_1"] = data["activity_1"].copy()
        bad["activity_1"][0, :, which] += 5.0
        loss_b, _ = _losses(_write(tmp_path, bad, f"bad{which}.npz"), net, oja, theta)
        assert (loss_b[0] > 1e-3) == costs and np.all(loss_b[1:] < 1e-5)
    # a network without that hidden layer, and misshaped hidden arrays: one message each
    with pytest.raises(ConfigError, match="hidden layer 1 of 4"):
        mp.tasks.make("recorded", path=path).check_network(mp.Network(sizes=(5, 6, 3)))
    for change, words in ((dict(activity_1=data["activity_1"][:, :5]), "activity_1 must be"),
                          (dict(activity_mask_2=np.ones(3)), "without the activity"),
                          (dict(activity_1_x=np.ones(3)), "unknown array")):
        with pytest.raises(ConfigError, match=words):
            mp.tasks.make("recorded", path=_write(tmp_path, {**data, **change},
                                                  f"bad-{words[:8]}.npz"))
    with pytest.raises(ConfigError, match="Gaussian activity"):
        mp.tasks.make("recorded", path=path, observation="calcium")


def test_a_start_per_trajectory_replays_each_from_its_own(tmp_path, truth):
    """initial = "fitted_each": θ["w0"] holds one start per trajectory and each
    trajectory replays from its own — with θ's starts set to the recorded ones the replay
    is exact, with the starts of another trajectory it is not. Held-out trajectories
    (whose starts nothing would fit) are refused."""
    from metaplastic.rules.composed import WithFittedStart, compose

    net, oja, theta, source = truth
    data = simulate(net, oja, theta, source, N, jax.random.key(3))
    recorded = data.pop("w0_1")
    path = _write(tmp_path, data, "each.npz")
    task = mp.tasks.make("recorded", path=path, initial="fitted_each", heldout=0.0)
    rule = compose(oja, net, task)
    assert isinstance(rule, WithFittedStart) and rule.count == N
    theta0 = rule.init(jax.random.key(1), net.shapes)
    assert theta0["w0"][0].shape == (N, *net.shapes[0])
    exact = {"rule": theta, "w0": (recorded,)}  # NumPy, as θ comes from a file
    loss, r2 = _losses(path, net, rule, exact, initial="fitted_each", heldout=0.0)
    np.testing.assert_allclose(r2, 1.0, atol=1e-5)
    shifted = {"rule": theta, "w0": (jnp.asarray(np.roll(recorded, 1, axis=0)),)}
    loss_s, _ = _losses(path, net, rule, shifted, initial="fitted_each", heldout=0.0)
    assert np.all(loss_s > 1e-3)
    with pytest.raises(ConfigError, match="heldout = 0"):
        mp.tasks.make("recorded", path=path, initial="fitted_each", heldout=0.2)


def test_start_steps_begin_fitted_starts_at_the_early_least_squares_fit(tmp_path, truth):
    """task.start_steps = K: each recorded neuron's fitted start begins at the least-squares
    fit of its first K steps (close to the recorded start: the rule has barely moved it),
    per trajectory or pooled; an unrecorded neuron keeps the network's draw; a start the
    data cannot give (a hidden layer, a nonlinear output, no Gaussian activity) is one
    message."""
    from metaplastic.rules.composed import compose

    net, _, _, source = truth
    slow = mp.rules.make("oja", eta=1e-4)  # the weights hardly move in K steps
    data = simulate(net, slow, slow.init(jax.random.key(0), net.shapes), source, N,
                    jax.random.key(3), record=0.67)
    recorded, mask = data.pop("w0_1"), data["activity_mask"][:, 0] > 0
    assert mask.any() and not mask.all()
    path = _write(tmp_path, data, "early.npz")

    def starts(**kw):
        task = mp.tasks.make("recorded", path=path, initial="fitted_each", heldout=0.0, **kw)
        return np.asarray(compose(slow, net, task).init(jax.random.key(1),
                                                        net.shapes)["w0"][0])

    drawn, early = starts(), starts(start_steps=40)
    err = np.linalg.norm(early - recorded, axis=-1) / np.linalg.norm(recorded, axis=-1)
    err_drawn = np.linalg.norm(drawn - recorded, axis=-1) / np.linalg.norm(recorded, axis=-1)
    assert err[mask].max() < 0.01 and err_drawn[mask].min() > 0.3
    np.testing.assert_array_equal(early[~mask], drawn[~mask])  # nothing to fit them from
    # one start for all (recordings from one common start): the pooled fit finds it
    from metaplastic.rules.composed import WithFittedStart

    w_star = 0.5 * np.asarray(jax.random.normal(jax.random.key(7), net.shapes[0]))
    common = simulate(net, WithFittedStart(slow, net), {
        "rule": slow.init(jax.random.key(0), net.shapes), "w0": (w_star,)}, source, N,
        jax.random.key(4), record=0.67)
    del common["w0_1"]
    shared = mp.tasks.make("recorded", path=_write(tmp_path, common, "common.npz"),
                           initial="fitted", heldout=0.0, start_steps=40)
    pooled = np.asarray(compose(slow, net, shared).init(jax.random.key(1),
                                                        net.shapes)["w0"][0])
    assert pooled.shape == net.shapes[0]
    np.testing.assert_allclose(pooled, w_star, atol=0.01)
    for kw, words in ((dict(initial="recorded"), "needs initial"),
                      (dict(start_steps=-1), "whole number"),
                      (dict(start_steps=STEPS + 1), "longer than")):
        with pytest.raises(ConfigError, match=words):
            mp.tasks.make("recorded", path=path, **{"initial": "fitted", "start_steps": 5,
                                                    **kw})
    task = mp.tasks.make("recorded", path=path, initial="fitted", start_steps=5)
    for other in (mp.Network(sizes=(5, 4, 3)), mp.Network(sizes=(5, 3), activation="tanh")):
        with pytest.raises(ConfigError, match="one layer of linear rate"):
            task.check_network(other)


def test_simulation_reports_its_progress_and_computes_the_same_numbers():
    """A simulation reports the steps done (all trajectories at once) from inside its
    compiled loop, ending at the last step; reporting changes no number."""
    net = mp.Network(sizes=(5, 3))
    oja = mp.rules.make("oja", eta=0.05)
    theta = oja.init(jax.random.key(0), net.shapes)
    source = mp.tasks.make("pca", n_in=5, n_steps=250)
    calls = []
    seen = simulate(net, oja, theta, source, 3, jax.random.key(1), noise=0.1,
                    progress=lambda done, total, what: calls.append((done, total, what)))
    quiet = simulate(net, oja, theta, source, 3, jax.random.key(1), noise=0.1,
                     progress=False)
    done = [d for d, _, _ in calls]
    assert max(done) == 250 and len(done) == len(set(done))  # up to the last step, once
    assert {(t, w) for _, t, w in calls} == {(250, "3 trajectories")}
    assert 10 <= len(calls) <= 126  # every ~1% of the steps
    assert seen.keys() == quiet.keys()
    for k in seen:
        assert np.array_equal(seen[k], quiet[k]), k
    with pytest.raises(ConfigError, match="progress must be"):
        simulate(net, oja, theta, source, 3, jax.random.key(1), progress="yes")


@pytest.mark.xla_defaults  # a program run once against one compiled at XLA's defaults
def test_recordings_simulated_by_a_run_once_program_are_those_of_xlas_defaults(monkeypatch):
    """simulate compiles its program as one run once (LLVM level 1, threefry unrolled):
    the recordings, which the published fits rest on, are bitwise those of the same
    program compiled by plain ``jax.jit`` (here ``infer-oja-activity``'s: a recorded
    fraction and noise; the five ``infer-*`` presets' were checked, docs/benchmarks.md)."""
    preset = "infer-oja-activity"
    import metaplastic.analysis.simulate as simulating
    from metaplastic.experiments import presets, recordings

    cfg = presets.PRESETS[preset]()
    spec = cfg.task["simulate"]
    rule, theta, network, source = recordings.truth(spec, cfg.network)
    key = jax.random.key(int(spec.get("seed", 0)))
    kw = dict(record=float(spec.get("record", 1.0)), noise=float(spec.get("noise", 0.0)),
              observation=str(spec.get("observation", "gaussian")))
    once = simulate(network, rule, theta, source, 4, key, **kw)
    monkeypatch.setattr(simulating, "_compiled", jax.jit)
    plain = simulate(network, rule, theta, source, 4, key, **kw)
    assert set(once) == set(plain)
    for name in plain:
        np.testing.assert_array_equal(once[name], plain[name], err_msg=name)
