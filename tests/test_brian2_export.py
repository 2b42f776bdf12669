"""The Brian2 export: what it refuses (one message naming every piece), the update in
Brian2's names, the recorded episode against the library's own unroll, and — with Brian2
installed, in the second tier — the written script run by Brian2 in a fresh process,
its weights after every step equal to the library's within float32 rounding."""

import jax
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.analysis import brian2_export as b2x
from metaplastic.errors import ConfigError
from metaplastic.inner import unroll

STEPS = 40


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Random inputs and a random modulator (the rewards) for 2 trajectories."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("rec") / "rec.npz"
    np.savez(path, inputs=rng.standard_normal((2, STEPS, 6)).astype(np.float32),
             rewards=rng.standard_normal((2, STEPS)).astype(np.float32),
             activity=rng.standard_normal((2, STEPS, 3)).astype(np.float32),
             update_mask=(rng.random((2, STEPS)) < 0.8).astype(np.float32))
    return mp.tasks.make("recorded", path=str(path), initial="drawn", split="all")


def _rule(seed=0):
    rule = mp.rules.make("polynomial", eta=0.05, variables=["pre", "post", "w", "modulator"],
                         degree=1)
    theta = rule.init(jax.random.key(0), [(1, 1)])
    coef = 0.3 * np.random.default_rng(seed).standard_normal(np.shape(theta["coef"]))
    return rule, {"coef": np.asarray(coef, np.float32)}


NET = mp.Network(sizes=(6, 5, 3), activation="tanh", output_activation="linear")


def _spiking_rule(seed=2, scale=0.005):
    """A random degree-1 polynomial of spikes, spike traces and the weight."""
    rule = mp.rules.make("polynomial", eta=0.05,
                         variables=["pre", "post", "pre_trace", "post_trace", "w"], degree=1)
    coef = np.shape(rule.init(jax.random.key(0), [(1, 1)])["coef"])
    return rule, {"coef": np.asarray(scale * np.random.default_rng(seed).standard_normal(coef),
                                     np.float32)}


def _spiking_net():
    from metaplastic.neurons.lif import LIFNeuron
    from metaplastic.spiking import SpikingNetwork

    # ALIF with refractoriness: every piece of the neuron's step is exercised
    return SpikingNetwork(sizes=(6, 4, 3), rate=0.3, neuron_model=LIFNeuron(
        tau_mem=10.0, threshold=0.5, refractory=2, beta=0.2))


SPIKING = _spiking_net()


def test_the_update_is_the_rules_equation_in_brian2_names():
    rule = mp.rules.make("oja", eta=0.01)
    theta = rule.init(jax.random.key(0), [(1, 1)])
    text = b2x.update_equation(rule, theta)
    assert "r_pre" in text and "r_post" in text and "eta" not in text
    # evaluated on numbers, it is the rule's own dw
    pre, post, w = 0.7, -1.3, 0.4
    got = eval(text, {"r_pre": pre, "r_post": post, "w": w})  # noqa: S307
    want = float(rule.synapse(theta, mp.signals.LocalSignals(pre, post, w, 0.0, 0.0, 0.0)))
    assert got == pytest.approx(want, rel=1e-6)


def test_what_cannot_be_expressed_is_refused_in_one_message():
    rule, theta = _rule()
    assert b2x.unsupported(NET, rule, theta) == []
    bad_net = mp.Network(sizes=(6, 5, 3), activation="tanh", tau=2.0, dale=True,
                         update_bound_w=0.1)
    errors_rule = mp.rules.make("polynomial", variables=["pre", "e_post"], degree=1)
    e_theta = {"coef": np.ones(np.shape(errors_rule.init(jax.random.key(0), [(1, 1)])["coef"]),
                               np.float32)}
    with pytest.raises(ConfigError) as e:
        b2x.check_exportable(bad_net, errors_rule, e_theta)
    msg = str(e.value)
    for piece in ("tau = 2.0", "dale", "update_bound_w", "e_post"):
        assert piece in msg, piece
    from metaplastic.neurons.lif import LIFNeuron
    from metaplastic.spiking import SpikingNetwork

    spiking = SpikingNetwork(sizes=(3, 2), neuron_model=LIFNeuron())
    assert b2x.unsupported(spiking, rule, theta) == []  # LIF networks are exported
    traces, t_theta = _spiking_rule()
    assert "traces come from spiking neurons" in b2x.unsupported(NET, traces, t_theta)[0]
    assert b2x.unsupported(SPIKING, traces, t_theta) == []
    mlp = mp.rules.make("mlp")
    assert "explain" in b2x.unsupported(NET, mlp, mlp.init(jax.random.key(0), NET.shapes))[0]


