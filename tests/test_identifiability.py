"""Identifiability from the observed information: Wald intervals equal least squares'
standard errors on a linear Gaussian model, a confound (two collinear terms) is found and
named, an unconstrained coefficient gets an infinite interval, the scale's interval."""

import math

import numpy as np
import pytest

from metaplastic.analysis.identifiability import Z95, describe, identifiability


def _linear(x: np.ndarray, sigma: float, seed: int = 0):
    """Least squares on y = X θ + N(0, σ²): (θ̂, information X'X / σ², θ_true)."""
    rng = np.random.default_rng(seed)
    truth = np.array([1.0, -0.5, 0.25])[: x.shape[1]]
    y = x @ truth + sigma * rng.standard_normal(x.shape[0])
    fit = np.linalg.lstsq(x, y, rcond=None)[0]
    return fit, x.T @ x / sigma ** 2, truth


def test_wald_intervals_are_least_squares_standard_errors():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 3))
    fit, info, truth = _linear(x, 0.3)
    rep = identifiability(fit, info, ["a", "b", "c"], [True] * 3, truth=truth)
    se = 0.3 * np.sqrt(np.diag(np.linalg.inv(x.T @ x)))
    np.testing.assert_allclose(rep["wald_high"], fit + Z95 * se, rtol=1e-9)
    np.testing.assert_allclose(rep["wald_low"], fit - Z95 * se, rtol=1e-9)
    assert rep["determined_directions"] == rep["free_directions"] == 3
    assert rep["confounds"] == []
    assert rep["truth_inside_wald"] == rep["truth_inside_bounded_wald"] == 3
    assert rep["wald_bounded"] == 3
    # eigenvalues largest first, half-widths z / sqrt(eigenvalue)
    lam = [d["eigenvalue"] for d in rep["directions"]]
    assert lam == sorted(lam, reverse=True)
    for d in rep["directions"]:
        assert d["half_width"] == pytest.approx(Z95 / math.sqrt(d["eigenvalue"]))


def test_two_collinear_terms_are_a_confound_and_the_third_is_determined():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(300)
    x = np.stack([a, a + 1e-7 * rng.standard_normal(300), rng.standard_normal(300)], 1)
    fit, info, _ = _linear(x, 0.1)
    rep = identifiability(fit, info, ["x·r", "r", "x"], [True] * 3)
    assert rep["determined_directions"] == 2  # a + b and c
    (confound,) = rep["confounds"]
    assert {d["term"] for d in confound} == {"x·r", "r"}
    w = {d["term"]: d["weight"] for d in confound}
    assert w["x·r"] == pytest.approx(-w["r"], abs=1e-3)  # a − b is free
    # the confounded coefficients' intervals are wide, the third's is narrow
    width = np.subtract(rep["wald_high"], rep["wald_low"])
    assert width[0] > 100 * width[2] and width[1] > 100 * width[2]
    text = "\n".join(describe(rep))
    assert "2 of 3 directions determined" in text and "confound" in text
    assert "x·r" in text and "r" in text


def test_a_coefficient_the_data_never_touch_has_an_infinite_interval():
    info = np.diag([400.0, 0.0, 900.0])
    rep = identifiability([1.0, 0.3, -2.0], info, ["a", "b", "c"], [True] * 3)
    assert rep["wald_high"][1] == math.inf and rep["wald_low"][1] == -math.inf
    assert rep["wald_high"][0] == pytest.approx(1.0 + Z95 / 20)
    assert rep["determined_directions"] == 2 and rep["wald_bounded"] == 2
    assert any("undetermined: b" in line for line in describe(rep))


def test_only_free_coefficients_are_analysed_and_the_scale_has_its_interval():
    info = np.diag([4.0, 1e6, 16.0])
    rep = identifiability([3.0, 7.0, 4.0], info, ["a", "fixed", "c"], [True, False, True])
    assert rep["names"] == ["a", "c"] and rep["free_directions"] == 2
    assert rep["scale"] == pytest.approx(5.0)
    np.testing.assert_allclose(rep["normalised"], [0.6, 0.8])
    # var(|θ|) = u' I⁻¹ u = 0.36 / 4 + 0.64 / 16
    assert rep["scale_half_width"] == pytest.approx(Z95 * math.sqrt(0.36 / 4 + 0.64 / 16))


