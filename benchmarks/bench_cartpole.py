"""Environment steps per second: a population of Hebbian CartPole policies.

Population 256 (one OpenAI-ES generation's evaluation), network 4-32-32-2 tanh with a
per-synapse ABCD rule, 500-step episodes. Termination is switched off through the physics
parameters (huge angle/position thresholds), so every one of the 256 x 500 steps is a real
environment step with a plastic update. Compile time is reported apart; the run time is
the median of repeated calls of the compiled population evaluation.

Usage: python benchmarks/bench_cartpole.py [--population 256] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from _cli import write_results

import metaplastic as mp


def plain_jax(population: int, steps: int):
    """The same workload written directly in JAX, without the library (the baseline)."""
    import gymnax

    env, params = gymnax.make("CartPole-v1")
    params = params.replace(theta_threshold_radians=1e6, x_threshold=1e6,
                            max_steps_in_episode=steps)
    shapes = [(32, 4), (32, 32), (2, 32)]

    def episode(coefs, key):
        # eta folded into the coefficients once per episode (as the library's fast path)
        coefs = [{k: c["eta"] * c[k] for k in "ABCD"} for c in coefs]
        k_w, k_env = jax.random.split(key)
        ws = [jax.random.uniform(k, s, minval=-0.1, maxval=0.1)
              for k, s in zip(jax.random.split(k_w, 3), shapes, strict=True)]
        obs, state = env.reset_env(k_env, params)

        def step(carry, _):
            ws, obs, state, ret, done, k = carry
            h, new = obs, []
            for w, c in zip(ws, coefs, strict=True):
                pre, h = h, jnp.tanh(w @ h)
                dw = ((c["A"] * h[:, None] + c["B"]) * pre[None]
                      + (c["C"] * h[:, None] + c["D"]))
                new.append(jnp.where(done, w, w + dw))
            k, ks = jax.random.split(k)
            obs, state2, r, d, _ = env.step_env(ks, state, jnp.argmax(h), params)
            state = jax.tree.map(lambda a, b: jnp.where(done, b, a), state2, state)
            return (new, obs, state, ret + jnp.where(done, 0.0, r), done | d, k), None

        init = (ws, obs, state, 0.0, jnp.array(False), k_env)
        return jax.lax.scan(step, init, None, length=steps)[0][3]

    def evaluate(pop, key):
        return jax.vmap(episode, in_axes=(0, None))(pop, key)

    return evaluate


def _median_time(compiled, args_fn, repeats):
    runs = []
    for i in range(repeats):
        args = args_fn(i)
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=256)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=0,
                    help="evaluate the population in sequential vmapped batches of this size")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cartpole.json"))
    args = ap.parse_args()

    task = mp.tasks.make("cartpole", n_steps=args.steps,
                         params={"theta_threshold_radians": 1e6, "x_threshold": 1e6})
    net = mp.Network(sizes=(4, 32, 32, 2), activation="tanh", init_dist="uniform",
                     init_scale=0.1)
    rule = mp.rules.make("abcd", init_noise=0.01)
    obj = mp.Objective(task, net, rule, tasks_per_step=1)
    keys = jax.random.split(jax.random.key(0), args.population)
    pop = jax.vmap(lambda k: rule.init(k, net.shapes))(keys)

    def evaluate(pop, key):
        if args.batch:  # noqa: SIM108
            return jax.lax.map(lambda th: obj(th, key), pop, batch_size=args.batch)
        return jax.vmap(lambda th: obj(th, key))(pop)

    t0 = time.perf_counter()
    compiled = jax.jit(evaluate).lower(pop, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    loss, aux = jax.block_until_ready(compiled(pop, jax.random.key(1)))
    steps_done = float(jnp.sum(aux["length"]))
    base_pop = [{k: v for k, v in layer.items()} for layer in pop]
    plain = jax.jit(plain_jax(args.population, args.steps)).lower(
        base_pop, jax.random.key(1)).compile()
    jax.block_until_ready(plain(base_pop, jax.random.key(1)))
    # alternate library and baseline calls so that drift hits both alike
    runs, plain_runs = [], []
    for i in range(args.repeats):
        for fn, arg, store in ((compiled, pop, runs), (plain, base_pop, plain_runs)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(arg, jax.random.key(2 + i)))
            store.append(time.perf_counter() - t0)
    med = statistics.median(runs)
    plain_med = statistics.median(plain_runs)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "backend": jax.default_backend(),
                    "devices": len(jax.devices())},
        "population": args.population, "episode_steps": args.steps,
        "env_steps_per_call": steps_done, "compile_s": compile_s,
        "median_s": med, "runs_s": runs, "env_steps_per_s": steps_done / med,
        "plain_jax_median_s": plain_med, "plain_jax_runs_s": plain_runs,
        "plain_jax_env_steps_per_s": steps_done / plain_med,
        "library_over_plain_jax": med / plain_med,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_results(Path(args.out), result)
    print(f"population {args.population} x {args.steps} steps = {steps_done:.0f} env steps: "
          f"median {1e3 * med:.1f} ms -> {steps_done / med / 1e6:.2f} M env-steps/s "
          f"(compile {compile_s:.1f} s)")
    print(f"plain-JAX baseline: median {1e3 * plain_med:.1f} ms -> "
          f"{steps_done / plain_med / 1e6:.2f} M env-steps/s; library / baseline = "
          f"{med / plain_med:.2f}")


if __name__ == "__main__":
    main()
