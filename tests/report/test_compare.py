"""metaplastic compare: seeds of one configuration aggregated (mean ± 95% CI, Student t),
configurations side by side, from run files only."""

import json
import math

import numpy as np
import pytest

from metaplastic import ConfigError
from metaplastic.cli import main
from metaplastic.report import compare as cmp


def _run(root, name, seed, l1, losses, heldout):
    d = root / f"{name}-{l1}-{seed}"
    d.mkdir()
    d.joinpath("config.toml").write_text(
        f'name = "{name}"\nseed = {seed}\n\n[meta]\nl1 = {l1}\n')
    d.joinpath("metrics.jsonl").write_text("".join(
        json.dumps({"step": i + 1, "task_loss": v, "abs_cos": 1 - v}) + "\n"
        for i, v in enumerate(losses)))
    d.joinpath("summary.json").write_text(json.dumps({"plot": {"score": "abs_cos"}}))
    d.joinpath("eval.json").write_text(json.dumps({"rows": [
        {"rule": "learned", "variant": "n_in=10", "score": "abs_cos",
         "abs_cos": {"mean": heldout, "ci95": 0.01}}]}))
    return d


@pytest.fixture()
def runs(tmp_path):
    # group A: l1 = 0.001, seeds 0-2; group B: l1 = 0.0, seeds 0-1
    for seed, final, held in [(0, 0.2, 0.80), (1, 0.3, 0.90), (2, 0.4, 0.85)]:
        _run(tmp_path, "oja", seed, 0.001, [1.0] * 5 + [final] * 10, held)
    for seed, final, held in [(0, 0.5, 0.6), (1, 0.7, 0.7)]:
        _run(tmp_path, "oja", seed, 0.0, [1.0] * 12 + [final] * 10, held)
    return tmp_path


def test_seeds_are_aggregated_and_configs_kept_apart(runs, tmp_path):
    summaries, js, png = cmp.compare([str(runs / "*")], tmp_path / "out")
    assert png.is_file() and js.is_file()
    by = {g["label"]: g for g in summaries}
    assert set(by) == {"oja [meta.l1=0.001]", "oja [meta.l1=0.0]"}
    a = by["oja [meta.l1=0.001]"]
    assert sorted(a["seeds"]) == [0, 1, 2]
    mean, ci = a["final_meta_loss"]  # last 10 steps: 0.2, 0.3, 0.4 -> sd 0.1, t(2) 4.303
    assert math.isclose(mean, 0.3, rel_tol=1e-9)
    assert math.isclose(ci, 4.303 * 0.1 / math.sqrt(3), rel_tol=1e-6)
    assert math.isclose(a["final_score"][0], 0.7, rel_tol=1e-9)
    (cell,) = a["heldout"]
    assert cell["n_runs"] == 3 and math.isclose(cell["value"][0], 0.85, rel_tol=1e-9)
    b = by["oja [meta.l1=0.0]"]
    assert math.isclose(b["final_meta_loss"][1], 12.706 * np.std([0.5, 0.7], ddof=1)
                        / math.sqrt(2), rel_tol=1e-6)
    # curves aligned up to the shortest run of each group
    steps, mean_curve, _ = cmp.curve(cmp.group([cmp.load_run(p) for p in
                                                cmp.expand([str(runs / "oja-0.0-*")])])[0])
    assert len(steps) == 22 and math.isclose(mean_curve[-1], 0.6)
    json.loads(js.read_text())  # standard JSON (no NaN)


def test_one_seed_has_no_ci_and_the_json_says_null(runs, tmp_path):
    summaries, js, _ = cmp.compare([str(runs / "oja-0.001-0")], tmp_path / "o")
    assert summaries[0]["label"] == "oja" and math.isnan(summaries[0]["final_meta_loss"][1])
    assert json.loads(js.read_text())["groups"][0]["final_meta_loss"][1] is None


def test_the_command_prints_both_tables(runs, tmp_path, capsys):
    assert main(["compare", str(runs / "oja-0.001-0"), str(runs / "oja-0.001-1"),
                 str(runs / "oja-0.0-0"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "oja [meta.l1=0.001]" in out and "held-out evaluation" in out and "n=2" in out


@pytest.mark.parametrize("bad", ["nothing-*", "not-a-run"])
def test_bad_inputs_are_one_message(runs, tmp_path, capsys, bad, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-run").mkdir(exist_ok=True)
    assert main(["compare", bad, "--out", str(tmp_path / "o")]) == 2
    assert "error" in capsys.readouterr().out


def test_a_damaged_file_is_named(runs, tmp_path):
    d = runs / "oja-0.001-0"
    (d / "eval.json").write_text("{not json")
    with pytest.raises(ConfigError, match="eval.json is damaged"):
        cmp.compare([str(d)], tmp_path / "o")
    (d / "config.toml").write_text("name = [")
    with pytest.raises(ConfigError, match="config.toml is damaged"):
        cmp.load_run(d)


def test_gradient_and_es_runs_compare_by_evaluations_and_seconds(tmp_path):
    """An ES generation of population 4 costs 5 evaluations (members and mean), a
    gradient step 1; the table and the figure's axes count them, and wall time."""
    for name, meta, wall in (("grad", "", 0.5), ("es", 'outer = "es"\npopulation = 4\n', 2.0)):
        d = tmp_path / name
        d.mkdir()
        d.joinpath("config.toml").write_text(f'name = "{name}"\nseed = 0\n\n[meta]\n{meta}')
        d.joinpath("metrics.jsonl").write_text("".join(
            json.dumps({"step": i + 1, "task_loss": 1.0 / (i + 1), "wall_s": wall * (i + 1)})
            + "\n" for i in range(20)))
        d.joinpath("summary.json").write_text(json.dumps({"seconds": wall * 20}))
    summaries, _, png = cmp.compare([str(tmp_path / "grad"), str(tmp_path / "es")],
                                    tmp_path / "out")
    by = {g["label"].split(" ")[0]: g for g in summaries}
    assert by["grad"]["evaluations"][0] == 20 and by["es"]["evaluations"][0] == 100
    assert by["grad"]["seconds"][0] == 10 and by["es"]["seconds"][0] == 40
    run = cmp.load_run(tmp_path / "es")
    np.testing.assert_array_equal(cmp._x(run, "evaluations", 3), [5, 10, 15])
    np.testing.assert_array_equal(cmp._x(run, "seconds", 3), [2, 4, 6])
    assert png.is_file()
