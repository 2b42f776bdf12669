"""Rule recovery for a finished fit to recordings: ``recovery.json`` in the run directory
(``metaplastic recover RUN``; the cheap part also at the end of ``metaplastic run``).

What it holds (the statistics are :mod:`metaplastic.analysis.recovery_scores`'s):

* ``splits``: for the training and the held-out trajectories, each scored once, the
  inferred rule, the truth (simulated recordings) and the network without plasticity:
  the loss and the task's metrics (mean and 95% CI over trajectories), percent deviance
  explained against the non-plastic network (choices), R² of the weight changes against
  the truth (simulated recordings);
* ``coefficients`` (rules with named terms compared with ``reference``): inferred and true
  coefficients, their cosine and R², and with ``bootstrap = B`` a 95% interval of every
  coefficient over B refits: on resampled training trajectories (percentile interval),
  or with ``parametric = True`` on B data sets simulated from the fitted rule as the
  run's recordings were simulated from the truth (``task.simulate``; basic interval
  ``2θ̂ − q``, which corrects the fit's own bias — the L1 penalty, a fit stopped short —
  where the percentile interval would double it);
* ``behavioural_model`` (binary choices with recorded ``outcomes``): Rescorla–Wagner
  fitted to the training trajectories' choices (:mod:`metaplastic.analysis.behaviour`),
  scored in ``splits`` beside the rule as the row ``Rescorla–Wagner``;
* ``identifiability`` (rules with named terms): which directions of the coefficients the
  training trajectories determine, the confounds, Wald intervals and the rule up to its
  scale, from the observed Fisher information at the fit
  (:mod:`metaplastic.analysis.identifiability`); with ``profile = K`` the profile
  likelihood's intervals along the K least determined directions, their threshold χ²'s
  or, with ``calibrate = B``, calibrated on B data sets simulated from the fitted rule
  moved by the refits' mean bias, and refitted (``profile_calibration``: a parametric
  bootstrap of the profile likelihood ratio, bias-corrected: 2B refits; with
  ``calibrate_at = "fit"`` simulated from the fitted rule itself, B refits);
* ``l1_path`` (with ``l1 = [...]``): for every L1 strength, the cross-validated loss over
  folds of the training trajectories (each held-out fold scored once), the coefficients
  fitted on all training trajectories, the strength chosen (the largest within one
  standard error of the best loss) and the terms it keeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from metaplastic import capabilities as cap
from metaplastic import streams
from metaplastic._stats import mean_ci
from metaplastic.analysis import behaviour, identifiability
from metaplastic.analysis import recovery_scores as recovery
from metaplastic.errors import ConfigError
from metaplastic.experiments import recordings
from metaplastic.experiments.build import build, build_rule
from metaplastic.experiments.evaluate import coefficient_cosine
from metaplastic.experiments.lifecycle import run_keys
from metaplastic.experiments.rule_runs import run_theta
from metaplastic.experiments.rundir import RunDir
from metaplastic.progress import reporting
from metaplastic.rules.composed import synapses_part, with_synapses_part

FILE = "recovery.json"
#: a term is kept at the chosen L1 strength when |coefficient| exceeds this share of the
#: largest (Adam's L1 steps leave small oscillations, not exact zeros)
KEEP_SHARE = 0.05


#: fewer distinct bootstrap resamples than this: the intervals are said to be unreliable
MIN_DISTINCT = 20
#: where ``--calibrate`` simulates from: the fitted rule minus the mean bias of refits of
#: data simulated from it (the default), or the fitted rule
CALIBRATE_AT = ("bias-corrected", "fit")
#: fewer profile rises than this (``--calibrate B`` × directions) give a warning: their
#: 95% quantile rests on the largest few
MIN_RISES = 100


def analyse(run: RunDir, *, bootstrap: int = 0, l1: tuple[float, ...] = (), folds: int = 0,
            profile: int = 0, parametric: bool = False, calibrate: int = 0,
            calibrate_at: str = "bias-corrected", profile_terms: tuple[str, ...] = (),
            progress: Callable[[int, int | None, str], None] | bool | None = None
            ) -> dict[str, Any]:
    """Everything above for the run in ``run``; writes ``recovery.json`` and returns it.
    ``profile = K``: the profile likelihood along the K least determined directions
    (:func:`metaplastic.analysis.identifiability.profile`). ``parametric``: the
    ``bootstrap`` refits are on data simulated from the fitted rule
    (:func:`simulated_sets`), not on resampled trajectories. ``calibrate = B`` (with
    ``profile``): the profile intervals' threshold calibrated on B data sets simulated from
    the fitted rule minus the mean bias of B refits of data simulated from it (the fit's
    bias estimated by simulation, as a bootstrap bias correction) and refitted
    (:func:`_calibration`), instead of χ²'s; ``calibrate_at = "fit"``: simulated from the
    fitted rule itself (B refits instead of 2B; coverage measured in docs/inference.md).
    ``profile_terms``: names of free coefficients (or ``("all",)``) whose own profile
    likelihood is followed too — the coefficient held, every other refitted
    (``identifiability.profile_terms``); with ``calibrate``, their threshold is calibrated
    along their own axes on the same data sets (``profile_calibration.terms``).
    ``progress(done, total, what)`` follows the work (the library's one progress contract,
    :mod:`metaplastic.progress`: refits report every chunk of meta-steps); ``None``: a
    bar on a terminal, ``False``: silent."""
    with reporting(progress, "rule recovery") as report:
        try:
            return _analyse(run, bootstrap, l1, folds, report or (lambda *a: None), profile,
                            parametric, calibrate, calibrate_at, tuple(profile_terms))
        finally:  # the programs shared by this run's fits, and the data they hold
            identifiability.release_compiled()


def _analyse(run: RunDir, bootstrap: int, l1: tuple[float, ...], folds: int,
             say: Callable[[int, int | None, str], None], profile: int = 0,
             parametric: bool = False, calibrate: int = 0,
             calibrate_at: str = "bias-corrected",
             profile_terms: tuple[str, ...] = ()) -> dict[str, Any]:
    cfg = run.config()
    pieces = build(cfg)
    objective, rule, network = pieces.objective, pieces.rule, pieces.network
    task = recovery.check_recorded(objective)
    if bootstrap < 0 or bootstrap > 10_000:
        raise ConfigError(f"--bootstrap must be in [0, 10000] resamples, got {bootstrap}")
    if not isinstance(profile, int) or profile < 0:
        raise ConfigError(f"--profile must be a number of directions >= 0, got {profile}")
    if not isinstance(calibrate, int) or calibrate < 0 or calibrate > 10_000:
        raise ConfigError(f"--calibrate must be in [0, 10000] simulated data sets, got "
                          f"{calibrate}")
    if calibrate_at not in CALIBRATE_AT:
        raise ConfigError(f"--calibrate-at must be one of {', '.join(CALIBRATE_AT)}, got "
                          f"{calibrate_at!r}")
    if calibrate and not (profile or profile_terms):
        raise ConfigError("--calibrate sets the threshold of the profile likelihood's "
                          "intervals: give --profile K (e.g. 18) or --profile-terms with it")
    if parametric and not bootstrap:
        raise ConfigError("--parametric says how the --bootstrap's data sets are made: "
                          "give --bootstrap B (e.g. 20) with it")
    theta = run_theta(run, pieces)
    key = streams.stream_key(cfg.seed, streams.RECOVERY)
    truth = _truth(cfg, network)
    splits = {s: np.asarray(task.split_indices(s)) for s in ("train", "heldout")}
    out: dict[str, Any] = {"fit": task.fit, "trajectories": {s: int(v.size)
                                                             for s, v in splits.items()}}
    say(0, None, "scoring every trajectory once")
    behavioural = _behavioural_model(task, splits["train"])
    if behavioural is not None:
        out["behavioural_model"] = {"model": "Rescorla–Wagner", "fitted_on": "train",
                                    **behavioural.as_dict()}
    out["splits"] = {s: _score(objective, theta, idx, key, truth, rule, behavioural)
                     for s, idx in splits.items() if idx.size}
    # the synapses' rule within θ (without e.g. a fitted start or learned neurons)
    def own(t):
        return synapses_part(rule, t)[1]

    k_init, run_key = run_keys(cfg)  # the run's start and key: what every refit repeats
    theta0 = rule.init(k_init, network.shapes)
    ref = _reference(cfg, synapses_part(rule, theta)[0], network, own(theta), truth)
    vector = None  # θ -> the vector compared with the truth (named rules: θ itself)
    if ref is None:
        readout = _readout(cfg, objective, rule, network, truth, jax.random.fold_in(key, 2))
        if readout is not None:
            vector, comparator = readout
            ref = _compare(vector(theta), comparator, float(rule.eta), kind="readout")
            ref["readout_r2"] = vector.cache["fit_r2"]
    if ref is not None:
        out["coefficients"] = ref
    if ref is not None and vector is None:  # θ's own entries are the named terms
        say(0, None, "observed information at the fit (identifiability)")
        put = lambda t, part: with_synapses_part(rule, t, part)  # noqa: E731
        out["identifiability"] = identifiability.report(
            objective, theta, splits["train"], jax.random.fold_in(key, 3), own, put,
            ref["names"], ref["free"], truth=_truth_values(ref))
        terms = _profiled_terms(profile_terms, ref["names"], ref["free"])
        if profile or terms:
            ident = out["identifiability"]
            thresholds = {"directions": identifiability.PROFILE_95,
                          "terms": identifiability.PROFILE_95}
            if calibrate:
                calibration = _calibration(
                    cfg, pieces, theta, theta0, run_key,
                    int(splits["train"].size), calibrate, key, say, own, put,
                    ref["free"], profile, calibrate_at, terms)
                ident["profile_calibration"] = calibration
                for kind, record in (("directions", calibration),
                                     ("terms", calibration.get("terms"))):
                    if record is None or record["threshold"] is None:
                        continue
                    thresholds[kind] = record["threshold"]
                    if record["rises"]["count"] < MIN_RISES:
                        warnings.warn(
                            f"the calibration's threshold of the {kind} is the 95% quantile "
                            f"of only {record['rises']['count']} profile rises ({calibrate} "
                            f"data sets × {record['rises']['count'] // calibrate} axes): "
                            f"too few for a steady quantile; give --calibrate B with B × "
                            f"axes >= {MIN_RISES}", stacklevel=2)
            coefs, info, _, _, nll = identifiability.likelihood(
                objective, theta, splits["train"], jax.random.fold_in(key, 3), own, put)
            for kind, count in (("directions", profile), ("terms", len(terms))):
                if not count:
                    continue
                what = (f"profile likelihood along {profile} direction(s) (Newton refits)"
                        if kind == "directions" else
                        f"profile likelihood of {len(terms)} coefficient(s) (Newton refits)")
                say(0, None, what)
                ident["profile" if kind == "directions" else "profile_terms"] = \
                    identifiability.profile_from(
                        coefs, info, nll, ref["names"], ref["free"],
                        directions=profile if kind == "directions" else 0,
                        progress=lambda d, t, what=what: say(d, t, what),
                        truth=_truth_values(ref), threshold=thresholds[kind],
                        terms=terms if kind == "terms" else ())
    elif profile or profile_terms:
        raise ConfigError("--profile follows the likelihood along directions of named "
                          "coefficients: this run's rule has none")
    if bootstrap:
        if ref is None:
            raise ConfigError("--bootstrap gives intervals of named coefficients: this "
                              "run's rule has none, and no polynomial reference (the "
                              "simulation's rule or `reference`) to read it out onto")
        ref.update(_bootstrap(cfg, pieces, theta, theta0, run_key, splits["train"],
                              bootstrap, parametric, key, say, own, vector))
        if not parametric and (ref["distinct_resamples"] < MIN_DISTINCT
                               or ref["distinct_resamples"] < bootstrap / 2):
            warnings.warn(
                f"the bootstrap's {bootstrap} resamples hold only "
                f"{ref['distinct_resamples']} distinct sets of trajectories "
                f"({splits['train'].size} training trajectories allow "
                f"{ref['possible_resamples']}): percentile intervals from so few are not "
                f"reliable (they can exclude the truth or collapse); record more "
                f"trajectories, or simulate data sets from the fitted rule (--parametric)",
                stacklevel=2)
        if _truth_values(ref) is not None:
            lo, hi = np.asarray(ref["ci_low"]), np.asarray(ref["ci_high"])
            inside = (lo <= ref["truth_values"]) & (ref["truth_values"] <= hi)
            ref["truth_inside_ci"] = int(np.sum(inside[np.asarray(ref["free"])]))
    if any(not (v >= 0 and math.isfinite(v)) for v in l1):
        raise ConfigError(f"--l1 strengths must be finite and >= 0, got {list(l1)}")
    if l1:
        out["l1_path"] = _l1_path(objective, pieces.outer, theta0, run_key, splits["train"],
                                  tuple(float(v) for v in l1), folds or
                                  min(5, splits["train"].size), key, say, own)
        if ref is not None and vector is None:  # θ's own entries are named terms
            out["l1_path"]["kept_terms"] = [ref["names"][i] for i in out["l1_path"]["kept"]]
    run.write_json(FILE, out)
    return out


def _bootstrap(cfg, pieces, theta, theta0, run_key, train, count: int, parametric: bool,
               key, say, own, vector) -> dict[str, Any]:
    """The ``count`` refits of ``--bootstrap`` and the intervals they give (the entries
    added to ``coefficients``)."""
    objective, outer = pieces.objective, pieces.outer
    kind = ("data sets simulated from the fitted rule" if parametric
            else "resampled training trajectories")
    what = f"{count} refits on {kind} (meta-steps)"
    if parametric:
        with _simulated_refits(cfg, pieces, theta, theta0, run_key, int(train.size), count,
                               jax.random.fold_in(key, 4), say) as refits:
            thetas = refits[2]
    else:
        pools = recovery.bootstrap_pools(train, count, jax.random.fold_in(key, 1))
        say(0, outer.steps, what)
        thetas, _ = recovery.refit(objective, outer, theta0, pools,
                                   np.full(count, pools.shape[1]), run_key,
                                   progress=lambda d, t: say(d, t, what))
    if vector is None:
        flat = np.asarray(jax.vmap(lambda t: ravel_pytree(own(t))[0])(thetas), np.float64)
        centre = np.asarray(ravel_pytree(own(theta))[0], np.float64)
    else:
        flat = np.stack([vector(jax.tree.map(lambda x, b=b: x[b], thetas))
                         for b in range(count)])
        centre = np.asarray(vector(theta), np.float64)
    lo, hi = recovery.percentile_ci(flat)
    if not parametric:
        return {"bootstrap": count, "bootstrap_kind": "resampled", "interval": "percentile",
                "ci_low": lo.tolist(), "ci_high": hi.tolist(),
                "distinct_resamples": recovery.distinct_resamples(pools),
                "possible_resamples": recovery.possible_resamples(int(train.size))}
    finite = np.all(np.isfinite(flat), axis=1)
    return {"bootstrap": count, "bootstrap_kind": "parametric", "interval": "basic",
            # basic interval: the refits' spread around the fit, reflected about it
            "ci_low": (2 * centre - hi).tolist(), "ci_high": (2 * centre - lo).tolist(),
            "percentile_low": lo.tolist(), "percentile_high": hi.tolist(),
            "refits_diverged": int(count - finite.sum())}


@contextlib.contextmanager
def _simulated_refits(cfg, pieces, theta, theta0, run_key, n: int, count: int, key, say):
    """Within: ``(objective, pools, thetas)`` — ``count`` data sets of ``n`` trajectories
    simulated from the fitted rule (:func:`simulated_sets`, in a folder removed on exit),
    the objective over them, each set's trajectory indices and the run's fit repeated on
    each (θ with a leading axis over sets)."""
    outer = pieces.outer
    with tempfile.TemporaryDirectory(prefix="metaplastic-parametric-") as folder:
        say(0, None, f"simulating {count} data sets from the fitted rule")
        objective, pools = simulated_sets(cfg, pieces.objective, theta, n, count, key,
                                          Path(folder))
        what = f"{count} refits on data sets simulated from the fitted rule (meta-steps)"
        say(0, outer.steps, what)
        thetas, _ = recovery.refit(objective, outer, theta0, pools,
                                   np.full(count, pools.shape[1]), run_key,
                                   progress=lambda d, t: say(d, t, what))
        yield objective, pools, thetas


def _profiled_terms(asked: tuple[str, ...], names: list[str], free: list[bool]) -> list[int]:
    """The indices of the coefficients ``--profile-terms`` names (``all``: every free
    one); a ConfigError naming the free terms for an unknown or fixed one."""
    free_names = [n for n, f in zip(names, free, strict=True) if f]
    if tuple(asked) == ("all",):
        return [i for i, f in enumerate(free) if f]
    if "all" in asked and "all" not in names:
        raise ConfigError("--profile-terms: 'all' (every free coefficient) stands alone; "
                          "give it or the terms' names")
    out = []
    for name in asked:
        if name not in names:
            raise ConfigError(f"--profile-terms: no term {name!r} in this rule; its free "
                              f"terms are {', '.join(free_names)} (or 'all')")
        i = names.index(name)
        if not free[i]:
            raise ConfigError(f"--profile-terms: {name!r} is fixed in this fit (no "
                              f"likelihood to profile); its free terms are "
                              f"{', '.join(free_names)}")
        if i not in out:
            out.append(i)
    return out


def _calibration(cfg, pieces, theta, theta0, run_key, n: int, count: int, key, say, own,
                 put, free, directions: int, at: str,
                 terms: list[int] = ()) -> dict[str, Any]:
    """The profile intervals' threshold, calibrated by simulation (a parametric bootstrap
    of the profile likelihood ratio): ``count`` data sets simulated from the fitted rule,
    each refitted as the run was fitted; on each, how far the profile NLL rises at the
    fitted rule (there the truth) along its ``directions`` least determined directions
    (:func:`~metaplastic.analysis.identifiability.profile_rise`); the threshold is the
    95% quantile of those rises, pooled (:func:`~metaplastic.analysis.identifiability.
    calibrated_threshold`). A refit that diverged counts as an infinite rise. ``at =
    "bias-corrected"``: simulated from the fitted rule minus the refits' mean bias
    (:func:`_bias_corrected`) instead, and the rises measured there. ``terms``: the rises
    along those coefficients' own axes too, pooled into a threshold of their own
    (``terms``); the directions' keys stay at the top (``threshold`` None without
    directions)."""
    extra: dict[str, Any] = {"at": at}
    if at == "bias-corrected":
        theta, extra["bias"] = _bias_corrected(cfg, pieces, theta, theta0, run_key, n,
                                               count, jax.random.fold_in(key, 7), say, own,
                                               put)
    centre = np.asarray(ravel_pytree(own(theta))[0], np.float64)
    keep = np.asarray(free, bool)
    axes = min(directions, int(keep.sum())) + len(terms)
    rises, diverged = [], 0
    with _simulated_refits(cfg, pieces, theta, theta0, run_key, n, count,
                           jax.random.fold_in(key, 5), say) as (objective, pools, thetas):
        what = "profile rise at the fitted rule on each simulated data set"
        for b in range(count):
            say(b, count, what)
            refitted = jax.tree.map(lambda x, b=b: x[b], thetas)
            coefs, info, _, _, nll = identifiability.likelihood(
                objective, refitted, pools[b], jax.random.fold_in(key, 3), own, put)
            if not (np.all(np.isfinite(coefs)) and np.all(np.isfinite(info[np.ix_(keep, keep)]))):
                diverged += 1
                rises.append(np.full(axes, math.inf))
                continue
            rises.append(identifiability.profile_rise(coefs, info, nll, free, centre,
                                                      directions, terms=terms))
        say(count, count, what)
    rises = np.asarray(rises, np.float64).reshape(count, axes)
    split = axes - len(terms)
    out = {"data_sets": count, "directions": directions, "refits_diverged": diverged,
           **extra, "chi2_threshold": identifiability.PROFILE_95,
           # every set's rises, its directions the flattest first (inf: diverged)
           **_pooled(rises[:, :split])}
    if terms:
        out["terms"] = _pooled(rises[:, split:])
    return out


def _pooled(rises: np.ndarray) -> dict[str, Any]:
    """The calibrated threshold of one kind of axis from its rises (data sets × axes)."""
    pooled = rises.ravel()
    finite = pooled[np.isfinite(pooled)]
    return {"threshold": identifiability.calibrated_threshold(pooled) if pooled.size else None,
            "rises_per_set": rises.tolist(),
            "rises": {"count": int(pooled.size), "infinite": int(pooled.size - finite.size),
                      **{f"q{q}": float(np.quantile(finite, q / 100)) if finite.size else None
                         for q in (50, 90, 95, 99)}}}


def _bias_corrected(cfg, pieces, theta, theta0, run_key, n: int, count: int, key, say,
                    own, put) -> tuple[Any, dict[str, Any]]:
    """``theta`` minus the fit's bias estimated by simulation: ``count`` data sets simulated
    from ``theta`` and refitted as the run was; bias = the refits' mean (finite ones) minus
    ``theta``, in the synapses' own coefficients. Returns (the corrected θ, a record)."""
    own_theta = own(theta)
    flat32, unravel = ravel_pytree(own_theta)
    flat = np.asarray(flat32, np.float64)
    with _simulated_refits(cfg, pieces, theta, theta0, run_key, n, count, key,
                           say) as (_, _, thetas):
        refits = np.asarray(jax.vmap(lambda t: ravel_pytree(own(t))[0])(thetas), np.float64)
    finite = np.all(np.isfinite(refits), axis=1)
    if not finite.any():
        raise ConfigError("every refit of the data sets simulated from the fitted rule "
                          "diverged: no bias to correct (calibrate at the fit instead)")
    bias = refits[finite].mean(axis=0) - flat
    corrected = put(theta, unravel(jax.numpy.asarray(flat - bias, flat32.dtype)))
    scale = max(float(np.linalg.norm(flat)), 1e-12)
    return corrected, {"refits": count, "refits_diverged": int(count - finite.sum()),
                       "norm": float(np.linalg.norm(bias)),
                       "relative": float(np.linalg.norm(bias) / scale),
                       "vector": bias.tolist()}