def test_a_non_finite_curvature_is_reported_not_analysed():
    rep = identifiability([1.0, 2.0], np.array([[np.nan, 0], [0, 1.0]]), ["a", "b"],
                          [True, True])
    assert rep["finite"] is False
    assert "not finite" in describe(rep)[0]


def test_bad_relative_threshold_is_refused():
    with pytest.raises(ValueError, match="relative"):
        identifiability([1.0], np.eye(1), ["a"], [True], relative=0.0)


def test_intervals_centre_on_the_one_step_estimate_when_given_the_gradient():
    """A fit short of the maximum of a quadratic NLL: one Newton step along the
    determined directions lands on the maximum, and the intervals centre there; an
    undetermined direction takes no step."""
    info = np.diag([100.0, 400.0, 1e-20])
    mle = np.array([1.0, -2.0, 0.5])
    fit = np.array([0.9, -1.8, 0.7])  # short of the MLE (e.g. L1 shrinkage)
    grad = info @ (fit - mle)  # the gradient of ½ (θ − mle)' I (θ − mle)
    rep = identifiability(fit, info, ["a", "b", "c"], [True] * 3, gradient=grad)
    assert rep["centre"] == "one-step"
    np.testing.assert_allclose(rep["estimate"][:2], mle[:2])
    assert rep["estimate"][2] == pytest.approx(0.7)  # undetermined: left where it was
    assert rep["wald_low"][0] == pytest.approx(1.0 - Z95 / 10)
    assert any("one-step" in line for line in describe(rep))
    plain = identifiability(fit, info, ["a", "b", "c"], [True] * 3)
    assert plain["centre"] == "fit" and plain["estimate"] == pytest.approx(fit.tolist())
    # nothing determined: no step to take, so none to refuse (a report that the step
    # "raised the NLL from x to x" would not be true)
    flat = identifiability(fit, info * 1e-9, ["a", "b", "c"], [True] * 3, gradient=grad)
    assert flat["determined_directions"] == 0 and flat["centre"] == "fit"


@pytest.mark.parametrize("after, centre", [(0.5, "one-step"), (2.0, "fit")])
def test_the_one_step_estimate_is_kept_only_where_it_lowers_the_nll(monkeypatch, after,
                                                                    centre):
    """report(): the Newton step is taken when it lowers the NLL; where it raises it (the
    likelihood far from quadratic: the fit may be in another optimum) no interval is
    claimed — every one unbounded, the truth counted inside none — and it says why."""
    from metaplastic.analysis import identifiability as ident

    info = np.diag([100.0, 400.0])
    fit = np.array([0.9, -1.8])

    def fake(*args):
        return fit, info, 50.0, np.array([-10.0, 80.0]), \
            lambda c: 1.0 if np.allclose(c, fit) else after

    monkeypatch.setattr(ident, "likelihood", fake)
    rep = ident.report(None, None, [0], None, None, None, ["a", "b"], [True, True],
                       truth=[0.9, -1.8])
    assert rep["centre"] == centre
    assert ("one_step_refused" in rep) == (centre == "fit") == \
        rep.get("intervals_withheld", False)
    if centre == "fit":
        assert "raised the NLL from 1 to 2" in rep["one_step_refused"]
        lines = describe(rep)
        assert any("no interval is claimed" in line for line in lines)
        assert not any(line.strip().startswith("determined:") for line in lines)
        assert rep["wald_bounded"] == 0 and rep["truth_inside_determined"] == 0
        assert np.all(np.isinf(rep["wald_low"])) and rep["scale_half_width"] == np.inf
        assert rep["determined_directions"] == 2  # what the curvature says stays
    else:
        assert rep["wald_bounded"] == 2
    assert rep["information"] == info.tolist() and rep["observations"] == 50.0


class _NLL:
    """A synthetic NLL with the interface the profile reads: a call and ``curvature``."""

    def __init__(self, f, grad, hess):
        self.f, self.grad, self.hess = f, grad, hess

    def __call__(self, c):
        return float(self.f(np.asarray(c, np.float64)))

    def curvature(self, c):
        c = np.asarray(c, np.float64)
        return self.hess(c), self.grad(c)


