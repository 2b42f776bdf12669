"""Which directions of an inferred rule's coefficients the recordings determine.

Method: the **observed Fisher information** at the fit — the Hessian of the negative
log-likelihood of the training trajectories with respect to the rule's own coefficients
(the free ones), computed exactly by automatic differentiation through every trajectory's
replay:

* choices: the summed negative log-likelihood of every recorded choice;
* spike counts (``observation = "poisson"``): the summed Poisson NLL of every count;
* activity (Gaussian, or calcium ΔF/F): the Gaussian likelihood with the noise variance
  profiled out, ``(N / 2) log SSE`` over the ``N`` recorded entries, whose Hessian at the fit is
  ``N H_SSE / (2 SSE)`` (no noise level needs to be known).

Its eigenvectors are directions in coefficient space and ``z / sqrt(eigenvalue)`` the
half-width of a Wald 95% interval along each (``z = 1.96``). A direction is **determined**
when that half-width is at most ``relative`` (default 10%) of the norm of the fitted
coefficients; the others are **undetermined**: the data move the likelihood too little
along them to say where the rule lies. An undetermined direction that loads on two or
more terms is a **confound**: those terms can stand in for one another (e.g. ``x·r`` and
``r`` when ``x`` is nearly constant). Per coefficient, the Wald interval is
``θ_i ± z sqrt((I⁻¹)_ii)`` (infinite where an eigenvalue is not positive). The rule is
also reported up to its scale: the unit vector ``θ / |θ|`` and the interval of ``|θ|``
(eta × coefficients is one product: a fit with eta fixed determines only it).

Wald intervals are local (a quadratic approximation at the fit): bootstrap intervals
(``metaplastic recover --bootstrap``) are the check where the likelihood is not quadratic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metaplastic.analysis.recovery_scores import check_recorded
from metaplastic.inner import unroll

Array = jax.Array

#: the normal quantile of a two-sided 95% interval
Z95 = 1.959963984540054
#: a loading at least this large (of a unit eigenvector) names a term in a direction
LOADING = 0.3
#: loadings below this on a direction without curvature are the eigensolver's rounding
NOISE = 1e-6
#: confounds printed (the least determined first); every one is in the report
MAX_SHOWN = 3


def observed_information(objective: Any, theta: Any, indices, key: Array,
                         get: Callable[[Any], Any], put: Callable[[Any, Any], Any]
                         ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``(coefficients, information, observations, gradient)``: the rule's own
    coefficients at the fit (``get(theta)`` raveled), the observed information matrix over
    them (see the module) from the trajectories ``indices``, the number of recorded
    observations (choices, or activity entries) and the NLL's gradient at the fit.
    ``put(theta, part)`` rebuilds θ around new coefficients."""
    coefs, info, n, grad, _ = likelihood(objective, theta, indices, key, get, put)
    return coefs, info, n, grad


def report(objective: Any, theta: Any, indices, key: Array, get: Callable[[Any], Any],
           put: Callable[[Any, Any], Any], names: list[str], free: list[bool],
           truth=None, relative: float = 0.1) -> dict[str, Any]:
    """The whole report of a fit (what ``metaplastic recover`` writes): the observed
    information, and the intervals around the one-step estimate — unless that step does
    not lower the NLL (the likelihood is not near quadratic there: the fit may have
    stopped in another optimum), when no interval is claimed (:func:`withheld`;
    ``one_step_refused`` says why). The information matrix and gradient over the free
    coefficients are kept in the report."""
    coefs, info, n, grad, nll = likelihood(objective, theta, indices, key, get, put)
    out = identifiability(coefs, info, names, free, relative, truth, gradient=grad)
    if out.get("centre") == "one-step":
        stepped = coefs.copy()
        stepped[np.flatnonzero(np.asarray(free, bool))] = out["estimate"]
        before, after = nll(coefs), nll(stepped)
        if not after < before:
            out = withheld(identifiability(coefs, info, names, free, relative, truth),
                           f"the Newton step from the fit raised the NLL from "
                           f"{before:.6g} to {after:.6g}")
    keep = np.flatnonzero(np.asarray(free, bool))
    return {**out, "observations": n,
            "information": info[np.ix_(keep, keep)].tolist(),
            "gradient": grad[keep].tolist()}


def _core(objective: Any, get: Callable, put: Callable, flat, theta, idx, keys):
    """(NLL, or its log-form ``0.5 log SSE`` when the task profiles out the noise;
    observations) of the coefficients ``flat`` on the trajectories ``idx``."""
    task = objective.task
    _, unravel = ravel_pytree(get(theta))
    th = put(theta, unravel(flat))

    def one(i, k):
        return unroll(objective.network, objective.rule, th, task, task.instance(i),
                      key=k).env

    value, n = task.likelihood(jax.vmap(one)(idx, keys))
    return (0.5 * jnp.log(value) if task.profiled else value), n


