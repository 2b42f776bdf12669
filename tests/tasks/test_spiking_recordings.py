"""Spiking networks in the recordings layout: the input spikes an encoder made are recorded
and replayed as they were (``encoder = "spikes"``), the output spikes are compared as van
Rossum distances (``observation = "spikes"``), and the simulated truth, replayed,
reproduces its recordings exactly."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metaplastic as mp
from metaplastic.analysis.plausibility import check_spikes
from metaplastic.analysis.simulate import simulate
from metaplastic.errors import ConfigError
from metaplastic.experiments.recordings import replaying
from metaplastic.inner import unroll
from metaplastic.spiking import SpikingNetwork


def _net(encoder="poisson", sizes=(6, 2)):
    from metaplastic.neurons.lif import LIFNeuron

    return SpikingNetwork(sizes=sizes, neuron_model=LIFNeuron(tau_mem=10.0, threshold=0.5),
                          encoder=encoder, rate=0.2, tau_trace=10.0, init_scale=0.3)


def _stdp():
    rule = mp.rules.make("polynomial", variables=["pre", "post", "pre_trace", "post_trace",
                                                  "w"], degree=1, eta=0.05, start="stdp")
    return rule


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Recordings of a 6 -> 2 LIF network learning under pair STDP, 150 steps, 4
    trajectories, and their file."""
    net, rule = _net(), _stdp()
    theta = rule.init(jax.random.key(0), net.shapes)
    source = mp.tasks.make("pca", n_in=6, n_steps=150, hold=10)
    rec = simulate(net, rule, theta, source, 4, jax.random.key(3), observation="spikes")
    path = tmp_path_factory.mktemp("spikes") / "rec.npz"
    np.savez(path, **rec)
    return rec, str(path), rule, theta


def _replay(path, rule, theta, i=0, **task_kw):
    task = mp.tasks.make("recorded", path=path, observation="spikes", split="all",
                         heldout=0.0, **task_kw)
    net = _net("spikes")
    task.check_network(net)
    inst = task.instance(i)
    out = unroll(net, rule, theta, task, inst, key=jax.random.key(0))
    return task, inst, out


def test_the_encoder_spikes_passes_its_input_on():
    net = _net("spikes")
    x = jnp.array([0.0, 1.0, 1.0, 0.0, 2.0, 0.0])
    s, _ = net.encode(net.init(jax.random.key(0)).neurons, x)
    assert np.array_equal(np.asarray(s), np.asarray(x))
    with pytest.raises(ConfigError, match="unknown encoder"):
        _net("spike")


def test_simulated_spikes_replay_exactly_under_the_truth(recorded):
    rec, path, rule, theta = recorded
    assert set(np.unique(rec["inputs"])) <= {0.0, 1.0}  # the encoder's spikes, recorded
    assert set(np.unique(rec["activity"])) <= {0.0, 1.0}
    assert 0.05 < rec["inputs"].mean() < 0.5 and rec["activity"].sum() > 10
    task, inst, out = _replay(path, rule, theta)
    loss = float(task.loss(inst, out.state, out.env))
    assert loss < 1e-10 and float(task.metrics(inst, out.state, out.env)["r2"]) == \
        pytest.approx(1.0)
    # without plasticity the replay no longer matches: the rule is what the data show
    still = jax.tree.map(jnp.zeros_like, theta)
    task, inst, out = _replay(path, rule, still)
    loss0 = float(task.loss(inst, out.state, out.env))
    assert loss0 > 0.05
    assert float(task.metrics(inst, out.state, out.env)["r2"]) == pytest.approx(1 - loss0,
                                                                               rel=1e-5)


def test_spike_trains_are_compared_through_the_van_rossum_kernel(recorded):
    rec, path, rule, theta = recorded
    still = jax.tree.map(jnp.zeros_like, theta)
    tau = 4.0
    task, inst, out = _replay(path, rule, still, 1, spike_tau=tau)
    # the replay's output spikes, recorded step by step
    from metaplastic.inner import trace

    net = _net("spikes")
    _, _, y = trace(net, rule, still, task, inst, jax.random.key(0), lambda s: s[-1].post)
    y = np.asarray(y, np.float64)
    spikes = rec["activity"][1].astype(np.float64)
    decay, fy, fs, sse = np.exp(-1 / tau), np.zeros(2), np.zeros(2), 0.0
    filtered = []
    for t in range(spikes.shape[0]):
        fy, fs = decay * fy + y[t], decay * fs + spikes[t]
        filtered.append(fs.copy())
        sse += np.sum((fy - fs) ** 2)
    assert float(out.env.sse) == pytest.approx(sse, rel=1e-5)
    assert np.allclose(np.asarray(inst.activity), filtered, atol=1e-5)
    assert task._scale == pytest.approx(np.var(task._activity), rel=1e-5)


def test_spiking_recordings_refuse_what_cannot_replay_them(recorded, tmp_path):
    rec, path, rule, theta = recorded
    task = mp.tasks.make("recorded", path=path, observation="spikes")
    with pytest.raises(ConfigError, match="Poisson encoder would draw input spikes anew"):
        task.check_network(_net("poisson"))
    with pytest.raises(ConfigError, match="observation = 'spikes'"):
        mp.tasks.make("recorded", path=path).check_network(_net("spikes"))
    half = tmp_path / "half.npz"
    np.savez(half, **{**rec, "activity": rec["activity"] * 0.5})
    with pytest.raises(ConfigError, match="whole numbers"):
        mp.tasks.make("recorded", path=str(half), observation="spikes")
    with pytest.raises(ConfigError, match="spike_tau"):
        mp.tasks.make("recorded", path=path, observation="spikes", spike_tau=0.0)
    source = mp.tasks.make("pca", n_in=6, n_steps=20)
    key = jax.random.key(0)
    for net, kw, match in ((_net(), {}, "spiking network"),
                           (mp.Network(sizes=(6, 2)), {"observation": "spikes"}, "rate"),
                           (_net(), {"observation": "spikes", "noise": 0.1}, "noise = 0"),
                           (_net(sizes=(6, 3, 2)), {"observation": "spikes", "hidden": True},
                            "hidden")):
        with pytest.raises(ConfigError, match=match):
            simulate(net, rule, theta if net.shapes == ((2, 6),) else
                     rule.init(key, net.shapes), source, 2, key, **kw)


