import gzip

import numpy as np
import pytest

from metaplastic import ConfigError
from metaplastic.tasks import datasets


def _write_idx(path, arr, code=0x08):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in arr.shape)
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.itemsize > 1 else arr
    data = header + big.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("name, n, dim", [("digits", 1797, 64), ("mnist1d", 5000, 40),
                                          ("mnist5k", 5000, 784), ("shapes", 5000, 256)])
def test_builtin_datasets_load_offline(name, n, dim):
    ds = datasets.load(name)
    assert ds.x.shape == (n, dim) and ds.x.dtype == np.float32 and ds.y.shape == (n,)
    assert list(ds.classes) == list(range(10))
    assert np.isfinite(ds.x).all()


def test_idx_directory_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 12, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    ds = datasets.load("file", str(tmp_path))
    np.testing.assert_array_equal(ds.x, images.reshape(12, 20).astype(np.float32))
    np.testing.assert_array_equal(ds.y, labels)
    # an images file finds its labels beside it
    ds2 = datasets.load("file", str(tmp_path / "train-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(ds2.y, labels)


def test_npz_file(tmp_path):
    x, y = np.ones((6, 2, 3)), np.arange(6)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = datasets.load("file", str(tmp_path / "d.npz"))
    assert ds.x.shape == (6, 6) and list(ds.y) == list(range(6))


def test_read_idx_big_endian_floats(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    _write_idx(tmp_path / "f-images", arr, code=0x0D)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "f-images"), arr)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        datasets.load("file", str(tmp_path / "nope.npz"))
    with pytest.raises(ConfigError, match="needs a path"):
        datasets.load("file")
    np.savez(tmp_path / "bad.npz", inputs=np.ones(3))
    with pytest.raises(ConfigError, match="needs arrays 'x' and 'y'"):
        datasets.load("file", str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "len.npz", x=np.ones((3, 2)), y=np.ones(2))
    with pytest.raises(ConfigError, match="3 inputs but 2 labels"):
        datasets.load("file", str(tmp_path / "len.npz"))
    (tmp_path / "junk-images").write_bytes(b"\x01\x02\x03\x04junk")
    with pytest.raises(ConfigError, match="bad magic number"):
        datasets.read_idx(tmp_path / "junk-images")
    _write_idx(tmp_path / "short-images", np.zeros((4, 2), np.uint8))
    (tmp_path / "short-images").write_bytes((tmp_path / "short-images").read_bytes()[:-3])
    with pytest.raises(ConfigError, match="holds 5 bytes"):
        datasets.read_idx(tmp_path / "short-images")
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match="exactly one"):
        datasets.load("file", str(tmp_path / "d"))
    _write_idx(tmp_path / "lonely-images-idx3", np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match="no labels file"):
        datasets.load("file", str(tmp_path / "lonely-images-idx3"))


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="valid datasets: digits, file, mnist1d, mnist5k, shapes"):
        datasets.load("cifar")


def test_shapes_are_procedural_balanced_and_learnable():
    x, y = datasets.shapes(per_class=40, seed=3)
    again, _ = datasets.shapes(per_class=40, seed=3)
    np.testing.assert_array_equal(x, again)  # the same numbers every time
    assert np.bincount(y).tolist() == [40] * 10 and 0 <= x.min() and x.max() <= 1
    # the classes differ: a nearest-class-mean classifier is far above chance (0.1)
    means = np.stack([x[y == c][:20].mean(0) for c in range(10)])
    test = np.concatenate([np.flatnonzero(y == c)[20:] for c in range(10)])
    pred = np.argmin(((x[test, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(pred == y[test]) > 0.4