def _grad_and_aux(objective, get, put, flat, theta, idx, keys):
    (_, n), g = jax.value_and_grad(_core, argnums=3, has_aux=True)(
        objective, get, put, flat, theta, idx, keys)
    return g, (g, n)


#: the Hessian, the gradient and the count of observations in one program, and the NLL
#: alone in another; θ, the trajectories and their keys are arguments, so one pair of
#: programs serves every fit of a ``recover`` (the fit's report, its profile and every
#: simulated set of ``--calibrate``: each compiled anew took about 4 s, the computation
#: milliseconds)
_curvature = jax.jit(jax.jacfwd(_grad_and_aux, argnums=3, has_aux=True),
                     static_argnums=(0, 1, 2))
_value = jax.jit(lambda objective, get, put, *args: _core(objective, get, put, *args)[0],
                 static_argnums=(0, 1, 2))


def release_compiled() -> None:
    """Drop the shared likelihood programs, and with them the objectives (and their
    recordings) they were compiled for: ``recover`` calls this when it is done."""
    _curvature.clear_cache()
    _value.clear_cache()


def likelihood(objective: Any, theta: Any, indices, key: Array, get: Callable[[Any], Any],
               put: Callable[[Any, Any], Any]) -> tuple:
    """``(coefficients, information, observations, gradient, nll)`` of a fit on the
    trajectories ``indices``: :func:`observed_information`'s four and ``nll(coefficients)
    -> float``, the negative log-likelihood at other coefficients, with
    ``nll.curvature(coefficients) -> (information, gradient)`` (one compiled program,
    shared by every call with the same objective, ``get``, ``put`` and shapes)."""
    task = check_recorded(objective)
    flat0, _ = ravel_pytree(get(theta))
    idx = jnp.asarray(np.asarray(indices), jnp.int32)
    keys = jax.random.split(key, idx.shape[0])
    pieces = (objective, get, put)

    def curvature(flat):
        return _curvature(*pieces, flat, theta, idx, keys)

    hess, (g, n) = curvature(flat0)
    n = float(n)
    scale = n if task.profiled else 1.0  # Gaussian noise: the profile NLL is (N/2) log SSE
    info = scale * np.asarray(hess, np.float64)
    grad = scale * np.asarray(g, np.float64)

    def nll_at(coefficients) -> float:
        return scale * float(_value(*pieces, jnp.asarray(coefficients, flat0.dtype), theta,
                                    idx, keys))

    def curvature_at(coefficients) -> tuple[np.ndarray, np.ndarray]:
        """(information, gradient) at other coefficients: the same compiled program."""
        h, (g_, _) = curvature(jnp.asarray(coefficients, flat0.dtype))
        h = scale * np.asarray(h, np.float64)
        return 0.5 * (h + h.T), scale * np.asarray(g_, np.float64)

    nll_at.curvature = curvature_at
    return np.asarray(flat0, np.float64), 0.5 * (info + info.T), n, grad, nll_at


#: half the 95% quantile of χ² with one degree of freedom: a profile interval holds the
#: values whose profile NLL is within this of its minimum
PROFILE_95 = 1.920729410347062
#: where the profile is evaluated, in Wald half-widths (or |θ| when unbounded) each side
PROFILE_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
#: bisection steps that refine each end of a profile interval between grid points
PROFILE_BISECT = 4
#: along a coefficient's own axis, the bisection goes on (up to this many steps) while
#: the bracket's outer point rises more than :data:`PROFILE_OVERSHOOT` times the
#: threshold: a profile that climbs steeply within one grid step would otherwise put
#: the end, linearly interpolated, far inside where the profile crosses
PROFILE_BISECT_MAX = 16
PROFILE_OVERSHOOT = 1.25


