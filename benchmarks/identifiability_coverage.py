"""Do the identifiability report's intervals cover the truth as often as they say?

    python benchmarks/identifiability_coverage.py [--presets infer-reward-behaviour
        infer-oja-activity] [--datasets 20] [--first K] [--profile K] [--profile-terms
        TERM ...|all] [--calibrate B [--calibrate-at bias-corrected|fit]]
        [--out benchmarks/results/identifiability_coverage.json]

For each preset (a fit to simulated recordings, so the true rule is known) and each of
``--datasets`` simulated data sets (``task.simulate.seed = k``, fit seed ``k``): the
preset's fit as shipped (``metaplastic run PRESET --no-eval``, all in this process so the
programs compile once), then the identifiability report of ``metaplastic recover``
(:mod:`metaplastic.analysis.identifiability`). Recorded per data set: how many directions
were determined, whether the truth lies within the 95% half-width along each determined
direction, the half-widths relative to |θ|, the directions of negative curvature, and
how many per-coefficient Wald intervals are finite and cover the truth.

Both centres of the intervals are scored from the same information matrix (a clean
ablation): the fit itself, and the report as shipped — around the one-step (Newton)
estimate, unless that step raised the NLL: then no interval is claimed (withheld;
counted, and scored as ``refused-at-fit``, the intervals around the fit on those data
sets alone, to show what withholding leaves out).
Coverage = (determined directions whose interval holds the truth) / (determined
directions), over all data sets; a 95% interval should give about 0.95. The widths are
reported beside it, so that a set cannot pass by being unbounded (an undetermined
direction is not counted: it claims nothing).

``--profile K`` adds the profile likelihood's intervals along the K least determined
directions (``metaplastic recover --profile K``): their coverage over the intervals
bounded on both sides, and how many were left unbounded (at least that wide: no claim).

``--parametric B`` adds the parametric bootstrap of ``metaplastic recover --bootstrap B
--parametric``: B data sets simulated from the fitted rule, each refitted; per free
coefficient, whether its basic interval (the one reported) and, as the ablation, its
percentile interval hold the truth, and their widths relative to |θ|.

``--calibrate B`` (with ``--profile``) adds, on the same fits, the profile intervals at
the threshold ``metaplastic recover --calibrate B`` calibrates: B data sets simulated from
the fitted rule and refitted, the 95% quantile of the profile NLL's rise at the fitted rule
on them (instead of χ²'s 1.92); its coverage, widths and unbounded intervals beside the
χ² profile's: one change, scored on the same data sets. By default (as ``metaplastic
recover``) those B data sets are simulated from the fitted rule minus the mean bias of B
more refits; ``--calibrate-at fit`` simulates them from the fitted rule itself.

``--profile-terms`` adds each named coefficient's own profile interval (``metaplastic
recover --profile-terms``; ``profile_terms``, and ``calibrated_terms`` with
``--calibrate``): the same coverage, widths and unbounded counts, per term too
(``by_term``), and the threshold rules scored offline (``threshold_rules_terms``). Every
data set's record is written as it comes, so a stopped job keeps what it measured.

``--mle`` (with ``--profile``) asks whether the intervals fall short because the fit is
not the likelihood's maximum: per data set the training NLL of the fit and of the truth,
then damped Newton steps (the exact Hessian; a step kept only where it lowers the NLL;
up to 40) from the fit towards the maximum, and the same profile intervals around the
point they reach (``mle`` in the JSON: its NLL, gradient norm and smallest curvature,
and its profile coverage beside the fit's).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import check_presets, main_of, write_results

OUT = Path(__file__).parent / "results" / "identifiability_coverage.json"


#: what a stopped job has kept: the file and how many data sets it holds
KEPT: dict = {"out": None, "datasets": 0}
#: damped Newton steps of ``--mle`` (from the fit towards the likelihood's maximum)
MLE_STEPS = 40


def towards_maximum(coefs: np.ndarray, nll, keep: np.ndarray) -> tuple[np.ndarray, float]:
    """Damped Newton (Levenberg–Marquardt on the exact Hessian, the damping at least the
    most negative curvature) from ``coefs`` over the coordinates ``keep``: a step is kept
    only where it lowers ``nll``; ``(coefficients reached, their NLL)``."""
    x, f, damping = coefs.copy(), nll(coefs), 1e-3
    for _ in range(MLE_STEPS):
        h, g = nll.curvature(x)
        hk, gk = h[np.ix_(keep, keep)], g[keep]
        floor = max(0.0, -float(np.min(np.linalg.eigvalsh(hk))))
        size = max(1.0, float(np.max(np.abs(hk))))
        for _ in range(12):
            trial = x.copy()
            trial[keep] -= np.linalg.solve(hk + (floor + damping * size) * np.eye(keep.size),
                                           gk)
            ft = nll(trial)
            if np.isfinite(ft) and ft < f:
                x, f, damping = trial, ft, max(damping / 3, 1e-9)
                break
            damping *= 4
        else:
            break
    return x, f


def _mle_profile(store: dict):
    """A stand-in for :func:`identifiability.profile_from` that also profiles around the
    point :func:`towards_maximum` reaches (kept in ``store``) and returns the fit's rows."""
    from metaplastic.analysis import identifiability as ident

    original = ident.profile_from

    def profile_from(coefs, info, nll, names, free, directions=2, newton=6, progress=None,
                     truth=None, threshold=ident.PROFILE_95, terms=()):
        if terms:  # a coefficient's own profile: only around the fit
            return original(coefs, info, nll, names, free, directions, newton, progress,
                            truth, threshold, terms)
        coefs = np.asarray(coefs, np.float64)
        keep = np.flatnonzero(np.asarray(free, bool))
        top, f_top = towards_maximum(coefs, nll, keep)
        h, g = nll.curvature(top)
        rows = original(top, h, nll, names, free, directions, newton, None, truth, threshold)
        bounded = [r for r in rows if r["low"] is not None and r["high"] is not None]
        store.update({
            "nll_fit": nll(coefs), "nll_truth": None if truth is None else nll(
                np.asarray(truth, np.float64)), "nll_mle": f_top,
            "mle_grad_norm": float(np.linalg.norm(g[keep])),
            "mle_min_curvature": float(np.min(np.linalg.eigvalsh(h[np.ix_(keep, keep)]))),
            "mle_bounded": len(bounded),
            "mle_covered": [bool(r["truth_inside"]) for r in bounded]})
        return original(coefs, info, nll, names, free, directions, newton, progress, truth,
                        threshold)

    return original, profile_from


