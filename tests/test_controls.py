"""Credit-assignment controls of the evaluation: the output layer alone learning
(``plastic = "last"``) and the hidden neurons' errors ablated in hidden-layer synapses
only (``error_ablation = "hidden_synapses"``); and their config keys."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic import ConfigError
from metaplastic.experiments import presets, sections
from metaplastic.experiments.build import build


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_plastic_last_is_the_output_layer_at_every_depth(depth):
    net = mp.Network(sizes=(4, *[3] * (depth - 1), 2), plastic="last")
    assert net.plastic == (depth,)
    assert [net.learns(l) for l in range(depth)] == [False] * (depth - 1) + [True]
    assert sections.parse_network({"plastic": "last", "hidden": [3] * (depth - 1)}
                                  ).build(4, 2).plastic == (depth,)


def test_hidden_error_ablation_zeroes_hidden_synapses_only():
    net = mp.Network(sizes=(4, 5, 5, 3), activation="tanh", feedback="random")
    ablated = mp.Network(sizes=(4, 5, 5, 3), activation="tanh", feedback="random",
                         error_ablation="hidden_synapses")
    state = net.init(jax.random.key(0))
    act, state = net.run(state, jnp.ones(4))
    e_out = jnp.array([0.5, -1.0, 0.2])
    full, abl = net.signals(state, act, e_out), ablated.signals(state, act, e_out)
    for l in (0, 1):  # synapses into the hidden layers: no error at all
        assert not np.any(np.asarray(abl[l].e_post)) and not np.any(np.asarray(abl[l].e_pre))
        assert np.any(np.asarray(full[l].e_post))
    # the output layer's synapses keep what they had: e_pre through the feedback pathway
    np.testing.assert_array_equal(abl[2].e_pre, full[2].e_pre)
    np.testing.assert_array_equal(abl[2].e_post, full[2].e_post)
    assert np.any(np.asarray(abl[2].e_pre))
    with pytest.raises(ConfigError, match="error ablation"):
        mp.Network(sizes=(4, 3), error_ablation="everything")


def test_guard_and_mixture_keys_in_meta():
    meta = sections.parse_meta({"keep_best": True, "loss_bound": 10.0, "steps": 5,
                                "task_loss_clip": 2.0})
    assert meta.build_guard().keep_best and meta.build_guard().loss_bound == 10.0
    assert meta.objective["task_loss_clip"] == 2.0 and "keep_best" not in meta.outer_options
    with pytest.raises(ConfigError, match="rollback_lr"):
        sections.parse_meta({"rollback_lr": 2.0})
    cfg = presets.get("oja")
    with pytest.raises(ConfigError, match=r"meta.part_clip is for runs with \[\[mixture\]\]"):
        build(dataclasses.replace(cfg, meta={**cfg.meta, "part_clip": 1.0}))


def test_gradient_alignment_is_one_for_backprop_and_hidden_fa_is_not():
    from metaplastic.analysis.alignment import gradient_alignment

    cfg = presets.get("fa-digits")
    out = {}
    for fb in ("symmetric", "random"):
        c = dataclasses.replace(cfg, rule={"name": "sgd", "eta": 0.03},
                                network={**cfg.network, "feedback": fb, "hidden": [8]})
        p = build(c)
        theta = p.rule.init(jax.random.key(0), p.network.shapes)
        out[fb] = gradient_alignment(p.objective, theta, jax.random.key(1), n_tasks=6)
    for layer in ("layer 1", "layer 2"):  # SGD with backprop's errors is backprop
        assert out["symmetric"][layer]["episode"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert out["random"]["layer 2"]["episode"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert abs(out["random"]["layer 1"]["episode"]["mean"]) < 0.5  # FA's hidden layer


def test_inline_toml_round_trips_the_seed_study_settings():
    from metaplastic.experiments.config import inline_value, parse_value, set_arguments

    settings = presets.mixture_headline_eval("farther")
    for key, value in settings.items():
        back = parse_value(inline_value(value))
        assert back == (value if not isinstance(value, list | tuple)
                        else [dict(v) if isinstance(v, dict) else v for v in value]), key
    args = set_arguments("eval", {"tasks": 3, "vary": {}})
    assert args == ["--set", "eval.tasks=3", "--set", "eval.vary={}"]