def simulated_sets(cfg, objective, theta, n: int, count: int, key,
                   folder: Path) -> tuple[Any, np.ndarray]:
    """``count`` data sets of ``n`` trajectories each, simulated from the fitted rule (θ)
    as the run's recordings were simulated from the truth: ``task.simulate``'s source
    task, network, recorded fraction, noise and observation model; the starts drawn by
    the network. Written to ``folder``; returns the run's objective over them and the
    trajectory indices of every set, ``(count, n)`` (pools for
    :func:`~metaplastic.analysis.recovery_scores.refit`)."""
    from metaplastic.analysis.simulate import simulate

    spec = cfg.task.get("simulate")
    if not isinstance(spec, dict):
        raise ConfigError("--parametric and --calibrate simulate new data sets from the "
                          "fitted rule, which needs the task that made the recordings' "
                          "inputs (task.simulate.source); this run's recordings come from a "
                          "file: use --bootstrap without --parametric (resampled "
                          "trajectories), and --profile with χ²'s threshold")
    rule = objective.rule
    part_rule, part_theta = synapses_part(rule, theta)
    if part_rule is not rule:
        raise ConfigError(f"--parametric and --calibrate simulate from a rule of the "
                          f"synapses alone; this run's rule ({type(rule).__name__}) also "
                          f"fits a start or neurons (use --bootstrap without --parametric, "
                          f"and --profile with χ²'s threshold)")
    _, _, network, source = recordings.truth(spec, cfg.network)
    if n * count > 1_000_000:
        raise ConfigError(f"{count} simulated data sets of {n} trajectories are too many "
                          f"to simulate at once; give a smaller --bootstrap or --calibrate")
    data = simulate(network, part_rule, part_theta, source, n * count, key,
                    record=float(spec.get("record", 1.0)),
                    noise=float(spec.get("noise", 0.0)),
                    observation=str(spec.get("observation", "gaussian")),
                    calcium_tau=float(spec.get("calcium_tau", 10.0)),
                    hidden=bool(spec.get("hidden", False)))
    path = folder / f"simulated-{count}x{n}.npz"
    np.savez(path, **data)
    task = dataclasses.replace(objective.task, path=str(path), split="train", heldout=0.0)
    return (dataclasses.replace(objective, task=task),
            np.arange(n * count, dtype=np.int32).reshape(count, n))