def profile(objective: Any, theta: Any, indices, key: Array, get: Callable[[Any], Any],
            put: Callable[[Any, Any], Any], names: list[str], free: list[bool],
            directions: int = 2, newton: int = 6,
            progress: Callable[[int, int], None] | None = None,
            truth=None, threshold: float = PROFILE_95,
            terms: Sequence[int] = ()) -> list[dict[str, Any]]:
    """The **profile likelihood** along the ``directions`` least determined
    eigen-directions ``u`` of the observed information (those with the widest Wald
    intervals): at each ``t`` of a grid, the NLL minimised over every other free
    direction with the coefficients held at ``θ̂ + t u`` (damped Newton steps with the
    exact Hessian, the same compiled program as the information), minus its minimum. The
    profile 95% interval holds the ``t`` whose profile NLL is within
    :data:`PROFILE_95` (or ``threshold``) of the minimum; unlike the Wald interval it
    follows the likelihood where it is not quadratic, and an end the grid does not reach
    is reported as ``None`` (at least that far: the data do not bound it). ``terms``
    (indices of free coefficients): after the directions, the classical profile of each
    of those coefficients on its own — the coefficient held at each value, every other
    free coefficient refitted (rows with ``"term"``); its interval is the hull of the
    points within the threshold, each end bisected until the bracket's outer point rises
    at most :data:`PROFILE_OVERSHOOT` times the threshold (up to
    :data:`PROFILE_BISECT_MAX` steps) and interpolated in the signed root √rise."""
    coefs, info, _, _, nll = likelihood(objective, theta, indices, key, get, put)
    return profile_from(coefs, info, nll, names, free, directions, newton, progress, truth,
                        threshold, terms)


def profile_from(coefs, info, nll: Callable, names: list[str], free: list[bool],
                 directions: int = 2, newton: int = 6,
                 progress: Callable[[int, int], None] | None = None,
                 truth=None, threshold: float = PROFILE_95,
                 terms: Sequence[int] = ()) -> list[dict[str, Any]]:
    """:func:`profile` from the fit's coefficients, their information matrix and
    ``nll(coefficients) -> float`` with ``nll.curvature(coefficients) -> (information,
    gradient)``. ``truth`` (simulated recordings): every row also holds the truth along
    its direction and whether the profile interval holds it. ``threshold``: the rise of
    the profile NLL that bounds the interval (:data:`PROFILE_95`, χ²'s; or one
    calibrated by simulation, :func:`calibrated_threshold`)."""
    along = _Along(coefs, info, nll, free, newton)
    coefs, keep = along.coefs, along.keep
    scale = max(float(np.linalg.norm(coefs[keep])), 1e-12)
    axes = along.axes(directions, terms, names)
    total = len(axes) * (2 * len(PROFILE_GRID) + 1)
    done, out = 0, []

    for axis in axes:
        u, others, wald = axis.u, axis.others, axis.wald
        unit = min(wald, scale)
        # a coefficient's profile can rise past the threshold and fall below it again
        # (where the walk stalled): its interval is the hull of the points below it
        hull = axis.term is not None
        centre, f0 = along.minimise(coefs[keep].copy(), others)
        t_hat = float(u @ centre)
        points = {0.0: (f0, centre)}

        def at(t, start, u=u, centre=centre, others=others, lead=axis.lead):
            return along.at(t, start, u, centre, others, lead)

        for sign in (1, -1):
            x = centre.copy()
            for w in PROFILE_GRID:
                t = sign * w * unit
                x, f = at(t, x)
                points[t] = (f, x)
                done += 1
                if progress is not None:
                    progress(done, total)
        done += 1
        base = min(f for f, _ in points.values())
        for side in (1, -1):  # refine each crossing by bisection between grid points
            ts = np.array(sorted(points))
            delta = np.array([points[t][0] - base for t in ts])
            end = _crossing(ts, delta, side, threshold, hull)
            if end is None:
                continue
            start = float(ts[int(np.argmin(np.where(np.isfinite(delta), delta, np.inf)))])
            reach = [float(t) for t in ts if side * (t - start) >= 0]
            inner = max((t for t in reach if side * t < side * end),
                        key=lambda t, side=side: side * t, default=start)
            outer = min((t for t in reach if side * t >= side * end),
                        key=lambda t, side=side: side * t, default=None)
            if outer is None or outer == inner:
                continue
            for step in range(PROFILE_BISECT_MAX if hull else PROFILE_BISECT):
                if step >= PROFILE_BISECT:
                    rise = points[outer][0] - base
                    if np.isfinite(rise) and rise <= PROFILE_OVERSHOOT * threshold:
                        break
                mid = 0.5 * (inner + outer)
                x, f = at(mid, points[inner][1])
                points[mid] = (f, x)
                if np.isfinite(f) and f - base <= threshold:
                    inner = mid
                else:
                    outer = mid
        ts = np.array(sorted(points))
        base = min(f for f, _ in points.values())  # a refinement may have found lower
        delta = np.array([points[t][0] - base for t in ts])

        low = _crossing(ts, delta, -1, threshold, hull)
        high = _crossing(ts, delta, 1, threshold, hull)
        load = [{"term": names[keep[i]], "weight": float(u[i])} for i in np.argsort(-np.abs(u))
                if abs(u[i]) >= LOADING]
        out.append({**({} if axis.term is None else {"term": axis.term}),
                    "eigenvalue": axis.eigenvalue, "loadings": load,
                    "value": t_hat, "wald_half_width": wald, "threshold": float(threshold),
                    "grid": ts.tolist(), "delta_nll": delta.tolist(),
                    "profile_minimum": t_hat + float(ts[int(np.argmin(
                        np.where(np.isfinite(delta), delta, np.inf)))]),
                    "low": None if low is None else t_hat + low,
                    "high": None if high is None else t_hat + high,
                    "grid_reach": [t_hat + float(ts[0]), t_hat + float(ts[-1])]})
        if truth is not None:
            tv = float(u @ np.asarray(truth, np.float64)[keep])
            out[-1]["truth"] = tv
            out[-1]["truth_inside"] = bool((low is None or t_hat + low <= tv)
                                           and (high is None or tv <= t_hat + high))
            # how far the profile rises at the truth (the statistic the interval bounds):
            # inside exactly when at most the threshold, where the profile has one valley
            _, f_truth = along.reach(axis, tv - t_hat, centre, scale)
            out[-1]["truth_rise"] = (max(0.0, f_truth - base) if np.isfinite(f_truth)
                                     else math.inf)
    return out


