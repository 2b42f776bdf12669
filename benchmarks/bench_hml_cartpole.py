"""One OpenAI-ES generation of Najarro & Risi's Hebbian CartPole (the ``hml-cartpole``
preset), against a plain single-file JAX version of the same computation.

Workload (the published setting): population 200 (100 antithetic pairs), network 4-128-64-2
tanh without biases, per-synapse ABCD rule with a per-synapse learning rate, weights
U[-0.1, 0.1] drawn afresh each episode, each layer divided by its max |w| after every
update, 500-step
episodes. A generation = ask + evaluate every member + tell + evaluate the new mean (the
library logs it; the baseline does the same). Termination is switched off through the
physics so that every episode runs the full 500 steps (the published timing condition);
``--with-termination`` also times real CartPole episodes, where early exit saves work.

Reports compile time apart, the median of ``--repeats`` generations (library and baseline
calls alternate), env-steps/s, XLA's temp memory, and the process's peak RSS, as JSON.

Usage: python benchmarks/bench_hml_cartpole.py [--repeats 7] [--batches 0 50] [--profile]
                                              [--bfloat16]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _cli import write_results
from kernel_profile import print_kernels, top_kernels

from metaplastic.experiments import presets
from metaplastic.experiments.build import build
from metaplastic.meta import driver

POP, STEPS, SIGMA, LR = 200, 500, 0.1, 0.2
SHAPES = [(128, 4), (64, 128), (2, 64)]
NO_TERMINATION = {"theta_threshold_radians": 1e6, "x_threshold": 1e6}


def plain_generation(terminate: bool, batch: int = 0):
    """OpenAI-ES (antithetic, centred ranks, Adam) on the Hebbian episode, in plain JAX;
    ``batch > 0`` evaluates the population in sequential vmapped batches of that many
    (``lax.map``), as the library's ``population_batch`` does."""
    import gymnax

    env, params = gymnax.make("CartPole-v1")
    if not terminate:
        params = params.replace(theta_threshold_radians=1e6, x_threshold=1e6)
    sizes = [a * b for a, b in SHAPES]
    n = 5 * sum(sizes)
    opt = optax.adam(LR)

    def unflatten(flat):
        layers, i = [], 0
        for shape, size in zip(SHAPES, sizes, strict=True):
            c = flat[i:i + 5 * size].reshape(5, *shape)
            i += 5 * size
            eta = c[4]
            layers.append((eta * c[0], eta * c[1], eta * c[2], eta * c[3]))
        return layers

    def episode(flat, key):
        coefs = unflatten(flat)
        k_w, k_env = jax.random.split(key)
        ws = [jax.random.uniform(k, s, minval=-0.1, maxval=0.1)
              for k, s in zip(jax.random.split(k_w, 3), SHAPES, strict=True)]
        obs, state = env.reset_env(k_env, params)

        def step(carry, _):
            ws, obs, state, ret, done, k = carry
            h, new = obs, []
            for w, (a, b, c, d) in zip(ws, coefs, strict=True):
                pre, h = h, jnp.tanh(w @ h)
                w2 = w + ((a * h[:, None] + b) * pre[None] + (c * h[:, None] + d))
                w2 = w2 / jnp.max(jnp.abs(w2))
                new.append(jnp.where(done, w, w2))
            k, ks = jax.random.split(k)
            obs, state2, r, dn, _ = env.step_env(ks, state, jnp.argmax(h), params)
            state = jax.tree.map(lambda a, b: jnp.where(done, b, a), state2, state)
            return (new, obs, state, ret + jnp.where(done, 0.0, r), done | dn, k), None

        init = (ws, obs, state, 0.0, jnp.array(False), k_env)
        return jax.lax.scan(step, init, None, length=STEPS)[0][3]

    def init():
        mean = jnp.zeros(n)
        return mean, opt.init(mean)

    def generation(carry, key):
        mean, opt_state = carry
        k_eps, k_eval = jax.random.split(key)
        eps = jax.random.normal(k_eps, (POP // 2, n))
        eps = jnp.concatenate([eps, -eps])
        members = mean + SIGMA * eps
        if batch:
            returns = jax.lax.map(lambda m: jax.vmap(episode, in_axes=(0, None))(m, k_eval),
                                  members.reshape(POP // batch, batch, n)).reshape(POP)
        else:
            returns = jax.vmap(episode, in_axes=(0, None))(members, k_eval)
        ranks = jnp.argsort(jnp.argsort(-returns))  # minimise minus the return
        shaped = ranks / (POP - 1) - 0.5
        grad = shaped @ eps / (POP * SIGMA)
        updates, opt_state = opt.update(grad, opt_state, mean)
        mean = optax.apply_updates(mean, updates)
        return (mean, opt_state), episode(mean, k_eval)

    return init, generation


def _temp_mb(compiled) -> float:
    try:
        return compiled.memory_analysis().temp_size_in_bytes / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports it
        return float("nan")


#: bfloat16 storage variants timed with --bfloat16: (network.dtype, rule.dtype)
BF16 = {"bfloat16": ("bfloat16", "bfloat16"), "bfloat16_weights": ("bfloat16", "float32"),
        "bfloat16_coefficients": ("float32", "bfloat16")}


def library_generation(batch: int, terminate: bool, early_exit: int,
                       dtypes: tuple[str, str] = ("float32", "float32")):
    cfg = presets.get("hml-cartpole")
    task = dict(cfg.task) if terminate else {**cfg.task, "params": NO_TERMINATION}
    cfg = dataclasses.replace(cfg, task=task, meta={
        **cfg.meta, "chunk": 1, "population_batch": batch, "early_exit": early_exit},
        network={**cfg.network, "dtype": dtypes[0]}, rule={**cfg.rule, "dtype": dtypes[1]})
    p = build(cfg)
    theta0 = p.rule.init(jax.random.key(0), p.network.shapes)

    def init(key):
        return driver.init(p.outer, p.objective, theta0, key)

    return init, driver.chunk_fn(p.outer, p.objective)


def _time(fn, arg_of, repeats):
    out = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*arg_of(i)))
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batches", type=int, nargs="+", default=[0, 50],
                    help="population_batch values to time (0: the whole population at once)")
    ap.add_argument("--profile", action="store_true",
                    help="also list the most expensive XLA kernels of the fastest batch size")
    ap.add_argument("--bfloat16", action="store_true",
                    help="also time bfloat16 storage of the weights, of the per-synapse "
                         "coefficients and of both (network.dtype, rule.dtype), alternating "
                         "with float32")
    ap.add_argument("--with-termination", action="store_true",
                    help="also time real CartPole episodes (early exit on / off)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                         "hml_cartpole.json"))
    args = ap.parse_args()
    total = jnp.asarray(10**6, jnp.int32)

    rows, plain_compile, compiled, states, plain_compiled = {}, {}, {}, {}, {}
    for batch in args.batches:
        # the plain-JAX baseline of the same computation: same population batches
        p_init, p_gen = plain_generation(terminate=False, batch=batch)
        t0 = time.perf_counter()
        carry = p_init()
        p_comp = jax.jit(p_gen).lower(carry, jax.random.key(1)).compile()
        plain_compile[str(batch)] = time.perf_counter() - t0
        jax.block_until_ready(p_comp(carry, jax.random.key(1)))
        init, run_chunk = library_generation(batch, terminate=False, early_exit=0)
        state = init(jax.random.key(0))
        t0 = time.perf_counter()
        comp = run_chunk.lower(state, jax.random.key(1), total).compile()
        compile_s = time.perf_counter() - t0
        jax.block_until_ready(comp(state, jax.random.key(1), total))
        compiled[batch], states[batch], plain_compiled[batch] = comp, state, p_comp
        variants = {}  # bfloat16 storage of weights and/or per-synapse coefficients
        for name, dtypes in (BF16.items() if args.bfloat16 else ()):
            init16, chunk16 = library_generation(batch, terminate=False, early_exit=0,
                                                 dtypes=dtypes)
            state16 = init16(jax.random.key(0))
            comp16 = chunk16.lower(state16, jax.random.key(1), total).compile()
            jax.block_until_ready(comp16(state16, jax.random.key(1), total))
            variants[name] = (comp16, state16, [])
        lib, plain = [], []
        for i in range(args.repeats):  # alternate, so that drift hits all alike
            lib += _time(comp, lambda j, i=i, s=state: (s, jax.random.key(10 + i), total), 1)
            plain += _time(p_comp, lambda j, i=i, c=carry: (c, jax.random.key(10 + i)), 1)
            for comp16, state16, runs in variants.values():
                runs += _time(comp16, lambda j, i=i, s=state16: (s, jax.random.key(10 + i),
                                                                  total), 1)
        med, pmed = statistics.median(lib), statistics.median(plain)
        rows[str(batch)] = {
            "population_batch": batch, "compile_s": compile_s, "median_s": med,
            "runs_s": lib, "env_steps_per_s": POP * STEPS / med, "temp_mb": _temp_mb(comp),
            "plain_median_s": pmed, "plain_runs_s": plain,
            "library_over_plain": med / pmed,
        }
        for name, (_, _, runs) in variants.items():
            rows[str(batch)] |= {f"{name}_median_s": statistics.median(runs),
                                 f"{name}_runs_s": runs,
                                 f"{name}_over_float32": statistics.median(runs) / med}
            print(f"population_batch {batch:>3}: {name} storage "
                  f"{1e3 * statistics.median(runs):7.1f} ms "
                  f"({statistics.median(runs) / med:.2f}x float32)", flush=True)
        print(f"population_batch {batch:>3}: generation median {1e3 * med:7.1f} ms "
              f"({POP * STEPS / med / 1e6:.2f} M env-steps/s, compile {compile_s:.1f} s, "
              f"temp {_temp_mb(comp):.0f} MB); plain JAX {1e3 * pmed:.1f} ms; "
              f"library/plain {med / pmed:.2f}", flush=True)

    kernels = {}
    if args.profile:
        batch = min(args.batches, key=lambda b: rows[str(b)]["median_s"])
        kernels = {"population_batch": batch,
                   "library": top_kernels(compiled[batch], (states[batch], jax.random.key(99),
                                                             total), calls=1),
                   "plain": top_kernels(plain_compiled[batch], (carry, jax.random.key(99)),
                                        calls=1)}
        print_kernels(kernels["library"], f"library, population_batch {batch}")
        print_kernels(kernels["plain"], f"plain JAX, batches of {batch}")

    term = {}
    if args.with_termination:
        batch = min(args.batches, key=lambda b: rows[str(b)]["median_s"])
        for early in (0, 50):
            init, run_chunk = library_generation(batch, terminate=True, early_exit=early)
            state = init(jax.random.key(0))
            comp = run_chunk.lower(state, jax.random.key(1), total).compile()
            jax.block_until_ready(comp(state, jax.random.key(1), total))
            runs = _time(comp, lambda i, s=state: (s, jax.random.key(10 + i), total),
                         args.repeats)
            term[f"early_exit_{early}"] = {"median_s": statistics.median(runs), "runs_s": runs}
            print(f"real episodes (untrained rule), early_exit {early}: median "
                  f"{1e3 * statistics.median(runs):.1f} ms", flush=True)

    best = min(rows.values(), key=lambda r: r["median_s"])
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "backend": jax.default_backend(),
                    "devices": len(jax.devices())},
        "workload": {"population": POP, "episode_steps": STEPS, "network": [4, 128, 64, 2],
                     "synapses": sum(a * b for a, b in SHAPES)},
        "plain_jax_compile_s": plain_compile,
        "by_population_batch": rows, "real_episodes": term, "profile": kernels,
        "best": {k: best[k] for k in ("population_batch", "median_s", "env_steps_per_s",
                                      "library_over_plain", "plain_median_s")},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "target_s": 0.19,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_results(Path(args.out), result)
    print(f"best: {1e3 * best['median_s']:.1f} ms per generation (target 190 ms); "
          f"library/plain {best['library_over_plain']:.2f}; peak RSS "
          f"{result['peak_rss_mb']:.0f} MB -> {args.out}")


if __name__ == "__main__":
    main()