def test_the_profile_of_a_quadratic_likelihood_is_the_wald_interval():
    from metaplastic.analysis.identifiability import profile_from

    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 3))
    x[:, 1] = x[:, 0] + 0.3 * rng.standard_normal(100)  # correlated: the others matter
    sigma = 0.5
    y = x @ np.array([1.0, -0.5, 0.25]) + sigma * rng.standard_normal(100)
    fit = np.linalg.lstsq(x, y, rcond=None)[0]
    info = x.T @ x / sigma ** 2
    nll = _NLL(lambda c: 0.5 * np.sum((y - x @ c) ** 2) / sigma ** 2,
               lambda c: -x.T @ (y - x @ c) / sigma ** 2, lambda c: info)
    rows = profile_from(fit, info, nll, ["a", "b", "c"], [True] * 3, directions=3)
    assert len(rows) == 3
    for r in rows:  # exact for a quadratic: the same half-width both sides
        assert r["low"] == pytest.approx(r["value"] - r["wald_half_width"], rel=1e-3)
        assert r["high"] == pytest.approx(r["value"] + r["wald_half_width"], rel=1e-3)
    lam = [r["eigenvalue"] for r in rows]
    assert lam == sorted(lam)  # the least determined first


def test_a_coefficients_own_profile_of_a_quadratic_is_its_wald_interval():
    """--profile-terms: a coefficient held at each value, every other refitted. For a
    quadratic likelihood its interval is θ_i ± 1.96 sqrt((I⁻¹)_ii) — wider than the
    information along its axis alone would say when the coefficients are correlated —
    and its rise at a target is (target_i − θ_i)² / (2 (I⁻¹)_ii)."""
    from metaplastic.analysis.identifiability import (
        Z95,
        describe_profile,
        profile_from,
        profile_rise,
    )

    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 3))
    x[:, 1] = x[:, 0] + 0.3 * rng.standard_normal(100)  # correlated: the others matter
    fit, info, nll = _linear_gaussian(rng, x, np.array([1.0, -0.5, 0.25]), 0.5)
    truth = np.array([1.0, -0.5, 0.25])
    rows = profile_from(fit, info, nll, ["a", "b", "c"], [True] * 3, directions=0,
                        terms=[1, 0], truth=truth)
    cov = np.linalg.inv(info)
    assert [r["term"] for r in rows] == ["b", "a"] and [r["eigenvalue"] for r in rows] == \
        [None, None]
    for r, i in zip(rows, (1, 0), strict=True):
        half = Z95 * np.sqrt(cov[i, i])
        assert r["value"] == pytest.approx(fit[i]) and r["wald_half_width"] == \
            pytest.approx(half)
        assert r["low"] == pytest.approx(fit[i] - half, rel=1e-3)
        assert r["high"] == pytest.approx(fit[i] + half, rel=1e-3)
        assert half > 2 * Z95 / np.sqrt(info[i, i])  # the correlation widens it
        assert r["truth"] == truth[i]
        assert r["truth_inside"] == bool(abs(truth[i] - fit[i]) <= half)
    assert "the coefficient of b" in describe_profile(rows)[0]
    # the others start where the quadratic model moves them: exact without a Newton step
    (lead,) = profile_from(fit, info, nll, ["a", "b", "c"], [True] * 3, directions=0,
                           terms=[1], newton=0)
    assert lead["low"] == pytest.approx(rows[0]["low"], rel=1e-3)
    assert lead["high"] == pytest.approx(rows[0]["high"], rel=1e-3)
    target = fit + np.array([0.3, -0.2, 0.1])
    rises = profile_rise(fit, info, nll, [True] * 3, target, directions=1, terms=[2])
    lam, vec = np.linalg.eigh(info)
    assert rises.shape == (2,)
    assert rises[0] == pytest.approx(0.5 * lam[0] * (vec[:, 0] @ (target - fit)) ** 2)
    assert rises[1] == pytest.approx(0.1 ** 2 / (2 * cov[2, 2]), rel=1e-6)
    assert profile_rise(fit, info, nll, [True] * 3, target, directions=0, newton=0,
                        terms=[2])[0] == pytest.approx(rises[1], rel=1e-6)
    with pytest.raises(ValueError, match="not free"):
        profile_from(fit, info, nll, ["a", "b", "c"], [True, False, True], directions=0,
                     terms=[1])


