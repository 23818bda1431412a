"""Throughput of hierarchical NUTS fits vectorised across prompts against one prompt at a time.

Each prompt has K = 16 states with m = 64 rewards (GPD-tailed, xi = -0.2), of
which the top 20% per state are exceedances. The same ``fit_bayes_gpd`` call
(hierarchical model, NUTS, 4 chains, ``NUM_WARMUP`` warmup steps and
``NUM_SAMPLES`` draws per chain, default tree depths) runs once on rewards
[32, 16, 64] and once per prompt on rewards [16, 64]. Both are compiled
before timing, and each timing keeps the fastest of ``REPEATS`` runs to
discount load from other processes. The loop times ``LOOP_PROMPTS`` prompts.
The figure is throughput (prompts per second) of the vectorised call divided
by the throughput of the loop, in wall-clock time; the CPU-time ratio is
printed beside it because on a shared machine it varies less.

Run: ``python benchmarks/bayes_fit.py``.
"""

import math
import time
import warnings

import jax

from slgjax.tail.bayes import fit_bayes_gpd
from slgjax.tail.gpd import gpd_sample

NUM_PROMPTS = 32
NUM_STATES = 16
NUM_REWARDS = 64
NUM_WARMUP = 300
NUM_SAMPLES = 300
NUM_CHAINS = 4
LOOP_PROMPTS = 4
REPEATS = 2


def _fit(key, rewards):
    with warnings.catch_warnings():
        # Convergence warnings are irrelevant to the timing.
        warnings.simplefilter("ignore", UserWarning)
        fit = fit_bayes_gpd(
            key,
            rewards,
            model="hierarchical",
            inference="nuts",
            num_warmup=NUM_WARMUP,
            num_samples=NUM_SAMPLES,
            num_chains=NUM_CHAINS,
        )
    return jax.block_until_ready(fit.xi_samples)


def _best_seconds(function, repeats):
    """Return the fastest (wall, CPU) seconds of ``repeats`` runs of ``function()``."""
    best_wall = best_cpu = math.inf
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def measure_bayes_batch_speedup(*, repeats: int = REPEATS, verbose: bool = False) -> float:
    """Return throughput(32 prompts vectorised) / throughput(one prompt at a time), wall clock."""
    rewards = gpd_sample(
        jax.random.key(1), xi=-0.2, sigma=1.0, shape=(NUM_PROMPTS, NUM_STATES, NUM_REWARDS)
    )
    key = jax.random.key(0)
    prompt_keys = jax.random.split(key, NUM_PROMPTS)

    _fit(key, rewards)
    _fit(prompt_keys[0], rewards[0])

    batched_wall, batched_cpu = _best_seconds(lambda: _fit(key, rewards), repeats)

    def loop():
        for b in range(LOOP_PROMPTS):
            _fit(prompt_keys[b], rewards[b])

    looped_wall, looped_cpu = _best_seconds(loop, repeats)
    speedup = (NUM_PROMPTS / batched_wall) / (LOOP_PROMPTS / looped_wall)
    if verbose:
        cpu_speedup = (NUM_PROMPTS / batched_cpu) / (LOOP_PROMPTS / looped_cpu)
        print(
            f"vectorised: {NUM_PROMPTS} prompts in {batched_wall:.2f} s "
            f"({batched_cpu:.2f} s CPU); one at a time: {looped_wall / LOOP_PROMPTS:.3f} s "
            f"per prompt ({looped_cpu / LOOP_PROMPTS:.3f} s CPU); "
            f"CPU-time ratio {cpu_speedup:.2f}"
        )
    return speedup


if __name__ == "__main__":
    print(f"bayes_batch_speedup={measure_bayes_batch_speedup(verbose=True):.2f}")