def _truth(cfg, network) -> tuple | None:
    """(network, rule, θ) that made simulated recordings; None for recorded data."""
    spec = cfg.task.get("simulate")
    if not isinstance(spec, dict):
        return None
    rule, theta, net, _ = recordings.truth(spec, cfg.network)
    if net.shapes != network.shapes:
        return None
    return recordings.replaying(net), rule, theta


def _behavioural_model(task, train) -> behaviour.RescorlaWagner | None:
    """Rescorla–Wagner fitted to the training trajectories' choices, where the recordings
    hold binary choices and the trials' outcomes; None otherwise."""
    d = task._data
    if task.fit != "choices" or "outcomes" not in d or not train.size or \
            not np.all(np.isin(d["choices"], (0, 1))):
        return None
    return behaviour.fit(*_behaviour_arrays(d, train))


def _behaviour_arrays(d, idx) -> tuple:
    return d["inputs"][idx], d["choices"][idx], d["outcomes"][idx], d["lengths"][idx]


def _score(objective, theta, idx, key, truth, rule, behavioural=None) -> dict[str, Any]:
    task = objective.task
    lengths = np.asarray(task._data["lengths"])[idx]
    rows = {"inferred": recovery.per_trajectory(objective, theta, idx, key)}
    if truth is not None:
        net, t_rule, t_theta = truth
        rows["truth"] = recovery.per_trajectory(objective, t_theta, idx, key, net, t_rule)
    if behavioural is not None:
        nll = behaviour.nll_per_trajectory(behavioural,
                                           *_behaviour_arrays(task._data, idx))
        rows["Rescorla–Wagner"] = {"loss": nll, "nll": nll}
    rows["no plasticity"] = recovery.per_trajectory(objective, theta, idx, key,
                                                    rule=recovery.Frozen(rule))
    out: dict[str, Any] = {"trajectories": int(idx.size), "rules": {}}
    for name, per in rows.items():
        row = {k: _mean_ci(v) for k, v in per.items()}
        if task.fit == "choices":
            row["deviance_explained"] = recovery.deviance_explained(
                per["nll"], rows["no plasticity"]["nll"], lengths)
            row["deviance_explained_each"] = [
                recovery.deviance_explained([a], [b], [1])
                for a, b in zip(per["nll"], rows["no plasticity"]["nll"], strict=True)]
        out["rules"][name] = row
    if truth is not None:
        r2 = recovery.trajectory_r2(task, (objective.network, rule, theta), truth, idx, key)
        out["weight_r2"], out["activity_r2"] = r2["weights"], r2["activity"]
        if r2["diverged"]:
            out["replay_diverged"] = True
    return out


