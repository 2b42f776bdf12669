"""Argument parsing, bad input and exit codes: nothing is trained."""

import subprocess
import sys

import numpy as np
import pytest

from metaplastic.cli import main


@pytest.mark.parametrize("args, msg", [
    (["run", "oja", "--set", "meta.stepz=3"], "unknown option(s) 'stepz'"),
    (["run", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
    (["run", "missing.toml"], "does not exist"),
    (["eval", "/nonexistent/run"], "not a run directory"),
    (["run", "oja", "--set", "rule.name=ojaa"], "unknown rule 'ojaa'"),
    (["run", "oja", "--set", "reference=bienenstock"], "unknown rule 'bienenstock'"),
    (["run", "oja", "--set", "eval.baselines=['hebb', 'stpd']"], "unknown rule 'stpd'"),
    (["run", "oja", "--set", "eval.vary={n_inputs = [3]}"], "unknown option(s) 'n_inputs'"),
    (["run", "oja", "--seeds", "4-2"], "--seeds takes seeds >= 0"),
    (["run", "oja", "--seeds", "0,x"], "--seeds takes seeds >= 0"),
    (["run", "oja", "--seeds", "0-1", "--seed", "3"], "not both"),
    (["run", "oja", "--seeds", "0-99999"], "100000 seeds"),
    (["run", "oja", "--seeds", "0-1", "--set", "meta.stepz=3"], "unknown option(s) 'stepz'"),
])
def test_bad_input_is_one_clear_message(args, msg, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)] if args[0] == "run" else args) == 2
    out = capsys.readouterr().out
    assert msg in out and "Traceback" not in out
    assert not any(tmp_path.iterdir())  # nothing half-created


@pytest.mark.parametrize("spec, seeds", [("0-4", [0, 1, 2, 3, 4]), ("0,3,7", [0, 3, 7]),
                                         ("0-2,7,1", [0, 1, 2, 7]), (" 5 ", [5])])
def test_seed_lists(spec, seeds):
    from metaplastic.cli import parse_seeds

    assert parse_seeds(spec) == seeds


@pytest.mark.tier2
def test_console_script_exit_status():
    r = subprocess.run([sys.executable, "-m", "metaplastic.cli", "run", "ojaa"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown preset" in r.stdout


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("oja", "polynomial", "pca", "symmetric", "adam"):
        assert word in out


def test_list_one_kind_with_one_spelling_per_strategy(capsys):
    assert main(["list", "strategies"]) == 0
    names = capsys.readouterr().out.split(":", 1)[1].replace("\n", " ").split(", ")
    names = [n.strip() for n in names]
    assert "open_es" in names and "cma_es" in names
    assert not {"Open_ES", "openai_es", "CMA_ES"} & set(names)  # one spelling each
    assert main(["list", "rules"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rules:") and "termpool" in out and "presets" not in out


@pytest.mark.parametrize("preset", ["oja", "selection-meta"])
def test_show_prints_the_config_that_runs(preset, tmp_path, capsys):
    """`metaplastic show` prints the resolved config as TOML; saved, it loads back as the
    same config (what `metaplastic run FILE` runs), overrides included."""
    from metaplastic.experiments import study as studies

    assert main(["show", preset, "--set", "seed=7"]) == 0
    (tmp_path / "my.toml").write_text(capsys.readouterr().out)
    study, cfg = studies.load(tmp_path / "my.toml")
    want_study, want = studies.resolve(preset, ["seed=7"], None)
    assert study.name == want_study.name and study.to_dict(cfg) == want_study.to_dict(want)
    assert main(["show", "nosuch"]) == 2


@pytest.mark.parametrize("setup, args, msg", [
    (lambda d: (d / "bad.toml").write_bytes(b"name = \"\xff\xfe\"\n"), ["run", "{d}/bad.toml"],
     "not UTF-8"),
    (lambda d: (d / "file").write_text("x"), ["run", "oja", "--out", "{d}/file"],
     "cannot create the run directory"),
    (lambda d: None, ["run", "oja", "--seed", str(2**70)], "config.seed = 11805916"),
    (lambda d: None, ["run", "oja", "--set", "seed=-1"], "seed must be >= 0"),
    (lambda d: None, ["run", "oja", "--set", "meta.steps=99999999999"],
     "meta.steps = 99999999999 is out of range"),
    (lambda d: None, ["run", "oja", "--set", "task.n_steps=99999999999"], "is out of range"),
])
def test_damaged_inputs_are_one_clear_message(setup, args, msg, tmp_path, capsys):
    setup(tmp_path)
    args = [a.replace("{d}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "runs")]
    assert main(args) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert msg in out and "Traceback" not in out


def test_version_names_the_libraries_results_depend_on(capsys):
    import importlib.metadata as md

    import metaplastic

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"metaplastic {metaplastic.__version__}" in out
    for lib in ("jax", "optax", "evosax", "gymnax"):
        assert f"{lib} {md.version(lib)}" in out


@pytest.mark.parametrize("kind, package", [("wandb", "wandb"), ("tensorboard", "tensorboardX")])
def test_a_missing_logger_package_is_one_message(kind, package, capsys, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    assert main(["run", "oja", "--log", kind, "--out", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"--log {kind} needs {package}" in out and "Traceback" not in out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("row, label", [
    ({"rule": "pair STDP (eta tuned)", "tuned": {"eta": 0.03}}, "pair STDP (eta 0.03)"),
    ({"rule": "SGD", "tuned": {"eta": 0.1}}, "SGD (eta 0.1)"),
    ({"rule": "learned"}, "learned"),
    ({"rule": "SGD", "tuned": {"eta": 0.3}, "tuned_on_grid_edge": ["eta"]},
     "SGD (eta 0.3 at the grid's edge)"),
])
def test_tuned_baselines_are_labelled_once(row, label):
    from metaplastic.cli import tuned_label

    assert tuned_label(row) == label


def test_a_tuned_value_on_the_grid_edge_is_found():
    from metaplastic.experiments.baselines import Baseline, grid_edges

    base = Baseline.parse({"label": "SGD", "rule": "sgd", "tune": {"eta": [0.01, 0.1, 1.0]}})
    assert grid_edges(base, {"eta": 1.0}) == ["eta"]
    assert grid_edges(base, {"eta": 0.01}) == ["eta"]
    assert grid_edges(base, {"eta": 0.1}) == []


def test_simulate_writes_recordings_a_run_can_fit(tmp_path, capsys):
    out = tmp_path / "rec.npz"
    assert main(["simulate", "infer-oja-activity", "--set", "task.simulate.trajectories=5",
                 "--set", "task.simulate.source.n_steps=50", "--out", str(out)]) == 0
    assert "5 trajectories of 50 steps" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as f:
        assert f["activity"].shape == (5, 50, 4) and f["w0_1"].shape == (5, 4, 10)
        assert np.all(f["activity_mask"].sum(axis=2) == 2)  # half of 4 neurons recorded
    assert main(["simulate", "oja", "--out", str(out)]) == 2
    assert "no task.simulate" in capsys.readouterr().out
    assert main(["simulate", "infer-oja-activity", "--set", "task.simulate.record=0",
                 "--out", str(tmp_path / "r0.npz")]) == 2
    assert "record" in capsys.readouterr().out


def test_simulate_refuses_recordings_that_cannot_fit_in_memory(tmp_path, capsys):
    out = tmp_path / "huge.npz"
    assert main(["simulate", "infer-oja-activity", "--set",
                 "task.simulate.trajectories=1000000", "--out", str(out)]) == 2
    assert "simulate fewer or shorter trajectories" in capsys.readouterr().out
    assert not out.exists()
