"""NWB files (written here with pynwb, nothing downloaded) read into the recordings
layout: spike times binned to counts, ΔF/F of ROIs averaged per bin, stimulus series,
rewards, trials as trajectories or as steps; every missing or ambiguous piece named in one
message; the observation models (Poisson counts, calcium ΔF/F) the recorded task fits."""

from datetime import UTC, datetime

import jax
import numpy as np
import pynwb  # a dev dependency: make test installs it
import pytest

import metaplastic as mp
from helpers import recover_then_brian2, run_fit
from metaplastic.errors import ConfigError
from metaplastic.tasks import nwb as nwb_reader

RATE = 100.0  # Hz of the stimulus and ΔF/F series
SPIKES = [[0.05, 0.06, 0.31, 1.25], [0.95, 1.5, 1.51, 1.52]]  # two units


def _file(path, *, trials=True, roi=True, duplicate=False):
    """A 2-s session: a 2-channel stimulus, two units, ΔF/F of 3 ROIs, rewards as
    events, and two 1-s trials with a choice and a reward column."""
    from pynwb import NWBFile, TimeSeries
    from pynwb.ophys import ImageSegmentation, OpticalChannel, RoiResponseSeries

    f = NWBFile(session_description="test", identifier=str(path),
                session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
    t = np.arange(int(2 * RATE)) / RATE
    stim = np.stack([np.sin(2 * np.pi * t), t], axis=1)
    f.add_stimulus(TimeSeries(name="odour", data=stim, unit="a.u.", rate=RATE,
                              starting_time=0.0))
    for s in SPIKES:
        f.add_unit(spike_times=s)
    behaviour = f.create_processing_module("behavior", "rewards")
    behaviour.add(TimeSeries(name="reward", data=np.array([1.0, 0.5]), unit="a.u.",
                             timestamps=np.array([0.42, 1.7])))
    if duplicate:  # a second series of the same name elsewhere
        f.add_acquisition(TimeSeries(name="odour", data=stim, unit="a.u.", rate=RATE))
    if roi:
        device = f.create_device(name="scope")
        plane = f.create_imaging_plane(
            name="plane", optical_channel=OpticalChannel(name="green", description="GCaMP",
                                           emission_lambda=510.0),
            description="", device=device, excitation_lambda=920.0, imaging_rate=RATE,
            indicator="GCaMP6s", location="MB")
        seg = ImageSegmentation()
        ps = seg.create_plane_segmentation("rois", plane, "PlaneSegmentation")
        for k in range(3):
            mask = np.zeros((4, 4))
            mask[k, k] = 1.0
            ps.add_roi(image_mask=mask)
        ophys = f.create_processing_module("ophys", "ΔF/F")
        ophys.add(seg)
        region = ps.create_roi_table_region("all", region=[0, 1, 2])
        dff = np.stack([t, 2 * t, -t], axis=1)
        ophys.add(RoiResponseSeries(name="dff", data=dff, rois=region, unit="ratio",
                                    rate=RATE, starting_time=0.0))
    if trials:
        f.add_trial_column("choice", "accepted (1) or not (0)")
        f.add_trial_column("rewarded", "reward delivered")
        f.add_trial_column("cue", "odour identity")
        for k, (c, r) in enumerate([(1, 1.0), (0, 0.0)]):
            f.add_trial(start_time=float(k), stop_time=float(k + 1), choice=c, rewarded=r,
                        cue=float(k))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return str(path)


def test_spikes_are_counted_per_bin_within_each_trial(tmp_path):
    path = _file(tmp_path / "a.nwb")
    d = nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "odour",
                         "activity": "units", "rewards": "reward"})
    assert d["inputs"].shape == (2, 10, 2) and d["activity"].shape == (2, 10, 2)
    np.testing.assert_array_equal(d["lengths"], [10, 10])
    want = np.zeros((2, 10, 2))
    for u, times in enumerate(SPIKES):
        for s in times:
            want[int(s), int(round((s % 1.0) * 1e6)) // 100000, u] += 1
    np.testing.assert_array_equal(d["activity"], want)
    # the stimulus averaged over each bin's 10 samples
    t = np.arange(200) / RATE
    np.testing.assert_allclose(d["inputs"][1, 3, 1], t[130:140].mean(), rtol=1e-6)
    # rewards summed per bin: 1.0 at 0.42 s (trial 0, bin 4), 0.5 at 1.7 s (trial 1, bin 7)
    assert d["rewards"][0, 4] == 1.0 and d["rewards"][1, 7] == 0.5
    assert d["rewards"].sum() == 1.5


def test_presynaptic_units_as_input_spikes(tmp_path):
    """`inputs = "units"`: the presynaptic rows' spike counts are the inputs (for a spiking
    network replaying them), `units` the output rows; a row in both, or no rows named, is
    one message."""
    path = _file(tmp_path / "s.nwb")
    d = nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "units", "input_units": [1],
                         "activity": "units", "units": [0]})
    assert d["inputs"].shape == (2, 10, 1) and d["activity"].shape == (2, 10, 1)
    both = nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "odour",
                            "activity": "units"})
    np.testing.assert_array_equal(d["inputs"][..., 0], both["activity"][..., 1])
    np.testing.assert_array_equal(d["activity"][..., 0], both["activity"][..., 0])
    assert d["inputs"].sum() == len(SPIKES[1])  # 0.95, 1.5, 1.51, 1.52 s: all in trials
    with pytest.raises(ConfigError) as e:
        nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "units",
                         "input_units": [0, 1], "activity": "units", "units": [1]})
    assert "rows [1] are in both input_units and units" in str(e.value)
    with pytest.raises(ConfigError, match="input_units"):
        nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "units",
                         "activity": "dff"})
    with pytest.raises(ConfigError, match=r"task.nwb.input_units: \[7\] are not rows"):
        nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "units",
                         "input_units": [7], "activity": "dff"})