def one(preset: str, k: int, out: Path, profile: int = 0, mle: bool = False,
        parametric: int = 0, calibrate: int = 0,
        calibrate_at: str = "bias-corrected", profile_terms: tuple[str, ...] = ()) -> dict:
    from metaplastic.analysis import identifiability as ident
    from metaplastic.analysis.identifiability import identifiability
    from metaplastic.cli import main
    from metaplastic.experiments.rule_recovery import analyse
    from metaplastic.experiments.rundir import RunDir

    target = out / f"{preset}-{k}"
    t0 = time.perf_counter()
    rc = main(["run", preset, "--no-eval", "--out", str(target), "--set",
               f"task.simulate.seed={k}", "--set", f"seed={k}"])
    if rc in (130, 143):  # the run caught Ctrl-C or SIGTERM: stop the whole job
        raise KeyboardInterrupt
    if rc != 0:
        return {"dataset": k, "error": f"run exited {rc}"}
    (run,) = [d for d in target.iterdir() if d.is_dir()]
    store: dict = {}
    if mle:
        original, ident.profile_from = _mle_profile(store)
    try:
        rec = analyse(RunDir(run), progress=False, profile=profile,
                      bootstrap=parametric, parametric=bool(parametric),
                      profile_terms=profile_terms)
    finally:
        if mle:
            ident.profile_from = original
    ident, coef = rec["identifiability"], rec["coefficients"]
    free = np.flatnonzero(coef["free"])
    names = [coef["names"][i] for i in free]
    fit = np.asarray(coef["inferred"], float)[free]
    truth = np.asarray(coef["truth_values"], float)[free]
    info = np.asarray(ident["information"], float)
    out = {"dataset": k, "seconds": round(time.perf_counter() - t0, 1),
           "cosine": coef.get("cosine")}
    # the same information: intervals centred on the fit, and the report as shipped
    # (around the one-step estimate unless that step raised the NLL)
    out["one_step_refused"] = "one_step_refused" in ident
    out["withheld"] = bool(ident.get("intervals_withheld"))
    for centre in ("fit", "one-step"):
        rep = (ident if centre == "one-step" else
               identifiability(fit, info, names, [True] * len(names), truth=truth))
        det = [d for d in rep["directions"] if d["determined"]]
        if centre == "one-step" and out["withheld"]:
            det = []  # no interval claimed
        lo, hi = np.array(rep["wald_low"], float), np.array(rep["wald_high"], float)
        finite = np.isfinite(lo) & np.isfinite(hi)
        out[centre] = {
            "free": rep["free_directions"], "determined": len(det),
            "covered": [abs(d["value"] - d["truth"]) <= d["half_width"] for d in det],
            "relative_half_widths": [d["half_width"] / rep["scale"] for d in det],
            "negative_curvature": sum(d["eigenvalue"] < 0 for d in rep["directions"]),
            "wald_finite": int(finite.sum()),
            "wald_finite_covering": int(np.sum(finite & (lo <= truth) & (truth <= hi))),
        }
    if profile:
        out["profile"] = _profile_record(ident["profile"], fit)
    if profile_terms:
        out["profile_terms"] = _profile_record(ident["profile_terms"], fit)
    if calibrate:  # the same data set and fit: only the profile's threshold changes
        again = analyse(RunDir(run), progress=False, profile=profile, calibrate=calibrate,
                        calibrate_at=calibrate_at, profile_terms=profile_terms)
        cal = again["identifiability"]
        if profile:
            out["calibrated"] = {**_profile_record(cal["profile"], fit),
                                 "calibration": cal["profile_calibration"],
                                 # per direction (the flattest first): the profile's rise
                                 # at the truth, for scoring other threshold rules offline
                                 "truth_rises": [r["truth_rise"] for r in cal["profile"]]}
        if profile_terms:
            calibration = cal["profile_calibration"]
            out["calibrated_terms"] = {
                **_profile_record(cal["profile_terms"], fit),
                "calibration": {**calibration["terms"],
                                **{k: calibration[k] for k in ("at", "bias", "data_sets",
                                                               "refits_diverged")
                                   if k in calibration}},
                "truth_rises": [r["truth_rise"] for r in cal["profile_terms"]]}
    if parametric:
        scale = max(float(np.linalg.norm(fit)), 1e-12)
        out["parametric"] = {"refits": parametric,
                             "refits_diverged": coef["refits_diverged"],
                             "names": names, "truth": truth.tolist()}
        for kind, (lo_k, hi_k) in {"basic": ("ci_low", "ci_high"),
                                   "percentile": ("percentile_low", "percentile_high")
                                   }.items():
            lo = np.asarray(coef[lo_k], float)[free]
            hi = np.asarray(coef[hi_k], float)[free]
            out["parametric"][kind] = {
                "covered": ((lo <= truth) & (truth <= hi)).tolist(),
                "relative_widths": ((hi - lo) / scale).tolist()}
    if store:
        out["mle"] = store
    return out


