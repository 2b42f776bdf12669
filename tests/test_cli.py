import json
import os
import subprocess
import sys

import numpy as np
import pytest

from metaplastic.cli import main

SMALL = ["--set", "task.n_steps=200", "--set", "task.n_in=6", "--set", "meta.steps=30",
         "--set", "meta.chunk=10", "--set", "eval.tasks=20", "--set", "eval.vary={n_in = [6, 8]}"]


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    old = os.environ.get("METAPLASTIC_CACHE_DIR")
    os.environ["METAPLASTIC_CACHE_DIR"] = str(tmp_path_factory.mktemp("jaxcache"))
    yield
    if old is None:
        del os.environ["METAPLASTIC_CACHE_DIR"]
    else:
        os.environ["METAPLASTIC_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "oja", *SMALL, "--out", str(out)]) == 0
    (run,) = list(out.iterdir())
    return run


def test_run_writes_every_artifact(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"config.toml", "metrics.jsonl", "theta.npz", "summary.json", "eval.json",
            "meta_loss.png", "coefficients.png"} <= names
    lines = (finished_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and len(json.loads(lines[-1])["theta"]) == 27
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["meta_steps"] == 30
    assert summary["formula"].startswith("dw = eta * (")
    assert -1.0 <= summary["reference_cosine"] <= 1.0
    with np.load(finished_run / "theta.npz", allow_pickle=False) as f:
        assert f["coef"].shape == (3, 3, 3)


def test_run_prints_formula_eval_table_and_path(finished_run, capsys, tmp_path):
    assert main(["run", "oja", *SMALL, "--set", "meta.steps=10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "learned rule:" in out and "dw = eta * (" in out
    assert "cosine with oja's coefficients" in out
    assert "held-out evaluation" in out and "n_in=8" in out
    assert str(tmp_path) in out


def test_eval_table_has_rules_and_variants(finished_run, capsys):
    assert main(["eval", str(finished_run), "--tasks", "12"]) == 0
    out = capsys.readouterr().out
    for word in ("learned", "oja", "hebb", "n_in=6", "n_in=8", "abs_cos"):
        assert word in out
    rows = json.loads((finished_run / "eval.json").read_text())["rows"]
    assert len(rows) == 6 and all(r["tasks"] == 12 for r in rows)
    oja = [r for r in rows if r["rule"] == "oja"]
    assert all(0.0 <= r["abs_cos"]["mean"] <= 1.0 for r in oja)


def test_report_redraws_plots(finished_run):
    (finished_run / "meta_loss.png").unlink()
    assert main(["report", str(finished_run)]) == 0
    assert (finished_run / "meta_loss.png").stat().st_size > 1000


def test_rerun_from_saved_config(finished_run, tmp_path):
    cfg = str(finished_run / "config.toml")
    assert main(["run", cfg, "--no-eval", "--set", "meta.steps=10", "--out", str(tmp_path)]) == 0


def test_nan_run_exits_nonzero_and_keeps_results(tmp_path, capsys):
    code = main(["run", "oja", *SMALL, "--set", "rule.eta=5.0", "--set", "rule.start=hebb",
                 "--set", "meta.on_nan=stop", "--out", str(tmp_path)])
    assert code == 3
    out = capsys.readouterr().out
    assert "NaN/inf" in out and "partial results" in out
    (run,) = list(tmp_path.iterdir())
    assert (run / "theta.npz").is_file() and (run / "metrics.jsonl").is_file()
    assert json.loads((run / "summary.json").read_text())["status"].startswith("stopped")


@pytest.mark.parametrize("args, msg", [
    (["run", "oja", "--set", "meta.stepz=3"], "unknown option(s) 'stepz'"),
    (["run", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
    (["run", "missing.toml"], "does not exist"),
    (["eval", "/nonexistent/run"], "not a run directory"),
    (["run", "oja", "--set", "rule.name=ojaa"], "unknown rule 'ojaa'"),
    (["run", "oja", "--set", "reference=bcm"], "unknown rule 'bcm'"),
    (["run", "oja", "--set", "eval.baselines=['hebb', 'stpd']"], "unknown rule 'stpd'"),
    (["run", "oja", "--set", "eval.vary={n_inputs = [3]}"], "unknown option(s) 'n_inputs'"),
])
def test_bad_input_is_one_clear_message(args, msg, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)] if args[0] == "run" else args) == 2
    out = capsys.readouterr().out
    assert msg in out and "Traceback" not in out
    assert not any(tmp_path.iterdir())  # nothing half-created


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


def test_es_run_from_the_cli(tmp_path):
    assert main(["run", "oja-es", *SMALL, "--set", "meta.steps=6", "--set", "meta.population=4",
                 "--set", "meta.chunk=3", "--no-eval", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["meta_steps"] == 6 and "reference_cosine" in summary
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"pop_best", "pop_mean", "task_loss", "theta"} <= set(rec)


def test_rl_run_with_labelled_heldout_rows(tmp_path, capsys):
    args = ["run", "cartpole-hebbian", "--set", "meta.steps=2", "--set", "meta.population=4",
            "--set", "meta.chunk=2", "--set", "task.n_steps=30", "--set", "eval.tasks=5",
            "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "train physics" in out and "pole length 1.0 (2x)" in out and "return" in out
    (run,) = list(tmp_path.iterdir())
    theta = np.load(run / "theta.npz", allow_pickle=False)
    assert "[0]/A" in theta.files and theta["[0]/A"].shape == (32, 4)
    assert main(["eval", str(run), "--episodes", "4"]) == 0
    rows = json.loads((run / "eval.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["train physics", "pole length 1.0 (2x)"]
    assert all(r["tasks"] == 4 and 0 < r["return"]["mean"] <= 30 for r in rows)


def test_explain_a_finished_run(finished_run, capsys):
    # the learned rule is a polynomial of degree <= 6 (pre^2 post^2 w^2): all monomials up
    # to degree 6 and no thresholding fit it exactly
    assert main(["explain", str(finished_run), "--tasks", "2", "--synapses", "4",
                 "--every", "5", "--degree", "6", "--threshold", "0"]) == 0
    out = capsys.readouterr().out
    assert "distilled:" in out and "R² on held-out samples" in out
    data = json.loads((finished_run / "explain.json").read_text())
    assert data["inputs"] == ["pre", "post", "w"] and data["samples"] == 2 * 4 * 40
    assert 0.999 < data["r2_heldout"] <= 1.0
    assert (finished_run / "explain.png").stat().st_size > 10_000
    assert main(["explain", str(finished_run), "--tasks", "1", "--degree", "9"]) == 2


def test_check_exit_status_and_table(capsys):
    assert main(["check", "fa-digits", "--set", "task.shots=2"]) == 0
    out = capsys.readouterr().out
    assert "all declared constraints hold" in out
    for name in ("locality", "no_weight_transport", "online", "dale", "spikes_only"):
        assert name in out
    assert main(["check", "fa-digits", "--set", "task.shots=2",
                 "--set", "network.feedback=symmetric"]) == 4
    out = capsys.readouterr().out
    assert "FAILS" in out and "no_weight_transport" in out and "W2" in out.replace("\n", "")
    assert main(["check", "oja", "--require", "spikes_only"]) == 4


def test_check_a_run_and_records_in_the_run(finished_run, capsys):
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["constraints"] == {"locality": "holds", "online": "holds"}
    data = json.loads((finished_run / "plausibility.json").read_text())
    assert data["declared"] == ["locality", "online"]
    assert main(["check", str(finished_run)]) == 0
    assert "learned θ" in " ".join(capsys.readouterr().out.split())


def test_run_stops_before_training_when_a_declared_constraint_fails(tmp_path, capsys):
    assert main(["run", "oja", *SMALL, "--set", 'constraints=["locality", "spikes_only"]',
                 "--out", str(tmp_path)]) == 4
    assert "spikes_only" in capsys.readouterr().out
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["constraints"]["locality"] == "holds"
    assert summary["constraints"]["spikes_only"].startswith("fails: the input layer sends")
    assert not (run / "theta.npz").exists()  # nothing was trained


EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def test_custom_rule_and_task_from_a_user_module_get_everything(tmp_path, monkeypatch,
                                                                 capsys):
    """examples/custom_rule.toml names "custom_rule:DeltaTerms" and
    "custom_rule:LinearRegression": run directory, eval table, report and check."""
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.syspath_prepend(os.path.abspath(EXAMPLES))
    small = ["--set", "meta.steps=10", "--set", "meta.chunk=5", "--set", "eval.tasks=8",
             "--out", str(tmp_path)]
    assert main(["run", "custom_rule.toml", *small]) == 0
    (run,) = list(tmp_path.iterdir())
    cfg = (run / "config.toml").read_text()
    assert 'name = "custom_rule:DeltaTerms"' in cfg and "custom_rule:LinearRegression" in cfg
    out = " ".join(capsys.readouterr().out.split())
    assert "learned rule: dw = eta * (" in out and "SGD (eta tuned)" in out
    assert main(["eval", str(run), "--tasks", "6"]) == 0
    rows = json.loads((run / "eval.json").read_text())["rows"]
    assert {r["rule"] for r in rows} == {"learned", "SGD (eta tuned)"} and len(rows) == 4
    (run / "coefficients.png").unlink()
    assert main(["report", str(run)]) == 0 and (run / "coefficients.png").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["plot"]["theta_names"] == ["delta", "hebb", "decay"]
    assert main(["check", str(run)]) == 0
