"""Speed of the vectorized search simulator against two NumPy versions of it.

Workload: ``R = 100,000`` replications of best-of-N (BoN) and two-stage SLG in
the paper's form at ``N = 1024``, ``K = 8``, ``m = 64`` on the two-level
Gaussian model (``mu0 = 0``, ``sigma0 = sigma1 = 1``). Each SLG replication draws
``K`` state means and ``K m`` rewards, fits the Gaussian tail of each state
(top ``ceil(0.2 m)`` rewards, truncated-normal moments), values it at the
exploitation budget ``N - K m`` with the exact ``E_n``, and draws the maximum of
the ``N - K m`` exploitation rewards of the chosen state in one step as
``Q(u^(1/n))``; BoN is ``Q_root(u^(1/N))``. All three versions run exactly
this computation:

- slgjax: :func:`slgjax.envs.simulated.simulate_search`, which makes its
  decision with :func:`slgjax.search.policies.select_state`;
- NumPy loop: one replication at a time, timed on ``--loop-replications`` of
  them and extrapolated to ``R``;
- NumPy vectorized: chunks of replications at once, with ``np.partition`` for
  the tail.

The three means are printed with their standard errors as a consistency check.
Timings keep the fastest of ``--repeats`` runs (the loop: the fastest chunk of
100 replications) to discount load from other processes on a shared machine;
the first slgjax call, which compiles, is reported apart.

A second slgjax run values states by their largest reward
(``value="empirical_max"``) to show how much of the time the Gaussian tail fit
takes. Second measurement: the decision step alone, ``select_state`` with the
Gaussian value on rewards ``[B, K, m] = [1024, 16, 64]`` after compilation.

The last line printed is
``speedup_vs_numpy_loop=<x> speedup_vs_numpy_vectorized=<y> decision_ms=<z>``.

Two-stage SLG: M. Li, J. Qian, W. Mou, "Predicting and improving test-time
scaling laws via reward tail-guided search", arXiv:2602.01485 (2026).

Run: ``python benchmarks/search_sim.py``.
"""

import argparse
import math
import time

import jax
import numpy as np
from scipy.special import ndtri

from slgjax.envs.simulated import GaussianFamily, simulate_search
from slgjax.search.policies import select_state
from slgjax.tail.expected_max import expected_max_std_normal

BUDGET, NUM_STATES, SAMPLES = 1024, 8, 64
TAIL_FRACTION = 0.2


