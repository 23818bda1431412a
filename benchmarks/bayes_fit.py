"""Throughput of hierarchical NUTS fits vectorised across prompts against one prompt at a time.

Each prompt has K = 16 states with m = 64 rewards (GPD-tailed, xi = -0.2), of
which the top 20% per state are exceedances. The same ``fit_bayes_gpd`` call
(hierarchical model, NUTS, 4 chains, ``NUM_WARMUP`` warmup and
``NUM_SAMPLES`` draws per chain) runs once on rewards [32, 16, 64] and once per
prompt on rewards [16, 64]. Both are compiled before timing, and each timing
keeps the fastest of a few repetitions to discount load from other processes.
The figure is throughput (prompts per second) of the vectorised call divided
by the throughput of the loop; the loop times ``LOOP_PROMPTS`` prompts.

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
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def measure_bayes_batch_speedup(*, repeats: int = REPEATS, verbose: bool = False) -> float:
    """Return throughput(32 prompts vectorised) / throughput(one prompt at a time)."""
    rewards = gpd_sample(
        jax.random.key(1), xi=-0.2, sigma=1.0, shape=(NUM_PROMPTS, NUM_STATES, NUM_REWARDS)
    )
    key = jax.random.key(0)
    prompt_keys = jax.random.split(key, NUM_PROMPTS)

    _fit(key, rewards)
    _fit(prompt_keys[0], rewards[0])

    batched = _best_seconds(lambda: _fit(key, rewards), repeats)

    def loop():
        for b in range(LOOP_PROMPTS):
            _fit(prompt_keys[b], rewards[b])

    looped = _best_seconds(loop, repeats)
    speedup = (NUM_PROMPTS / batched) / (LOOP_PROMPTS / looped)
    if verbose:
        print(
            f"vectorised: {NUM_PROMPTS} prompts in {batched:.2f} s; "
            f"one at a time: {looped / LOOP_PROMPTS:.2f} s per prompt"
        )
    return speedup


if __name__ == "__main__":
    print(f"bayes_batch_speedup={measure_bayes_batch_speedup(verbose=True):.2f}")
