"""Where a run's batches go: every device of every process, through ``jax.sharding``.

One rule for every outer loop: the *outermost* batch of a meta-step — the tasks of a
meta-gradient step, the members of an evolution strategy's population — is split evenly
across all devices (a one-axis :class:`jax.sharding.Mesh` named ``"batch"``) with
``shard_map``; whatever reduces over it afterwards (the mean gradient over tasks, the
fitness ranking of a population) is left to the compiler, which inserts the collectives.
Batches inside that one (each member's tasks) stay on their device. A batch whose size
the device count does not divide runs unsplit (on one device), with the same numbers.

Several processes (machines): :func:`initialize` starts JAX's own multi-process runtime
(``jax.distributed``; on CPUs with gloo collectives), after which ``jax.devices()`` lists
every process's devices, the same split spans machines, and :func:`replicated` makes the
results of the library's compiled programs whole on every process (``xla.jit``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from metaplastic.errors import ConfigError

AXIS = "batch"
_inside = threading.local()  # set while tracing the body of a split batch


def count() -> int:
    """Devices a batch is split over (every process's)."""
    return jax.device_count()


def mesh() -> jax.sharding.Mesh:
    """The one-axis mesh of all devices (of all processes)."""
    return jax.sharding.Mesh(np.array(jax.devices()), (AXIS,))


def splits(size: int, allowed: bool = True) -> bool:
    """Whether a batch of ``size`` is split across devices here (see the module)."""
    n = count()
    return (allowed and n > 1 and size % n == 0 and size >= n
            and not getattr(_inside, "depth", 0))


def per_device(size: int, allowed: bool = True) -> int:
    """How much of a batch of ``size`` one device holds."""
    return size // count() if splits(size, allowed) else size


@contextlib.contextmanager
def _nested():
    _inside.depth = getattr(_inside, "depth", 0) + 1
    try:
        yield
    finally:
        _inside.depth -= 1


def spread(fn: Callable, batched: Any, shared: Any = (), *, size: int,
           allowed: bool = True) -> Any:
    """``fn(batched, shared)`` where ``batched`` has a leading axis of ``size`` (and so
    has the result): split across the devices when :func:`splits` says so, each device
    running ``fn`` on its part; ``shared`` goes whole to every device."""
    if not splits(size, allowed):
        return fn(batched, shared)
    spec, whole = jax.sharding.PartitionSpec(AXIS), jax.sharding.PartitionSpec()

    def body(b, s):
        with _nested():
            return fn(b, s)

    return jax.shard_map(body, mesh=mesh(), in_specs=(spec, whole), out_specs=spec,
                         check_vma=False)(batched, shared)


def gather(tree: Any, size: int, allowed: bool = True) -> Any:
    """A batch :func:`spread` returned, made whole on every device before it is reduced:
    the reduction then adds in the same order as on one device (bitwise the same sums),
    at the cost of one all-gather of ``tree``. A no-op where the batch was not split."""
    if not splits(size, allowed):
        return tree
    whole = jax.sharding.NamedSharding(mesh(), jax.sharding.PartitionSpec())
    return jax.lax.with_sharding_constraint(tree, whole)


def replicated() -> jax.sharding.NamedSharding | None:
    """The sharding that makes a compiled program's results whole on every process
    (None with one process: JAX's default placement)."""
    if jax.process_count() == 1:
        return None
    return jax.sharding.NamedSharding(mesh(), jax.sharding.PartitionSpec())


#: seconds a process waits for its peers (to join, or to answer heartbeats) by default
PEER_TIMEOUT = 60


def check_process_options(coordinator: str | None, num_processes: int | None,
                          process_id: int | None, peer_timeout: int = PEER_TIMEOUT) -> None:
    """ConfigError for process options that cannot work, before anything starts."""
    if not isinstance(peer_timeout, int) or not 1 <= peer_timeout <= 86400:
        raise ConfigError(f"--peer-timeout must be whole seconds in 1..86400, got "
                          f"{peer_timeout!r}")
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ConfigError("a multi-process run needs all of --coordinator HOST:PORT, "
                          "--num-processes N and --process-id I (or none of them, to "
                          "detect a cluster such as SLURM)")
    if num_processes is not None:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ConfigError(f"--process-id must be in [0, {num_processes - 1}] and "
                              f"--num-processes >= 1; got {process_id} of {num_processes}")
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"--coordinator must be HOST:PORT with a port in 1..65535, "
                              f"got {coordinator!r}")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, peer_timeout: int = PEER_TIMEOUT) -> None:
    """Join a multi-process run (``jax.distributed.initialize``), before any other JAX
    work. With no arguments JAX detects the cluster (SLURM, Open MPI, ...). On CPUs the
    processes exchange arrays with gloo. ConfigError for inconsistent arguments or a
    coordinator that cannot be reached. ``peer_timeout``: seconds to wait for every
    process to join, to wait at the end for the others, and without a heartbeat from a
    peer before it counts as lost."""
    check_process_options(coordinator, num_processes, process_id, peer_timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=peer_timeout,
                                   heartbeat_timeout_seconds=peer_timeout,
                                   shutdown_timeout_seconds=peer_timeout)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"could not join the multi-process run: "
                          f"{str(e).splitlines()[0][:300]}") from None


_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "heartbeat timeout",
              "stopped sending heartbeats", "Broken pipe", "Connection refused")


def lost_peer(e: BaseException) -> str | None:
    """What an exception of a multi-process run says about a lost peer process (its first
    line), or None when it is something else: a collective whose peer died (gloo's
    connection closed), or the distributed service's heartbeat timeout."""
    if jax.process_count() == 1:
        return None
    text = str(e)
    if any(m in text for m in _LOST_PEER) and ("Gloo" in text or "oordination" in text
                                              or "heartbeat" in text):
        return text.strip().splitlines()[0][:300]
    return None


def is_main() -> bool:
    """True in the process that writes files and prints (process 0)."""
    return jax.process_index() == 0
