"""Rule recovery: each trajectory scored once, % deviance explained by hand, weight-change
R², the null model, resampled refits (the training pool gives the run's own θ), folds,
bootstrap, and `metaplastic recover` end to end on a small simulated fit."""

import json
import math

import jax
import numpy as np
import pytest

import metaplastic as mp
from helpers import run_fit
from metaplastic.analysis import recovery_scores as recovery
from metaplastic.analysis.simulate import simulate
from metaplastic.cli import main
from metaplastic.errors import ConfigError
from metaplastic.inner import trace, unroll
from metaplastic.meta import driver
from metaplastic.meta.gradient import MetaGradient
from metaplastic.meta.objective import Objective

#: fits to recordings end to end (training, bootstrap refits, L1 paths): second tier
pytestmark = pytest.mark.tier2

STEPS, N = 60, 6


@pytest.fixture(scope="module")
def fit(tmp_path_factory):
    """Recordings of Oja's rule (6 trajectories, 2 held out) and a 4-step fit to them."""
    source = mp.tasks.make("pca", n_in=5, n_steps=STEPS, scale_range=[0.5, 2.0])
    net = mp.Network(sizes=(5, 3))
    oja = mp.rules.make("oja", eta=0.05)
    theta_true = oja.init(jax.random.key(0), net.shapes)
    path = tmp_path_factory.mktemp("rec") / "rec.npz"
    np.savez(path, **simulate(net, oja, theta_true, source, N, jax.random.key(3),
                              noise=0.05))
    task = mp.tasks.make("recorded", path=str(path), heldout=1 / 3)
    rule = mp.rules.make("polynomial", eta=0.05)
    objective = Objective(task, net, rule, tasks_per_step=3, l1=1e-4)
    outer = MetaGradient(steps=4, lr=0.02, chunk=2)
    theta0 = rule.init(jax.random.key(1), net.shapes)
    result = driver.run(outer, objective, theta0, key=jax.random.key(2))
    return dict(net=net, oja=oja, theta_true=theta_true, task=task, rule=rule,
                objective=objective, outer=outer, theta0=theta0, theta=result.theta)


def test_every_trajectory_is_scored_once_in_order(fit):
    obj, theta = fit["objective"], fit["theta"]
    per = recovery.per_trajectory(obj, theta, [5, 1, 3], jax.random.key(0))
    for j, i in enumerate([5, 1, 3]):
        inst = fit["task"].instance(i)
        out = unroll(fit["net"], fit["rule"], theta, fit["task"], inst, key=jax.random.key(9))
        want = fit["task"].metrics(inst, out.state, out.env)["r2"]
        assert per["r2"][j] == pytest.approx(float(want), abs=1e-5)  # recorded w0: no key
    assert per["loss"].shape == (3,)


def test_weight_r2_is_undefined_when_the_truth_never_changes_its_weights(fit):
    """A truth without plasticity leaves no weight change to explain: NaN, not the
    −1e33 a floor under the denominator gave."""
    task, net = fit["task"], fit["net"]
    truth = (net, recovery.Frozen(fit["oja"]), fit["theta_true"])
    r2 = recovery.trajectory_r2(task, (net, fit["rule"], fit["theta"]), truth, [0, 1],
                                jax.random.key(0))
    assert np.isnan(r2["weights"]) and np.isfinite(r2["activity"]) and not r2["diverged"]


def test_a_fitted_rule_whose_replay_diverges_is_said_so(fit):
    """NaN too, but for its own reason: not "the truth's weights never change"."""
    task, net = fit["task"], fit["net"]
    hebb = mp.rules.make("hebb", eta=50.0)
    truth = (net, fit["oja"], fit["theta_true"])
    r2 = recovery.trajectory_r2(task, (net, hebb, hebb.init(jax.random.key(0), net.shapes)),
                                truth, [0, 1], jax.random.key(0))
    assert r2["diverged"] and np.isnan(r2["weights"]) and np.isnan(r2["activity"])


def test_deviance_explained_by_hand():
    # two trajectories of 10 and 30 choices; mean NLLs 0.2/0.4 against a null of 0.6/0.5
    want = 1 - (10 * 0.2 + 30 * 0.4) / (10 * 0.6 + 30 * 0.5)
    assert recovery.deviance_explained([0.2, 0.4], [0.6, 0.5], [10, 30]) == pytest.approx(want)
    assert recovery.deviance_explained([0.6], [0.6], [5]) == 0.0