def _profile_record(rows: list[dict], fit: np.ndarray) -> dict:
    """One data set's profile intervals: how many are bounded, which hold the truth, and
    their widths relative to |θ|."""
    bounded = [r for r in rows if r["low"] is not None and r["high"] is not None]
    terms = {} if not rows or "term" not in rows[0] else {  # a coefficient's own interval
        "by_term": {r["term"]: {"bounded": r in bounded, "inside": bool(r["truth_inside"]),
                                "value": r["value"], "truth": r["truth"], "low": r["low"],
                                "high": r["high"]} for r in rows}}
    return {**terms, "directions": len(rows), "bounded": len(bounded),
            "covered": [bool(r["truth_inside"]) for r in bounded],
            "unbounded_covering": sum(bool(r["truth_inside"]) for r in rows
                                      if r not in bounded),
            "relative_widths": [(r["high"] - r["low"]) / max(float(np.linalg.norm(fit)),
                                                            1e-12) for r in bounded]}


def summarise_thresholds(rows: list[dict], level: float = 0.95,
                         which: str = "calibrated") -> dict:
    """Other ways to turn the simulated rises into thresholds, scored offline on the same
    data sets: a direction's interval holds the truth when the profile's rise at the truth
    is at most the threshold (exact where the profile has one valley; checked against the
    profiles drawn: ``agreement``). Rules: χ²'s 1.92; the rises pooled (what ships); one
    threshold per rank of flatness (the k-th flattest direction of every simulated set);
    pooled but never below χ²'s."""
    from metaplastic.analysis.identifiability import PROFILE_95, calibrated_threshold

    ok = [r[which] for r in rows if which in r]
    rules: dict = {"chi2": [], "pooled": [], "per_rank": [], "pooled_floor_chi2": []}
    agree = total = 0
    for r in ok:
        truth = np.asarray(r["truth_rises"], float)
        sets = np.asarray(r["calibration"]["rises_per_set"], float)  # (B, K)
        pooled = calibrated_threshold(sets, level)
        per_rank = np.array([calibrated_threshold(sets[:, k], level)
                             for k in range(sets.shape[1])])
        for name, c in (("chi2", PROFILE_95), ("pooled", pooled), ("per_rank", per_rank),
                        ("pooled_floor_chi2", max(pooled, PROFILE_95))):
            rules[name].extend((truth <= c).tolist())
        drawn = r["covered"] + [True] * r["unbounded_covering"]
        agree += int(np.sum(truth <= pooled)) == sum(drawn)
        total += 1
    return {"directions": len(rules["chi2"]),
            "data_sets_where_offline_count_equals_drawn": [agree, total],
            **{name: {"coverage": float(np.mean(v)) if v else None,
                      "coverage_ci95": _wilson(int(np.sum(v)), len(v))}
               for name, v in rules.items()}}