def test_a_coefficients_profile_interval_is_the_hull_of_the_points_within_it():
    """A profile that rises past the threshold and falls below it again (a bump, as where
    a walk stalled): a coefficient's interval runs to the last point within the
    threshold (so it holds every value the calibration counts as within), an
    eigen-direction's stops at the first crossing, as published."""
    from metaplastic.analysis.identifiability import profile_from

    def f(c):  # quadratic about 1 with a bump just above it
        return float(10 * (c[0] - 1) ** 2 + 5 * np.exp(-((c[0] - 1.219) / 0.03) ** 2))

    info = np.array([[20.0]])
    nll = _NLL(f, lambda c: np.array([20 * (c[0] - 1)]), lambda c: info)
    (coef,) = profile_from([1.0], info, nll, ["a"], [True], directions=0, terms=[0])
    (direction,) = profile_from([1.0], info, nll, ["a"], [True], directions=1)
    assert coef["high"] == pytest.approx(1 + np.sqrt(0.1920729), abs=0.02)
    assert direction["high"] < 1.219 < coef["high"]
    assert coef["low"] == pytest.approx(direction["low"])  # no bump below: the same


def test_a_coefficients_profile_that_climbs_steeply_within_a_grid_step_ends_where_it_crosses():
    """A coefficient flat to second order at the fit (its Wald width infinite, so the grid
    is in units of |θ|) whose profile climbs as (a − 1)⁴ to 10⁴ times the threshold at
    the first grid point: the bisection goes on until the bracket is tight and the end
    lies where the profile crosses, not (as four steps and a straight line put it) 60%
    of the way there."""
    from metaplastic.analysis.identifiability import PROFILE_95, profile_from

    def f(c):  # b follows a exactly: the profile of a is 10⁶ (a − 1)⁴
        return float(1e6 * (c[0] - 1) ** 4 + (c[1] - c[0]) ** 2)

    def grad(c):
        return np.array([4e6 * (c[0] - 1) ** 3 - 2 * (c[1] - c[0]), 2 * (c[1] - c[0])])

    def hess(c):
        return np.array([[1.2e7 * (c[0] - 1) ** 2 + 2, -2.0], [-2.0, 2.0]])

    fit = np.array([1.0, 1.0])
    nll = _NLL(f, grad, hess)
    (row,) = profile_from(fit, hess(fit), nll, ["a", "b"], [True, True], directions=0,
                          terms=[0])
    end = (PROFILE_95 / 1e6) ** 0.25
    assert row["wald_half_width"] == np.inf
    assert row["low"] == pytest.approx(1 - end, abs=0.02 * end)
    assert row["high"] == pytest.approx(1 + end, abs=0.02 * end)


def test_a_skewed_likelihood_gives_an_asymmetric_profile_interval():
    """Poisson counts with a log link, few counts: the profile interval of the intercept
    direction is wider above than below, as the exact profile (scipy) says, where the
    Wald interval is symmetric."""
    from scipy.optimize import minimize_scalar

    from metaplastic.analysis.identifiability import describe_profile, profile_from

    z = np.linspace(-1, 1, 8)
    x = np.stack([np.ones_like(z), z], 1)
    counts = np.array([0, 1, 0, 2, 1, 0, 3, 2], float)

    def f(c):
        eta = x @ c
        return float(np.sum(np.exp(eta) - counts * eta))

    grad = lambda c: x.T @ (np.exp(x @ c) - counts)  # noqa: E731
    hess = lambda c: x.T @ (np.exp(x @ c)[:, None] * x)  # noqa: E731
    fit = np.array([0.0, 0.0])
    for _ in range(50):  # the maximum likelihood by Newton
        fit = fit - np.linalg.solve(hess(fit), grad(fit))
    info = hess(fit)
    nll = _NLL(f, grad, hess)
    (r,) = profile_from(fit, info, nll, ["1", "z"], [True, True], directions=1)
    u = np.linalg.eigh(info)[1][:, 0]
    u = u * (1 if u[np.argmax(np.abs(u))] >= 0 else -1)
    v = np.linalg.eigh(info)[1][:, 1]

    def exact(t):  # the profile NLL at u·c = t, minimised over v (scipy)
        base = fit + (t - u @ fit) * u
        return minimize_scalar(lambda s: f(base + s * v)).fun - f(fit)

    for end in (r["low"], r["high"]):
        assert exact(end) == pytest.approx(1.920729, abs=0.05)  # up to the grid's chords
    assert (r["high"] - r["value"]) / (r["value"] - r["low"]) > 1.1 or \
        (r["value"] - r["low"]) / (r["high"] - r["value"]) > 1.1  # asymmetric
    assert "profile likelihood" in describe_profile([r])[0]


