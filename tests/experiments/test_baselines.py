import jax
import numpy as np
import pytest

from metaplastic import ConfigError
from metaplastic.experiments import build, config, presets
from metaplastic.experiments.baselines import Baseline, baseline_pieces, tune_baseline
from metaplastic.experiments.evaluate import evaluate
from metaplastic.meta import Objective


@pytest.fixture(scope="module")
def small_fa():
    return config.override(presets.get("fa-digits"), [
        "task.shots=3", "task.queries=3", "network.hidden=[8]", "eval.tasks=16"])


def test_baseline_specs():
    b = Baseline.parse("oja")
    assert (b.label, b.rule, b.network, b.tune) == ("oja", {"name": "oja"}, {}, {})
    b = Baseline.parse({"label": "BP", "rule": {"name": "sgd"},
                        "network": {"feedback": "symmetric"}, "tune": {"eta": [0.1, 1.0]}})
    assert b.label == "BP" and b.network == {"feedback": "symmetric"}
    with pytest.raises(ConfigError, match="unknown key"):
        Baseline.parse({"rule": "sgd", "colour": 1})
    with pytest.raises(ConfigError, match="a rule name or a table"):
        Baseline.parse({"label": "x"})


def test_baseline_network_and_rule_are_applied(small_fa):
    b = Baseline.parse(small_fa.eval.baselines[0])  # backprop
    p = build(b.config(small_fa))
    assert p.network.feedback == "symmetric" and p.rule.terms == ("pseudo_grad",)
    assert build(small_fa).network.feedback == "random"  # the run's own network untouched


def test_eta_tuning_by_scaling_theta_equals_rebuilding(small_fa):
    b = Baseline.parse(small_fa.eval.baselines[2])  # FA
    key = jax.random.key(3)
    p_scaled, th_scaled = baseline_pieces(small_fa, b, {"eta": 0.1})
    p_rebuilt = build(b.config(small_fa, eta=0.1))
    th_rebuilt = p_rebuilt.rule.init(key, p_rebuilt.network.shapes)
    a = evaluate(Objective(p_scaled.task, p_scaled.network, p_scaled.rule), th_scaled,
                 key=key, n_tasks=8)
    c = evaluate(Objective(p_rebuilt.task, p_rebuilt.network, p_rebuilt.rule), th_rebuilt,
                 key=key, n_tasks=8)
    np.testing.assert_allclose(a["loss"], c["loss"], rtol=1e-4)


def test_tuning_picks_the_best_grid_point(small_fa):
    # a grid with a useless, a good and an exploding learning rate for backprop
    b = Baseline.parse({"label": "BP", "rule": {"name": "sgd"},
                        "network": {"feedback": "symmetric"},
                        "tune": {"eta": [1e-6, 0.1, 1e4]}})
    assert tune_baseline(small_fa, b, n_tasks=16) == {"eta": 0.1}


def test_bad_baseline_fails_before_training(small_fa):
    from metaplastic.experiments.rule_runs import validate

    bad = "eval.baselines=[{rule = 'sgd', network = {feedback = 'magic'}}]"
    cfg = config.override(small_fa, [bad])
    with pytest.raises(ConfigError, match="feedback"):
        validate(cfg)


def test_meta_trained_baseline_is_trained_once_and_kept(small_fa, tmp_path):
    from metaplastic.experiments.baselines import meta_trained_baseline
    from metaplastic.experiments.rundir import RunDir

    cfg = config.override(small_fa, ["meta.steps=4", "meta.chunk=2"])
    b = Baseline.parse({"label": "term pool", "meta_train": True,
                        "rule": {"name": "termpool", "start": "pseudo_grad"}})
    run = RunDir(tmp_path)
    theta = meta_trained_baseline(cfg, b, run)
    saved = tmp_path / "baseline-term-pool.npz"
    assert saved.exists()
    start = build(b.config(cfg)).rule.init(jax.random.key(0))
    assert not np.allclose(theta["coef"], start["coef"])  # it was meta-trained
    # the second call loads the kept θ instead of training again
    from metaplastic.experiments.rundir import save_theta

    save_theta(saved, {"coef": theta["coef"] + 1.0})
    again = meta_trained_baseline(cfg, b, run)
    np.testing.assert_array_equal(again["coef"], theta["coef"] + 1.0)