def test_the_recorded_episode_is_the_librarys_unroll(recording):
    rule, theta = _rule()
    instance = recording.instance(1)
    data = b2x.record(NET, rule, theta, recording, instance, jax.random.key(3))
    out = unroll(NET, rule, theta, recording, instance, key=jax.random.key(3))
    for l, w in enumerate(out.state.weights, start=1):  # another program: to rounding
        np.testing.assert_allclose(data[f"w_{l}"][-1], np.asarray(w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data["x"], np.asarray(instance.inputs), rtol=0, atol=0)
    np.testing.assert_allclose(data["modulator"], np.asarray(instance.rewards))
    np.testing.assert_array_equal(data["live"], np.asarray(instance.learn))


def test_nothing_is_written_for_a_network_it_cannot_express(recording, tmp_path):
    rule, theta = _rule()
    with pytest.raises(ConfigError, match="tau"):
        b2x.write(tmp_path / "out", mp.Network(sizes=(6, 3), tau=3.0), rule, theta,
                  recording, recording.instance(0), jax.random.key(0), "test")
    assert not (tmp_path / "out").exists()


@pytest.mark.tier2  # runs Brian2 in a fresh process
@pytest.mark.parametrize("plastic", [(), (2,)], ids=["every-layer", "output-only"])
def test_brian2_learns_what_the_library_learns(recording, tmp_path, plastic):
    """Two layers (tanh hidden, linear output), a modulated rule, steps that do not learn:
    Brian2's weights after every step equal the library's to float32 rounding."""
    import dataclasses

    assert b2x.brian2_available(), (f"Brian2 cannot be imported by {b2x.brian2_python()}: "
                                    f"`make test-tier2` builds .venv-brian2 and points "
                                    f"METAPLASTIC_BRIAN2_PYTHON at it")
    net = dataclasses.replace(NET, plastic=plastic)
    rule, theta = _rule(seed=1)
    script, _ = b2x.write(tmp_path, net, rule, theta, recording, recording.instance(0),
                          jax.random.key(5), "test")
    assert "Synapses" in script.read_text() and "(summed)" in script.read_text()
    done = b2x.compare(tmp_path)
    assert done.steps == STEPS
    lib = np.load(tmp_path / b2x.INPUTS)
    moved = max(float(np.max(np.abs(lib[f"w_{l}"][-1] - lib[f"w0_{l}"]))) for l in (1, 2))
    assert moved > 1e-2  # the weights did change: the comparison compares learning
    assert done.relative < 1e-5, done


def test_a_spiking_episode_records_every_layers_spikes(recording):
    """A LIF network's recorded episode: the input spikes (0/1) as the inputs, every
    layer's spikes, the weights after every step; the script steps LIF neurons."""
    rule, theta = _spiking_rule()
    data = b2x.record(SPIKING, rule, theta, recording, recording.instance(0),
                      jax.random.key(5))
    assert set(np.unique(data["x"])) <= {0.0, 1.0} and data["x"].sum() > 0
    for l, n in ((1, 4), (2, 3)):
        assert data[f"spikes_{l}"].shape == (STEPS, n)
        assert set(np.unique(data[f"spikes_{l}"])) <= {0.0, 1.0}
    text = b2x.script(SPIKING, rule, theta, "test")
    for piece in ("I_post = w * s_pre : 1 (summed)", "trace = DECAY * trace + s",
                  "refr = s * REFRACTORY", "trace_pre", "trace_post"):
        assert piece in text, piece


@pytest.mark.tier2  # runs Brian2 in a fresh process
def test_brian2_spikes_and_learns_what_the_library_does(tmp_path_factory):
    """Two ALIF layers with refractoriness, a rule of spikes and spike traces, 300 steps:
    Brian2's spikes equal the library's at every step and neuron, and its weights after
    every step equal the library's to float32 rounding."""
    assert b2x.brian2_available(), (f"Brian2 cannot be imported by {b2x.brian2_python()}: "
                                    f"`make test-tier2` builds .venv-brian2 and points "
                                    f"METAPLASTIC_BRIAN2_PYTHON at it")
    rng = np.random.default_rng(0)
    tmp = tmp_path_factory.mktemp("spiking")
    np.savez(tmp / "rec.npz", inputs=rng.standard_normal((1, 300, 6)).astype(np.float32),
             activity=rng.standard_normal((1, 300, 3)).astype(np.float32))
    task = mp.tasks.make("recorded", path=str(tmp / "rec.npz"), initial="drawn",
                         split="all")
    rule, theta = _spiking_rule()
    b2x.write(tmp / "out", SPIKING, rule, theta, task, task.instance(0), jax.random.key(5),
              "test")
    done = b2x.compare(tmp / "out")
    lib = np.load(tmp / "out" / b2x.INPUTS)
    assert done.spikes > 20 and lib["spikes_2"].sum() > 0  # both layers spiked
    assert done.spike_mismatches == 0, done
    moved = max(float(np.max(np.abs(lib[f"w_{l}"][-1] - lib[f"w0_{l}"]))) for l in (1, 2))
    assert moved > 1e-2
    assert done.relative < 1e-5, done