def summarise_parametric(rows: list[dict]) -> dict:
    ok = [r["parametric"] for r in rows if "parametric" in r]
    out = {"datasets": len(ok), "refits_diverged": sum(r["refits_diverged"] for r in ok)}
    for kind in ("basic", "percentile"):
        covered = [c for r in ok for c in r[kind]["covered"]]
        widths = [w for r in ok for w in r[kind]["relative_widths"]]
        # the coefficient the truth makes largest (Oja's pre*post, x·r's pre*modulator)
        top = [r[kind]["covered"][int(np.argmax(np.abs(r["truth"])))] for r in ok]
        out[kind] = {"intervals": len(covered),
                     "coverage": float(np.mean(covered)) if covered else None,
                     "coverage_ci95": _wilson(sum(covered), len(covered)),
                     "median_relative_width": float(np.median(widths)) if widths else None,
                     "largest_true_term_covered": [sum(top), len(top)],
                     "datasets_truth_inside_every": sum(all(r[kind]["covered"]) for r in ok)}
    return out


def summarise_mle(rows: list[dict]) -> dict:
    ok = [r for r in rows if "mle" in r]
    fit = [c for r in ok for c in r["profile"]["covered"]]
    top = [c for r in ok for c in r["mle"]["mle_covered"]]
    return {"datasets": len(ok),
            "fit_below_truth": sum(r["mle"]["nll_fit"] < r["mle"]["nll_truth"] for r in ok),
            "nll_truth_minus_fit": [r["mle"]["nll_truth"] - r["mle"]["nll_fit"] for r in ok],
            "nll_fit_minus_mle": [r["mle"]["nll_fit"] - r["mle"]["nll_mle"] for r in ok],
            "profile_coverage_fit": [sum(fit), len(fit)],
            "profile_coverage_mle": [sum(top), len(top)]}


