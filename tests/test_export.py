"""metaplastic.analysis.export: the printed equation is the one the code computes."""

import json

import jax
import numpy as np
import pytest
import sympy

import metaplastic as mp
from metaplastic.analysis import export
from metaplastic.errors import ConfigError
from metaplastic.signals import LocalSignals


def _signals(key):
    v = np.asarray(jax.random.normal(key, (8,)), float)
    return LocalSignals(pre=v[0], post=v[1], w=v[2], e_pre=v[3], e_post=v[4],
                        modulator=v[5], pre_trace=v[6], post_trace=v[7])


@pytest.mark.parametrize("name, make_theta", [
    ("polynomial", lambda r, k: {"coef": jax.random.normal(k, (3, 3, 3))}),
    ("termpool", lambda r, k: {"coef": jax.random.normal(k, (6,))}),
])
def test_the_expression_is_what_the_rule_computes(name, make_theta):
    rule = mp.rules.make(name)
    theta = make_theta(rule, jax.random.key(0))
    expr, consts = export.expression(rule, theta, digits=17)
    for i in range(3):
        s = _signals(jax.random.key(10 + i))
        subs = {sympy.Symbol(n): getattr(s, n) for n in s._fields}
        subs[sympy.Symbol("eta")] = consts["eta"]
        want = float(rule.synapse(theta, jax.tree.map(np.float32, s)))
        assert float(expr.subs(subs)) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_every_term_is_listed_with_its_coefficient():
    rule = mp.rules.make("polynomial")
    coef = np.asarray(rule.coefficients("oja"))
    rows = export.table(rule, {"coef": coef})
    assert len(rows) == 27 and [r["term"] for r in rows] == rule.term_names
    by_name = {r["term"]: r["coefficient"] for r in rows}
    assert by_name["pre*post"] == 1.0 and by_name["post^2*w"] == -1.0
    text = export.render(rule, {"coef": coef}, "csv").splitlines()
    assert text[0] == "term,coefficient" and "pre*post,1.0" in text and len(text) == 28
    assert "\\Delta w = \\eta" in export.render(rule, {"coef": coef}, "latex")


def test_per_synapse_coefficients_give_layer_summaries():
    rule = mp.rules.make("abcd", init_noise=0.1)
    theta = rule.init(jax.random.key(0), [(3, 4), (2, 3)])
    rows = export.table(rule, theta)
    assert len(rows) == 10 and rows[0]["synapses"] == 12
    assert rows[0]["mean"] == pytest.approx(float(np.mean(theta[0]["A"])))
    assert export.render(rule, theta, "sympy").count("dw[layer") == 2


def test_rules_without_terms_and_bad_formats_are_one_message():
    with pytest.raises(ConfigError, match="explain"):
        export.table(mp.rules.make("mlp"), {})
    rule = mp.rules.make("polynomial")
    with pytest.raises(ConfigError, match="unknown export format"):
        export.render(rule, {"coef": np.zeros((3, 3, 3))}, "pdf")


def test_the_distilled_formula_exports_as_what_the_fit_predicts():
    from metaplastic.analysis.explain import distil

    rng = np.random.default_rng(0)
    data = {n: rng.normal(size=400) for n in ("pre", "post", "w")}
    data["dw"] = 0.1 * (1.5 * data["pre"] * data["post"] - 0.8 * data["post"] ** 2
                        * data["w"] + 0.3)
    fit = distil(data, ["pre", "post", "w"], degree=3, scale=0.1)
    explained = fit.to_json()
    expr, consts = export.distilled_expression(explained, digits=12)
    assert consts == {"eta": pytest.approx(0.1)}
    f = sympy.lambdify([sympy.Symbol(n) for n in ("eta", "pre", "post", "w")], expr)
    got = f(0.1, data["pre"], data["post"], data["w"])
    np.testing.assert_allclose(got, fit.predict(data), rtol=1e-8, atol=1e-12)
    rows = json.loads(export.render_distilled(explained, "json"))
    assert {r["term"] for r in rows["rows"]} == {"pre*post", "post^2*w", "1"}
    assert "\\eta" in export.render_distilled(explained, "latex")
    assert export.render_distilled(explained, "csv").startswith("term,coefficient")
    del explained["terms"][0]["powers"]  # an explain.json from before powers were saved
    with pytest.raises(ConfigError, match="explain RUN"):
        export.render_distilled(explained, "sympy")


def test_full_precision_for_sympify_rounded_for_people_latex_for_papers():
    """The full file is one expression sympy.sympify reads back at the coefficients'
    precision; the rounded one has 4 significant digits everywhere; LaTeX names its
    symbols, orders terms by magnitude and can leave out the smallest."""
    rule = mp.rules.make("termpool", terms=["pseudo_grad", "error_hebb", "hebb", "oja",
                                            "decay"])
    theta = {"coef": np.array([1.0, -4.6e-7, 0.3, 0.25, -0.0123456], np.float32)}
    full = sympy.sympify(export.render(rule, theta, "sympy_full"))
    s = _signals(jax.random.key(3))
    subs = {sympy.Symbol(n): getattr(s, n) for n in s._fields}
    want = float(rule.synapse(theta, jax.tree.map(np.float32, s)))
    assert float(full.subs(subs)) == pytest.approx(want, rel=1e-6)
    human = export.render(rule, theta, "sympy")
    assert "0.55*post*pre" in human and "4.6e-7*e_post*e_pre" in human  # hebb + oja
    assert "0.01235*w" in human and "0.0123456" not in human
    latex = export.render(rule, theta, "latex")
    assert "\\mathrm{e\\_post} \\cdot \\mathrm{pre}" in latex and "\\eta = 0.01000" in latex
    order = [latex.index(t) for t in ("1.000 \\mathrm{e", "0.5500", "0.2500", "0.01235",
                                      "4.600 \\times 10^{-7}")]
    assert order == sorted(order)
    short = export.render(rule, theta, "latex", latex_threshold=1e-3)
    assert "10^{-7}" not in short and "1 term(s) below 0.001" in short
