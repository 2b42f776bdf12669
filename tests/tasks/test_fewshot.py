import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from helpers import random_signals
from metaplastic import ConfigError
from metaplastic.tasks import datasets


@pytest.fixture(scope="module")
def digits_task():
    return mp.tasks.make("fewshot", dataset="digits", ways=5, shots=4, queries=6)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_episodes_use_only_their_class_split(split):
    task = mp.tasks.make("fewshot", dataset="digits", ways=3, shots=4, queries=6, classes=split)
    train, held = task.split()
    assert set(train) & set(held) == set() and set(train) | set(held) == set(range(10))
    y = datasets.load("digits").y
    for k in range(20):
        s_idx, s_y, q_idx, q_y = map(np.asarray, task.sample_indices(jax.random.key(k)))
        classes = set(y[s_idx]) | set(y[q_idx])
        assert classes <= set(train if split == "train" else held) and len(classes) == 3
        assert set(s_idx).isdisjoint(q_idx)  # queries are fresh examples
        assert sorted(np.bincount(s_y, minlength=3)) == [4, 4, 4]
        for lab in range(3):  # one label <-> one class, in support and query alike
            assert len(set(y[s_idx[s_y == lab]]) | set(y[q_idx[q_y == lab]])) == 1


def test_heldout_classes_can_be_named():
    task = mp.tasks.make("fewshot", dataset="digits", ways=2, heldout=[0, 1, 2])
    assert list(task.split()[1]) == [0, 1, 2] and 0 not in task.split()[0]
    with pytest.raises(ConfigError, match="not labels"):
        mp.tasks.make("fewshot", dataset="digits", heldout=[11])
    with pytest.raises(ConfigError, match="fewer than ways"):
        mp.tasks.make("fewshot", dataset="digits", ways=6)


@pytest.mark.tier2  # slow: trains end to end (second tier)
def test_sgd_rule_with_symmetric_feedback_is_backprop(digits_task):
    net = mp.Network(sizes=(64, 16, 12, 5), activation="tanh", output_activation="linear",
                     feedback="symmetric")
    rule = mp.rules.make("sgd", eta=0.1)
    theta = rule.init(jax.random.key(0))
    state = net.init(jax.random.key(1))
    inst = digits_task.sample(jax.random.key(2))
    x, target = digits_task.observe(inst, 0)

    def ce(weights):
        logits = net.forward(weights, x).rates[-1]
        return -jnp.sum(target * jax.nn.log_softmax(logits))

    grads = jax.grad(ce)(state.weights)
    act = net.forward(state.weights, x)
    signals = net.signals(state, act, digits_task.output_error(act.rates[-1], target))
    for s, g in zip(signals, grads, strict=True):
        dw, _ = rule.update(theta, s, ())
        np.testing.assert_allclose(dw, -0.1 * g, rtol=1e-4, atol=1e-7)


def test_feedback_matrices_never_change_during_learning(digits_task):
    net = mp.Network(sizes=(64, 16, 5), activation="tanh", output_activation="linear",
                     feedback="random")
    rule = mp.rules.make("termpool", start="pseudo_grad", eta=0.05)
    theta = rule.init(jax.random.key(0))
    out = mp.unroll(net, rule, theta, digits_task, digits_task.sample(jax.random.key(0)),
                    key=jax.random.key(1))
    before = net.init(jax.random.key(1))
    np.testing.assert_array_equal(out.state.feedback[0], before.feedback[0])
    assert not np.allclose(out.state.weights[0], before.weights[0])  # the weights did learn


@pytest.mark.parametrize("terms", [None, ("pseudo_grad",), ("error_hebb", "decay"),
                                   ("pseudo_grad", "error_hebb", "error_oja"),
                                   ("hebb", "oja"), ("decay",)])
@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_termpool_fast_path_equals_per_synapse_definition(terms, eta):
    """Every subset of the local terms (the fast path skips the parts no term uses)."""
    kw = {"eta": eta} if terms is None else {"eta": eta, "terms": terms}
    fast = mp.rules.make("termpool", **kw)
    slow = mp.rules.make("termpool", fast=False, **kw)
    theta = {"coef": jax.random.normal(jax.random.key(0), (len(fast.terms),))}
    s = random_signals(jax.random.key(1), 7, 4)
    np.testing.assert_allclose(fast.update(theta, s, ())[0], slow.update(theta, s, ())[0],
                               rtol=1e-5, atol=1e-6)


def test_backprop_learns_and_random_rule_does_not(digits_task):
    net = mp.Network(sizes=(64, 32, 5), activation="tanh", output_activation="linear",
                     feedback="symmetric")
    sgd = mp.rules.make("sgd", eta=0.1)
    obj = mp.Objective(digits_task, net, sgd, tasks_per_step=64)
    _, aux = jax.jit(obj)(sgd.init(None), jax.random.key(0))
    assert float(aux["accuracy"]) > 0.6 and float(aux["nonfinite"]) == 0.0
    _, aux0 = jax.jit(obj)({"coef": jnp.zeros(1)}, jax.random.key(0))
    assert float(aux0["accuracy"]) < 0.4  # no learning: about chance (0.2)


def test_projection_gives_a_common_input_size():
    task = mp.tasks.make("fewshot", dataset="mnist5k", project_to=64, ways=5, shots=2,
                         queries=2)
    assert task.n_in == 64 and task.sample(jax.random.key(0)).support_x.shape == (10, 64)


def test_fewshot_needs_a_linear_output():
    task = mp.tasks.make("fewshot", dataset="digits")
    with pytest.raises(ConfigError, match="linear output"):
        mp.Objective(task, mp.Network(sizes=(64, 5), activation="tanh"),
                     mp.rules.make("sgd"))


@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_input_norm_brings_datasets_to_one_scale(dataset):
    raw = datasets.load(dataset).x
    for how in ("global", "feature"):
        task = mp.tasks.make("fewshot", dataset=dataset, input_norm=how)
        x = np.asarray(task._data()[0])
        np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-4)
        if how == "global":  # one scale for every feature: relative scales kept
            assert abs(x.std() - 1.0) < 1e-3
            np.testing.assert_allclose(x.std(axis=0) / x.std(axis=0).max(),
                                       raw.std(axis=0) / raw.std(axis=0).max(), atol=1e-4)
        else:
            assert np.all(x.std(axis=0) <= 1.0 + 1e-4)
    with pytest.raises(ConfigError, match="unknown input_norm 'z'; valid: none, global"):
        mp.tasks.make("fewshot", dataset=dataset, input_norm="z")
