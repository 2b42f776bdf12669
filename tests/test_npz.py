"""Every .npz the library reads (parameters, checkpoints, recordings, data sets, the
selection network) goes through one reader whose messages say what is wrong with the
file — never NumPy's advice to load pickled data unsafely."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from metaplastic import _npz
from metaplastic.errors import ConfigError
from metaplastic.experiments.rundir import load_theta
from metaplastic.meta.selection import load_phi
from metaplastic.tasks import datasets, recorded


def _npz_file(path, **arrays):
    np.savez(path, **arrays)
    return path


def _broken(tmp_path):
    """name -> (a way to make a file at the path, what the message must say)"""
    def garbage(p):
        p.write_bytes(b"garbage, not an archive")

    def npy(p):
        with open(p, "wb") as f:
            np.save(f, np.arange(3.0))

    def folder(p):
        p.mkdir()

    def truncated(p):
        _npz_file(tmp_path / "whole.npz", a=np.arange(1000.0))
        p.write_bytes((tmp_path / "whole.npz").read_bytes()[:300])

    def objects(p):
        np.savez(p, a=np.array([{"x": 1}], dtype=object))

    def bad_crc(p):
        with zipfile.ZipFile(p, "w") as z:  # stored, so one flipped byte breaks the CRC
            z.writestr("a.npy", _npy_bytes(np.arange(50.0)))
        raw = bytearray(p.read_bytes())
        raw[200] ^= 0xFF
        p.write_bytes(bytes(raw))

    return {"garbage": (garbage, "not an .npz archive"),
            "npy": (npy, "a single .npy array"),
            "folder": (folder, "it is a folder"),
            "truncated": (truncated, "a damaged .npz archive"),
            "objects": (objects, "object arrays (pickled data), which are never loaded"),
            "bad_crc": (bad_crc, "a damaged .npz archive")}


def _npy_bytes(a) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["garbage", "npy", "folder", "truncated", "objects",
                                  "bad_crc"])
def test_each_way_a_file_is_wrong_is_said_truly(kind, tmp_path):
    make, said = _broken(tmp_path)[kind]
    path = tmp_path / "x.npz"
    make(path)
    with pytest.raises(ConfigError) as err:
        _npz.read(path, "parameters file")
    msg = str(err.value)
    assert msg.startswith(f"cannot read parameters file {str(path)!r}: ") and said in msg
    assert "unsafely" not in msg and "allow_pickle" not in msg


def test_a_good_file_reads_whole_and_a_missing_one_is_left_to_the_caller(tmp_path):
    path = _npz_file(tmp_path / "ok.npz", a=np.arange(3.0), b=np.eye(2, dtype=np.int32))
    got = _npz.read(path, "x")
    assert sorted(got) == ["a", "b"] and got["b"].dtype == np.int32
    np.testing.assert_array_equal(got["a"], np.arange(3.0))
    with pytest.raises(FileNotFoundError):
        _npz.read(tmp_path / "none.npz", "x")


def test_every_reader_of_the_library_says_a_garbage_file_the_same_way(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage, not an archive")
    readers = {"parameters file": load_theta, "selection network file": load_phi,
               "dataset": datasets.load_file, "recordings": lambda p: recorded.load(str(p))}
    for what, read in readers.items():
        with pytest.raises(ConfigError, match=f"cannot read {what} .*not an .npz archive"):
            read(bad)
