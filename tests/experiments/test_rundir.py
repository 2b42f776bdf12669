import numpy as np
import pytest

from metaplastic import ConfigError, registry
from metaplastic.experiments.rundir import RunDir, load_theta, new_run_dir, save_theta


def test_theta_round_trip_without_pickle(tmp_path):
    theta = {"coef": np.arange(27, dtype=np.float32).reshape(3, 3, 3),
             "layers": {"a": np.ones(2), "b": np.zeros((2, 2))}}
    save_theta(tmp_path / "t.npz", theta)
    with np.load(tmp_path / "t.npz", allow_pickle=False) as data:  # loads: no object arrays
        assert sorted(data.files) == ["coef", "layers/a", "layers/b"]
    back = load_theta(tmp_path / "t.npz")
    np.testing.assert_array_equal(back["coef"], theta["coef"])
    np.testing.assert_array_equal(back["layers"]["b"], theta["layers"]["b"])


def test_per_layer_theta_round_trip(tmp_path):
    theta = ({"A": np.ones((2, 3)), "eta": np.zeros((2, 3))}, {"A": np.ones((1, 2)),
                                                              "eta": np.ones((1, 2))})
    save_theta(tmp_path / "t.npz", {"w": theta})
    back = load_theta(tmp_path / "t.npz")
    assert isinstance(back["w"], tuple) and len(back["w"]) == 2
    np.testing.assert_array_equal(back["w"][1]["eta"], np.ones((1, 2)))
    save_theta(tmp_path / "u.npz", theta)
    assert isinstance(load_theta(tmp_path / "u.npz"), tuple)


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a numeric array"):
        save_theta(tmp_path / "t.npz", {"x": np.array([{"a": 1}], dtype=object)})


def test_run_dirs_never_collide(tmp_path):
    a, b = new_run_dir(tmp_path, "x"), new_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()


def test_metrics_jsonl_round_trip_with_nan(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics([{"step": 1, "loss": float("nan"), "theta": [1.0, 2.0]}])
    run.append_metrics([{"step": 2, "loss": 0.5, "theta": [1.5, 2.0]}])
    m = run.metrics()
    assert [r["step"] for r in m] == [1, 2] and m[0]["loss"] is None and m[1]["loss"] == 0.5


def test_not_a_run_dir(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        RunDir.open(tmp_path)
    with pytest.raises(ConfigError, match="no parameters file"):
        load_theta(tmp_path / "theta.npz")


def test_unreadable_theta_file_is_a_clear_error(tmp_path):
    (tmp_path / "theta.npz").write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match="cannot read parameters file"):
        load_theta(tmp_path / "theta.npz")


@pytest.mark.parametrize("name", registry.names("rule"))
def test_every_rules_theta_loads_back_checked(name, tmp_path):
    from types import SimpleNamespace

    import jax

    import metaplastic as mp
    from metaplastic.experiments.rule_runs import run_theta
    from metaplastic.experiments.rundir import RunDir

    rule = mp.rules.make(name)
    net = mp.Network(sizes=(3, 4, 2))
    theta = rule.init(jax.random.key(1), net.shapes)
    run = RunDir(tmp_path)
    run.save_theta(theta)
    back = run_theta(run, SimpleNamespace(rule=rule, network=net))
    assert jax.tree.structure(back) == jax.tree.structure(theta)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(theta), strict=True):
        np.testing.assert_array_equal(a, b)
