import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from helpers import random_signals
from metaplastic import ConfigError, registry, rules
from metaplastic.signals import layer_signals


def test_oja_step_by_hand():
    # one neuron, 2 inputs: y = w.x = 0.5*1 - 0.2*2 = 0.1
    # dw = eta (y x - y^2 w) = 0.1 * ([0.1, 0.2] - 0.01 * [0.5, -0.2]) = [0.0095, 0.0202]
    net = mp.Network(sizes=(2, 1))
    rule = rules.make("oja", eta=0.1)
    theta = rule.init(jax.random.key(0))
    w = jnp.array([[0.5, -0.2]])
    state = mp.network.NetState((w,), ())
    act = net.forward(state.weights, jnp.array([1.0, 2.0]))
    assert float(act.rates[-1][0]) == pytest.approx(0.1)
    (sig,) = net.signals(state, act, None)
    for fast in (True, False):
        r = rules.make("oja", eta=0.1, fast=fast)
        dw, _ = r.update(theta, sig, ())
        np.testing.assert_allclose(dw, [[0.0095, 0.0202]], rtol=1e-5)


def test_hebb_step_by_hand():
    rule = rules.make("hebb", eta=0.5)
    s = layer_signals(jnp.array([2.0, -1.0]), jnp.array([3.0]), jnp.zeros((1, 2)))
    dw, _ = rule.update(rule.init(jax.random.key(0)), s, ())
    np.testing.assert_allclose(dw, [[3.0, -1.5]])


@pytest.mark.parametrize("degree", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 5), (4, 3), (7, 7)])
def test_fast_path_equals_per_synapse_definition(degree, shape):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(degree * 100 + shape[0]), 4)
    n_out, n_in = shape
    fast = rules.make("polynomial", degree=degree, eta=0.3)
    slow = rules.make("polynomial", degree=degree, eta=0.3, fast=False)
    theta = {"coef": jax.random.normal(k1, (degree + 1,) * 3)}
    s = layer_signals(jax.random.normal(k2, (n_in,)), jax.random.normal(k3, (n_out,)),
                      jax.random.normal(k4, (n_out, n_in)))
    a, _ = fast.update(theta, s, ())
    b, _ = slow.update(theta, s, ())
    assert a.shape == (n_out, n_in)
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_term_names():
    rule = rules.make("polynomial")
    names = rule.term_names
    assert len(names) == 27 and len(set(names)) == 27
    assert names[0] == "1"
    assert names[rule.terms.index((1, 1, 0))] == "pre*post"
    assert names[rule.terms.index((0, 2, 1))] == "post^2*w"


def test_formula_of_oja():
    rule = rules.make("oja")
    assert rule.formula(rule.init(jax.random.key(0))) == (
        "dw = eta * (+1 pre*post -1 post^2*w),  eta = 0.01")


def test_formula_lists_largest_terms_first_and_counts_the_rest():
    rule = rules.make("polynomial", eta=0.05)
    coef = np.zeros((3, 3, 3), np.float32)
    coef[1, 1, 0], coef[0, 2, 1], coef[2, 0, 1], coef[0, 0, 1] = 0.9, -1.2, 0.3, 0.001
    text = rule.formula({"coef": coef})
    assert text.startswith("dw = eta * (-1.2 post^2*w +0.9 pre*post +0.3 pre^2*w")
    assert "1 smaller terms" in text and "eta = 0.05" in text


def test_the_constant_term_is_printed_as_a_number():
    rule = rules.make("polynomial")
    coef = np.zeros((3, 3, 3), np.float32)
    coef[1, 1, 0], coef[0, 2, 1], coef[0, 0, 0] = 1.0, -1.0, -0.25
    assert rule.formula({"coef": coef}) == (
        "dw = eta * (+1 pre*post -1 post^2*w -0.25),  eta = 0.01")


def test_formula_matches_the_code():
    # the printed equation, evaluated by hand, gives the same dw as the rule
    rule = rules.make("polynomial", eta=0.1)
    coef = np.zeros((3, 3, 3), np.float32)
    coef[1, 1, 0], coef[0, 2, 1] = 0.5, -2.0
    pre, post, w = 0.7, -1.3, 0.4
    s = layer_signals(jnp.array([pre]), jnp.array([post]), jnp.array([[w]]))
    dw, _ = rule.update({"coef": coef}, s, ())
    assert rule.formula({"coef": coef}).startswith("dw = eta * (-2 post^2*w +0.5 pre*post)")
    assert float(dw[0, 0]) == pytest.approx(0.1 * (-2 * post**2 * w + 0.5 * pre * post), rel=1e-5)