def test_frozen_rule_leaves_the_weights_where_they_started(fit):
    inst = fit["task"].instance(0)
    frozen = recovery.Frozen(fit["oja"])
    start, end, _ = trace(fit["net"], frozen, fit["theta_true"], fit["task"], inst,
                          jax.random.key(0), lambda s: s[0].post)
    np.testing.assert_array_equal(start[0].weights[0], end[0].weights[0])
    np.testing.assert_array_equal(start[0].weights[0], inst.w0[0])
    # and the null model's score is worse than the truth's
    obj = fit["objective"]
    null = recovery.per_trajectory(obj, fit["theta_true"], [0, 1], jax.random.key(0),
                                   rule=frozen)
    true = recovery.per_trajectory(obj, fit["theta_true"], [0, 1], jax.random.key(0),
                                   rule=fit["oja"])
    assert np.all(true["r2"] > null["r2"])


def test_trajectory_r2_is_one_for_the_truth_and_lower_for_hebb(fit):
    truth = (fit["net"], fit["oja"], fit["theta_true"])
    same = recovery.trajectory_r2(fit["task"], truth, truth, [0, 1, 2], jax.random.key(0))
    assert same == {"weights": pytest.approx(1.0), "activity": pytest.approx(1.0),
                    "diverged": False}
    hebb = mp.rules.make("hebb", eta=0.05)
    got = recovery.trajectory_r2(fit["task"], (fit["net"], hebb,
                                               hebb.init(jax.random.key(0),
                                                         fit["net"].shapes)),
                                 truth, [0, 1, 2], jax.random.key(0))
    assert got["weights"] < 0.9 and got["activity"] < 0.99


def test_refit_on_the_training_pool_gives_the_runs_theta(fit):
    train = np.asarray(fit["task"].indices)
    pools = np.stack([train, train[::-1]])
    thetas, losses = recovery.refit(fit["objective"], fit["outer"], fit["theta0"], pools,
                                    [train.size, train.size], jax.random.key(2))
    got = np.asarray(thetas["coef"][0])
    np.testing.assert_allclose(got, np.asarray(fit["theta"]["coef"]), rtol=1e-5, atol=1e-7)
    assert losses.shape == (2,) and np.all(np.isfinite(losses))
    # another pool order draws other trajectories: another θ
    assert not np.allclose(np.asarray(thetas["coef"][1]), got)