def time_best(function, repeats):
    """Return the fastest of ``repeats`` wall-clock runs of ``function()`` and its result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


class TailConstants:
    """Constants of the Gaussian tail fit and the values for ``m`` samples per state."""

    def __init__(self, samples, exploitation):
        self.tail_size = max(2, math.ceil(TAIL_FRACTION * samples))
        share = self.tail_size / samples
        z = float(ndtri(1.0 - share))
        self.lam = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) / share
        self.delta = 1.0 + z * self.lam - self.lam**2
        self.e_n = float(expected_max_std_normal(exploitation))


def max_of_draws(mean, sigma, u, count):
    """Maximum of ``count`` normal draws from ``N(mean, sigma^2)``, from a uniform ``u``."""
    s = -np.expm1(np.log(u) / count)
    return mean - sigma * ndtri(s)


def numpy_loop(replications, seed, constants):
    """Run replications one by one; returns BoN and SLG rewards and the best seconds per 100."""
    rng = np.random.default_rng(seed)
    root_sigma = math.sqrt(2.0)
    exploitation = BUDGET - NUM_STATES * SAMPLES
    bon = np.empty(replications)
    slg = np.empty(replications)
    chunk_seconds = []
    for begin in range(0, replications, 100):
        start = time.perf_counter()
        for r in range(begin, min(begin + 100, replications)):
            bon[r] = max_of_draws(0.0, root_sigma, rng.random(), BUDGET)

            means = rng.standard_normal(NUM_STATES)
            rewards = means[:, None] + rng.standard_normal((NUM_STATES, SAMPLES))
            values = np.empty(NUM_STATES)
            for k in range(NUM_STATES):
                tail = np.sort(rewards[k])[-constants.tail_size :]
                sigma = math.sqrt(np.var(tail, ddof=1) / constants.delta)
                mu = tail.mean() - sigma * constants.lam
                values[k] = mu + sigma * constants.e_n
            chosen = int(np.argmax(values))
            exploited = max_of_draws(means[chosen], 1.0, rng.random(), exploitation)
            slg[r] = max(rewards.max(), exploited)
        chunk_seconds.append(
            (time.perf_counter() - start) / (min(begin + 100, replications) - begin)
        )
    return bon, slg, min(chunk_seconds)


def numpy_vectorized(replications, seed, constants, chunk=12500):
    """Run replications in vectorized chunks; returns BoN and SLG rewards (float32 draws)."""
    rng = np.random.default_rng(seed)
    root_sigma = np.float32(math.sqrt(2.0))
    exploitation = BUDGET - NUM_STATES * SAMPLES
    bon, slg = [], []
    for begin in range(0, replications, chunk):
        size = min(chunk, replications - begin)
        bon.append(max_of_draws(0.0, root_sigma, rng.random(size, np.float32), BUDGET))

        means = rng.standard_normal((size, NUM_STATES), np.float32)
        noise = rng.standard_normal((size, NUM_STATES, SAMPLES), np.float32)
        rewards = means[..., None] + noise
        tail = np.partition(rewards, SAMPLES - constants.tail_size, axis=-1)[
            ..., -constants.tail_size :
        ]
        sigma = np.sqrt(np.var(tail, axis=-1, ddof=1) / constants.delta)
        values = tail.mean(axis=-1) - sigma * constants.lam + sigma * constants.e_n
        chosen = np.take_along_axis(means, np.argmax(values, axis=-1)[:, None], axis=-1)[:, 0]
        exploited = max_of_draws(chosen, 1.0, rng.random(size, np.float32), exploitation)
        slg.append(np.maximum(rewards.max(axis=(1, 2)), exploited))
    return np.concatenate(bon), np.concatenate(slg)


def slgjax_run(key, replications, value="gaussian"):
    out = simulate_search(
        key,
        GaussianFamily(mu0=0.0, sigma0=1.0, sigma1=1.0),
        budget=BUDGET,
        num_states=NUM_STATES,
        samples_per_state=SAMPLES,
        num_replications=replications,
        algorithms=("best_of_n", "slg_paper"),
        value=value,
    )
    return jax.block_until_ready(out)


def decision_milliseconds(repeats, key):
    """Fastest and median time of ``select_state`` on ``[1024, 16, 64]`` rewards, in ms."""
    rewards = jax.random.normal(key, (1024, 16, 64))

    def decide():
        return jax.block_until_ready(select_state(rewards, value="gaussian", budget=BUDGET))

    decide()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decide()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times), 1e3 * float(np.median(times))


def describe(name, values):
    values = np.asarray(values, np.float64)
    return f"{name} {values.mean():.4f} ± {values.std(ddof=1) / math.sqrt(values.size):.4f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=100_000, help="R, replications")
    parser.add_argument(
        "--loop-replications",
        type=int,
        default=2000,
        help="replications timed in the NumPy loop, extrapolated to R",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest counts")
    parser.add_argument("--seed", type=int, default=0, help="seed of every generator")
    args = parser.parse_args(argv)
    constants = TailConstants(SAMPLES, BUDGET - NUM_STATES * SAMPLES)
    key = jax.random.key(args.seed)
    print(f"N={BUDGET} K={NUM_STATES} m={SAMPLES} R={args.replications}, devices={jax.devices()}")

    start = time.perf_counter()
    slgjax_run(key, args.replications)
    first = time.perf_counter() - start
    jax_seconds, out = time_best(lambda: slgjax_run(key, args.replications), args.repeats)
    print(f"slgjax: {jax_seconds:.2f} s (first call with compilation {first:.2f} s)")
    slgjax_run(key, args.replications, value="empirical_max")
    floor_seconds, _ = time_best(
        lambda: slgjax_run(key, args.replications, value="empirical_max"), args.repeats
    )
    print(
        f"slgjax with value='empirical_max' (no tail fit; the cost of everything but "
        f"the Gaussian fit): {floor_seconds:.2f} s"
    )

    vector_seconds, (vector_bon, vector_slg) = time_best(
        lambda: numpy_vectorized(args.replications, args.seed, constants), args.repeats
    )
    print(f"NumPy vectorized: {vector_seconds:.2f} s")

    loop_bon, loop_slg, per_replication = numpy_loop(args.loop_replications, args.seed, constants)
    loop_seconds = per_replication * args.replications
    print(
        f"NumPy loop: {1e6 * per_replication:.1f} us per replication over "
        f"{args.loop_replications}, {loop_seconds:.1f} s extrapolated to R={args.replications}"
    )

    print(
        "means ± standard error (BoN closed form "
        f"{math.sqrt(2.0) * float(expected_max_std_normal(BUDGET)):.4f}):"
    )
    print("  slgjax:", describe("BoN", out["best_of_n"]), describe("SLG", out["slg_paper"]))
    print("  NumPy vectorized:", describe("BoN", vector_bon), describe("SLG", vector_slg))
    print("  NumPy loop:", describe("BoN", loop_bon), describe("SLG", loop_slg))

    best_ms, median_ms = decision_milliseconds(max(10, 5 * args.repeats), jax.random.key(1))
    print(
        f"select_state [1024, 16, 64], Gaussian value: {best_ms:.1f} ms best, "
        f"{median_ms:.1f} ms median"
    )
    print(
        f"speedup_vs_numpy_loop={loop_seconds / jax_seconds:.1f} "
        f"speedup_vs_numpy_vectorized={vector_seconds / jax_seconds:.2f} "
        f"decision_ms={best_ms:.1f}"
    )


if __name__ == "__main__":
    main()