def test_roi_dff_and_a_whole_session_without_trials(tmp_path):
    path = _file(tmp_path / "b.nwb", trials=False)
    d = nwb_reader.read({"files": [path, path], "bin": 0.5, "inputs": "stimulus/odour",
                         "activity": "dff"})
    # one trajectory per file, over the whole session (4 bins of 0.5 s)
    assert d["activity"].shape == (2, 4, 3)
    t = np.arange(200) / RATE
    np.testing.assert_allclose(d["activity"][0, 1], [t[50:100].mean(), 2 * t[50:100].mean(),
                                                     -t[50:100].mean()], rtol=1e-6)


def test_a_hidden_layer_from_a_series(tmp_path):
    """Spike counts for the output, ΔF/F of 3 ROIs for hidden layer 1 (averaged per bin)."""
    path = _file(tmp_path / "h.nwb")
    d = nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "odour", "activity": "units",
                         "hidden": {"1": "dff"}})
    assert d["activity_1"].shape == (2, 10, 3)
    t = np.arange(200) / RATE
    np.testing.assert_allclose(d["activity_1"][1, 2], [m := t[120:130].mean(), 2 * m, -m],
                               rtol=1e-6)
    with pytest.raises(ConfigError, match="hidden layers"):
        nwb_reader.check_spec({"files": [path], "bin": 0.1, "hidden": {"x": "dff"}})


def test_trials_as_steps_for_behaviour(tmp_path):
    path = _file(tmp_path / "c.nwb")
    d = nwb_reader.read({"files": [path], "steps": "trials", "inputs": ["cue"],
                         "choices": "choice", "rewards": "rewarded", "outcomes": "rewarded"})
    np.testing.assert_array_equal(d["choices"], [[1, 0]])
    np.testing.assert_array_equal(d["inputs"][0, :, 0], [0.0, 1.0])
    np.testing.assert_array_equal(d["outcomes"], [[1.0, 0.0]])