def summarise_profile(rows: list[dict], which: str = "profile") -> dict:
    ok = [r[which] for r in rows if which in r]
    covered = [c for r in ok for c in r["covered"]]
    widths = [w for r in ok for w in r["relative_widths"]]
    return {"datasets": len(ok), "directions": sum(r["directions"] for r in ok),
            "bounded": len(covered), "coverage": float(np.mean(covered)) if covered else None,
            "coverage_ci95": _wilson(sum(covered), len(covered)),
            "unbounded": sum(r["directions"] - r["bounded"] for r in ok),
            "median_relative_width": float(np.median(widths)) if widths else None,
            "datasets_truth_inside_every_bounded": sum(all(r["covered"]) for r in ok),
            # an unbounded interval claims "at least that far": it holds the truth or not
            "unbounded_covering": sum(r["unbounded_covering"] for r in ok),
            "every_interval_coverage": (sum(sum(r["covered"]) + r["unbounded_covering"]
                                            for r in ok)
                                        / max(sum(r["directions"] for r in ok), 1)),
            **({"thresholds": [r["calibration"]["threshold"] for r in ok],
                "refits_diverged": sum(r["calibration"]["refits_diverged"] for r in ok)}
               if which.startswith("calibrated") else {}),
            **({"by_term": _by_term(ok)} if ok and "by_term" in ok[0] else {})}


def _by_term(ok: list[dict]) -> dict:
    """Per coefficient, over the data sets: how often its own interval was bounded, and
    held the truth (bounded, or on an unbounded interval's open side)."""
    names = list(ok[0]["by_term"])
    return {n: {"bounded": sum(r["by_term"][n]["bounded"] for r in ok),
                "inside": sum(r["by_term"][n]["inside"] for r in ok),
                "inside_bounded": sum(r["by_term"][n]["inside"] and r["by_term"][n]["bounded"]
                                      for r in ok),
                "datasets": len(ok)} for n in names}