def test_meta_train_spec_errors():
    with pytest.raises(ConfigError, match="meta_train must be true, false or"):
        Baseline.parse({"rule": "termpool", "meta_train": "yes"})
    with pytest.raises(ConfigError, match="'meta' is a table of"):
        Baseline.parse({"rule": "sgd", "meta": {"lr": 0.1}})  # not meta-trained
    with pytest.raises(ConfigError, match="'meta' is a table of"):
        Baseline.parse({"rule": "sgd", "meta_train": True, "meta": 0.1})


def test_per_row_meta_trained_baseline_learns_each_rows_layer_rates(small_fa, tmp_path):
    """FA with meta-learned per-layer rates (``meta_train = "row"``): trained afresh on
    every row's meta-training classes with the baseline's [meta] changes, kept per row."""
    from metaplastic.experiments.baselines import meta_trained_baseline
    from metaplastic.experiments.rundir import RunDir

    cfg = config.override(small_fa, ["meta.steps=6", "meta.chunk=3"])
    b = Baseline.parse(presets.CONTROLS[-1])
    assert b.meta_train == "row" and b.config(cfg).meta["lr"] == 0.05
    assert b.config(cfg).meta["steps"] == 6  # the run's budget
    run = RunDir(tmp_path)
    rows = [("digits", {}), ("mnist1d", {"dataset": "mnist1d"})]
    thetas = [meta_trained_baseline(cfg, b, run, row) for row in rows]
    for (label, _), theta in zip(rows, thetas, strict=True):
        assert (tmp_path / f"baseline-{b.label.replace(' ', '-').replace(',', '-')}"
                           f"-{label}.npz").exists()
        assert len(theta) == 2  # one rate per layer of 64-8-5
        assert all(abs(float(t["log_rate"])) > 0.01 for t in theta)  # it was meta-trained
    a, c = ([float(t["log_rate"]) for t in th] for th in thetas)
    assert not np.allclose(a, c)  # each row its own rates
    with pytest.raises(ConfigError, match="not both"):
        Baseline.parse({"rule": "termpool", "meta_train": True, "tune": {"eta": [1.0]}})


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_learned_rule_ablations_and_online_adam(small_fa, tmp_path, monkeypatch):
    """``rule = "learned"`` evaluates the run's own θ under network changes: unchanged it
    reproduces the learned row exactly; without hidden feedback it differs. Online Adam
    with backprop's errors is tuned like the other baselines."""
    from metaplastic.experiments.rule_runs import evaluate_run
    from metaplastic.experiments.rundir import RunDir

    cfg = config.override(small_fa, ["eval.variants=[{label = 'train'}]"])
    cfg = config.override(cfg, ["eval.baselines=["
                                "{label = 'same', rule = 'learned'},"
                                "{rule = 'learned', network = {feedback = 'none'}},"
                                "{label = 'BP-Adam', rule = 'adam', "
                                " network = {feedback = 'symmetric'},"
                                " tune = {eta = [1e-9, 1e-2]}}]"])
    run = RunDir(tmp_path)
    run.save_config(cfg)
    p = build(cfg)
    run.save_theta({"coef": p.rule.init(jax.random.key(0))["coef"] * 1.5})
    seen = []
    rows = {r["rule"]: r for r in evaluate_run(run, progress=lambda *a: seen.append(a))}
    assert set(rows) == {"learned", "same", "learned (feedback = none)", "BP-Adam"}
    # no callable on a terminal: the library's bar (metaplastic.progress), same numbers
    import io

    from rich.console import Console

    from metaplastic import progress as prog

    screen = io.StringIO()
    real_bar = prog.bar
    monkeypatch.setattr(prog, "bar", lambda what, total: real_bar(
        what, total, Console(file=screen, force_terminal=True, width=100)))
    monkeypatch.setattr(prog, "interactive", lambda: True)
    again = {r["rule"]: r for r in evaluate_run(run)}
    assert "evaluating" in screen.getvalue() and "6/6" in screen.getvalue()
    assert again["learned"]["accuracy"] == rows["learned"]["accuracy"]
    # progress: 2 tuning points, then 4 cells of the one row, counted up to the total
    assert [d for d, _, _ in seen] == list(range(1, 7)) and {t for _, t, _ in seen} == {6}
    assert seen[0][2] == "tuning BP-Adam" and seen[-1][2] == "BP-Adam on train"
    assert rows["same"]["accuracy"] == rows["learned"]["accuracy"]
    assert rows["same"]["loss"] == rows["learned"]["loss"]
    assert rows["learned (feedback = none)"]["loss"] != rows["learned"]["loss"]
    assert rows["BP-Adam"]["tuned"] == {"eta": 1e-2}
    assert rows["BP-Adam"]["accuracy"]["mean"] > 0.3  # chance is 0.2