def test_every_missing_or_ambiguous_piece_in_one_message(tmp_path):
    path = _file(tmp_path / "d.nwb", trials=False, duplicate=True)
    with pytest.raises(ConfigError) as e:
        nwb_reader.read({"files": [path], "bin": 0.1, "inputs": "odour",
                         "activity": "gcamp", "rewards": "water", "trials": True})
    msg = str(e.value)
    for piece in ("2 series are called 'odour'", "no TimeSeries 'gcamp'",
                  "no TimeSeries 'water'", "no trials table", "processing/ophys/dff"):
        assert piece in msg, piece
    with pytest.raises(ConfigError, match="bin"):
        nwb_reader.check_spec({"files": [path], "inputs": "odour"})
    with pytest.raises(ConfigError, match="unknown key"):
        nwb_reader.check_spec({"files": [path], "bin": 1, "input": "odour"})
    with pytest.raises(ConfigError, match="no such file"):
        nwb_reader.check_spec({"files": [str(tmp_path / "none.nwb")], "bin": 1})
    bad = tmp_path / "bad.nwb"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match="cannot read it as NWB"):
        nwb_reader.read({"files": [str(bad)], "bin": 1, "inputs": "x", "activity": "units"})


def test_a_config_reads_nwb_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METAPLASTIC_CACHE", str(tmp_path / "cache"))
    from metaplastic.experiments.build import build_task
    from metaplastic.experiments.config import from_dict

    path = _file(tmp_path / "e.nwb")
    cfg = from_dict({"name": "nwb", "task": {
        "name": "recorded", "initial": "drawn", "observation": "poisson", "heldout": 0.0,
        "nwb": {"files": [path], "bin": 0.1, "inputs": "odour", "activity": "units"}},
        "network": {"hidden": []}, "rule": {"name": "polynomial"}})
    task = build_task(cfg)
    assert task.n_in == 2 and task.n_out == 2 and task.n_steps == 10
    assert len(list((tmp_path / "cache" / "recordings").glob("nwb-*.npz"))) == 1
    with pytest.raises(ConfigError, match="both set"):
        from_dict({"name": "x", "task": {"name": "recorded", "nwb": {"files": [path],
                                                                   "bin": 1},
                                          "simulate": {"rule": "oja"}}})


# ------------------------------------------------------------------- observation models
def _recordings(tmp_path, activity, name="r.npz"):
    path = tmp_path / name  # (a file is read once per process: a new name per content)
    rng = np.random.default_rng(0)
    np.savez(path, inputs=rng.standard_normal((2, activity.shape[1], 3)).astype(np.float32),
             activity=activity.astype(np.float32))
    return str(path)


def _replayed(task, i):
    """Trajectory ``i`` replayed at θ = 0 of the polynomial (no plasticity): the instance,
    the unroll and the output at every step (float64)."""
    net = mp.Network(sizes=(3, 2))
    rule = mp.rules.make("polynomial")
    theta = rule.init(jax.random.key(0), net.shapes)
    inst = task.instance(i)
    out = mp.inner.unroll(net, rule, theta, task, inst, key=jax.random.key(0))
    y = np.asarray(jax.vmap(lambda x: net.forward(out.state.weights, x).rates[-1])(
        inst.inputs), np.float64)  # the same weights throughout
    return inst, out, y


def test_poisson_counts_loss_is_the_nll_from_the_saturated_model(tmp_path):
    counts = np.random.default_rng(1).poisson(2.0, (2, 20, 2)).astype(np.float64)
    task = mp.tasks.make("recorded", path=_recordings(tmp_path, counts), initial="drawn",
                         observation="poisson", split="all", heldout=0.0)
    inst, out, y = _replayed(task, 0)
    lam = np.logaddexp(0, y)
    import math

    k = counts[0]
    nll = np.sum(lam - k * np.log(lam) + np.vectorize(math.lgamma)(k + 1))
    assert float(out.env.nll) == pytest.approx(nll, rel=1e-5)
    sat, scale = task._poisson
    assert float(task.loss(inst, out.state, out.env)) == pytest.approx(
        (nll / k.size - sat) / scale, rel=1e-5)
    with pytest.raises(ConfigError, match="whole"):
        mp.tasks.make("recorded", path=_recordings(tmp_path, counts + 0.5, "half.npz"),
                      initial="drawn",
                      observation="poisson")