def test_excluded_terms_are_not_printed_or_exported_whatever_theta_holds():
    """An evolution strategy moves every entry of θ, the excluded terms' too; those act
    as 0 (the rule masks them), so the equation printed and the table exported must say
    0: an ES fit of infer-stdp-spikes printed 26 terms that did nothing."""
    from metaplastic.analysis import export

    rule = rules.make("polynomial", eta=0.1, exclude=["post^2*w"])
    coef = np.zeros((3, 3, 3), np.float32)
    coef[1, 1, 0], coef[0, 2, 1] = 0.5, -2.0  # the second is excluded
    s = layer_signals(jnp.array([0.7]), jnp.array([-1.3]), jnp.array([[0.4]]))
    dw, _ = rule.update({"coef": coef}, s, ())
    assert float(dw[0, 0]) == pytest.approx(0.1 * 0.5 * 0.7 * -1.3, rel=1e-5)
    assert rule.formula({"coef": coef}) == "dw = eta * (+0.5 pre*post),  eta = 0.1"
    rows = {r["term"]: r["coefficient"] for r in export.table(rule, {"coef": coef})}
    assert rows["post^2*w"] == 0.0 and rows["pre*post"] == 0.5


def test_init_noise_is_seeded():
    rule = rules.make("polynomial", init_noise=0.1)
    a = rule.init(jax.random.key(3))["coef"]
    b = rule.init(jax.random.key(3))["coef"]
    c = rule.init(jax.random.key(4))["coef"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", registry.names("rule"))
def test_every_registered_rule_updates_a_layer(name):
    rule = rules.make(name)
    theta = rule.layer_theta(rule.init(jax.random.key(0), [(2, 3)]), 0)
    s = layer_signals(jnp.ones(3), jnp.ones(2), 0.1 * jnp.ones((2, 3)))
    dw, state = jax.jit(rule.update)(theta, s, rule.init_state((2, 3)))
    assert dw.shape == (2, 3) and bool(jnp.all(jnp.isfinite(dw)))


def test_unknown_rule_name_lists_valid_names():
    valid = ("valid rules: abcd, adam, anti-hebb, bcm, hebb, layer-rates, mlp, neuron-mlp, oja, "
             "polynomial, recurrent")
    with pytest.raises(ConfigError, match=valid):
        rules.make("ojaa")


def test_unknown_rule_option():
    with pytest.raises(ConfigError, match="'etaa'.*valid options"):
        rules.make("polynomial", etaa=0.1)


def test_fixed_rule_has_no_start_option():
    with pytest.raises(ConfigError, match="'start'"):
        rules.make("oja", start="hebb")


@pytest.mark.parametrize("kw, msg", [({"eta": "fast"}, "must be a number"),
                                     ({"eta": -1.0}, "positive"),
                                     ({"degree": 7}, "degree"),
                                     ({"start": "bcm"}, "unknown polynomial start")])
def test_bad_rule_values(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        rules.make("polynomial", **kw)


def test_abcd_step_by_hand():
    # dw = eta (A pre post + B pre + C post + D) with pre = 2, post = -1
    rule = rules.make("abcd", shared=True)
    theta = {"A": 0.5, "B": 0.25, "C": -1.0, "D": 0.1, "eta": 0.2}
    s = layer_signals(jnp.array([2.0]), jnp.array([-1.0]), jnp.zeros((1, 1)))
    dw, _ = rule.update(jax.tree.map(jnp.asarray, theta), s, ())
    assert float(dw[0, 0]) == pytest.approx(0.2 * (0.5 * -2.0 + 0.25 * 2.0 + 1.0 + 0.1))


@pytest.mark.parametrize("shared", [True, False])
def test_abcd_fast_path_equals_per_synapse_definition(shared):
    shapes = [(4, 3), (2, 4)]
    fast = rules.make("abcd", shared=shared, init_noise=1.0)
    slow = rules.make("abcd", shared=shared, fast=False)
    theta = fast.init(jax.random.key(0), shapes)
    assert fast == rules.make("abcd", shared=shared)  # init options do not change the update
    for l, (n_out, n_in) in enumerate(shapes):
        k = jax.random.split(jax.random.key(l + 1), 3)
        s = layer_signals(jax.random.normal(k[0], (n_in,)), jax.random.normal(k[1], (n_out,)),
                          jax.random.normal(k[2], (n_out, n_in)))
        a, _ = fast.update(fast.layer_theta(theta, l), s, ())
        b, _ = slow.update(slow.layer_theta(theta, l), s, ())
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    coef = theta[0]["A"]
    assert coef.shape == (() if shared else (4, 3))


def test_abcd_needs_shapes():
    with pytest.raises(ConfigError, match="weight shapes"):
        rules.make("abcd").init(jax.random.key(0))


def test_static_rule_runs_the_network_from_its_theta():
    task = mp.tasks.make("pca", n_in=3, n_steps=5)
    net = mp.Network(sizes=(3, 1))
    rule = rules.make("static")
    theta = rule.init(jax.random.key(0), net.shapes)
    out = mp.unroll(net, rule, theta, task, task.sample(jax.random.key(1)), key=jax.random.key(2))
    np.testing.assert_array_equal(out.state.weights[0], theta["w"][0])


ERR_VARS = ["pre", "post", "w", "e_pre", "e_post"]


@pytest.mark.parametrize("variables", [ERR_VARS, ["e_post", "w", "pre"], ["post", "e_pre"]])
def test_polynomial_with_error_variables_fast_equals_per_synapse(variables):
    fast = rules.make("polynomial", variables=variables, eta=0.2)
    slow = rules.make("polynomial", variables=variables, eta=0.2, fast=False)
    theta = {"coef": jax.random.normal(jax.random.key(0), (3,) * len(variables))}
    s = random_signals(jax.random.key(1), 5, 3)
    np.testing.assert_allclose(fast.update(theta, s, ())[0], slow.update(theta, s, ())[0],
                               rtol=1e-4, atol=1e-5)
    assert len(fast.term_names) == 3 ** len(variables)


def test_extended_polynomial_contains_the_pseudo_gradient():
    poly = rules.make("polynomial", variables=ERR_VARS, eta=0.1)
    coef = np.zeros((3,) * 5, np.float32)
    idx = tuple(1 if v in ("pre", "e_post") else 0 for v in ERR_VARS)
    coef[idx] = -1.0
    assert poly.term_names[int(np.ravel_multi_index(idx, coef.shape))] == "pre*e_post"
    sgd = rules.make("sgd", eta=0.1)
    s = random_signals(jax.random.key(2), 4, 2)
    np.testing.assert_allclose(poly.update({"coef": coef}, s, ())[0],
                               sgd.update(sgd.init(None), s, ())[0], rtol=1e-5, atol=1e-7)
    oja = rules.make("polynomial", variables=ERR_VARS, start="oja")
    assert "+1 pre*post -1 post^2*w" in oja.formula(oja.init(None))


def test_bad_polynomial_variables():
    with pytest.raises(ConfigError, match="distinct names"):
        rules.make("polynomial", variables=["pre", "pre"])
    with pytest.raises(ConfigError, match="distinct names"):
        rules.make("polynomial", variables=["pre", "reward"])
    with pytest.raises(ConfigError, match="needs variables pre, post and w"):
        rules.make("polynomial", variables=["pre", "e_post"], start="oja")


@pytest.mark.parametrize("name", ["hebb", "oja", "pseudo_grad", "error_oja", "decay"])
def test_one_named_term_vocabulary(name):
    """A named term means the same in the polynomial (as a start), the term pool (as a
    term) and the MLP rule (the signals it needs): all read metaplastic.rules.terms."""
    from metaplastic.rules import terms
    from metaplastic.rules.termpool import _term
    from metaplastic.signals import per_synapse
    from metaplastic.signals import random_signals as draw

    poly = rules.make("polynomial", variables=["pre", "post", "w", "e_pre", "e_post"],
                      start=name)
    layer = draw(jax.random.key(3), 3, 4)
    dw, _ = poly.update(poly.init(jax.random.key(0)), layer, ())
    want = per_synapse(lambda s: _term(name, s), layer)
    np.testing.assert_allclose(dw / poly.eta, want, rtol=1e-5, atol=1e-6)
    assert terms.signals(name) <= {"pre", "post", "w", "e_pre", "e_post"}
    with pytest.raises(ConfigError, match="needs inputs"):
        rules.make("mlp", start=name, inputs=["modulator"])