class _Axis(NamedTuple):
    """One line a profile follows, in the free coordinates."""

    u: np.ndarray  # its unit vector
    others: np.ndarray  # the rest of an orthonormal basis: what is refitted along it
    #: how the quadratic model's profile moves per unit along u: u plus the others'
    #: compensation (u itself along an eigen-direction, where they do not move)
    lead: np.ndarray
    wald: float  # the 95% Wald half-width along it (inf without curvature)
    eigenvalue: float | None  # the information's along an eigen-direction
    term: str | None  # a coefficient's own axis (None: an eigen-direction)


def _coordinate_variance(lam: np.ndarray, vec: np.ndarray, tol: float) -> np.ndarray:
    """``(I⁻¹)_ii`` of every coordinate from the information's eigen-decomposition;
    infinite where the coordinate takes part (a loading above :data:`NOISE`) in a
    direction without curvature (eigenvalue at most ``tol``)."""
    flat = lam <= tol
    inv = 1.0 / np.maximum(lam, tol)
    return np.where(np.any(flat & (np.abs(vec) > NOISE), axis=1), np.inf,
                    np.sum(np.where(flat, 0.0, vec ** 2 * inv), axis=1))


class _Along:
    """The profile NLL of a fit: its free coordinates, the eigen-directions of their
    information, and the NLL minimised over every direction but one by damped Newton
    steps (the exact Hessian; a step kept only where it lowers the NLL)."""

    def __init__(self, coefs, info, nll: Callable, free, newton: int):
        self.coefs = np.asarray(coefs, np.float64)
        info = np.asarray(info, np.float64)
        self.keep = np.flatnonzero(np.asarray(free, bool))
        self.info = info[np.ix_(self.keep, self.keep)]
        self.lam, self.vec = np.linalg.eigh(self.info)
        self.nll, self.newton = nll, newton

    def axes(self, directions: int, terms: Sequence[int] = (),
             names: list[str] | None = None) -> list[_Axis]:
        """What a profile follows: the ``directions`` least determined eigen-directions
        (the flattest first), then the axis of each coefficient in ``terms`` (indices
        into the full coefficient vector; each must be free)."""
        lam, vec = self.lam, self.vec
        tol = max(float(np.max(np.abs(lam), initial=0.0)), 1e-300) * 1e-12
        out = []
        for k in np.argsort(lam)[:max(0, min(directions, lam.size))]:
            u = vec[:, k] * (1 if vec[np.argmax(np.abs(vec[:, k])), k] >= 0 else -1)
            out.append(_Axis(u, np.delete(vec, k, axis=1), u,
                             Z95 / math.sqrt(lam[k]) if lam[k] > tol else math.inf,
                             float(lam[k]), None))
        position = {int(i): j for j, i in enumerate(self.keep)}
        variance = _coordinate_variance(lam, vec, tol)
        eye = np.eye(self.keep.size)
        for i in terms:
            if int(i) not in position:
                raise ValueError(f"coefficient {i} is not free: its profile is not defined")
            j = position[int(i)]
            others = np.delete(eye, j, axis=1)
            out.append(_Axis(eye[:, j], others, eye[:, j] + others @ self._compensation(j),
                             Z95 * math.sqrt(variance[j]), None,
                             str(i) if names is None else names[int(i)]))
        return out

    def _compensation(self, j: int) -> np.ndarray:
        """How the other free coordinates' optimum moves per unit of coordinate ``j`` in
        the quadratic model at the fit, ``−H_oo⁺ H_oj``, over the others' directions of
        positive curvature only (along flat or negative ones the model says nothing)."""
        h_oo = np.delete(np.delete(self.info, j, axis=0), j, axis=1)
        h_oj = np.delete(self.info[:, j], j)
        lam, vec = np.linalg.eigh(h_oo)
        pos = lam > max(float(np.max(np.abs(lam), initial=0.0)), 1e-300) * 1e-9
        return -(vec[:, pos] @ ((vec[:, pos].T @ h_oj) / lam[pos]))

    def embed(self, x_free: np.ndarray) -> np.ndarray:
        full = self.coefs.copy()
        full[self.keep] = x_free
        return full

    def minimise(self, x: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, float]:
        """Newton steps over the span of ``others`` from ``x`` (free coordinates): a
        local minimisation, from where the profile's walk left it."""
        nll, keep = self.nll, self.keep
        f = nll(self.embed(x))
        if not np.isfinite(f):  # the replay diverged here: no likelihood to follow
            return x, math.inf
        for _ in range(self.newton):
            h, g = nll.curvature(self.embed(x))
            hc = others.T @ h[np.ix_(keep, keep)] @ others
            gc = others.T @ g[keep]
            if not (np.all(np.isfinite(hc)) and np.all(np.isfinite(gc))):
                break  # curvature lost (a replay near divergence): keep the best so far
            low = float(np.min(np.linalg.eigvalsh(hc))) if hc.size else 0.0
            damp = max(0.0, -low) + 1e-8 * max(1.0, float(np.max(np.abs(hc), initial=0.0)))
            step = -np.linalg.solve(hc + damp * np.eye(hc.shape[0]), gc) if hc.size else gc
            for _ in range(6):  # backtracking: a step must lower the NLL
                trial = x + others @ step
                ft = nll(self.embed(trial))
                if np.isfinite(ft) and ft < f:
                    x, f = trial, ft
                    break
                step = step / 2
            else:
                break
        return x, f

    def at(self, t: float, start: np.ndarray, u: np.ndarray, centre: np.ndarray,
           others: np.ndarray, lead: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """The profile at ``u·(x − centre) = t``, minimised (:meth:`minimise`) from
        ``start`` moved along ``lead`` (default ``u``; ``u·lead = 1``) to that value."""
        x = start + (t - float(u @ (start - centre))) * (u if lead is None else lead)
        return self.minimise(x, others)

    def reach(self, axis: _Axis, t: float, centre: np.ndarray,
              scale: float) -> tuple[np.ndarray, float]:
        """The profile at ``t`` along ``axis`` from its centre, as the drawn profile
        would reach it (the truth's rise, a calibration's: the statistic must be the
        procedure's own). Along an eigen-direction in one step: to second order the
        optimum of the other directions does not move with ``t``, so the centre is
        already a good start. Along a coefficient's own axis the others must move to
        make up for it (the quadratic model's ``lead`` moves them), and ``t`` is reached
        through the grid's points on the way, each minimised from the last, as the
        profile itself is drawn."""
        x = centre
        if axis.term is not None:
            unit = min(axis.wald, scale)
            for w in PROFILE_GRID:
                if w * unit >= abs(t):
                    break
                x, _ = self.at(math.copysign(w * unit, t), x, axis.u, centre, axis.others,
                               axis.lead)
        return self.at(t, x, axis.u, centre, axis.others, axis.lead)


def profile_rise(coefs, info, nll: Callable, free: list[bool], target,
                 directions: int = 2, newton: int = 6,
                 terms: Sequence[int] = ()) -> np.ndarray:
    """How far the profile NLL rises at ``target`` (coefficients) above its minimum
    along each of the ``directions`` least determined directions of a fit, then along
    each coefficient of ``terms`` on its own, as :func:`profile_from` follows it there:
    the statistic a profile interval bounds. On a data set simulated from known
    coefficients, evaluated at them, its quantiles calibrate the threshold
    (:func:`calibrated_threshold`). ``inf`` where the replay diverged at the target."""
    along = _Along(coefs, info, nll, free, newton)
    target = np.asarray(target, np.float64)[along.keep]
    scale = max(float(np.linalg.norm(along.coefs[along.keep])), 1e-12)
    rises = []
    for axis in along.axes(directions, terms):
        centre, f0 = along.minimise(along.coefs[along.keep].copy(), axis.others)
        _, f = along.reach(axis, float(axis.u @ (target - centre)), centre, scale)
        rises.append(f - min(f0, f) if np.isfinite(f) and np.isfinite(f0) else math.inf)
    return np.asarray(rises, np.float64)


def calibrated_threshold(rises, level: float = 0.95) -> float:
    """The profile-NLL rise that holds the truth in a fraction ``level`` of simulated
    data sets: the ``level`` quantile of :func:`profile_rise` at the simulating
    coefficients, pooled over data sets and directions (the smallest rise that at least
    ``level`` of them do not exceed). χ² with one degree of freedom gives
    :data:`PROFILE_95` where the likelihood is near quadratic and its maximum near the
    truth; an over-fitted likelihood needs more. ``inf`` (every interval unbounded)
    when more than ``1 − level`` of the rises are infinite."""
    rises = np.asarray(rises, np.float64).ravel()
    if rises.size == 0:
        raise ValueError("no profile rises to calibrate a threshold from")
    return float(np.quantile(rises, level, method="inverted_cdf"))


def _crossing(ts: np.ndarray, delta: np.ndarray, side: int,
              threshold: float = PROFILE_95, hull: bool = False) -> float | None:
    """The first ``t`` on one side (``side`` ±1) of the profile's minimum where ``delta``
    rises past ``threshold`` above it (linearly interpolated; a non-finite NLL counts
    as past); None where it never does on the grid. ``hull``: the last such ``t`` — past
    the outermost point within the threshold — so that the interval holds every point
    of the grid whose profile is within it; None where that point is the grid's end; the
    crossing is then interpolated in √rise (near linear where the rise is not)."""
    m = int(np.nanargmin(np.where(np.isfinite(delta), delta, np.inf)))  # from the minimum
    order = np.arange(m, ts.size) if side > 0 else np.arange(m, -1, -1)
    if hull:
        within = [k for k, i in enumerate(order)
                  if np.isfinite(delta[i]) and delta[i] <= threshold]
        last = within[-1]  # the minimum itself is within
        if last == order.size - 1:
            return None
        order = order[last:]
    prev = order[0]
    for i in order[1:]:
        if not np.isfinite(delta[i]):
            return float(ts[i])
        if delta[i] > threshold:
            a, b, c = delta[prev], delta[i], threshold
            if hull:  # the signed root of a rise is near linear where the rise is not
                a, b, c = math.sqrt(max(a, 0.0)), math.sqrt(b), math.sqrt(c)
            frac = (c - a) / (b - a) if b != a else 1.0
            return float(ts[prev] + frac * (ts[i] - ts[prev]))
        prev = i
    return None


def describe_profile(rows: list[dict[str, Any]],
                     calibration: dict[str, Any] | None = None) -> list[str]:
    """Plain-text lines of :func:`profile` (what ``metaplastic recover --profile``
    prints); ``calibration``: the threshold's calibration (``recover --calibrate``)."""
    lines = []
    if rows and calibration is not None:
        c = calibration
        bias = c.get("bias")
        where = ("the fitted rule" if bias is None else
                 f"the fitted rule minus its bias estimated from {bias['refits']} more "
                 f"refits (|bias| = {bias['relative']:.2g} of |θ|)")
        for kind, record in (("directions", c), ("coefficients", c.get("terms"))):
            if record is None or record.get("threshold") is None:
                continue
            lines.append(
                f"profile intervals of {kind}: the NLL rises by at most "
                f"{record['threshold']:.3g} within them, calibrated on {c['data_sets']} "
                f"data sets simulated from {where} and refitted ({c['refits_diverged']} "
                f"diverged; χ² with one degree of freedom would give "
                f"{c['chi2_threshold']:.3g})")
    for r in rows:
        combo = (f"the coefficient of {r['term']}" if "term" in r else
                 " ".join(f"{x['weight']:+.2f}·{x['term']}" for x in r["loadings"])
                 or "(spread over many terms)")
        lo = "unbounded" if r["low"] is None else f"{r['low']:+.3g}"
        hi = "unbounded" if r["high"] is None else f"{r['high']:+.3g}"
        wald = ("unbounded" if not math.isfinite(r["wald_half_width"])
                else f"± {r['wald_half_width']:.2g}")
        truth = (f"; truth {r['truth']:+.3g}, {'inside' if r['truth_inside'] else 'outside'}"
                 if "truth" in r else "")
        if "profile_minimum" in r and abs(r["profile_minimum"] - r["value"]) > 0.01 * (
                r["grid_reach"][1] - r["grid_reach"][0]):
            truth += (f"; the profile's minimum is at {r['profile_minimum']:+.3g}, not at "
                      f"the fit")
        lines.append(f"  profile likelihood of {combo} = {r['value']:+.3g}: 95% [{lo}, {hi}] "
                     f"(Wald {wald}; grid {r['grid_reach'][0]:+.3g} to "
                     f"{r['grid_reach'][1]:+.3g}{truth})")
    return lines


def identifiability(coefficients, information, names: list[str], free: list[bool],
                    relative: float = 0.1, truth=None, gradient=None) -> dict[str, Any]:
    """The report of the module from a fit's coefficients and observed information (over
    every coefficient; only the ``free`` ones are analysed). ``truth``: the true
    coefficients (simulated recordings), checked against the Wald intervals.
    ``gradient``: the NLL's gradient at the fit; the intervals are then centred on the
    one-step (Newton) estimate ``θ − I⁻¹ g`` taken along the determined directions only —
    a fit stopped early or pulled by an L1 penalty is not the likelihood's maximum, and an
    interval from the likelihood's curvature belongs around that maximum."""
    if not (relative > 0 and math.isfinite(relative)):
        raise ValueError(f"relative must be a positive number, got {relative}")
    theta = np.asarray(coefficients, np.float64)
    keep = np.flatnonzero(np.asarray(free, bool))
    t, info = theta[keep], np.asarray(information, np.float64)[np.ix_(keep, keep)]
    g = None if gradient is None else np.asarray(gradient, np.float64)[keep]
    kept_names = [names[i] for i in keep]
    finite = bool(np.all(np.isfinite(info)))
    if not finite:  # no quadratic approximation to report
        return {"method": "observed Fisher information (Hessian of the NLL at the fit)",
                "finite": False, "names": kept_names}
    lam, vec = np.linalg.eigh(info)
    order = np.argsort(lam)[::-1]
    lam, vec = lam[order], vec[:, order]
    scale = float(np.linalg.norm(t))
    tol = max(float(np.max(np.abs(lam))), 1e-300) * 1e-12  # numerically zero
    half = np.where(lam > tol, Z95 / np.sqrt(np.maximum(lam, tol)), np.inf)
    determined = half <= relative * max(scale, 1e-300)
    fit = t
    # the one-step estimate (none without a determined direction to step along)
    if g is not None and np.all(np.isfinite(g)) and np.any(determined):
        coef = np.where(determined, (vec.T @ g) / np.where(determined, lam, 1.0), 0.0)
        t = t - vec @ coef
    directions = []
    for k in range(lam.size):
        v = vec[:, k] * (1 if vec[np.argmax(np.abs(vec[:, k])), k] >= 0 else -1)
        load = [(kept_names[i], float(v[i])) for i in np.argsort(-np.abs(v))
                if abs(v[i]) >= LOADING]
        directions.append({"eigenvalue": float(lam[k]), "half_width": float(half[k]),
                           "determined": bool(determined[k]), "value": float(v @ t),
                           "loadings": [{"term": n, "weight": w} for n, w in load]})
        if truth is not None:
            directions[-1]["truth"] = float(v @ np.asarray(truth, np.float64)[keep])
    # per coefficient: sqrt of (I⁻¹)_ii over the eigenbasis; infinite where the
    # coefficient takes part (a loading above NOISE) in a direction without curvature
    flat = lam <= tol
    inv = 1.0 / np.maximum(lam, tol)
    wald = Z95 * np.sqrt(_coordinate_variance(lam, vec, tol))
    out: dict[str, Any] = {
        "method": "observed Fisher information (Hessian of the NLL at the fit)",
        "finite": True, "relative": relative, "names": kept_names,
        "free_directions": int(t.size), "determined_directions": int(np.sum(determined)),
        "directions": directions,
        "confounds": [d["loadings"] for d in reversed(directions)  # the flattest first
                      if not d["determined"] and len(d["loadings"]) >= 2],
        "wald_low": (t - wald).tolist(), "wald_high": (t + wald).tolist(),
        "scale": scale, "centre": "one-step" if t is not fit else "fit",
        "estimate": t.tolist(),
    }
    norm = float(np.linalg.norm(t))
    if norm > 0:  # the rule up to its scale, and the scale's own interval
        u = t / norm
        out["estimate_scale"] = norm
        proj = vec.T @ u
        s_var = (math.inf if np.any(flat & (np.abs(proj) > NOISE))
                 else float(np.sum(np.where(flat, 0.0, proj ** 2 * inv))))
        out["normalised"] = u.tolist()
        out["scale_half_width"] = Z95 * math.sqrt(s_var)
    out["wald_width_median"] = float(np.median(2 * wald))
    out["wald_bounded"] = int(np.sum(np.isfinite(wald)))
    if truth is not None:
        tv = np.asarray(truth, np.float64)[keep]
        inside = (t - wald <= tv) & (tv <= t + wald)
        out["truth_inside_wald"] = int(np.sum(inside))
        out["truth_inside_bounded_wald"] = int(np.sum(inside & np.isfinite(wald)))
        # the identifiable set: along every determined direction, the truth within its
        # half-width of the fit (the undetermined directions say nothing)
        off = np.abs(vec.T @ (tv - t))
        out["truth_inside_determined"] = int(np.sum(determined & (off <= half)))
    return out


def withheld(report: dict[str, Any], why: str) -> dict[str, Any]:
    """``report`` (of :func:`identifiability`) with every interval withheld: the
    curvature's directions stay (what the information says), but no direction's or
    coefficient's interval, nor the scale's, is claimed — every one unbounded. For a fit
    where the local approximation is known to fail (``why``): measured on 20 simulated
    data sets of ``infer-oja-activity``, the intervals around such fits held the truth
    along 11 of 80 directions, those around the others along 431 of 458 (docs/inference.md)."""
    out = {**report, "one_step_refused": why, "intervals_withheld": True}
    n = len(out.get("wald_low", ()))
    out.update(wald_low=[-math.inf] * n, wald_high=[math.inf] * n, wald_bounded=0,
               wald_width_median=math.inf)
    if "scale_half_width" in out:
        out["scale_half_width"] = math.inf
    if "truth_inside_wald" in out:
        out.update(truth_inside_wald=n, truth_inside_bounded_wald=0,
                   truth_inside_determined=0)
    return out


def describe(report: dict[str, Any]) -> list[str]:
    """Plain-text lines of an :func:`identifiability` report (what the command line
    prints)."""
    if not report.get("finite", False):
        return ["identifiability: the likelihood's curvature at the fit is not finite; "
                "no Wald analysis"]
    lines = [f"identifiability ({report['method']}): {report['determined_directions']} of "
             f"{report['free_directions']} directions determined (95% Wald half-width "
             f"<= {report['relative']:.0%} of |θ| = {report['scale']:.3g})"]
    if report.get("intervals_withheld"):
        lines.append(f"  no interval is claimed: {report['one_step_refused']}, so the "
                     f"likelihood is not near quadratic at this fit (it may have stopped in "
                     f"another optimum); refit (another seed, more meta-steps) or follow "
                     f"the likelihood itself (--profile, --bootstrap)")
    shown_determined = [] if report.get("intervals_withheld") else \
        [d for d in report["directions"] if d["determined"]]
    for d in shown_determined[:MAX_SHOWN + 2]:
        combo = " ".join(f"{x['weight']:+.2f}·{x['term']}" for x in d["loadings"]) or \
            "(spread over many terms)"
        truth = f" (truth {d['truth']:+.3g})" if "truth" in d else ""
        lines.append(f"  determined: {combo} = {d['value']:+.3g} ± {d['half_width']:.2g}"
                     f"{truth}")
    negative = sum(d["eigenvalue"] < 0 for d in report["directions"])
    if negative:
        lines.append(f"  {negative} direction(s) of negative curvature: the fit is not at a "
                     f"minimum of the likelihood along them (an L1 penalty, or the fit "
                     f"not finished); undetermined, so every coefficient that takes part "
                     f"in them has an unbounded Wald interval")
    if "scale_half_width" in report:
        lines.append(f"  scale |θ| = {report['estimate_scale']:.3g} ± "
                     f"{report['scale_half_width']:.2g} (95%); the rule up to its scale is "
                     f"θ / |θ|")
    if report.get("centre") == "one-step":
        lines.append("  intervals around the one-step (Newton) estimate θ − I⁻¹g along the "
                     "determined directions: the fit itself (L1, stopped early) is not the "
                     "likelihood's maximum")
    shown = report["confounds"][:MAX_SHOWN]
    for c in shown:
        combo = " ".join(f"{w:+.2f}·{t}" for t, w in (
            (d["term"], d["weight"]) for d in c))
        lines.append(f"  confound: {combo} is not determined (these terms stand in for "
                     f"one another in these data)")
    if len(report["confounds"]) > len(shown):
        lines.append(f"  ... and {len(report['confounds']) - len(shown)} more confounds "
                     f"(recovery.json: identifiability)")
    undet = [d for d in report["directions"] if not d["determined"] and len(d["loadings"]) < 2]
    for d in undet:
        if d["loadings"]:
            lines.append(f"  undetermined: {d['loadings'][0]['term']} (half-width "
                         f"{d['half_width']:.2g})")
    return lines


__all__ = ["PROFILE_95", "Z95", "calibrated_threshold", "describe", "describe_profile",
           "identifiability", "likelihood", "observed_information", "profile",
           "profile_from", "profile_rise", "report", "withheld"]
