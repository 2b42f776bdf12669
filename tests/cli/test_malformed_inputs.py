"""Malformed input, by category: each is one clear message naming the problem, exit
status 2, no traceback, and nothing created under --out. (More in test_cli_args.py and
test_cli.py: unknown names, damaged TOML, damaged run directories.)"""

import gzip
import struct

import numpy as np
import pytest

from metaplastic.cli import main


def _npz(d, **arrays):
    np.savez(d / "data.npz", **arrays)
    return d / "data.npz"


def _cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])
    return path


def _idx(d, images, labels):
    for name, arr in (("train-images-idx3-ubyte.gz", images),
                      ("train-labels-idx1-ubyte.gz", labels)):
        head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(
            struct.pack(">I", n) for n in arr.shape)
        with gzip.open(d / name, "wb") as f:
            f.write(head + arr.astype(np.uint8).tobytes())
    return d


X, Y = np.random.default_rng(0).random((60, 8)), np.arange(60) % 6

DATASETS = {  # name: (make the file in directory d, what the message says)
    "npz cut short": (lambda d: _cut(_npz(d, x=X, y=Y), lambda n: n // 2), "damaged"),
    "npz empty": (lambda d: _cut(_npz(d, x=X, y=Y), lambda n: 0), "damaged"),
    "npz 0-d arrays": (lambda d: _npz(d, x=np.float32(1), y=np.int64(3)), "one row per example"),
    "npz string labels": (lambda d: _npz(d, x=X, y=np.array(["a"] * 60)), "must be integers"),
    "npz fractional labels": (lambda d: _npz(d, x=X, y=Y + 0.5), "must be integers"),
    "npz string inputs": (lambda d: _npz(d, x=np.array([["a"] * 8] * 60), y=Y),
                          "must be real numbers"),
    "npz complex inputs": (lambda d: _npz(d, x=X.astype(complex), y=Y), "must be real numbers"),
    "npz 2-d labels": (lambda d: _npz(d, x=X, y=Y.reshape(6, 10)), "1-d array"),
    "npz without y": (lambda d: _npz(d, x=X), "needs arrays 'x' and 'y'"),
    "npz NaN inputs": (lambda d: _npz(d, x=np.full((60, 8), np.nan), y=Y), "NaN or inf"),
    "npz object arrays": (lambda d: _npz(d, x=np.array([None] * 60), y=Y),
                          "object arrays (pickled data), which are never loaded"),
    "IDX gzip cut short": (lambda d: _cut(_idx(d, (X * 255).reshape(60, 2, 4), Y)
                                          / "train-images-idx3-ubyte.gz", lambda n: n // 2),
                           "cannot read IDX file"),
    "IDX labels cut short": (lambda d: _cut(_idx(d, (X * 255).reshape(60, 2, 4), Y)
                                            / "train-labels-idx1-ubyte.gz", lambda n: 20).parent,
                             "cannot read IDX file"),
    "IDX count mismatch": (lambda d: _idx(d, (X * 255).reshape(60, 2, 4), Y[:50]) /
                           "train-images-idx3-ubyte.gz", "60 inputs but 50 labels"),
}


@pytest.mark.parametrize("case", DATASETS)
def test_damaged_dataset_files(case, tmp_path, capsys):
    make, msg = DATASETS[case]
    (tmp_path / "data").mkdir()
    path = make(tmp_path / "data")
    args = ["run", "fa-digits", "--set", 'task.dataset="file"', "--set",
            f'task.path="{path}"', "--out", str(tmp_path / "runs")]
    assert main(args) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert msg in out and "Traceback" not in out, out
    assert not (tmp_path / "runs").exists()


CONFIGS = {  # --set assignment: what the message says
    "meta.clip=-1": "clip (the gradient-norm limit) must be >= 0",
    'name="../../x"': "must be a plain file name",
    'name="/tmp/x"': "must be a plain file name",
    'name=""': "must be a plain file name",
    "eval.tasks=100000000000": "out of range",
    "eval.tasks=20000000": "eval.tasks must be an integer in [0, 10,000,000]",
    "eval.baselines=[{rule={eta=1}}]": "the rule needs a 'name'",
    "eval.baselines=[{rule='hebb', network=3}]": "'network' must be a table",
    "eval.baselines=[{rule='hebb', tune=[1, 2]}]": "'tune' must be a table",
    "eval.baselines=[{rule='hebb', tune={eta=0.1}}]": "non-empty list of values",
    "eval.baselines=[{rule='hebb', tune={eta=[]}}]": "non-empty list of values",
    "eval.baselines=[{rule='hebb', label=[1]}]": "'label' must be a string",
    "eval.baselines=[{rule='hebb', tune={eta=['a']}}]": "eta must be a number",
    "eval.baselines=3": "eval.baselines must be a list",
    # absurd sizes: refused from shapes alone, before anything is compiled
    "task.n_in=1000000": "this run needs at least",
    "meta.tasks_per_step=100000000": "this run needs at least",
}


@pytest.mark.parametrize("assignment", CONFIGS)
def test_bad_config_values(assignment, tmp_path, capsys):
    args = ["run", "oja", "--set", assignment, "--out", str(tmp_path / "runs")]
    assert main(args) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert CONFIGS[assignment] in out and "Traceback" not in out, out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("preset, assignment, msg", [
    ("oja-es", "meta.population=7", "antithetic sampling needs an even population"),
    ("fa-digits", "network.hidden=[1000000]", "this run needs at least"),
])
def test_bad_values_for_other_presets(preset, assignment, msg, tmp_path, capsys):
    args = ["run", preset, "--set", assignment, "--set", 'meta.strategy="open_es"',
            "--out", str(tmp_path / "runs")] if preset == "oja-es" else \
        ["run", preset, "--set", assignment, "--out", str(tmp_path / "runs")]
    assert main(args) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert msg in out and "Traceback" not in out, out
    assert not (tmp_path / "runs").exists()