def test_calcium_is_the_rate_through_the_indicator(tmp_path):
    dff = np.random.default_rng(2).standard_normal((2, 15, 2))
    task = mp.tasks.make("recorded", path=_recordings(tmp_path, dff), initial="drawn",
                         observation="calcium", calcium_tau=4.0, split="all", heldout=0.0)
    _, out, y = _replayed(task, 1)
    ca, sse = np.zeros(2), 0.0
    for t in range(15):
        ca = np.exp(-1 / 4.0) * ca + y[t]
        sse += np.sum((ca - dff[1, t]) ** 2)
    assert float(out.env.sse) == pytest.approx(sse, rel=1e-5)
    assert task.profiled
    with pytest.raises(ConfigError, match="fit = 'activity'"):
        mp.tasks.make("recorded", path=_recordings(tmp_path, dff), observation="calcium",
                      fit="choices", initial="drawn")


# ---------------------------------------------------------------- end to end (tier 2)
def _nwb_of(recordings: dict, path, bin_s: float) -> str:
    """Simulated recordings written as a lab would: one session, the trajectories one
    after the other as trials, the inputs a stimulus series, ΔF/F a series."""
    from pynwb import NWBFile, TimeSeries

    n, t, _ = recordings["inputs"].shape
    f = NWBFile(session_description="simulated", identifier="e2e",
                session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
    f.add_stimulus(TimeSeries(name="stim", data=recordings["inputs"].reshape(n * t, -1),
                              unit="a.u.", rate=1 / bin_s, starting_time=0.0))
    f.add_acquisition(TimeSeries(name="dff", data=recordings["activity"].reshape(n * t, -1),
                                 unit="ratio", rate=1 / bin_s, starting_time=0.0))
    for k in range(n):
        f.add_trial(start_time=k * t * bin_s, stop_time=(k + 1) * t * bin_s)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return str(path)


@pytest.mark.tier2  # trains, recovers, exports and runs Brian2 in a fresh process
def test_nwb_to_run_to_recover_to_brian2(tmp_path, monkeypatch, capsys):
    """Calcium recordings of Oja's rule in an NWB file → `metaplastic run` (the start
    fitted: NWB holds no weights) → `recover` → `export --format brian2` → Brian2's
    weights over one episode equal the library's."""
    from metaplastic.analysis.simulate import simulate

    monkeypatch.setenv("METAPLASTIC_CACHE", str(tmp_path / "cache"))
    net = mp.Network(sizes=(5, 3))
    oja = mp.rules.make("oja", eta=0.05)
    source = mp.tasks.make("pca", n_in=5, n_steps=40, scale_range=[0.5, 2.0])
    rec = simulate(net, oja, oja.init(jax.random.key(0), net.shapes), source, 6,
                   jax.random.key(1), noise=0.05, observation="calcium", calcium_tau=5.0)
    nwb_file = _nwb_of(rec, tmp_path / "session.nwb", 0.05)
    run = run_fit(tmp_path, 'name = "from-nwb"\n'
                  '[task]\nname = "recorded"\nheldout = 0.34\ninitial = "fitted"\n'
                  'observation = "calcium"\ncalcium_tau = 5.0\n'
                  f'nwb = {{files = ["{nwb_file}"], bin = 0.05, inputs = "stim", '
                  f'activity = "dff"}}\n', "nwb")
    rec_json, check, printed = recover_then_brian2(run, capsys)
    assert rec_json["trajectories"] == {"train": 4, "heldout": 2}
    assert rec_json["identifiability"]["observations"] == 4 * 40 * 3
    if check is not None:
        assert check["steps"] == 40 and check["relative"] < 1e-5, check
        assert "weights within" in printed
    else:
        assert "not installed" in printed
