import contextlib
import io
import json

import numpy as np
import pytest

from metaplastic.cli import main

SMALL = ["--set", "task.n_steps=200", "--set", "task.n_in=6", "--set", "meta.steps=30",
         "--set", "meta.chunk=10", "--set", "eval.tasks=20", "--set", "eval.vary={n_in = [6, 8]}"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One tiny run that run/eval/report/explain/check tests share: (directory, output)."""
    out = tmp_path_factory.mktemp("runs")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", "oja", *SMALL, "--out", str(out)]) == 0
    (run,) = list(out.iterdir())
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def finished_run(shared):
    return shared[0]


def test_run_writes_every_artifact(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"config.toml", "metrics.jsonl", "theta.npz", "summary.json", "eval.json",
            "meta_loss.png", "coefficients.png", "episode.npz", "inner.png", "weights.png",
            "eval.png"} <= names
    lines = (finished_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and len(json.loads(lines[-1])["theta"]) == 27
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["meta_steps"] == 30
    assert summary["formula"].startswith("dw = eta * (")
    assert -1.0 <= summary["reference_cosine"] <= 1.0
    with np.load(finished_run / "theta.npz", allow_pickle=False) as f:
        assert f["coef"].shape == (3, 3, 3)


def test_run_prints_formula_eval_table_and_path(shared):
    run, out = shared
    assert "learned rule:" in out and "dw = eta * (" in out
    assert "cosine with oja's coefficients" in out
    assert "held-out evaluation" in out and "n_in=8" in out
    assert str(run.parent) in out.replace("\n", "")


def test_eval_table_has_rules_and_variants(finished_run, capsys):
    assert main(["eval", str(finished_run), "--tasks", "12"]) == 0
    out = capsys.readouterr().out
    for word in ("learned", "oja", "hebb", "n_in=6", "n_in=8", "abs_cos"):
        assert word in out
    rows = json.loads((finished_run / "eval.json").read_text())["rows"]
    assert len(rows) == 6 and all(r["tasks"] == 12 for r in rows)
    oja = [r for r in rows if r["rule"] == "oja"]
    assert all(0.0 <= r["abs_cos"]["mean"] <= 1.0 for r in oja)


def test_eval_with_other_settings_writes_its_own_file(finished_run, capsys):
    before = (finished_run / "eval.json").read_bytes()
    assert main(["eval", str(finished_run), "--set", "eval.tasks=8", "--set",
                 "eval.vary={}", "--set", "eval.baselines=[{label='oja', rule='oja'}]",
                 "--name", "oja-only"]) == 0
    data = json.loads((finished_run / "oja-only.json").read_text())
    assert [r["rule"] for r in data["rows"]] == ["learned", "oja"]
    assert all(r["tasks"] == 8 for r in data["rows"])
    assert data["eval_settings"]["tasks"] == 8
    assert (finished_run / "oja-only.png").is_file()
    assert (finished_run / "eval.json").read_bytes() == before  # untouched
    # only eval.* keys: training is not redone; a file name, not a path
    assert main(["eval", str(finished_run), "--set", "meta.steps=3"]) == 2
    assert main(["eval", str(finished_run), "--name", "../x"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "takes eval.* keys only" in out and "--name must be" in out
    assert "Traceback" not in out


def test_report_redraws_plots(finished_run):
    (finished_run / "meta_loss.png").unlink()
    assert main(["report", str(finished_run)]) == 0
    assert (finished_run / "meta_loss.png").stat().st_size > 1000


def test_rerun_from_saved_config(finished_run, tmp_path):
    # the same configuration again: the same numbers, and nothing to compile
    cfg = str(finished_run / "config.toml")
    assert main(["run", cfg, "--no-eval", "--out", str(tmp_path)]) == 0
    (again,) = list(tmp_path.iterdir())
    with np.load(again / "theta.npz") as a, np.load(finished_run / "theta.npz") as b:
        np.testing.assert_array_equal(a["coef"], b["coef"])


def test_nan_run_exits_nonzero_and_keeps_results(tmp_path, capsys):
    code = main(["run", "oja", *SMALL, "--set", "rule.eta=5.0", "--set", "rule.start=hebb",
                 "--set", "meta.on_nan=stop", "--out", str(tmp_path)])
    assert code == 3
    out = capsys.readouterr().out
    assert "NaN/inf" in out and "partial results" in out
    (run,) = list(tmp_path.iterdir())
    assert (run / "theta.npz").is_file() and (run / "metrics.jsonl").is_file()
    assert json.loads((run / "summary.json").read_text())["status"].startswith("diverged")


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
    capsys.readouterr()
    # export then writes the distilled formula beside the rule's own terms
    assert main(["export", str(finished_run), "--format", "json", "sympy"]) == 0
    out = capsys.readouterr().out
    assert out.count("distilled by metaplastic explain:") == 1
    names = {p.name for p in (finished_run / "export").iterdir()}
    assert {"rule.json", "rule_sympy.txt", "rule_sympy_full.txt", "explained.json",
            "explained_sympy.txt", "explained_sympy_full.txt"} <= names
    rows = json.loads((finished_run / "export" / "explained.json").read_text())["rows"]
    assert len(rows) == len(data["terms"]) and rows[0]["term"] == data["terms"][0]["term"]


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


def test_report_reads_the_run_files_only(finished_run, tmp_path):
    # a copy whose task and rule could not even be built: the plots need only the run's files
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    cfg = (copy / "config.toml").read_text().replace('name = "pca"', 'name = "gone:Task"')
    (copy / "config.toml").write_text(cfg)
    for png in copy.glob("*.png"):
        png.unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "meta_loss.png").is_file() and (copy / "coefficients.png").is_file()


def test_a_damaged_run_directory_is_one_clear_message(finished_run, tmp_path, capsys):
    import shutil

    def printed():  # rich wraps long paths anywhere: compare without whitespace
        return "".join(capsys.readouterr().out.split())

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    np.savez(copy / "theta.npz", coef=np.zeros((2, 2, 2), np.float32))  # another rule's θ
    for cmd in (["eval", str(copy)], ["check", str(copy)], ["explain", str(copy)]):
        assert main(cmd) == 2, cmd
        out = printed()
        assert "doesnotfitrule'polynomial'" in out and "[3,3,3]" in out
    (copy / "theta.npz").write_bytes(b"")
    assert main(["eval", str(copy)]) == 2
    assert "cannotreadparametersfile" in printed()
    (copy / "summary.json").write_text("{garbled")
    assert main(["report", str(copy)]) == 0  # the plots need only the metrics
    assert "summary.jsonisdamaged" in printed()


def test_eval_of_absurdly_many_tasks(finished_run, capsys):
    assert main(["eval", str(finished_run), "--tasks", "1000000000"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "--tasks must be an integer in [0, 10,000,000]" in out and "Traceback" not in out


def test_eval_theta_last_reads_the_checkpoint_not_the_kept_theta(finished_run, tmp_path,
                                                                  capsys):
    """``eval.theta = "last"`` evaluates the last meta-step's θ from the checkpoint (the
    keep-best ablation): here theta.npz is replaced, and "last" still gives the trained
    run's numbers; a run without a checkpoint, or another value, is one message."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    common = ["--set", "eval.tasks=8", "--set", "eval.vary={}", "--set", "eval.baselines=[]"]
    assert main(["eval", str(copy), *common, "--name", "saved"]) == 0
    with np.load(copy / "theta.npz") as f:
        np.savez(copy / "theta.npz", coef=np.zeros_like(f["coef"]))
    assert main(["eval", str(copy), *common, "--name", "zeroed"]) == 0
    assert main(["eval", str(copy), *common, "--set", "eval.theta='last'",
                 "--name", "last"]) == 0
    loss = {n: json.loads((copy / f"{n}.json").read_text())["rows"][0]["loss"]["mean"]
            for n in ("saved", "zeroed", "last")}
    assert loss["last"] == loss["saved"] != loss["zeroed"]
    assert json.loads((copy / "last.json").read_text())["eval_settings"]["theta"] == "last"
    (copy / "checkpoint.npz").unlink()
    assert main(["eval", str(copy), *common, "--set", "eval.theta='last'"]) == 2
    assert main(["eval", str(copy), "--set", "eval.theta='best'"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "eval.theta = 'last' needs the run's checkpoint" in out
    assert "eval.theta must be 'saved' or 'last'" in out and "Traceback" not in out