def test_refit_in_chunks_reports_progress_and_gives_the_same_numbers(fit, monkeypatch):
    train = np.asarray(fit["task"].indices)
    pools, sizes = np.stack([train, train[::-1]]), [train.size, train.size]
    whole, loss = recovery.refit(fit["objective"], fit["outer"], fit["theta0"], pools, sizes,
                                 jax.random.key(2))
    monkeypatch.setattr(recovery, "REFIT_CHUNK", 7)
    seen = []
    parts, loss7 = recovery.refit(fit["objective"], fit["outer"], fit["theta0"], pools,
                                  sizes, jax.random.key(2),
                                  progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(np.asarray(parts["coef"]), np.asarray(whole["coef"]))
    np.testing.assert_array_equal(loss7, loss)
    steps = fit["outer"].steps
    assert seen[-1] == (steps, steps) and len(seen) == -(-steps // 7)


def test_few_distinct_resamples_are_counted_and_warned_about():
    """3 training trajectories allow 10 different resamples: 20 refits repeat them, and
    the intervals say so (6 of 18 point estimates fell outside their own intervals)."""
    idx = np.array([0, 1, 2])
    boot = recovery.bootstrap_pools(idx, 20, jax.random.key(0))
    assert recovery.possible_resamples(3) == 10
    assert recovery.distinct_resamples(boot) <= 10
    assert recovery.distinct_resamples(np.array([[0, 1, 1], [1, 0, 1], [2, 2, 2]])) == 2


def test_pools_resample_and_fold_the_training_trajectories():
    idx = np.array([3, 4, 7, 9, 11])
    boot = recovery.bootstrap_pools(idx, 40, jax.random.key(0))
    assert boot.shape == (40, 5) and set(boot.ravel()) <= set(idx)
    assert len({tuple(r) for r in boot}) > 30  # resamples differ
    pools, sizes, held = recovery.fold_pools(idx, 2)
    assert [list(h) for h in held] == [[3, 4, 7], [9, 11]]
    assert list(sizes) == [2, 3, 5] and pools.shape == (3, 5)
    for row, size, h in zip(pools[:2], sizes[:2], held, strict=True):
        assert set(row[:size]) == set(idx) - set(h)
    assert list(pools[2]) == list(idx)
    with pytest.raises(ConfigError, match="folds"):
        recovery.fold_pools(idx, 6)


def test_percentile_ci_covers_the_middle():
    lo, hi = recovery.percentile_ci(np.arange(1001.0)[:, None])
    assert lo[0] == pytest.approx(25.0) and hi[0] == pytest.approx(975.0)


def test_observed_information_is_the_hessian_of_the_profile_nll(fit):
    """The information matrix against central differences of (N/2) log SSE over the
    training trajectories, on three coefficients (the rest fixed at the fit)."""
    from jax.flatten_util import ravel_pytree

    from metaplastic.analysis.identifiability import observed_information

    obj, theta, task = fit["objective"], fit["theta"], fit["task"]
    train = np.asarray(task.indices)
    coefs, info, n, grad = observed_information(obj, theta, train, jax.random.key(0),
                                                lambda t: t, lambda t, part: part)
    flat, unravel = ravel_pytree(theta)
    assert coefs.shape == (flat.size,) and info.shape == (flat.size, flat.size)
    np.testing.assert_allclose(info, info.T)

    def sse_n(v):
        th = unravel(jax.numpy.asarray(v, flat.dtype))
        envs = [unroll(fit["net"], fit["rule"], th, task, task.instance(int(i)),
                       key=jax.random.key(9)).env for i in train]
        return sum(float(e.sse) for e in envs), sum(float(e.n) for e in envs)

    def profile(v):
        return 0.5 * n * np.log(sse_n(v)[0])

    base = np.asarray(flat, np.float64)
    assert n == sse_n(base)[1]  # every recorded activity entry of the training split
    h = 1e-3  # the replay is far from quadratic at 1e-2 (16x off); float32 rounding below
    for i in np.argsort(-np.abs(np.diag(info)))[:3]:  # the best determined entries
        e = np.zeros_like(base)
        e[i] = h
        fd = (profile(base + e) - 2 * profile(base) + profile(base - e)) / h ** 2
        assert fd == pytest.approx(info[i, i], rel=0.05)
        slope = (profile(base + e) - profile(base - e)) / (2 * h)
        assert slope == pytest.approx(grad[i], rel=0.05, abs=0.05 * h * info[i, i])


def test_one_likelihood_program_serves_every_set_of_trajectories(fit):
    """θ, the trajectories and their keys are arguments of the shared programs: two sets
    of the same size compile one program, and each gets its own numbers (its own count
    of observations and NLL, as the replay gives them); release_compiled drops it."""
    from metaplastic.analysis import identifiability as ident

    obj, theta, task = fit["objective"], fit["theta"], fit["task"]
    train = np.asarray(task.indices)
    ident.release_compiled()
    firsts, lasts = train[:2], train[-2:]
    def get(t):
        return t

    def put(t, part):
        return part

    out = [ident.likelihood(obj, theta, idx, jax.random.key(0), get, put)
           for idx in (firsts, lasts)]
    assert ident._curvature._cache_size() == 1
    for idx, (coefs, _, n, _, nll) in zip((firsts, lasts), out, strict=True):
        envs = [unroll(fit["net"], fit["rule"], theta, task, task.instance(int(i)),
                       key=jax.random.key(9)).env for i in idx]
        sse, count = sum(float(e.sse) for e in envs), sum(float(e.n) for e in envs)
        assert n == count
        assert nll(coefs) == pytest.approx(0.5 * n * np.log(sse), rel=1e-4)
    assert not np.allclose(out[0][1], out[1][1])
    ident.release_compiled()
    assert ident._curvature._cache_size() == 0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fit):
    """A `metaplastic run` of a small simulated fit (the CLI's own run directory)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = tmp_path_factory.mktemp("cfg") / "infer.toml"
    cfg.write_text(
        'name = "infer-small"\nreference = "oja"\n'
        '[task]\nname = "recorded"\nheldout = 0.25\n'
        '[task.simulate]\nrule = {name = "oja", eta = 0.05}\n'
        'source = {name = "pca", n_in = 5, n_steps = 40}\n'
        'outputs = 2\ntrajectories = 8\nnoise = 0.05\nseed = 0\n'
        '[rule]\nname = "polynomial"\neta = 0.05\n'
        '[meta]\nsteps = 6\nchunk = 3\ntasks_per_step = 2\nlr = 0.02\nl1 = 1e-4\n'
        '[eval]\ntasks = 4\nbaselines = []\n')
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    (run,) = list(out.iterdir())
    return run


def test_run_of_recordings_writes_its_recovery(run_dir):
    data = json.loads((run_dir / "recovery.json").read_text())
    assert data["trajectories"] == {"train": 6, "heldout": 2}
    held = data["splits"]["heldout"]
    assert set(held["rules"]) == {"inferred", "truth", "no plasticity"}
    assert held["rules"]["truth"]["r2"]["mean"] > 0.9  # 5% noise
    assert held["rules"]["truth"]["r2"]["mean"] > held["rules"]["no plasticity"]["r2"]["mean"]
    assert -10 < held["weight_r2"] <= 1.0 and held["activity_r2"] > 0.5
    coef = data["coefficients"]
    assert coef["reference"] == "simulated truth" and len(coef["names"]) == 27
    assert -1 <= coef["cosine"] <= 1 and coef["truth_values"][coef["names"].index("pre*post")] == 1
    assert (run_dir / "recovery.png").exists()
    ident = data["identifiability"]
    assert ident["free_directions"] == sum(coef["free"]) == len(ident["names"])
    assert 0 <= ident["determined_directions"] <= ident["free_directions"]
    assert ident["observations"] > 0 and len(ident["directions"]) == ident["free_directions"]
    lam = [d["eigenvalue"] for d in ident["directions"]]
    assert lam == sorted(lam, reverse=True)


def test_evaluation_of_recordings_scores_every_trajectory_once(run_dir):
    """eval.json of a recorded run: the split's 6 trajectories each once (not eval.tasks
    = 4 draws), the same mean as the recovery table's."""
    ev = json.loads((run_dir / "eval.json").read_text())
    (row,) = ev["rows"]
    assert row["tasks"] == 6 and row["each_once"] and ev["tasks_per_row"] == 6
    rec = json.loads((run_dir / "recovery.json").read_text())
    want = rec["splits"]["train"]["rules"]["inferred"]["r2"]["mean"]
    assert row["r2"]["mean"] == pytest.approx(want, abs=1e-6)


