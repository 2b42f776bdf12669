"""The benchmark scripts' shared command-line pieces (benchmarks/_cli.py): bad input is a
message and exit status 2 before any work, a failed child a few lines, a results file is
never left torn or overwritten when it cannot be read back, and Ctrl-C says what was kept."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("bench_cli", BENCHMARKS / "_cli.py")
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="bench")


def test_preset_names_are_checked_against_the_known_ones(capsys):
    assert cli.check_presets(_parser(), ["a", "b"], known=["b", "a", "c"]) == ["a", "b"]
    with pytest.raises(SystemExit) as stop:
        cli.check_presets(_parser(), ["a", "nope", "nada"], known=["a", "c"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown presets 'nope', 'nada'; valid presets: a, c" in err


def test_a_results_file_to_extend_is_read_or_refused_and_left_alone(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert cli.results_to_extend(_parser(), path) == {}
    path.write_text(json.dumps({"presets": {"oja": {"cold": 1}}}))
    assert cli.results_to_extend(_parser(), path) == {"oja": {"cold": 1}}
    for text, said in (('{"presets": {', "cannot add to it (JSONDecodeError"),
                       ('{"other": 1}', "is not a results file of this script"),
                       ('[1, 2]', "is not a results file of this script")):
        path.write_text(text)
        with pytest.raises(SystemExit) as stop:
            cli.results_to_extend(_parser(), path)
        assert stop.value.code == 2 and said in capsys.readouterr().err
        assert path.read_text() == text


def test_results_are_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "deeper" / "r.json"
    cli.write_results(path, {"presets": {"oja": [1, 2]}})
    assert json.loads(path.read_text()) == {"presets": {"oja": [1, 2]}}
    before = path.read_text()
    with pytest.raises(TypeError):  # not serialisable: the old file stays whole
        cli.write_results(path, {"presets": {"oja": object()}})
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_a_failed_child_is_said_in_a_few_lines():
    ok = cli.run_child([sys.executable, "-c", "print('x'); print('{\"a\": 1}')"], "ok")
    assert cli.last_json(ok, "ok") == {"a": 1}
    with pytest.raises(SystemExit) as stop:
        cli.run_child([sys.executable, "-c", "import sys; sys.exit('the reason')"],
                      "compiling oja")
    assert str(stop.value) == "compiling oja failed (exit 1):\nthe reason"
    with pytest.raises(SystemExit, match="printed no result line:\nnot json"):
        cli.last_json(subprocess.CompletedProcess([], 0, "not json\n", ""), "the child")


def test_ctrl_c_says_what_was_kept_and_exits_130(capsys):
    def stopped():
        raise KeyboardInterrupt

    for kept, said in (("nothing was written", "nothing was written"),
                       (lambda: "oja measured", "oja measured")):
        with pytest.raises(SystemExit) as stop:
            cli.main_of(stopped, kept)
        assert stop.value.code == 130
        assert capsys.readouterr().err.strip() == f"interrupted: {said}"


#: every script that takes preset names, and how it is given one
SCRIPTS = [("bench_compile.py", "--presets"), ("compile_threads.py", "--presets"),
           ("bench_analysis_compile.py", "--presets"), ("bench_once_options.py", "--presets"),
           ("identifiability_coverage.py", "--presets"), ("bench_checkpoint.py", "--preset"),
           ("bench_scale.py", "--preset")]


@pytest.mark.tier2  # a process per script
@pytest.mark.parametrize("script,flag", SCRIPTS)
def test_a_misspelt_preset_stops_a_benchmark_before_any_work(tmp_path, script, flag):
    out = tmp_path / "out.json"
    extra = [] if flag == "--preset" and script == "bench_checkpoint.py" else ["--out", str(out)]
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), flag, "ojaa", *extra],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "unknown preset 'ojaa'; valid presets: " in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.tier2  # a process
def test_a_wrong_override_stops_bench_compile_before_any_run(tmp_path):
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_compile.py"), "--presets",
                           "oja", "--set", "meta.nope=1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "oja with --set meta.nope=1: meta: unknown option(s) 'nope'" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