def test_learned_baseline_takes_only_network_changes():
    with pytest.raises(ConfigError, match="only 'label' and 'network'"):
        Baseline.parse({"rule": "learned", "tune": {"eta": [1.0]}})
    with pytest.raises(ConfigError, match="only 'label' and 'network'"):
        Baseline.parse({"rule": {"name": "learned", "eta": 2.0}})


@pytest.mark.tier2  # slow: trains or tunes end to end (second tier)
def test_baselines_tuned_per_row_on_that_rows_training_classes(small_fa, tmp_path):
    from metaplastic.experiments.rule_runs import evaluate_run
    from metaplastic.experiments.rundir import RunDir

    cfg = config.override(small_fa, [
        "eval.tune_per_variant=true", "eval.tasks=16",
        "eval.variants=[{label = 'shallow', classes = 'heldout', network = {hidden = []}},"
        " {label = 'deep', classes = 'heldout', network = {hidden = [8, 8, 8, 8, 8]}}]",
        "eval.baselines=[{label = 'BP', rule = 'sgd', network = {feedback = 'symmetric'},"
        " tune = {eta = [0.1, 0.3]}}]"])
    run = RunDir(tmp_path)
    run.save_config(cfg)
    run.save_theta(build(cfg).rule.init(jax.random.key(0)))
    rows = {(r["rule"], r["variant"]): r for r in evaluate_run(run)}
    b = Baseline.parse(cfg.eval.baselines[0])
    for label, hidden in (("shallow", []), ("deep", [8, 8, 8, 8, 8])):
        expected = tune_baseline(cfg, b, 16, classes="train", network={"hidden": hidden})
        assert rows["BP", label]["tuned"] == expected, (label, expected)
    assert rows["BP", "shallow"]["tuned"] != rows["BP", "deep"]["tuned"]  # 0.1 vs 0.3
    assert rows["learned", "deep"]["loss"] != rows["learned", "shallow"]["loss"]
    # every row's programs were released: an evaluation matrix compiles hundreds, and a
    # process that keeps them runs out of memory mappings (a crash inside LLVM)
    from metaplastic.experiments.evaluate import _evaluate

    assert _evaluate._cache_size() == 0


def test_a_baseline_whose_meta_training_blows_up_is_kept_at_its_last_good_theta(
        small_fa, monkeypatch):
    """Its row is evaluated (at the θ the guard kept) with a warning, not a crashed
    evaluation of every other row."""
    from types import SimpleNamespace

    from metaplastic.errors import NonFiniteError
    from metaplastic.experiments.baselines import meta_trained_baseline

    b = Baseline.parse(presets.CONTROLS[-1])
    outer = type(build(b.config(small_fa), classes="train").outer)
    kept = ({"log_rate": np.float32(0.5)}, {"log_rate": np.float32(-0.5)})

    def blows_up(self, objective, theta0, key=None, **kw):
        err = NonFiniteError("meta-training blew up at meta-step 1: loss 1.4e+04. θ kept")
        err.result = SimpleNamespace(theta=kept)
        raise err

    monkeypatch.setattr(outer, "run", blows_up)
    with pytest.warns(UserWarning, match="its meta-training stopped .*last good θ"):
        theta = meta_trained_baseline(small_fa, b, None, ("digits", {}))
    assert theta is kept
