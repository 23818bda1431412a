"""Simulated environments with known reward tails, and vectorized Monte Carlo of search.

Reward families (two-level models with exact best-of-N values), environments
that expose them through :class:`slgjax.envs.protocol.Environment`, and
:func:`simulate_search`, which runs many replications of the two-stage search
algorithms in one compiled function to check them against the theory.
"""

from slgjax.envs.simulated.environments import (
    MultiStepGaussianEnvironment,
    SimulatedEnvironment,
    SimulatedState,
)
from slgjax.envs.simulated.families import (
    BernoulliFamily,
    BoundedFamily,
    EqualMeanTailFamily,
    GaussianFamily,
    HeavyTailFamily,
    RewardFamily,
)
from slgjax.envs.simulated.monte_carlo import (
    ALGORITHMS,
    default_chunk_size,
    replication_keys,
    simulate_replication,
    simulate_search,
)

__all__ = [
    "ALGORITHMS",
    "BernoulliFamily",
    "BoundedFamily",
    "EqualMeanTailFamily",
    "GaussianFamily",
    "HeavyTailFamily",
    "MultiStepGaussianEnvironment",
    "RewardFamily",
    "SimulatedEnvironment",
    "SimulatedState",
    "default_chunk_size",
    "replication_keys",
    "simulate_replication",
    "simulate_search",
]