def test_spikes_only_checks_the_tasks_own_input_for_an_encoder_that_passes_it_on(
        recorded, tmp_path):
    rec, path, _, _ = recorded
    net = _net("spikes")
    task = mp.tasks.make("recorded", path=path, observation="spikes")
    result = check_spikes(net, jax.random.key(0), task=task)
    assert result.holds and "the task's inputs" in result.detail
    real = tmp_path / "real.npz"
    np.savez(real, **{**rec, "inputs": rec["inputs"] * 0.7})
    bad = check_spikes(net, jax.random.key(0),
                       task=mp.tasks.make("recorded", path=str(real), observation="spikes"))
    assert not bad.holds and "real-valued inputs" in bad.detail
    assert not check_spikes(net, jax.random.key(0)).holds  # no task: cannot say


def test_the_truth_replays_with_the_recorded_input_spikes():
    net = _net("poisson")
    assert replaying(net).encoder == "spikes"
    assert dataclasses.replace(replaying(net), encoder="poisson") == net
    rate = mp.Network(sizes=(6, 2))
    assert replaying(rate) is rate


@pytest.mark.tier2  # trains, recovers, exports and runs Brian2 in a fresh process
def test_spike_recordings_to_run_to_recover_to_brian2(recorded, tmp_path, monkeypatch,
                                                      capsys):
    """Simulated spike trains of STDP → `metaplastic run` (a spiking network replaying
    the input spikes, observation 'spikes') → `recover` → `export --format brian2` →
    Brian2's weights and spikes over one episode equal the library's."""
    from helpers import recover_then_brian2, run_fit

    _, path, _, _ = recorded
    monkeypatch.setenv("METAPLASTIC_CACHE", str(tmp_path / "cache"))
    run = run_fit(tmp_path, 'name = "stdp-from-spikes"\n'
                  f'[task]\nname = "recorded"\npath = "{path}"\nobservation = "spikes"\n'
                  'heldout = 0.25\n'
                  '[network]\nneuron = "lif"\ntau_mem = 10.0\nthreshold = 0.5\n'
                  'tau_trace = 10.0\nencoder = "spikes"\n', "spikes")
    rec_json, check, printed = recover_then_brian2(run, capsys)
    assert rec_json["trajectories"] == {"train": 3, "heldout": 1}
    assert rec_json["identifiability"]["observations"] == 3 * 150 * 2
    if check is not None:
        assert check["steps"] == 150 and check["relative"] < 1e-5, check
        assert check["spike_mismatches"] == 0 and check["spikes"] > 0, check
    else:
        assert "not installed" in printed


@pytest.mark.tier2  # trains from an NWB file of spike times in a fresh process
def test_spike_times_in_an_nwb_file_to_a_fit(recorded, tmp_path, monkeypatch):
    """Simulated input and output spikes written as an NWB session's Units (spike times,
    the trajectories as trials) → `metaplastic run` with a spiking network replaying the
    presynaptic units → the same input spikes as simulated, and a fit that runs."""
    from datetime import UTC, datetime

    import pynwb
    from pynwb import NWBFile

    from helpers import run_fit
    from metaplastic.tasks.recorded import load

    rec, _, _, _ = recorded
    n, t, n_in = rec["inputs"].shape
    bin_s = 0.001
    f = NWBFile(session_description="simulated spikes", identifier="spikes",
                session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
    trains = np.concatenate([rec["inputs"], rec["activity"]], axis=2).reshape(n * t, -1)
    for u in range(trains.shape[1]):  # a spike at the middle of its bin
        f.add_unit(spike_times=(np.flatnonzero(trains[:, u]) + 0.5) * bin_s)
    for k in range(n):
        f.add_trial(start_time=k * t * bin_s, stop_time=(k + 1) * t * bin_s)
    path = tmp_path / "spikes.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    monkeypatch.setenv("METAPLASTIC_CACHE", str(tmp_path / "cache"))
    run = run_fit(tmp_path, 'name = "stdp-from-nwb"\n'
                  '[task]\nname = "recorded"\nobservation = "spikes"\ninitial = "drawn"\n'
                  'heldout = 0.25\n'
                  f'nwb = {{files = ["{path}"], bin = {bin_s}, inputs = "units", '
                  f'input_units = {list(range(n_in))}, activity = "units", '
                  f'units = [{n_in}, {n_in + 1}]}}\n'
                  '[network]\nneuron = "lif"\ntau_mem = 10.0\nthreshold = 0.5\n'
                  'tau_trace = 10.0\nencoder = "spikes"\n', "nwb-spikes")
    (cached,) = (tmp_path / "cache" / "recordings").glob("nwb-*.npz")
    data = load(str(cached))
    np.testing.assert_array_equal(data["inputs"], rec["inputs"])
    np.testing.assert_array_equal(data["activity"], rec["activity"])
    assert (run / "theta.npz").is_file()