def test_recovery_reports_its_progress_step_by_step(run_dir):
    """The bootstrap's refits (one program, minutes on real recordings) and the L1 path
    report (done, total, what) as they go, ending at their totals."""
    from metaplastic.experiments.rule_recovery import analyse
    from metaplastic.experiments.rundir import RunDir

    seen = []
    analyse(RunDir(run_dir), bootstrap=3, l1=(0.0, 1e-3), folds=2,
            progress=lambda done, total, what: seen.append((done, total, what)))
    boot = [(d, t) for d, t, w in seen if "refits" in w]
    path = [(d, t) for d, t, w in seen if w.startswith("L1 path")]
    assert boot[0][0] == 0 and boot[-1][0] == boot[-1][1] > 0 and len(boot) >= 2
    assert path[-1][0] == path[-1][1] and len({t for _, t in path}) == 1


def test_recover_bootstrap_and_l1_path(run_dir, capsys):
    assert main(["recover", str(run_dir), "--bootstrap", "6", "--l1", "0", "1e-3",
                 "--folds", "2", "--profile", "1"]) == 0
    text = capsys.readouterr().out
    # the profile likelihood along the least determined direction: its minimum at the
    # refitted centre, the truth placed against its interval
    (prof,) = json.loads((run_dir / "recovery.json").read_text())["identifiability"]["profile"]
    finite = [x for x in prof["delta_nll"] if isinstance(x, float)]  # a diverged replay:
    assert min(finite) == 0 and 0.0 in prof["grid"] and len(prof["grid"]) >= 13  # "inf"
    lams = [d["eigenvalue"] for d in json.loads((run_dir / "recovery.json").read_text())[
        "identifiability"]["directions"] if isinstance(d["eigenvalue"], float)]
    assert prof["eigenvalue"] <= min(lams) + 1e-9 * max(map(abs, lams))  # the flattest
    assert "truth" in prof and "profile likelihood of" in text
    assert "bootstrap 95% CI" in text and "cross-validated loss" in text
    assert "identifiability (observed Fisher information" in text
    assert "directions determined" in text and "Wald intervals are bounded" in text
    data = json.loads((run_dir / "recovery.json").read_text())
    coef, path = data["coefficients"], data["l1_path"]
    lo, hi = np.array(coef["ci_low"]), np.array(coef["ci_high"])
    assert coef["bootstrap"] == 6 and np.all(lo <= hi) and np.any(hi > lo)
    assert 1 <= coef["distinct_resamples"] <= 6 and "distinct" in text
    assert "note:" in text and "not reliable" in text  # 6 refits: fewer than 20 distinct
    assert 0 <= coef["truth_inside_ci"] <= 27
    assert path["l1"] == [0.0, 1e-3] and len(path["theta"]) == 2 and path["folds"] == 2
    assert path["chosen"] in path["l1"] and all(np.isfinite(path["cv_loss"]))
    assert set(path["kept_terms"]) <= set(coef["names"])
    assert (run_dir / "l1_path.png").exists()


