"""The speed paths of issue 8 give the straightforward computation's results: early exit,
population batches, forward-mode meta-gradients, one task unbatched, closed-form
derivatives; and the pieces of the published workloads (max-|w| normalisation, 47 outputs
for 5-way episodes)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.errors import ConfigError
from metaplastic.experiments import config, presets
from metaplastic.experiments.build import build
from metaplastic.meta import EvolutionStrategy
from metaplastic.meta.objective import map_tasks
from metaplastic.neurons.rate import ACTIVATIONS, RateNeuron


def test_max_abs_normalisation_by_hand():
    net = mp.Network(sizes=(2, 2), normalize="max_abs")
    w = jnp.array([[0.5, -2.0], [1.0, 0.25]])
    np.testing.assert_allclose(net.constrain(0, w), w / 2.0)
    np.testing.assert_array_equal(mp.Network(sizes=(2, 2)).constrain(0, w), w)
    with pytest.raises(ConfigError, match="normalize"):
        mp.Network(sizes=(2, 2), normalize="l2")


def test_a_step_after_the_task_ended_leaves_constrained_weights_exactly():
    """The inner loop zeroes the update of a step that is not live and constrains anyway
    (no select over whole matrices): that must give back the very same weights, whether
    they were already normalised, Dale-clamped, or still the unnormalised initial ones."""
    w0 = jnp.array([[0.05, -0.08], [0.02, 0.01]])
    for net in (mp.Network(sizes=(2, 2), normalize="max_abs"),
                mp.Network(sizes=(2, 2), dale=True, excitatory=0.5, normalize="max_abs"),
                mp.Network(sizes=(2, 2), dale=True, excitatory=0.5)):
        w = net.init(jax.random.key(0), (w0,)).weights[0]
        np.testing.assert_array_equal(net.constrain(0, w, live=False), w)  # initial
        w = net.constrain(0, w + 0.3)  # after a live step
        np.testing.assert_array_equal(net.constrain(0, w + 0.0, live=False), w)
        assert not np.array_equal(net.constrain(0, w + 0.1), w)


def _cartpole_objective(early_exit):
    task = mp.tasks.make("cartpole", n_steps=80)
    net = mp.Network(sizes=(4, 8, 2), activation="tanh", init_dist="uniform", init_scale=0.1,
                     normalize="max_abs")
    rule = mp.rules.make("abcd", init_noise=0.1)
    return mp.Objective(task, net, rule, tasks_per_step=3, early_exit=early_exit), rule, net


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_early_exit_and_population_batches_give_the_full_results():
    full, rule, net = _cartpole_objective(0)
    early, _, _ = _cartpole_objective(30)  # 80 = 2 chunks of 30 + a remainder of 20
    pop = jax.vmap(lambda k: rule.init(k, net.shapes))(jax.random.split(jax.random.key(0), 6))
    key = jax.random.key(1)
    a = jax.jit(jax.vmap(lambda th: full(th, key)))(pop)
    b = jax.jit(jax.vmap(lambda th: early(th, key)))(pop)
    np.testing.assert_allclose(b[0], a[0], rtol=1e-6)
    for name in a[1]:
        np.testing.assert_allclose(b[1][name], a[1][name], rtol=1e-6, err_msg=name)
    lengths = np.asarray(a[1]["length"])
    assert lengths.min() < 60, "some episodes must end early for this test to mean much"
    # the population in sequential batches of 3 (with early exit too): the same fitness
    es = EvolutionStrategy(population=6, population_batch=3)
    c = jax.jit(lambda p: es.evaluate(early, p, key))(pop)
    np.testing.assert_allclose(c, a[0], rtol=1e-6)
    with pytest.raises(ConfigError, match="population_batch"):
        EvolutionStrategy(population_batch=-1)


def test_forward_mode_meta_gradient_equals_reverse(small_pca, oja_theta):
    task, net, rule, objective = small_pca
    fwd = dataclasses.replace(objective, grad_mode="forward")
    key = jax.random.key(3)
    loss_r, aux_r, g_r = jax.jit(objective.value_and_grad)(oja_theta, key)
    loss_f, aux_f, g_f = jax.jit(fwd.value_and_grad)(oja_theta, key)
    np.testing.assert_allclose(loss_f, loss_r, rtol=1e-6)
    np.testing.assert_allclose(g_f["coef"], g_r["coef"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(aux_f["abs_cos"], aux_r["abs_cos"], rtol=1e-6)
    with pytest.raises(ConfigError, match="grad_mode"):
        dataclasses.replace(objective, grad_mode="sideways")


def test_library_compiler_options_change_no_number(small_pca, oja_theta):
    """The loops compiled through ``metaplastic.xla.jit`` (region-based copy insertion on
    the CPU) give the same forward-mode meta-gradient as a plain ``jax.jit``."""
    from metaplastic import xla

    if jax.default_backend() == "cpu":
        assert xla.compiler_options() == xla.CPU_OPTIONS
    fwd = dataclasses.replace(small_pca[3], grad_mode="forward")
    key = jax.random.key(4)
    plain = jax.jit(fwd.value_and_grad)(oja_theta, key)
    tuned = xla.jit(fwd.value_and_grad)(oja_theta, key)
    np.testing.assert_allclose(tuned[0], plain[0], rtol=1e-6)
    np.testing.assert_allclose(tuned[2]["coef"], plain[2]["coef"], rtol=1e-5, atol=1e-7)


def test_run_once_programs_compile_lazily_with_their_options(small_pca, oja_theta):
    """``xla.once`` (held-out evaluation, the recorded episode, checks): nothing is
    created before the first call; the episode's loss and metrics are those of a plain
    ``jax.jit`` (LLVM level 1 vectorises some reductions differently: rounding, carried
    through 600 inner steps, moves the loss by about 1e-5 relative); ``lower``,
    ``static_argnums`` and ``clear_cache`` work as on a jitted function."""
    from functools import partial

    from metaplastic import xla

    objective = small_pca[3]
    key = jax.random.key(5)

    @partial(xla.once, static_argnums=0)
    def episode(obj, theta, k):
        return obj.episode(theta, k)[:2]

    assert episode._jitted is None  # defined at import: no device touched
    loss, metrics = episode(objective, oja_theta, key)
    ref_loss, ref_metrics = jax.jit(lambda t, k: objective.episode(t, k)[:2])(oja_theta, key)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    for name in ref_metrics:
        np.testing.assert_allclose(metrics[name], ref_metrics[name], rtol=1e-4, atol=1e-7)
    compiled = episode.lower(objective, oja_theta, key).compile()
    np.testing.assert_array_equal(compiled(oja_theta, key)[0], loss)
    if jax.default_backend() == "cpu":
        assert episode._cache_size() == 1
    episode.clear_cache()
    assert episode._cache_size() == 0


def _draws(key):
    """Every kind of threefry use: splits, fold-ins, and draws of several distributions,
    odd and even sizes, one key and a vmapped batch of them."""
    k1, k2, k3 = jax.random.split(key, 3)
    many = jax.random.split(jax.random.fold_in(k1, 7), 5)
    return {"normal": jax.random.normal(k1, (7, 3)), "uniform": jax.random.uniform(k2, (9,)),
            "bernoulli": jax.random.bernoulli(k3, 0.3, (11,)),
            "randint": jax.random.randint(k2, (5,), 0, 100),
            "permutation": jax.random.permutation(k3, 13),
            "vmapped": jax.vmap(lambda k: jax.random.normal(k, (4,)))(many),
            "large": jax.random.uniform(k1, (1 << 20,)),  # kept rolled (UNROLL_BELOW)
            "bits": jax.random.key_data(many)}


def test_threefry_lowering_is_chosen_per_program_and_gives_the_same_bits():
    """Programs lowered in "unrolled" mode lower threefry without its loop over rounds on
    the CPU (fewer kernels, shorter compiles): every random draw is bitwise what JAX's own
    lowering gives, for typed and raw keys. Programs that do not choose keep the
    process's default (JAX's loop here), programs run once (xla.once) take "unrolled",
    population loops "rolled", and a meta-gradient run what its config says. One function
    jitted in each way gets each way's lowering (JAX caches lowerings by the function and
    does not see the mode: it reused the first way's before ``xla.in_mode``)."""
    from metaplastic import capabilities as cap
    from metaplastic import xla
    from metaplastic.errors import ConfigError
    from metaplastic.meta import MetaGradient

    if jax.default_backend() != "cpu":
        pytest.skip("the unrolled lowering is registered for the CPU only")
    default = xla.DEFAULT_MODE  # JAX's loop unless METAPLASTIC_THREEFRY=unrolled
    keys = (jax.random.key(3), jax.random.PRNGKey(3))

    def both(ks):  # one program per way draws from both kinds of key
        return [_draws(k) for k in ks]

    ways = {"default": xla.jit(both), "rolled": xla.jit(both, threefry="rolled"),
            "unrolled": xla.jit(both, threefry="unrolled"), "once": xla.once(both)}
    compiled = {name: f.lower(keys).compile() for name, f in ways.items()}
    draws = {name: c(keys) for name, c in compiled.items()}
    for name in ("default", "unrolled", "once"):
        for a, b in zip(draws["rolled"], draws[name], strict=True):
            for what in a:
                x, y = np.asarray(b[what]), np.asarray(a[what])
                if name == "once" and np.issubdtype(y.dtype, np.floating):
                    # the same bits; LLVM level 1 rounds normal's inverse erf differently
                    np.testing.assert_allclose(x, y, rtol=1e-6, err_msg=f"{name}: {what}")
                else:
                    np.testing.assert_array_equal(x, y, err_msg=f"{name}: {what}")
    counted = {name: c.as_text().count(" while(") for name, c in compiled.items()}
    assert counted["unrolled"] == counted["once"] < counted["rolled"]
    assert counted["default"] == counted[default]
    assert xla.DEFAULT_MODE == default  # choosing per program left the default alone
    assert cap.threefry(EvolutionStrategy()) == "rolled"
    assert cap.threefry(MetaGradient()) == ""
    assert cap.threefry(MetaGradient(threefry="unrolled")) == "unrolled"
    with pytest.raises(ConfigError, match="threefry must be one of rolled, unrolled"):
        MetaGradient(threefry="fast")


