"""Distilling learned rules into formulas (metaplastic explain)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metaplastic as mp
from metaplastic.analysis.explain import collect, distil, heatmaps, monomials, rule_dw
from metaplastic.errors import ConfigError, MetaplasticError


def _random_data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return {"pre": rng.normal(size=n), "post": rng.normal(size=n),
            "w": 0.5 * rng.normal(size=n), "e_pre": np.zeros(n), "e_post": np.zeros(n),
            "modulator": np.zeros(n)}


def test_monomials_count_and_order():
    terms = monomials(["pre", "post", "w"], 3)
    assert len(terms) == 20 and terms[0] == (0, 0, 0)  # C(6, 3) monomials, constant first
    assert all(sum(a) <= sum(b) for a, b in zip(terms, terms[1:], strict=False))


def test_distil_recovers_an_exact_polynomial():
    d = _random_data()
    d["dw"] = 0.01 * (d["pre"] * d["post"] - d["post"] ** 2 * d["w"]) + 0.003 * d["pre"]
    fit = distil(d, degree=3, scale=0.01)
    assert fit.names == ["pre", "post", "w"]  # the constant signals are left out
    assert set(fit.top(3)) == {"pre*post", "post^2*w", "pre"}
    assert len(fit.active()) == 3  # nothing else survives the threshold
    coef = {t["term"]: t["coef"] for t in fit.to_json()["terms"]}
    np.testing.assert_allclose([coef["pre*post"], coef["post^2*w"], coef["pre"]],
                               [1.0, -1.0, 0.3], rtol=1e-6)
    assert fit.r2_heldout > 1 - 1e-9
    assert fit.formula().startswith("dw = 0.01 * (+1 pre*post -1 post^2*w +0.3 pre")


@pytest.fixture(scope="module")
def imitating_mlp():
    """An MLP rule trained by regression to imitate Oja's rule on random signals."""
    rule = mp.rules.make("mlp", hidden=[32], eta=0.01, out_scale=1.0)
    theta = rule.init(jax.random.key(0))
    d = {k: jnp.asarray(v, jnp.float32) for k, v in _random_data(8192, seed=1).items()}
    target = d["pre"] * d["post"] - d["post"] ** 2 * d["w"]
    s = mp.signals.LocalSignals(d["pre"], d["post"], d["w"], d["e_pre"], d["e_post"],
                                d["modulator"])
    opt = optax.adam(3e-3)

    def loss(t):
        return jnp.mean((rule.synapse(t, s) / rule.eta - target) ** 2)

    def step(carry, _):
        t, o = carry
        g = jax.grad(loss)(t)
        u, o = opt.update(g, o)
        return (optax.apply_updates(t, u), o), None

    (theta, _), _ = jax.jit(lambda t: jax.lax.scan(step, (t, opt.init(t)), None,
                                                   length=4000))(theta)
    assert float(loss(theta)) < 0.05 * float(jnp.var(target))
    return rule, theta


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_distil_recovers_oja_from_a_network_trained_to_imitate_it(imitating_mlp, tmp_path):
    rule, theta = imitating_mlp
    d = _random_data(6000, seed=2)
    # inside the training range, where the imitation holds
    keep = (np.abs(d["pre"]) < 2) & (np.abs(d["post"]) < 2) & (np.abs(d["w"]) < 1)
    d = {k: v[keep] for k, v in d.items()}
    d["dw"] = rule_dw(rule, theta, {k: d[k] for k in ("pre", "post", "w")}, d["pre"])
    fit = distil(d, degree=3, scale=rule.eta)
    assert fit.r2_heldout >= 0.95
    assert set(fit.top(2)) == {"pre*post", "post^2*w"}
    coef = {t["term"]: t["coef"] for t in fit.to_json()["terms"]}
    assert abs(coef["pre*post"] - 1) < 0.15 and abs(coef["post^2*w"] + 1) < 0.15
    png = heatmaps(rule, theta, d, fit, tmp_path / "explain.png")
    assert png.stat().st_size > 10_000


def test_collect_samples_what_the_rule_saw(small_pca, oja_theta):
    """With Oja's rule in the loop, the sampled (signals, dw) satisfy Oja's equation."""
    task, net, rule, _ = small_pca
    d = collect(task, net, rule, oja_theta, key=jax.random.key(3), tasks=2, synapses=3,
                every=10)
    assert d["dw"].size == 2 * 3 * (task.n_steps // 10)
    want = rule.eta * (d["pre"] * d["post"] - d["post"] ** 2 * d["w"])
    np.testing.assert_allclose(d["dw"], want, rtol=1e-4, atol=1e-7)
    fit = distil(d, degree=3, scale=rule.eta)
    assert fit.top(2) == ["pre*post", "post^2*w"] and fit.r2_heldout > 0.9999


def test_explain_rejects_bad_input():
    d = _random_data(100)
    d["dw"] = d["pre"]
    with pytest.raises(ConfigError, match="unknown inputs"):
        distil(d, ["pre", "spike"])
    with pytest.raises(ConfigError, match="degree must be"):
        distil(d, degree=9)
    with pytest.raises(MetaplasticError, match="too few"):
        distil({k: v[:12] for k, v in d.items()}, degree=3)
    net = mp.Network(sizes=(4, 3))
    abcd = mp.rules.make("abcd")
    with pytest.raises(ConfigError, match="shared by every synapse"):
        collect(mp.tasks.make("pca", n_in=4), net, abcd, abcd.init(jax.random.key(0),
                                                                     net.shapes),
                key=jax.random.key(0))
