"""Where a run's numbers came from: package versions, the project's git commit, the
devices and the command line (recorded in ``summary.json``)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("metaplastic", "jax", "jaxlib", "evosax", "gymnax", "optax", "numpy")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(where: str | Path | None = None) -> str | None:
    """The commit checked out where the package's source lies (with ``+dirty`` when files
    differ from it); None outside a git checkout or without git."""
    where = Path(where or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "versions": {name: _version(name) for name in PACKAGES},
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
        "devices": {"platform": devices[0].platform, "kind": devices[0].device_kind,
                    "count": len(devices), "processes": jax.process_count()},
        "command": list(sys.argv),
    }
