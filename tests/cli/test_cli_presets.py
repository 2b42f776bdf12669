"""Whole presets through the command line (second tier: make test-tier2)."""

import json

import numpy as np
import pytest

from metaplastic.cli import main

SMALL = ["--set", "task.n_steps=200", "--set", "task.n_in=6", "--set", "meta.steps=30",
         "--set", "meta.chunk=10", "--set", "eval.tasks=20", "--set", "eval.vary={n_in = [6, 8]}"]


@pytest.mark.tier2
def test_es_run_from_the_cli(tmp_path):
    assert main(["run", "oja-es", *SMALL, "--set", "meta.steps=6", "--set", "meta.population=4",
                 "--set", "meta.chunk=3", "--no-eval", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["meta_steps"] == 6 and "reference_cosine" in summary
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"pop_best", "pop_mean", "task_loss", "theta"} <= set(rec)


@pytest.mark.tier2
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
    names = {p.name for p in run.iterdir()}
    assert {"meta_loss.png", "inner.png", "weights.png", "abcd.png", "eval.png"} <= names
    assert not {"raster.png", "coefficients.png"} & names  # not spiking; θ too large to log
    assert main(["eval", str(run), "--episodes", "4"]) == 0
    rows = json.loads((run / "eval.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["train physics", "pole length 1.0 (2x)"]
    assert all(r["tasks"] == 4 and 0 < r["return"]["mean"] <= 30 for r in rows)


@pytest.mark.tier2
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


def test_check_fails_a_required_constraint_with_exit_status_4(capsys):
    assert main(["check", "oja", "--require", "spikes_only"]) == 4
    assert "FAILS" in capsys.readouterr().out


TINY_META_META = ["--set", "meta.steps=4", "--set", "meta.chunk=2", "--set", "generations=4",
                  "--set", "hidden=4", "--set",
                  'problems=[{name = "quadratic", dim = 3, population = 4, instances = 2}]']


@pytest.mark.tier2
def test_selection_meta_trains_resumes_and_feeds_the_learned_es(tmp_path, capsys):
    """selection-meta writes φ; a stopped run resumes; the learned ES runs with that φ."""
    assert main(["run", "selection-meta", *TINY_META_META, "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    out = capsys.readouterr().out
    assert "held-in meta-meta loss" in out and "phi.npz" in out
    for name in ("config.toml", "metrics.jsonl", "phi.npz", "checkpoint.npz",
                 "summary.json", "selection.json", "selection.png"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["meta_steps"] == 4 and summary["status"] == "finished"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
    # resume continues from the checkpoint to the configured number of steps
    cfg = (run / "config.toml").read_text()
    (run / "config.toml").write_text(cfg.replace("steps = 4", "steps = 6"))
    assert main(["resume", str(run)]) == 0
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert main(["report", str(run)]) == 0
    for command in ("eval", "explain", "check"):  # rule-run commands: one clear message
        assert main([command, str(run)]) == 2
        assert "selection-meta run" in capsys.readouterr().out
    args = ["run", "oja-learned-es", *SMALL, "--set", "meta.steps=4", "--set",
            "meta.population=4", "--set", "meta.chunk=2", "--set",
            f"meta.phi={run / 'phi.npz'}", "--no-eval", "--out", str(tmp_path / "es")]
    assert main(args) == 0
    (es_run,) = list((tmp_path / "es").iterdir())
    rec = json.loads((es_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"pop_best", "es_sigma", "es_n_eff"} <= set(rec)
    assert main(["check", "oja-learned-es"]) == 0
    assert "learned-evolutionary" in capsys.readouterr().out


@pytest.mark.tier2
@pytest.mark.parametrize("bad, message", [
    (["--set", "meta.bogus=1"], "unknown option(s) 'bogus'; valid options: chunk"),
    (["--set", "meta.steps=abc"], "steps must be an integer"),
    (["--set", 'problems=[{name = "sphere"}]'], "unknown training problem"),
    (["--set", "generations=0"], "generations"),
    (["--set", "wrong=1"], "unknown key"),
])
def test_selection_meta_bad_input_is_one_message(bad, message, tmp_path, capsys):
    assert main(["run", "selection-meta", *bad, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().out
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.tier2
def test_log_tensorboard_writes_what_metrics_jsonl_has(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["run", "oja", *SMALL, "--set", "meta.steps=20", "--no-eval", "--log",
                 "tensorboard", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    assert "tensorboard --logdir" in capsys.readouterr().out
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    ea.Reload()
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    got = [e.value for e in ea.Scalars("task_loss")]
    np.testing.assert_allclose(got, [r["task_loss"] for r in records], rtol=1e-6)
    assert "theta/pre_post" in ea.Tags()["scalars"] and "theta" in ea.Tags()["histograms"]
    assert main(["report", str(run), "--tensorboard"]) == 0  # rewritten, not duplicated
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    ea.Reload()
    assert len(ea.Scalars("task_loss")) == 20


@pytest.mark.tier2
def test_tensorboard_gets_the_evaluation_the_config_and_the_figures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["run", "oja", *SMALL, "--set", "meta.steps=10", "--log", "tensorboard",
                 "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0,
                                                                  "images": 0})
    ea.Reload()
    from metaplastic.report.loggers import tag

    rows = json.loads((run / "eval.json").read_text())["rows"]
    for r in rows:  # every row and rule of the table, at its mean
        key = f"eval/{tag(r['variant'])}/{tag(r['rule'])}/{tag(r['score'])}"
        assert ea.Scalars(key)[-1].value == pytest.approx(r[r["score"]]["mean"], rel=1e-6)
    assert "figures/meta_loss" in ea.Tags()["images"]
    assert list((run / "tensorboard" / "hparams").rglob("events.out.tfevents.*"))


@pytest.mark.tier2
@pytest.mark.xla_defaults  # one program for the seeds, one per seed: the same bits
def test_seeds_as_one_program_equal_separate_runs(tmp_path, capsys):
    """--seeds 0-1: one run directory per seed, each θ bitwise the separate run's; then
    the evaluation of each and the comparison across seeds."""
    small = [*SMALL, "--set", "meta.steps=20", "--set", "eval.tasks=5"]
    assert main(["run", "oja", *small, "--seeds", "0-1", "--log", "tensorboard",
                 "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "2 seeds as one program" in out and "seeds compared" in out
    (group,) = list((tmp_path / "g").iterdir())
    assert sorted(p.name for p in group.iterdir()) == ["compare.json", "compare.png",
                                                        "seed-0", "seed-1"]
    assert main(["run", "oja", *small, "--seed", "1", "--no-eval",
                 "--out", str(tmp_path / "one")]) == 0
    (single,) = list((tmp_path / "one").iterdir())
    a = np.load(group / "seed-1" / "theta.npz")["coef"]
    assert np.array_equal(a, np.load(single / "theta.npz")["coef"])
    assert not np.array_equal(a, np.load(group / "seed-0" / "theta.npz")["coef"])
    for seed in (0, 1):
        run = group / f"seed-{seed}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["meta_steps"] == 20
        assert summary["provenance"]["seeds_in_one_program"] == [0, 1]
        assert "seed = " + str(seed) in (run / "config.toml").read_text()
        assert (run / "eval.json").exists() and (run / "checkpoint.npz").exists()
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # one log per seed
    compared = json.loads((group / "compare.json").read_text())
    assert compared["groups"][0]["seeds"] == [0, 1]
    # a seed directory is an ordinary run: resume (nothing left) and eval work
    assert main(["resume", str(group / "seed-0"), "--no-eval"]) == 0


@pytest.mark.tier2
def test_a_stopped_seeds_group_resumes_as_one_program(tmp_path, capsys, monkeypatch):
    """Stopped after the first chunk (all checkpoints written), then `metaplastic resume
    GROUP`: every seed's θ bitwise that of the group never stopped."""
    from metaplastic.experiments.rundir import RunDir

    small = [*SMALL, "--set", "meta.steps=20", "--no-eval"]
    assert main(["run", "oja", *small, "--seeds", "0-1", "--out", str(tmp_path / "ref")]) == 0
    save = RunDir.save_checkpoint

    def save_then_stop(self, state):
        save(self, state)
        if self.path.name == "seed-1" and int(state.step) == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_stop)
    assert main(["run", "oja", *small, "--seeds", "0-1", "--out", str(tmp_path / "b")]) == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    (group,) = list((tmp_path / "b").iterdir())
    assert "continue with: metaplastic resume" in capsys.readouterr().out.replace("\n", " ")
    for seed in (0, 1):
        summary = json.loads((group / f"seed-{seed}" / "summary.json").read_text())
        assert (summary["status"], summary["meta_steps"]) == ("interrupted", 10)
    assert main(["resume", str(group), "--no-eval"]) == 0
    (ref,) = list((tmp_path / "ref").iterdir())
    for seed in (0, 1):
        a = np.load(group / f"seed-{seed}" / "theta.npz")["coef"]
        assert np.array_equal(a, np.load(ref / f"seed-{seed}" / "theta.npz")["coef"])
        summary = json.loads((group / f"seed-{seed}" / "summary.json").read_text())
        assert summary["meta_steps"] == 20 and summary["provenance"]["resumed_at_step"] == 10
        steps = [json.loads(x)["step"] for x in
                 (group / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, 21))
    # stopped at start-up, before seed 1's config.toml was written: resume starts both
    # from meta-step 0 (seed 1 with the group's configuration and its own seed), never
    # only the seeds that have a config
    import shutil

    early = tmp_path / "early" / group.name
    (early / "seed-1").mkdir(parents=True)
    (early / "seed-0").mkdir()
    shutil.copy(group / "seed-0" / "config.toml", early / "seed-0" / "config.toml")
    assert main(["resume", str(early), "--no-eval"]) == 0
    for seed in (0, 1):
        a = np.load(early / f"seed-{seed}" / "theta.npz")["coef"]
        assert np.array_equal(a, np.load(ref / f"seed-{seed}" / "theta.npz")["coef"])


@pytest.mark.tier2
def test_an_image_environment_runs_without_the_presets_evaluation_rows(tmp_path):
    """MinAtar Breakout through a CartPole preset: the screen is flattened; --no-eval
    does not build the preset's pole-length rows (which Breakout has no physics for)."""
    args = ["run", "cartpole-hebbian", "--set", "task.name=gym",
            "--set", "task.env=Breakout-MinAtar", "--set", "task.n_steps=40",
            "--set", "meta.steps=2", "--set", "meta.chunk=1", "--set", "meta.population=4",
            "--out", str(tmp_path)]
    assert main([*args, "--no-eval"]) == 0
    (run,) = list(tmp_path.iterdir())
    theta = np.load(run / "theta.npz")
    assert theta["[0]/A"].shape == (32, 400)
    assert main(args) == 2  # with evaluation: its rows are checked first, one message


@pytest.mark.tier2
def test_export_writes_the_rule_out_whole(tmp_path, capsys):
    assert main(["run", "oja", *SMALL, "--set", "meta.steps=10", "--no-eval",
                 "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    capsys.readouterr()
    assert main(["export", str(run)]) == 0
    out = capsys.readouterr().out
    assert "dw = eta*(" in out and "\\Delta w = \\eta" in out
    files = sorted(p.name for p in (run / "export").iterdir())
    assert files == ["rule.csv", "rule.json", "rule.tex", "rule_sympy.txt",
                     "rule_sympy_full.txt"]
    rows = json.loads((run / "export" / "rule.json").read_text())["rows"]
    theta = np.load(run / "theta.npz")["coef"].reshape(-1)
    assert [r["coefficient"] for r in rows] == pytest.approx(theta.tolist())
    with pytest.raises(SystemExit) as stop:  # argparse's own message and status
        main(["export", str(run), "--format", "pdf"])
    assert stop.value.code == 2


SPIKING_FIGURES = {"meta_loss.png", "coefficients.png", "inner.png", "weights.png",
                   "raster.png", "rates.png", "stdp_window.png"}


@pytest.mark.tier2
@pytest.mark.parametrize("preset, sets", [
    ("stdp-pca", ["task.n_steps=200"]),
    ("spiking-homeostasis", ["task.phases=2", "task.phase_steps=100"]),
    ("spiking-digits", ["task.shots=2", "task.queries=2", "task.hold=10"]),
    ("fa-digits", ["task.shots=2", "task.queries=2"]),
])
def test_each_preset_draws_the_figures_that_apply(tmp_path, preset, sets):
    args = ["run", preset, "--no-eval", "--out", str(tmp_path), "--set", "meta.steps=2",
            "--set", "meta.chunk=2"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    names = {p.name for p in run.iterdir() if p.suffix == ".png"}
    spiking = preset != "fa-digits"
    assert names == (SPIKING_FIGURES if spiking else {"meta_loss.png", "coefficients.png",
                                                        "inner.png", "weights.png"})
    summary = json.loads((run / "summary.json").read_text())
    assert summary["episode"] == "recorded in episode.npz"
    # every coefficient is named in the plot (term pools too), none as theta[k]
    assert len(summary["plot"]["theta_names"]) == len(
        json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["theta"])


@pytest.mark.tier2
def test_export_a_spiking_network_to_nir_and_back(tmp_path, capsys):
    import nir

    assert main(["run", "stdp-pca", "--no-eval", "--out", str(tmp_path), "--set",
                 "meta.steps=2", "--set", "meta.chunk=2", "--set", "task.n_steps=400",
                 "--set", "network.reset=zero"]) == 0
    (run,) = list(tmp_path.iterdir())
    capsys.readouterr()
    assert main(["export", str(run), "--format", "nir", "--task-seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "0 differ after reading the file back — identical" in out
    graph = nir.read(run / "export" / "network.nir")
    assert graph.nodes["linear1"].weight.shape == (1, 10)
    check = np.load(run / "export" / "network_check.npz", allow_pickle=False)
    assert int(check["task_seed"]) == 5 and check["input_spikes"].shape == (400, 10)
    assert check["spikes_layer1"].sum() > 0  # the exported neuron fires: a real check
    # the rate network of another run is refused with one message
    capsys.readouterr()
    assert main(["run", "oja", *SMALL, "--set", "meta.steps=2", "--set", "meta.chunk=2",
                 "--no-eval", "--out", str(tmp_path / "rate")]) == 0
    (rate,) = list((tmp_path / "rate").iterdir())
    assert main(["export", str(rate), "--format", "nir"]) == 2
    assert "error: NIR export is for spiking networks" in capsys.readouterr().out
    assert not (rate / "export").exists()


@pytest.mark.tier2
def test_infer_oja_from_sparse_noisy_activity(tmp_path, capsys):
    """The preset whole: half of the neurons recorded, 10% noise; Oja's rule recovered."""
    assert main(["run", "infer-oja-activity", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reference_cosine"] >= 0.95
    rows = {(r["rule"], r["variant"]): r["r2"]["mean"]
            for r in json.loads((run / "eval.json").read_text())["rows"]}
    held = "held-out trajectories"
    assert rows["learned", held] > 0.95 and rows["hebb", held] < 0.5
    assert rows["oja", held] >= rows["learned", held] - 0.02  # the truth is the ceiling
    rec = json.loads((run / "recovery.json").read_text())
    assert rec["coefficients"]["cosine"] >= 0.95 and rec["splits"]["heldout"]["weight_r2"] > 0.9


@pytest.mark.tier2
def test_infer_a_reward_rule_from_choices(tmp_path):
    """x·r from 3 trajectories of 240 simulated choices: the largest inferred term, with
    its sign; held-out choices explained far better than without plasticity."""
    assert main(["run", "infer-reward-behaviour", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    with np.load(run / "theta.npz", allow_pickle=False) as f:
        coef = f["coef"].reshape(-1)
    from metaplastic.rules import make

    names = make("polynomial", variables=["pre", "modulator", "w"]).term_names
    top = int(np.argmax(np.abs(coef)))
    assert names[top] == "pre*modulator" and coef[top] > 0
    held = json.loads((run / "recovery.json").read_text())["splits"]["heldout"]
    assert held["trajectories"] == 5
    rules = held["rules"]
    assert rules["inferred"]["deviance_explained"] > 0.45  # each trajectory once
    assert rules["truth"]["deviance_explained"] > rules["inferred"]["deviance_explained"] - 0.2
    assert rules["no plasticity"]["deviance_explained"] == 0.0
    assert 0.0 < held["weight_r2"] <= 1.0


@pytest.mark.tier2
def test_inference_presets_fit_a_network_rule_and_explain_reads_it(tmp_path, capsys):
    rule = 'rule={name = "mlp", inputs = ["pre", "modulator", "w"], eta = 0.5}'
    assert main(["run", "infer-reward-behaviour", "--set", rule, "--set", "meta.steps=10",
                 "--set", "meta.chunk=5", "--no-eval", "--out", str(tmp_path)]) == 0
    (run,) = list(tmp_path.iterdir())
    assert main(["explain", str(run), "--tasks", "2", "--inputs", "pre", "modulator",
                 "w"]) == 0
    data = json.loads((run / "explain.json").read_text())
    assert data["inputs"] == ["pre", "modulator", "w"] and data["terms"]


@pytest.mark.tier2
def test_hebbian_cartpole_is_not_stopped_by_its_weights_growing(tmp_path):
    """The ABCD rule grows a tanh network's weights thousands of times their start (the
    published setting working): under the default weight bound the guard stopped the
    preset at generation 10 (exit 3); its own bound lets it learn."""
    args = ["run", "cartpole-hebbian", "--set", "meta.steps=40", "--no-eval",
            "--out", str(tmp_path)]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["guard"]["rollbacks"] == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["w_max"] for r in records) > 1e3 * records[0]["w_max"] / 10  # it grows
    assert records[-1]["pop_best"] < records[0]["pop_best"]  # minus the return: it learns


@pytest.mark.tier2
@pytest.mark.parametrize("preset, least", [("mlpp-emnist-shape", 0.3),
                                           ("mlpp-emnist-local", 0.1)])
def test_the_published_mlpp_presets_learn_without_nan(preset, least, tmp_path):
    """The published parametrisation learns within a few meta-episodes (their code and the
    preset: ~0.45-0.5 over episodes 1-10, 3 seeds; before, the preset sat at chance, 0.20),
    and the local variant, which declares locality (checked at start-up: exit 4 if it
    failed), runs without NaN (the local Oja term gave NaN from episode 2)."""
    args = ["run", preset, "--set", "meta.steps=10", "--set", "eval.tasks=0", "--no-eval",
            "--out", str(tmp_path)]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 10 and all(r["accuracy"] is not None for r in records)
    assert np.mean([r["accuracy"] for r in records[5:]]) > least


@pytest.mark.tier2
@pytest.mark.parametrize("preset, sets", [
    ("oja", ["task.n_steps=200", "eval.tasks=4"]),
    ("cartpole-hebbian", ["eval.tasks=4"]),
    ("stdp-pca", ["task.n_steps=200", "eval.tasks=0"]),
    ("spiking-homeostasis", ["task.phases=2", "task.phase_steps=100", "eval.tasks=0"]),
    ("infer-oja-activity", ["eval.tasks=4"]),
])
def test_every_figure_goes_into_a_talk_unedited(preset, sets, tmp_path, monkeypatch):
    """Every figure a short run of the preset draws (training, inner learning, evaluation):
    no text cut off by the figure's edge, no legend covering more than a third of its
    axes (checked on the figure's drawn artists, just before it is saved)."""
    from matplotlib.figure import Figure

    from helpers import layout_problems

    found: dict[str, list[str]] = {}
    real = Figure.savefig

    def checked(fig, fname, *a, **k):
        fig.canvas.draw()
        problems = layout_problems(fig)
        if problems:
            found[str(fname).rsplit("/", 1)[-1]] = problems
        return real(fig, fname, *a, **k)

    monkeypatch.setattr(Figure, "savefig", checked)
    args = ["run", preset, "--out", str(tmp_path), "--set", "meta.steps=4",
            "--set", "meta.chunk=2"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    (run,) = list(tmp_path.iterdir())
    assert len(list(run.glob("*.png"))) >= 3
    assert not found, found