def test_parametric_bootstrap_refits_data_simulated_from_the_fitted_rule(run_dir, capsys):
    """--parametric: B data sets simulated from the fitted rule as task.simulate made the
    recordings, each refitted; the basic interval is the refits' percentile interval
    reflected about the fit, and no warning about too few distinct resamples."""
    assert main(["recover", str(run_dir), "--bootstrap", "5", "--parametric"]) == 0
    text = capsys.readouterr().out
    assert "simulated from the fitted rule, basic interval" in text and "not reliable" \
        not in text
    coef = json.loads((run_dir / "recovery.json").read_text())["coefficients"]
    assert coef["bootstrap"] == 5 and coef["bootstrap_kind"] == "parametric"
    lo, hi = np.array(coef["ci_low"]), np.array(coef["ci_high"])
    p_lo, p_hi = np.array(coef["percentile_low"]), np.array(coef["percentile_high"])
    got = np.array(coef["inferred"])
    assert np.all(lo <= hi) and np.any(hi > lo) and coef["refits_diverged"] == 0
    np.testing.assert_allclose(lo, 2 * got - p_hi, atol=1e-6)
    np.testing.assert_allclose(hi, 2 * got - p_lo, atol=1e-6)
    assert "distinct_resamples" not in coef and 0 <= coef["truth_inside_ci"] <= 27


def test_calibrated_profile_intervals_use_the_simulated_threshold(run_dir, capsys):
    """--profile K --calibrate B: B data sets simulated from the (bias-corrected) fitted
    rule, refitted; the profile intervals bound the 95% quantile of the rises there, and
    the report says so; the profile with that threshold is the one written."""
    from metaplastic.analysis import identifiability as ident

    assert main(["recover", str(run_dir), "--profile", "2", "--calibrate", "4"]) == 0
    text = capsys.readouterr().out
    data = json.loads((run_dir / "recovery.json").read_text())["identifiability"]
    cal, rows = data["profile_calibration"], data["profile"]
    assert cal["data_sets"] == 4 and cal["directions"] == 2 and cal["refits_diverged"] == 0
    assert cal["rises"]["count"] == 8 and cal["rises"]["infinite"] == 0
    assert [len(r) for r in cal["rises_per_set"]] == [2, 2, 2, 2]  # every set's, kept
    assert cal["chi2_threshold"] == ident.PROFILE_95
    assert 0 < cal["threshold"] < math.inf and cal["threshold"] != ident.PROFILE_95
    assert cal["rises"]["q50"] <= cal["threshold"]
    assert len(rows) == 2 and all(r["threshold"] == cal["threshold"] for r in rows)
    # an end of an interval lies where the profile rose by the calibrated threshold
    for r in rows:
        inside = [d for t, d in zip(r["grid"], r["delta_nll"], strict=True)
                  if isinstance(d, float) and r["low"] is not None and r["high"] is not None
                  and r["low"] <= r["value"] + t <= r["high"]]
        assert all(d <= cal["threshold"] + 1e-9 for d in inside)
    flat = " ".join(text.split())
    assert "calibrated on 4 data sets simulated from the fitted rule" in flat
    assert "only 8 profile rises" in flat  # 4 sets × 2 directions: said to be too few


def test_calibration_at_the_bias_corrected_rule(run_dir, capsys):
    """--calibrate-at bias-corrected (the default): B refits of data simulated from the fit
    estimate its bias; the B calibration sets are simulated from the fit minus that bias,
    and the profile's rises are measured there (so they differ from those at the fit)."""
    assert main(["recover", str(run_dir), "--profile", "2", "--calibrate", "4",
                 "--calibrate-at", "fit"]) == 0
    at_fit = json.loads((run_dir / "recovery.json").read_text())
    capsys.readouterr()
    assert main(["recover", str(run_dir), "--profile", "2", "--calibrate", "4"]) == 0
    text = capsys.readouterr().out
    data = json.loads((run_dir / "recovery.json").read_text())
    cal = data["identifiability"]["profile_calibration"]
    assert at_fit["identifiability"]["profile_calibration"]["at"] == "fit"
    assert cal["at"] == "bias-corrected" and cal["bias"]["refits"] == 4
    n_free = len(data["coefficients"]["inferred"])
    assert len(cal["bias"]["vector"]) == n_free and cal["bias"]["refits_diverged"] == 0
    assert 0 < cal["bias"]["relative"] < 1 and math.isfinite(cal["threshold"])
    assert cal["rises_per_set"] != at_fit["identifiability"]["profile_calibration"][
        "rises_per_set"]
    assert "minus its bias estimated from 4 more refits" in " ".join(text.split())
    assert "not available" not in text  # no dtype warning