def test_one_task_runs_unbatched_with_the_same_result():
    f = lambda k: {"x": jax.random.normal(k, (3,)), "y": jnp.sum(jax.random.normal(k, (2,)))}  # noqa: E731
    keys = jax.random.split(jax.random.key(0), 1)
    a, b = map_tasks(f, keys), jax.vmap(f)(keys)
    for name in a:
        assert a[name].shape == b[name].shape
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_closed_form_derivatives_equal_autodiff(name):
    v = jnp.linspace(-2.0, 2.0, 41) + 0.013  # off the relu kink
    f = ACTIVATIONS[name]
    np.testing.assert_allclose(RateNeuron(name).derivative(v), jax.vmap(jax.grad(f))(v),
                               rtol=1e-5, atol=1e-6)


def test_fewshot_with_more_outputs_than_ways():
    task = mp.tasks.make("fewshot", ways=5, shots=2, queries=2, outputs=47,
                         dataset="digits")
    assert task.n_out == 47
    inst = task.sample(jax.random.key(0))
    _, target = task.observe(inst, 0)
    assert target.shape == (47,) and float(target[5:].sum()) == 0.0
    with pytest.raises(ConfigError, match="outputs"):
        mp.tasks.make("fewshot", ways=5, outputs=3)


def test_speed_options_are_checked_in_the_config():
    cfg = presets.get("oja")
    # (meta.population_batch is an ES option: inert for a gradient run, like any option of
    # another registered outer loop, so that switching meta.outer is one key)
    for bad in (["meta.early_exit=10"], ["meta.grad_mode=forward", "meta.truncation=100"],
                ["meta.population_bach=4"], ["meta.threefry=fast"]):
        with pytest.raises(ConfigError):
            build(config.override(cfg, bad))
    # the demo's and mlp-digits' meta-steps lower threefry unrolled; the other presets
    # keep the default
    from metaplastic import capabilities as cap
    assert cap.threefry(build(cfg).outer) == "unrolled"
    assert cap.threefry(build(presets.get("mlp-digits")).outer) == "unrolled"
    assert cap.threefry(build(config.override(cfg, ["meta.threefry=rolled"])).outer) == "rolled"
    assert cap.threefry(build(presets.get("fa-digits")).outer) == ""
    hml = presets.get("hml-cartpole")
    assert hml.meta["population"] == 200 and hml.network["hidden"] == (128, 64)
    mlpp = build(presets.get("mlpp-emnist-shape"))
    assert mlpp.network.sizes == (784, 170, 130, 100, 70, 47)
    assert mlpp.objective.grad_mode == "forward"

