"""Errors that metaplastic raises on bad input or failed learning.

Every error a user can cause derives from :class:`MetaplasticError`; the CLI prints its
message and exits with a non-zero status instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class MetaplasticError(Exception):
    """Base class of the library's user-facing errors."""


class ConfigError(MetaplasticError, ValueError):
    """A configuration value, key or name is invalid."""


class ShapeError(MetaplasticError, ValueError):
    """Arrays given to the library do not have the shapes it needs."""


class NonFiniteError(MetaplasticError, FloatingPointError):
    """NaN or inf appeared during inner learning and the run cannot continue."""


class GradientRequested(MetaplasticError, RuntimeError):
    """Something differentiated an objective that was wrapped to refuse it
    (:class:`~metaplastic.meta.segments.RefusesGradients`)."""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> ConfigError:
    """A ConfigError for a name that is not in a registry, listing the valid names."""
    names = ", ".join(sorted(valid))
    return ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {names}")


def check_kwargs(kind: str, name: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """Raise a ConfigError naming any keyword in `given` that is not in `valid`."""
    valid = set(valid)
    bad = sorted(set(given) - valid)
    if bad:
        raise ConfigError(
            f"{kind} {name!r}: unknown option(s) {', '.join(map(repr, bad))}; "
            f"valid options: {', '.join(sorted(valid)) or '(none)'}"
        )


class PeerLostError(MetaplasticError, RuntimeError):
    """A process of a multi-process run was lost (killed, crashed, unreachable) while
    this one trained: what was saved is said; ``metaplastic resume`` continues it."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM: ``timeout``, SLURM, Kubernetes); handled
    like Ctrl-C: partial results are saved."""