def test_a_coefficients_own_profile_interval_calibrated(run_dir, capsys):
    """--profile-terms: the classical profile of each named coefficient (held, the rest
    refitted), its threshold calibrated along those coefficients' own axes on the same
    simulated data sets, apart from the directions'; a name the rule lacks is a clear
    error naming the free terms."""
    assert main(["recover", str(run_dir), "--profile", "1", "--profile-terms", "pre*post",
                 "post^2*w", "--calibrate", "4", "--calibrate-at", "fit"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    data = json.loads((run_dir / "recovery.json").read_text())
    ident, coef = data["identifiability"], data["coefficients"]
    cal = ident["profile_calibration"]
    assert len(ident["profile"]) == 1 and "term" not in ident["profile"][0]
    rows = ident["profile_terms"]
    assert [r["term"] for r in rows] == ["pre*post", "post^2*w"]
    for r in rows:  # centred on the fitted coefficient itself, the truth placed
        i = coef["names"].index(r["term"])
        assert r["value"] == pytest.approx(coef["inferred"][i], abs=1e-6)
        assert r["truth"] == pytest.approx(coef["truth_values"][i])
        assert r["threshold"] == cal["terms"]["threshold"]
    assert [len(x) for x in cal["terms"]["rises_per_set"]] == [2] * 4
    assert [len(x) for x in cal["rises_per_set"]] == [1] * 4  # the direction's, apart
    assert ident["profile"][0]["threshold"] == cal["threshold"]
    assert cal["terms"]["rises"]["count"] == 8 and cal["terms"]["threshold"] > 0
    assert "the coefficient of pre*post" in text and "profile intervals of coefficients" in text
    assert main(["recover", str(run_dir), "--profile-terms", "pre*reward"]) == 2
    out = capsys.readouterr().out
    assert "no term 'pre*reward'" in out and "pre*post^2*w" in out
    assert main(["recover", str(run_dir), "--profile-terms", "all", "pre*post"]) == 2
    assert "stands alone" in capsys.readouterr().out


def test_calibration_needs_a_profile(run_dir, capsys):
    assert main(["recover", str(run_dir), "--calibrate", "3"]) == 2
    assert "--profile K" in capsys.readouterr().out


def test_parametric_data_sets_are_the_fitted_rules_recordings(run_dir, tmp_path):
    """The simulated sets replay under the fitted θ as well as the measurement noise (5%)
    allows, and worse under the truth (Oja's rule) that made the run's own recordings."""
    from metaplastic.experiments.build import build
    from metaplastic.experiments.rule_recovery import simulated_sets
    from metaplastic.experiments.rule_runs import run_theta
    from metaplastic.experiments.rundir import RunDir

    run = RunDir(run_dir)
    pieces = build(run.config())
    theta = run_theta(run, pieces)
    objective, pools = simulated_sets(run.config(), pieces.objective, theta, 3, 4,
                                      jax.random.key(5), tmp_path)
    assert pools.shape == (4, 3) and sorted(pools.ravel()) == list(range(12))
    idx = pools.ravel()
    own = recovery.per_trajectory(objective, theta, idx, jax.random.key(0))["r2"]
    oja = mp.rules.make("oja", eta=0.05)
    other = recovery.per_trajectory(objective, oja.init(jax.random.key(0), ((2, 5),)), idx,
                                    jax.random.key(0), rule=oja)["r2"]
    assert np.all(own > 0.98) and np.mean(other) < np.mean(own) - 0.01


def test_parametric_bootstrap_refuses_what_it_cannot_simulate(run_dir, tmp_path, capsys):
    assert main(["recover", str(run_dir), "--parametric"]) == 2
    assert "--bootstrap B" in capsys.readouterr().out
    rec = tmp_path / "rec.npz"  # the run's recordings as a file: no task that made them
    from metaplastic.experiments.build import build
    from metaplastic.experiments.rundir import RunDir

    np.savez(rec, **build(RunDir(run_dir).config()).objective.task._data)
    cfg = tmp_path / "file.toml"
    cfg.write_text(f'name = "infer-file"\n[task]\nname = "recorded"\npath = "{rec}"\n'
                   '[rule]\nname = "polynomial"\neta = 0.05\n'
                   '[meta]\nsteps = 2\nchunk = 2\ntasks_per_step = 2\nlr = 0.02\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--no-eval"]) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["recover", str(run), "--bootstrap", "2", "--parametric"]) == 2
    assert "task.simulate.source" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--bootstrap", "-1"], "--bootstrap"),
    (["--profile", "1", "--calibrate", "-1"], "--calibrate"),
    (["--l1", "-1"], "--l1"),
    (["--l1", "0", "1e-3", "--folds", "9"], "--folds"),
])
def test_recover_refuses_bad_options(run_dir, capsys, args, message):
    assert main(["recover", str(run_dir), *args]) == 2
    assert message in capsys.readouterr().out


def test_recover_refuses_a_run_that_is_not_a_fit_to_recordings(tmp_path, capsys):
    from metaplastic.experiments import presets
    from metaplastic.experiments.config import portable
    from metaplastic.experiments.rundir import RunDir

    RunDir(tmp_path).save_config(portable(presets.get("oja")))
    assert main(["recover", str(tmp_path)]) == 2
    assert "recorded" in capsys.readouterr().out


def test_damaged_recovery_file_draws_nothing(tmp_path):
    from metaplastic.report.recovery_plots import plot_recovery

    (tmp_path / "recovery.json").write_text('{"coefficients": {"names": 3}}')
    assert plot_recovery(tmp_path) == []
    (tmp_path / "recovery.json").write_text("not json")
    assert plot_recovery(tmp_path) == []


def test_simulated_truth_can_be_a_theta_file(tmp_path, monkeypatch):
    from metaplastic.experiments import recordings
    from metaplastic.experiments.rundir import save_theta

    monkeypatch.setenv("METAPLASTIC_CACHE", str(tmp_path / "cache"))
    rule = mp.rules.make("polynomial", eta=0.05)
    half_oja = {"coef": 0.5 * np.asarray(rule.coefficients("oja"))}
    save_theta(tmp_path / "theta.npz", half_oja)
    spec = {"rule": {"name": "polynomial", "eta": 0.05}, "theta": str(tmp_path / "theta.npz"),
            "source": {"name": "pca", "n_in": 5, "n_steps": 30}, "outputs": 2,
            "trajectories": 3}
    path = recordings.materialise(spec, {})
    net = mp.Network(sizes=(5, 2))
    task = mp.tasks.make("recorded", path=path, split="all")
    obj = Objective(task, net, rule)
    replay = recovery.per_trajectory(obj, half_oja, [0, 1, 2], jax.random.key(0))
    np.testing.assert_allclose(replay["r2"], 1.0, atol=1e-5)  # the file's θ made them
    full = {"coef": np.asarray(rule.coefficients("oja"))}
    assert np.all(recovery.per_trajectory(obj, full, [0, 1, 2],
                                          jax.random.key(0))["r2"] < 1 - 1e-4)
    save_theta(tmp_path / "theta.npz", full)  # another θ in the file: other recordings
    assert recordings.materialise(spec, {}) != path
    with pytest.raises(ConfigError, match="no θ file"):
        recordings.materialise({**spec, "theta": str(tmp_path / "missing.npz")}, {})
    save_theta(tmp_path / "other.npz", {"w": np.zeros(3)})
    with pytest.raises(mp.errors.MetaplasticError):
        recordings.materialise({**spec, "theta": str(tmp_path / "other.npz")}, {})


def test_readout_of_a_polynomial_gives_its_own_coefficients(fit):
    """The projection used for rules without named terms, applied to a polynomial rule:
    least squares on the signals met returns that rule's coefficients."""
    from metaplastic.analysis import explain
    from metaplastic.experiments.rule_recovery import _projection

    rule = mp.rules.make("polynomial", eta=0.05)
    theta = {"coef": np.asarray(rule.coefficients("oja"))}
    vector = _projection(explain, fit["task"], fit["net"], rule, rule, jax.random.key(0))
    got = vector(theta)
    np.testing.assert_allclose(got, np.ravel(theta["coef"]), atol=1e-3)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, run_dir):
    out = tmp_path_factory.mktemp("mlp-runs")
    assert main(["run", str(run_dir / "config.toml"), "--out", str(out), "--no-eval",
                 "--set", "rule={name = 'mlp', eta = 0.05}"]) == 0
    (run,) = list(out.iterdir())
    return run


