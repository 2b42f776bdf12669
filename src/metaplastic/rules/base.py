"""The rule interface shared by every plasticity rule.

A rule is a frozen dataclass (static configuration) with

* ``init(key, shapes) -> theta``: its trainable parameters, a pytree of arrays; ``shapes``
  are the network's weight shapes ``[(n_out, n_in), ...]`` (rules with per-synapse or
  per-layer parameters need them; shared rules ignore them);
* ``layer_theta(theta, l)``: the part of θ that layer ``l`` uses (all of it when shared);
* ``init_state(shape) -> state``: per-layer state for stateful rules (``()`` otherwise);
* ``synapse(theta_l, s) -> dw``: the definition, for ONE synapse, from its scalar signals
  (and, for per-synapse parameters, its own slice of them);
* ``update(theta_l, signals, state) -> (dw, state)``: the whole layer at once;
* ``initial_weights(theta)``: meta-learned initial weights, or ``None`` (drawn afresh).

The default ``update`` maps ``synapse`` over the layer with
:func:`metaplastic.signals.per_synapse`; rules may override it with a fast path that must be
tested equal to the per-synapse definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from metaplastic import capabilities as cap
from metaplastic.signals import LocalSignals, per_synapse

Array = jax.Array


def signed_term(value: float, name: str) -> str:
    """One term of a printed formula: ``+0.95 pre*post``; the constant term (named
    ``1``) is the number alone: ``-0.0384``."""
    number = f"{'+' if value >= 0 else '-'}{abs(value):.3g}"
    return number if name == "1" else f"{number} {name}"


class Rule:
    """Base class: subclasses are frozen dataclasses defining ``init`` and ``synapse``."""

    #: the name of the rule family, as in the registry
    family: str = "rule"
    #: True when θ holds one entry per layer (``layer_theta`` indexes it)
    per_layer: bool = False

    def init(self, key: Array, shapes: Sequence[tuple[int, int]] | None = None) -> Any:
        raise NotImplementedError

    def layer_theta(self, theta: Any, layer: int) -> Any:
        return theta[layer] if self.per_layer else theta

    def initial_weights(self, theta: Any) -> tuple[Array, ...] | None:
        return None

    def init_state(self, shape: tuple[int, int]) -> Any:
        return ()

    def synapse(self, theta: Any, s: LocalSignals) -> Array:
        raise NotImplementedError

    def update(self, theta: Any, signals: LocalSignals, state: Any) -> tuple[Array, Any]:
        return self.update_per_synapse(theta, signals, state)

    def update_per_synapse(self, theta, signals: LocalSignals, state) -> tuple[Array, Any]:
        """The reference path: ``synapse`` vmapped over every (post, pre) pair."""
        return per_synapse(lambda s: self.synapse(theta, s), signals), state

    def formula(self, theta: Any) -> str:
        """The rule as a readable equation."""
        return f"{type(self).__name__}(theta)"

    def checked(self, theta: Any) -> Any:
        """``theta`` checked against this rule's θ where its shapes do not depend on the
        network (:func:`conform`); otherwise returned as it is (checked where the network
        is known: the objective, the runner)."""
        try:
            like = theta_like(self, None)
        except Exception:  # noqa: BLE001 - θ's shapes need the network's shapes
            return theta
        return conform(self, theta, like=like)


def theta_like(rule: Any, shapes: Sequence[tuple[int, int]] | None = None) -> Any:
    """The structure, shapes and dtypes of ``rule``'s θ (``jax.ShapeDtypeStruct`` leaves),
    from its ``init`` without computing anything."""
    return jax.eval_shape(lambda k: rule.init(k, shapes), jax.random.key(0))


def conform(rule: Any, theta: Any, shapes: Sequence[tuple[int, int]] | None = None,
            what: str = "θ", like: Any = None) -> Any:
    """``theta`` checked against what ``rule.init`` gives — the same entries (dict keys,
    tuple positions), shapes and real numbers — with integers cast to its dtypes (floats
    keep theirs); otherwise one ShapeError naming the first difference (θ of another
    rule, ``None``, a string, ...).
    Works on traced values too (it looks at shapes only). ``like``: a precomputed
    :func:`theta_like`."""
    from metaplastic.errors import ShapeError

    like = theta_like(rule, shapes) if like is None else like
    name = cap.family(rule)
    want = jax.tree.flatten_with_path(like)[0]
    try:
        got = {jax.tree_util.keystr(k): v for k, v in jax.tree.flatten_with_path(theta)[0]}
    except Exception:  # noqa: BLE001 - an unflattenable object is the same error
        got = {}
    wanted = [jax.tree_util.keystr(p) for p, _ in want]
    extra = sorted(set(got) - set(wanted))
    if theta is None or (extra == [""] and wanted != [""]):  # not a container at all
        raise ShapeError(f"{what} does not fit rule {name!r}: got {repr(theta)[:60]}; the "
                         f"rule's θ has {', '.join(wanted) or 'no entries'}")
    if extra:
        raise ShapeError(f"{what} does not fit rule {name!r}: it has {', '.join(extra)}; "
                         f"the rule's θ has {', '.join(wanted) or 'no entries'}")
    out = []
    for key, ref in zip(wanted, (r for _, r in want), strict=True):
        arr = got.get(key)
        shape = getattr(arr, "shape", None) if arr is not None else None
        if shape is None and isinstance(arr, int | float) and not isinstance(arr, bool):
            shape = ()
        if arr is None or tuple(shape or ()) != tuple(ref.shape) or shape is None:
            found = "nothing" if arr is None else (
                list(shape) if shape is not None else repr(arr)[:60])
            raise ShapeError(f"{what} does not fit rule {name!r}: {key or 'θ'} should be "
                             f"{list(ref.shape)} numbers, found {found}")
        dtype = getattr(arr, "dtype", None)
        if dtype is not None and not (jax.numpy.issubdtype(dtype, jax.numpy.number)
                                      or jax.numpy.issubdtype(dtype, jax.numpy.bool_)):
            raise ShapeError(f"{what}: {key or 'θ'} must hold numbers, got dtype {dtype}")
        floating = dtype is not None and jax.numpy.issubdtype(dtype, jax.numpy.floating)
        out.append(arr if floating else jax.numpy.asarray(arr, ref.dtype))  # keeps float64
    return jax.tree.unflatten(jax.tree.structure(like), out)
