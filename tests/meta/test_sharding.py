"""With several devices the ES population is split across them (shard_map) and every
member's fitness is what one device computes. Two host CPU devices are forced in a fresh
process (XLA_FLAGS must be set before JAX starts)."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, jax, numpy as np
import metaplastic as mp
from metaplastic.meta import EvolutionStrategy
task = mp.tasks.make("cartpole", n_steps=60)
net = mp.Network(sizes=(4, 8, 2), activation="tanh", init_dist="uniform", init_scale=0.1)
rule = mp.rules.make("abcd", init_noise=0.1)
obj = mp.Objective(task, net, rule, tasks_per_step=2)
pop = jax.vmap(lambda k: rule.init(k, net.shapes))(jax.random.split(jax.random.key(0), 8))
key = jax.random.key(1)
out = {"devices": jax.device_count()}
for name, kw in [("sharded", {}), ("sharded_batches", {"population_batch": 2}),
                 ("one_device", {"shard": False})]:
    es = EvolutionStrategy(population=8, **kw)
    out[name] = np.asarray(jax.jit(lambda p, es=es: es.evaluate(obj, p, key))(pop)).tolist()
print(json.dumps(out))
"""


@pytest.mark.tier2
def test_population_split_across_devices_gives_the_same_fitness():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["sharded"] == out["one_device"] == out["sharded_batches"]
    assert len(set(out["one_device"])) > 1  # members differ: the comparison means something
