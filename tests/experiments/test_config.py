import pytest

from metaplastic import ConfigError
from metaplastic.experiments import PRESETS, build, config, presets


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips_through_toml(name, tmp_path):
    cfg = presets.get(name)
    build(cfg)
    config.save(cfg, tmp_path / "c.toml")
    assert config.load(tmp_path / "c.toml") == cfg


def test_overrides_are_typed_and_validated():
    cfg = config.override(presets.get("oja"), [
        "meta.steps=12", "meta.lr=3e-3", "task.n_in=6", "network.activation=tanh",
        "eval.vary={n_in = [6, 9]}", "meta.checkpoint=true", "reference=hebb"])
    assert cfg.meta["steps"] == 12 and cfg.meta["lr"] == 3e-3 and cfg.meta["checkpoint"] is True
    assert cfg.task["n_in"] == 6 and cfg.network["activation"] == "tanh"
    assert cfg.eval.vary == {"n_in": [6, 9]} and cfg.reference == "hebb"


def test_int_is_accepted_for_float():
    assert config.override(presets.get("oja"), ["meta.lr=1"]).meta["lr"] == 1.0


@pytest.mark.parametrize("assignment, msg", [
    ("meta.stepz=3", r"meta: unknown option\(s\) 'stepz'; valid options: .*steps"),
    ("meta.steps=1.5", "meta.steps must be an integer"),
    ("meta.checkpoint=maybe", "meta.checkpoint must be true, false or \"auto\""),
    ("network.hidden=3", "network.hidden must be a list"),
    ("colour=red", r"config: unknown option\(s\) 'colour'"),
    ("nosection.x=1", "'nosection' is not a section"),
    ("meta.steps", "needs key=value"),
    ("meta.outer=evolution", "unknown outer 'evolution'"),
])
def test_bad_overrides_name_the_problem(assignment, msg):
    with pytest.raises(ConfigError, match=msg):
        config.override(presets.get("oja"), [assignment])


@pytest.mark.parametrize("assignment, msg", [
    ("network.feedback=magic", "valid feedback pathways"),
    ("network.hidden=[4]", "single layer"),
])
def test_bad_pieces_fail_when_built(assignment, msg):
    cfg = config.override(presets.get("oja"), [assignment])
    with pytest.raises(ConfigError, match=msg):
        build(cfg)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="valid presets: acrobot-hebbian, .*oja"):
        presets.get("ojaa")


def test_bad_toml_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[meta\nsteps = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(p)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")


def test_task_table_needs_a_name():
    with pytest.raises(ConfigError, match=r"\[task\] needs a 'name'"):
        config.from_dict({"task": {"n_in": 3}})


def test_eval_variants_are_labelled_rows():
    from metaplastic.experiments.build import variants

    cfg = presets.get("acrobot-hebbian")
    rows = variants(cfg)
    assert [label for label, _ in rows] == ["train range", "link 2 mass 1.6",
                                            "both masses 1.5"]
    task = build(cfg, **rows[2][1]).task
    assert dict(task.params) == {"link_mass_1": 1.5, "link_mass_2": 1.5} and not task.ranges
    assert [label for label, _ in variants(presets.get("oja"))] == ["n_in=10", "n_in=25"]


def test_physics_both_fixed_and_ranged_is_an_error():
    cfg = config.override(presets.get("acrobot-hebbian"), ["task.params={link_mass_1 = 1.0}"])
    with pytest.raises(ConfigError, match="both params and ranges"):
        build(cfg)


@pytest.mark.parametrize("name", ["oja-es", "stdp-pca"])
def test_configs_written_before_the_tables_were_checked_still_load(name):
    """tests/data/legacy-*.toml were written by the previous version (every key of every
    outer loop and neuron model in [meta] and [network]): they build the same pieces."""
    from pathlib import Path

    old = build(config.load(Path(__file__).parent / "data" / f"legacy-{name}.toml"))
    new = build(presets.get(name))
    assert old.network == new.network and old.objective == new.objective
    assert type(old.outer) is type(new.outer) and old.outer.steps == new.outer.steps


def test_an_explicit_override_the_chosen_loop_would_ignore_is_an_error():
    """Switching loops keeps the preset's other-loop keys inert, but a key the user sets
    explicitly for a loop that does not take it is refused, naming the loop."""
    switched = config.override(presets.get("oja"), ["meta.outer=learned-es"])
    assert switched.meta["outer"] == "learned-es" and "lr" not in switched.meta
    with pytest.raises(ConfigError, match="meta.lr: not an option of the outer loop "
                                          "'learned-es'"):
        config.override(presets.get("oja-learned-es"), ["meta.lr=0.1"])
    with pytest.raises(ConfigError, match="network.tau_mem: not an option of the neuron"):
        config.override(presets.get("oja"), ["network.tau_mem=3"])
    assert config.override(presets.get("oja-es"), ["meta.lr=0.1"]).meta["lr"] == 0.1


@pytest.mark.parametrize("assignment, msg", [
    ("task.n_stepz=3", "task 'pca': unknown option"),
    ("rule.name=ojaa", "unknown rule 'ojaa'; valid rules"),
    ("task.name=mnist", "unknown task 'mnist'"),
    ("task.n_inputs=3", "unknown option(s) 'n_inputs'"),
    ("rule.eta='fast'", "must be a number"),
])
def test_task_and_rule_tables_are_checked_when_read(assignment, msg):
    """[task] and [rule] fail at load (config.override), before anything is built."""
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        config.override(presets.get("oja"), [assignment])


def test_network_and_meta_tables_are_parsed_once_into_sections():
    cfg = config.override(presets.get("oja"), ["meta.steps=7", "network.hidden=[3]"])
    assert cfg.meta_section.outer_options["steps"] == 7
    assert cfg.network_section.hidden == (3,)
    assert cfg.meta_section is cfg.meta_section  # parsed once, kept
    assert "steps" not in cfg.meta_section.objective


def test_task_env_is_enough_to_run_an_rl_preset_in_another_environment():
    """`--set task.env=X` on cartpole-hebbian runs gymnax's X (the general gym task), the
    run is named after X, and evaluation rows with CartPole's physics are left out, said."""
    base = presets.get("cartpole-hebbian")
    with pytest.warns(UserWarning, match="'pole length 1.0 \\(2x\\)' is left out"):
        cfg = config.override(base, ["task.env=MountainCar-v0"])
    assert cfg.name == "mountaincar-v0-hebbian"
    assert cfg.task["name"] == "gym" and cfg.task["env"] == "MountainCar-v0"
    assert [v["label"] for v in cfg.eval.variants] == ["train physics"]
    from metaplastic.experiments.build import build_task

    assert build_task(cfg).n_in == 2  # MountainCar observes position and velocity
    same = config.override(base, ["task.env=CartPole-v1"])
    assert same.name == "cartpole-hebbian" and same.task == base.task