def test_a_direction_the_data_do_not_bound_has_an_open_profile_interval():
    from metaplastic.analysis.identifiability import describe_profile, profile_from

    info = np.diag([100.0, 0.0])  # b never touches the likelihood
    nll = _NLL(lambda c: 50.0 * (c[0] - 1.0) ** 2, lambda c: np.array([100 * (c[0] - 1), 0]),
               lambda c: info)
    (r,) = profile_from([1.0, 0.5], info, nll, ["a", "b"], [True, True], directions=1)
    assert r["loadings"][0]["term"] == "b"
    assert r["low"] is None and r["high"] is None
    assert "unbounded" in describe_profile([r])[0]


def _linear_gaussian(rng, x, coefs, sigma):
    """A data set simulated from ``coefs`` and its least-squares fit, information, NLL."""
    y = x @ coefs + sigma * rng.standard_normal(x.shape[0])
    fit = np.linalg.lstsq(x, y, rcond=None)[0]
    info = x.T @ x / sigma ** 2
    nll = _NLL(lambda c: 0.5 * np.sum((y - x @ c) ** 2) / sigma ** 2,
               lambda c: -x.T @ (y - x @ c) / sigma ** 2, lambda c: info)
    return fit, info, nll


def test_the_profile_rise_of_a_quadratic_likelihood_is_half_its_squared_distance():
    """Along each eigen-direction u (eigenvalue λ) the profile NLL of a quadratic rises
    by λ (u·(target − fit))² / 2 at the target, whatever the other directions do."""
    from metaplastic.analysis.identifiability import profile_rise

    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 3))
    x[:, 1] = x[:, 0] + 0.3 * rng.standard_normal(60)
    fit, info, nll = _linear_gaussian(rng, x, np.array([1.0, -0.5, 0.25]), 0.5)
    target = fit + np.array([0.3, -0.2, 0.1])
    rises = profile_rise(fit, info, nll, [True] * 3, target, directions=3)
    lam, vec = np.linalg.eigh(info)
    np.testing.assert_allclose(rises, 0.5 * lam * (vec.T @ (target - fit)) ** 2, rtol=1e-6)
    # a coefficient held fixed (not free) is not a direction
    assert profile_rise(fit, info, nll, [True, False, True], target, directions=9).shape == (2,)


def test_a_threshold_calibrated_where_chi_squared_holds_is_chi_squared():
    """Data sets simulated from known coefficients of a linear-Gaussian model: the profile
    rise at them is χ²₁ / 2 exactly, so the calibrated threshold comes out near
    PROFILE_95 (1.92); and a profile interval at threshold c is sqrt(c / 1.92) times the
    Wald half-width."""
    from metaplastic.analysis.identifiability import (
        PROFILE_95,
        calibrated_threshold,
        profile_from,
        profile_rise,
    )

    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 3))
    truth = np.array([1.0, -0.5, 0.25])
    rises = []
    for _ in range(400):
        fit, info, nll = _linear_gaussian(rng, x, truth, 0.5)
        rises.append(profile_rise(fit, info, nll, [True] * 3, truth, directions=3))
    c = calibrated_threshold(rises)
    assert c == pytest.approx(PROFILE_95, rel=0.15)
    (r,) = profile_from(fit, info, nll, list("abc"), [True] * 3, directions=1,
                        threshold=4 * PROFILE_95, truth=truth)
    assert r["threshold"] == 4 * PROFILE_95
    # the rise at the truth: λ (u·(truth − fit))² / 2, inside exactly when ≤ the threshold
    assert r["truth_rise"] == pytest.approx(
        0.5 * r["eigenvalue"] * (r["truth"] - r["value"]) ** 2, rel=1e-6)
    assert r["truth_inside"] == (r["truth_rise"] <= 4 * PROFILE_95)
    assert r["high"] - r["value"] == pytest.approx(2 * r["wald_half_width"], rel=1e-3)
    assert r["value"] - r["low"] == pytest.approx(2 * r["wald_half_width"], rel=1e-3)


def test_a_calibration_with_too_many_diverged_refits_bounds_nothing():
    from metaplastic.analysis.identifiability import calibrated_threshold

    assert calibrated_threshold([1.0] * 90 + [np.inf] * 10) == np.inf
    assert calibrated_threshold([1.0] * 97 + [np.inf] * 3) == 1.0
    assert calibrated_threshold(np.arange(1, 101, dtype=float)) == 95.0
    with pytest.raises(ValueError, match="no profile rises"):
        calibrated_threshold([])
