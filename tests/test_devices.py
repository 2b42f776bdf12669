"""metaplastic.devices on one device: nothing is split, and bad multi-process options are
one message before JAX's runtime is touched (several devices: tests/meta/test_sharding.py,
several processes: tests/cli/test_processes.py)."""

import jax
import jax.numpy as jnp
import pytest

from metaplastic import devices
from metaplastic.errors import ConfigError


def test_one_device_splits_nothing():
    assert devices.count() == jax.device_count() == 1
    assert not devices.splits(8) and devices.per_device(8) == 8
    x = jnp.arange(6.0)
    out = devices.spread(lambda b, s: b * s, x, jnp.float32(2), size=6)
    assert jnp.array_equal(out, 2 * x)
    assert devices.gather(x, 6) is x and devices.replicated() is None and devices.is_main()


@pytest.mark.parametrize("kw, msg", [
    ({"num_processes": 2}, "needs all of --coordinator"),
    ({"coordinator": "h:1", "process_id": 0}, "needs all of --coordinator"),
    ({"coordinator": "localhost", "num_processes": 2, "process_id": 0}, "HOST:PORT"),
    ({"coordinator": "h:x", "num_processes": 2, "process_id": 0}, "HOST:PORT"),
    ({"coordinator": "h:1", "num_processes": 2, "process_id": 2}, "must be in [0, 1]"),
    ({"coordinator": "h:1", "num_processes": 0, "process_id": 0}, "--num-processes >= 1"),
])
def test_bad_process_options(kw, msg):
    with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        devices.initialize(**kw)
