"""Reading ``.npz`` files of plain arrays — the library's one format for parameters,
checkpoints, recordings, data sets and the selection network — with a true message for
each way a file can be wrong. Pickled data is never loaded (``allow_pickle=False``), so
NumPy's own message for a file that is not an archive ("contains pickled data … load it
unsafely") is not passed on: it would advise what the library refuses, about a file that
is usually just damaged."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from metaplastic.errors import ConfigError


def read(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file at ``path``, read whole. ``FileNotFoundError``
    passes through (callers say a missing file their own way); any other problem is a
    :class:`ConfigError` ``cannot read {what} '{path}': …`` saying which: a folder, not an
    ``.npz`` archive, a single ``.npy`` array, a damaged archive, or object arrays."""
    path = Path(path)

    def fail(reason: str) -> ConfigError:
        return ConfigError(f"cannot read {what} {str(path)!r}: {reason}")

    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise fail("it is a folder, not an .npz file") from None
    except ValueError:  # neither a zip archive nor a .npy array: NumPy tried pickle
        raise fail("not an .npz archive (a damaged file, or another kind of file)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise fail(f"a damaged .npz archive ({type(e).__name__}: {e})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise fail("a single .npy array, not an .npz archive of named arrays")
    try:
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise fail("it holds object arrays (pickled data), which are never loaded; "
                       "save plain numeric arrays") from None
        raise fail(f"a damaged .npz archive ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise fail(f"a damaged .npz archive ({type(e).__name__}: {e})") from None