def _reference(cfg, rule, network, theta, truth) -> dict[str, Any] | None:
    """Inferred against true coefficients, for rules whose θ is a vector of named terms:
    the simulation's own rule and θ when it is of the fitted family, else ``reference``'s
    (each scaled by its rule's eta relative to the fitted rule's)."""
    names = cap.term_names(rule)
    flat = _acting(rule, theta)
    if not names or flat.size != len(names):
        return None
    free = cap.free_terms(rule)
    out: dict[str, Any] = {"names": names, "free": free, "inferred": flat.tolist(),
                           "truth_values": None}
    for label, ref, ref_theta in _candidates(cfg, network, truth):
        if type(ref) is not type(rule) or ravel_pytree(ref_theta)[0].size != flat.size or \
                cap.term_names(ref) != names:
            continue
        values = _in_units_of(ref, ref_theta, cap.eta(rule))
        out.update(_agreement(flat, values), reference=label, truth_values=values,
                   is_truth=label == TRUTH)
        break
    return out


#: the label of the simulation's own rule among the rules an inferred one is compared with
TRUTH = "simulated truth"


def _truth_values(ref: dict):
    """The compared coefficients when they are the simulation's own (not ``reference``'s,
    compared where the truth is outside the fitted family); else None."""
    return ref.get("truth_values") if ref.get("is_truth", True) else None