def summarise(rows: list[dict], centre: str) -> dict:
    if centre == "refused-at-fit":  # what withholding leaves out: the fit's intervals there
        rows, centre = [r for r in rows if r.get("withheld")], "fit"
    ok = [r[centre] for r in rows if "error" not in r]
    covered = [c for r in ok for c in r["covered"]]
    widths = [w for r in ok for w in r["relative_half_widths"]]
    n = len(covered)
    p = float(np.mean(covered)) if n else float("nan")
    return {
        "centre": centre, "datasets": len(rows), "failed": len(rows) - len(ok),
        "one_step_refused": sum(r.get("one_step_refused", False) for r in rows),
        "withheld": sum(r.get("withheld", False) for r in rows),
        "determined_directions": n,
        "determined_per_dataset": [r["determined"] for r in ok],
        "coverage": p,
        "covered": int(sum(covered)),
        # Wilson 95% interval of the coverage
        "coverage_ci95": _wilson(sum(covered), n),
        "datasets_truth_inside_every_determined": sum(all(r["covered"]) for r in ok),
        "median_relative_half_width": float(np.median(widths)) if widths else None,
        "max_relative_half_width": float(np.max(widths)) if widths else None,
        "negative_curvature_per_dataset": [r["negative_curvature"] for r in ok],
        "wald_finite_per_dataset": [r["wald_finite"] for r in ok],
        "wald_finite_coverage": (sum(r["wald_finite_covering"] for r in ok)
                                 / max(sum(r["wald_finite"] for r in ok), 1)),
    }


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(mid - half), float(mid + half)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+",
                   default=["infer-reward-behaviour", "infer-oja-activity"])
    p.add_argument("--datasets", type=int, default=20)
    p.add_argument("--first", type=int, default=0, metavar="K",
                   help="the first data set's simulation seed (default 0): data sets K, "
                        "K+1, ... (a fresh set of data sets for a held-out check)")
    p.add_argument("--profile", type=int, default=0,
                   help="also the profile likelihood along this many directions")
    p.add_argument("--mle", action="store_true",
                   help="with --profile: also the profile around the likelihood's maximum "
                        "(damped Newton from the fit), and the NLLs of fit and truth")
    p.add_argument("--parametric", type=int, default=0, metavar="B",
                   help="also the parametric bootstrap's intervals (B refits on data sets "
                        "simulated from the fitted rule)")
    p.add_argument("--profile-terms", nargs="+", default=(), metavar="TERM",
                   help="also each named coefficient's own profile interval (metaplastic "
                        "recover --profile-terms; 'all': every free one)")
    p.add_argument("--calibrate", type=int, default=0, metavar="B",
                   help="with --profile or --profile-terms: also the profile intervals "
                        "at the threshold calibrated on B data sets simulated from the fitted rule "
                        "(metaplastic recover --calibrate B), on the same fits")
    p.add_argument("--calibrate-at", default="bias-corrected",
                   choices=("bias-corrected", "fit"),
                   help="with --calibrate: where the calibration simulates from (as "
                        "metaplastic recover --calibrate-at)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.parametric < 0:
        p.error("--parametric must be >= 0 refits")
    if args.first < 0:
        p.error("--first must be >= 0")
    if args.datasets < 1:
        p.error("--datasets must be >= 1")
    if args.mle and not args.profile:
        p.error("--mle needs --profile K")
    if args.calibrate and not (args.profile or args.profile_terms):
        p.error("--calibrate needs --profile K or --profile-terms")
    from metaplastic.experiments.presets import PRESETS  # those whose recordings simulate

    check_presets(p, args.presets,
                  known=[n for n, make in PRESETS.items() if "simulate" in make().task])
    results: dict = {"command": "python benchmarks/identifiability_coverage.py "
                                f"--presets {' '.join(args.presets)} --datasets {args.datasets}"
                                + (f" --first {args.first}" if args.first else "")
                                + (f" --profile {args.profile}" if args.profile else "")
                                + (f" --profile-terms {' '.join(args.profile_terms)}"
                                   if args.profile_terms else "")
                                + (" --mle" if args.mle else "")
                                + (f" --parametric {args.parametric}" if args.parametric
                                   else "")
                                + (f" --calibrate {args.calibrate}" if args.calibrate
                                   else "")
                                + (f" --calibrate-at {args.calibrate_at}"
                                   if args.calibrate else ""),
                     "machine": f"{platform.machine()}, {platform.processor() or '?'}",
                     "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            rows = []
            for k in range(args.first, args.first + args.datasets):
                rows.append(one(preset, k, Path(tmp), args.profile, args.mle,
                                args.parametric, args.calibrate, args.calibrate_at,
                                tuple(args.profile_terms)))
                r = rows[-1]
                print(f"{preset} data set {k}: " + (r.get("error") or "; ".join(
                      f"{c}: {sum(r[c]['covered'])}/{r[c]['determined']} determined "
                      f"directions cover the truth" for c in ("fit", "one-step"))
                      + f"; {r.get('seconds')} s"), flush=True)
                # every data set's record kept as it comes (a long job stopped midway
                # keeps what it measured; the summaries follow at the end)
                results["presets"][preset] = {"partial": True, "datasets": rows}
                write_results(args.out, results)
                KEPT.update(out=str(args.out), datasets=KEPT["datasets"] + 1)
            results["presets"][preset] = {
                "summary": {c: summarise(rows, c)
                            for c in ("fit", "one-step", "refused-at-fit")},
                "datasets": rows}
            terms = bool(args.profile_terms)
            for which, on in (("profile", args.profile),
                              ("calibrated", args.calibrate and args.profile),
                              ("profile_terms", terms),
                              ("calibrated_terms", args.calibrate and terms)):
                if not on:
                    continue
                prof = summarise_profile(rows, which)
                results["presets"][preset]["summary"][which] = prof
                at = (f" at the calibrated threshold (median "
                      f"{np.median(prof['thresholds']):.3g})"
                      if which.startswith("calibrated") else "")
                kind = " of coefficients" if which.endswith("terms") else ""
                print(f"{preset}, profile intervals{kind}{at}: coverage {prof['coverage']} "
                      f"(95% CI {prof['coverage_ci95']}) over {prof['bounded']} bounded of "
                      f"{prof['directions']}; every interval {prof['every_interval_coverage']};"
                      f" median width {prof['median_relative_width']} |θ|", flush=True)
            for which, key, on in (("calibrated", "threshold_rules", args.profile),
                                   ("calibrated_terms", "threshold_rules_terms", terms)):
                if not (args.calibrate and on):
                    continue
                ways = summarise_thresholds(rows, which=which)
                results["presets"][preset]["summary"][key] = ways
                print(f"{preset}, threshold rules scored offline ({which}): " + "; ".join(
                      f"{k} {v['coverage']:.3f}" for k, v in ways.items()
                      if isinstance(v, dict)) + "; offline count = drawn on "
                      f"{ways['data_sets_where_offline_count_equals_drawn']}", flush=True)
            if args.parametric:
                par = summarise_parametric(rows)
                results["presets"][preset]["summary"]["parametric"] = par
                for kind in ("basic", "percentile"):
                    print(f"{preset}, parametric bootstrap ({kind} intervals): coverage "
                          f"{par[kind]['coverage']} (95% CI {par[kind]['coverage_ci95']}) over "
                          f"{par[kind]['intervals']} coefficients; median width "
                          f"{par[kind]['median_relative_width']} |θ|; the largest true term "
                          f"covered on {par[kind]['largest_true_term_covered']}", flush=True)
            if args.mle:
                top = summarise_mle(rows)
                results["presets"][preset]["summary"]["mle"] = top
                print(f"{preset}: the fit's training NLL below the truth's on "
                      f"{top['fit_below_truth']} of {top['datasets']} data sets; profile "
                      f"coverage around the fit {top['profile_coverage_fit']}, around the "
                      f"maximum {top['profile_coverage_mle']}", flush=True)
            for c in ("fit", "one-step", "refused-at-fit"):
                s = results["presets"][preset]["summary"][c]
                if not s["determined_directions"]:
                    continue
                print(f"{preset}, intervals around the {c}: coverage {s['coverage']:.3f} "
                      f"(95% CI {s['coverage_ci95'][0]:.3f}-{s['coverage_ci95'][1]:.3f}) "
                      f"over {s['determined_directions']} determined directions; median "
                      f"half-width {s['median_relative_half_width']:.3g} |θ|; per "
                      f"coefficient {s['wald_finite_coverage']:.3f} of the bounded "
                      f"intervals", flush=True)
            write_results(args.out, results)


def kept() -> str:
    """What a stopped job leaves (every data set finished so far is in --out already)."""
    return (f"{KEPT['datasets']} finished data set(s) kept in {KEPT['out']} (marked "
            "partial, without summaries)" if KEPT["datasets"] else
            "before any data set finished: nothing written")


if __name__ == "__main__":
    main_of(main, kept)
