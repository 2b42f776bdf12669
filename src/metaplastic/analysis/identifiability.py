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
from collections.abc import Callable
from typing import Any

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
    coefs, info, n, grad, _ = _information(objective, theta, indices, key, get, put)
    return coefs, info, n, grad


def report(objective: Any, theta: Any, indices, key: Array, get: Callable[[Any], Any],
           put: Callable[[Any, Any], Any], names: list[str], free: list[bool],
           truth=None, relative: float = 0.1) -> dict[str, Any]:
    """The whole report of a fit (what ``metaplastic recover`` writes): the observed
    information, and the intervals around the one-step estimate — unless that step does
    not lower the NLL (the likelihood is not near quadratic there: a step from far off),
    when they stay around the fit and ``one_step_refused`` says why. The information
    matrix and gradient over the free coefficients are kept in the report."""
    coefs, info, n, grad, nll = _information(objective, theta, indices, key, get, put)
    out = identifiability(coefs, info, names, free, relative, truth, gradient=grad)
    if out.get("centre") == "one-step":
        stepped = coefs.copy()
        stepped[np.flatnonzero(np.asarray(free, bool))] = out["estimate"]
        before, after = nll(coefs), nll(stepped)
        if not after < before:
            out = identifiability(coefs, info, names, free, relative, truth)
            out["one_step_refused"] = (f"the Newton step raised the NLL from {before:.6g} "
                                       f"to {after:.6g}")
    keep = np.flatnonzero(np.asarray(free, bool))
    return {**out, "observations": n,
            "information": info[np.ix_(keep, keep)].tolist(),
            "gradient": grad[keep].tolist()}


def _information(objective, theta, indices, key, get, put):
    task = check_recorded(objective)
    flat0, unravel = ravel_pytree(get(theta))
    idx = jnp.asarray(np.asarray(indices), jnp.int32)
    keys = jax.random.split(key, idx.shape[0])

    def envs(flat):
        th = put(theta, unravel(flat))

        def one(i, k):
            return unroll(objective.network, objective.rule, th, task, task.instance(i),
                          key=k).env

        return jax.vmap(one)(idx, keys)

    profiled = task.profiled

    def core(flat):  # (NLL, or NLL / observations when profiled; observations)
        value, n = task.likelihood(envs(flat))
        return (0.5 * jnp.log(value) if profiled else value), n

    def grad_and_aux(flat):
        (_, n), g = jax.value_and_grad(core, has_aux=True)(flat)
        return g, (g, n)

    # the Hessian, the gradient and the count of observations in one program
    hess, (g, n) = jax.jit(jax.jacfwd(grad_and_aux, has_aux=True))(flat0)
    n = float(n)
    scale = n if profiled else 1.0  # Gaussian noise: the profile NLL is (N/2) log SSE
    info = scale * np.asarray(hess, np.float64)
    grad = scale * np.asarray(g, np.float64)
    value = jax.jit(lambda flat: core(flat)[0])

    def nll_at(coefficients) -> float:
        return scale * float(value(jnp.asarray(coefficients, flat0.dtype)))

    return np.asarray(flat0, np.float64), 0.5 * (info + info.T), n, grad, nll_at


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
    if g is not None and np.all(np.isfinite(g)):  # the one-step estimate
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
    var = np.where(np.any(flat & (np.abs(vec) > NOISE), axis=1), np.inf,
                   np.sum(np.where(flat, 0.0, vec ** 2 * inv), axis=1))
    wald = Z95 * np.sqrt(var)
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


def describe(report: dict[str, Any]) -> list[str]:
    """Plain-text lines of an :func:`identifiability` report (what the command line
    prints)."""
    if not report.get("finite", False):
        return ["identifiability: the likelihood's curvature at the fit is not finite; "
                "no Wald analysis"]
    lines = [f"identifiability ({report['method']}): {report['determined_directions']} of "
             f"{report['free_directions']} directions determined (95% Wald half-width "
             f"<= {report['relative']:.0%} of |θ| = {report['scale']:.3g})"]
    for d in [d for d in report["directions"] if d["determined"]][:MAX_SHOWN + 2]:
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
    if report.get("one_step_refused"):
        lines.append(f"  intervals around the fit: {report['one_step_refused']}")
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


__all__ = ["Z95", "describe", "identifiability", "observed_information", "report"]