def _candidates(cfg, network, truth) -> list[tuple]:
    """``(label, rule, θ)`` to compare an inferred rule with: the simulation's own rule,
    then ``reference``'s."""
    out = []
    if truth is not None:
        out.append((TRUTH, truth[1], truth[2]))
    if cfg.reference:
        ref = build_rule(cfg, cfg.reference)
        out.append((cfg.reference, ref, ref.init(jax.random.key(0), network.shapes)))
    return out


def _acting(rule, theta) -> np.ndarray:
    """θ's coefficient of every named term as it acts, raveled (an excluded term's is 0
    whatever θ holds there: a θ file may hold anything in its place); θ raveled for a
    rule that does not compute its terms' values."""
    if isinstance(rule, cap.HasTermValues):
        return np.ravel(np.asarray(rule.term_coefficients(theta), np.float64))
    return np.asarray(ravel_pytree(theta)[0], np.float64)


def _in_units_of(rule, theta, eta: float) -> np.ndarray:
    """``rule``'s coefficients times its eta over ``eta`` (the fitted rule's)."""
    return _acting(rule, theta) * cap.eta(rule) / eta


def _agreement(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    return {"cosine": coefficient_cosine(got, want),
            "r2": float(1 - np.sum((got - want) ** 2)
                        / max(np.sum((want - want.mean()) ** 2), 1e-30))}


#: samples of the signals met, for reading a rule without named terms out: tasks drawn
#: from the training trajectories x synapses followed per plastic layer
READOUT_TASKS, READOUT_SYNAPSES = 8, 16


def _readout(cfg, objective, rule, network, truth, key):
    """For a rule without named terms (an MLP): ``(vector, comparator)``, where
    ``vector(θ)`` is the rule's weight change on the signals met in the training
    trajectories (``READOUT_TASKS`` replays with the run's θ), projected by least squares
    onto the terms of a polynomial — the simulation's rule, else ``reference`` — in units
    of the fitted rule's eta; ``comparator = (label, rule, θ)`` that polynomial. None when
    there is no such polynomial."""
    from metaplastic.analysis import explain  # the signal sampler of `metaplastic explain`

    comparator = next((c for c in _candidates(cfg, network, truth)
                       if isinstance(c[1], cap.HasTermValues)), None)
    if comparator is None or rule.per_layer:
        return None
    return _projection(explain, objective.task, network, rule, comparator[1],
                       key), comparator


def _projection(explain, task, network, rule, poly, key):
    """θ -> least-squares coefficients of ``poly``'s terms for the rule's weight changes
    (divided by its eta) on signals sampled once, with the first θ it is given."""
    cache: dict[str, Any] = {}

    def vector(theta) -> np.ndarray:
        if not cache:
            data = explain.collect(task, network, rule, theta, key=key,
                                   tasks=READOUT_TASKS, synapses=READOUT_SYNAPSES)
            plastic = [l for l in range(len(network.shapes)) if network.learns(l)]
            keep = np.isin(data["layer"], plastic)
            cache["values"] = {n: data[n][keep] for n in explain.SIGNALS}
            signals = SimpleNamespace(**cache["values"])
            n = int(keep.sum())
            cache["x"] = np.stack([np.broadcast_to(np.asarray(v, np.float64), (n,))
                                   for v in poly.term_values(signals)], axis=1)
        values, x = cache["values"], cache["x"]
        dw = explain.rule_dw(rule, theta, values, values["w"]).astype(np.float64)
        dw = dw / float(rule.eta)
        coef = np.linalg.lstsq(x, dw, rcond=None)[0]
        # how much of the rule's weight change these terms explain (last θ read out)
        cache["fit_r2"] = float(1 - np.sum((dw - x @ coef) ** 2)
                                / max(np.sum((dw - dw.mean()) ** 2), 1e-30))
        return coef

    vector.cache = cache
    return vector


def _compare(got: np.ndarray, comparator, eta: float, kind: str) -> dict[str, Any]:
    """A readout's coefficients against the comparator polynomial's own (times its eta
    over the fitted rule's ``eta``: both in units of the fitted rule's eta)."""
    label, poly, poly_theta = comparator
    values = _in_units_of(poly, poly_theta, eta)
    names = list(poly.term_names)
    return {"kind": kind, "names": names, "free": [True] * len(names),
            "inferred": got.tolist(), "reference": label, "truth_values": values,
            "is_truth": label == TRUTH, **_agreement(got, values)}


def _l1_path(objective, outer, theta0, run_key, train, strengths, folds, key, say, own):
    pools, sizes, held = recovery.fold_pools(train, folds)
    path = {"l1": list(strengths), "folds": folds, "cv_loss": [], "cv_se": [], "theta": [],
            "diverged": []}
    for i, lam in enumerate(strengths):
        what = (f"L1 path, {lam:g} ({i + 1} of {len(strengths)}): {folds} folds and the "
                f"whole training set")

        def step(done, total, i=i, what=what):
            say(i * total + done, len(strengths) * total, what)

        step(0, outer.steps)
        thetas, _ = recovery.refit(objective, outer, theta0, pools, sizes, run_key, l1=lam,
                                   progress=step)
        losses = []
        for f, idx in enumerate(held):
            theta_f = jax.tree.map(lambda x, f=f: x[f], thetas)
            per = recovery.per_trajectory(objective, theta_f, idx,
                                          jax.random.fold_in(key, 100 + i))
            losses.extend(per["loss"].tolist())
        finite = np.asarray(losses)[np.isfinite(losses)]
        path["cv_loss"].append(float(finite.mean()) if finite.size else math.nan)
        path["cv_se"].append(float(finite.std(ddof=1) / math.sqrt(finite.size))
                             if finite.size > 1 else 0.0)
        path["diverged"].append(int(len(losses) - finite.size))
        last = own(jax.tree.map(lambda x: x[-1], thetas))
        path["theta"].append(np.asarray(ravel_pytree(last)[0], np.float64).tolist())
    losses = np.asarray(path["cv_loss"])
    if not np.isfinite(losses).any():
        raise ConfigError("every fit of the L1 path diverged (NaN/inf on every held-out "
                          "fold): lower meta.lr or rule.eta")
    best = int(np.nanargmin(losses))
    within = [i for i, v in enumerate(losses) if v <= losses[best] + path["cv_se"][best]]
    chosen = max(within, key=lambda i: strengths[i])
    theta = np.abs(np.asarray(path["theta"][chosen]))
    path.update(best=strengths[best], chosen=strengths[chosen],
                kept=[int(i) for i in np.flatnonzero(theta > KEEP_SHARE * theta.max())])
    return path


def _mean_ci(values) -> dict[str, float]:
    m, ci, _ = mean_ci(values)
    return {"mean": m, "ci95": ci}