def test_an_mlp_rule_is_read_out_with_intervals(mlp_run, capsys):
    assert main(["recover", str(mlp_run), "--bootstrap", "4"]) == 0
    text = capsys.readouterr().out
    assert "read out onto the polynomial's terms" in text
    assert "read-out coefficients, bootstrap 95% CI" in text
    coef = json.loads((mlp_run / "recovery.json").read_text())["coefficients"]
    assert coef["kind"] == "readout" and coef["reference"] == "simulated truth"
    assert len(coef["names"]) == 27 and coef["bootstrap"] == 4 and coef["readout_r2"] <= 1
    truth = dict(zip(coef["names"], coef["truth_values"], strict=True))
    assert truth["pre*post"] == 1.0 and truth["post^2*w"] == -1.0  # same eta
    lo, hi = np.array(coef["ci_low"]), np.array(coef["ci_high"])
    assert np.all(lo <= hi) and np.any(hi > lo) and np.all(np.isfinite(coef["inferred"]))
    assert (mlp_run / "recovery.png").exists()


def test_l1_path_of_an_mlp_rule_names_no_terms(mlp_run, capsys):
    assert main(["recover", str(mlp_run), "--l1", "0", "1e-3", "--folds", "2"]) == 0
    text = capsys.readouterr().out
    assert "chosen L1" in text and "terms kept" not in text
    path = json.loads((mlp_run / "recovery.json").read_text())["l1_path"]
    assert "kept_terms" not in path and all(np.isfinite(path["cv_loss"]))
    assert (mlp_run / "l1_path.png").exists()


def test_a_fitted_start_run_recovers_and_exports_its_rule(run_dir, tmp_path, capsys):
    """task.initial = fitted through the CLI: θ holds the start, the reference cosine and
    the recovery compare the rule part, and export writes the rule's 27 terms."""
    assert main(["run", str(run_dir / "config.toml"), "--out", str(tmp_path), "--no-eval",
                 "--set", "task.initial='fitted'"]) == 0
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert "initial weights fitted" in summary["formula"]
    assert -1 <= summary["reference_cosine"] <= 1
    with np.load(run / "theta.npz") as f:
        assert any(k.startswith("w0") for k in f.files)
    assert main(["recover", str(run)]) == 0
    coef = json.loads((run / "recovery.json").read_text())["coefficients"]
    assert coef["reference"] == "simulated truth" and len(coef["inferred"]) == 27
    capsys.readouterr()
    assert main(["export", str(run), "--format", "csv"]) == 0
    rows = (run / "export" / "rule.csv").read_text().strip().splitlines()
    assert len(rows) == 28 and "pre*post" in "".join(rows)


def test_a_choice_fit_is_compared_with_rescorla_wagner(tmp_path, capsys):
    """A fit to simulated choices (the odour task records each trial's reward as
    ``outcomes``): Rescorla–Wagner fitted to the training choices is a row of every split,
    its % deviance explained against the same network without plasticity."""
    assert main(["run", "infer-reward-behaviour", "--set", "meta.steps=8", "--set",
                 "meta.chunk=4", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    (run,) = list(tmp_path.iterdir())
    rec = json.loads((run / "recovery.json").read_text())
    model = rec["behavioural_model"]
    assert model["model"] == "Rescorla–Wagner" and model["fitted_on"] == "train"
    assert 0 < model["alpha"] < 1
    for split in ("train", "heldout"):
        rows = rec["splits"][split]["rules"]
        rw = rows["Rescorla–Wagner"]
        assert 0 < rw["nll"]["mean"] < rows["no plasticity"]["nll"]["mean"]
        assert -1 < rw["deviance_explained"] < 1
    assert "Rescorla–Wagner" in text


def test_an_undefined_weight_r2_is_drawn_as_such(run_dir, tmp_path):
    """recovery.json keeps an undefined R² as null: the figure says "undefined"."""
    import shutil

    from metaplastic.report.recovery_plots import plot_recovery

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data = json.loads((copy / "recovery.json").read_text())
    data["splits"]["heldout"]["weight_r2"] = None
    (copy / "recovery.json").write_text(json.dumps(data))
    assert (copy / "recovery.png") in plot_recovery(copy)


def test_a_truth_outside_the_family_is_not_confused_with_the_reference(tmp_path, capsys):
    """Recordings of BCM (a sliding threshold: no polynomial over this step's signals) and
    `reference = "oja"`: the coefficients are compared with Oja's and labelled so; no
    interval is scored against them as if they were the truth."""
    run = run_fit(tmp_path, 'name = "infer-bcm"\nreference = "oja"\n'
                  '[task]\nname = "recorded"\nheldout = 0.25\n'
                  '[task.simulate]\nrule = {name = "bcm", eta = 0.05}\n'
                  'source = {name = "pca", n_in = 5, n_steps = 40}\n'
                  'outputs = 2\ntrajectories = 8\nnoise = 0.05\nseed = 0\n', "bcm")
    capsys.readouterr()
    assert main(["recover", str(run)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((run / "recovery.json").read_text())
    coef = data["coefficients"]
    assert coef["reference"] == "oja" and coef["is_truth"] is False
    assert "truth" in data["splits"]["heldout"]["rules"]  # BCM's own replay is the truth row
    ident = data["identifiability"]
    assert not any(k.startswith("truth") for k in ident), sorted(ident)
    assert "oja (not the truth)" in printed
