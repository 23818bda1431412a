"""Environments that search runs against: the protocol and the replay of recorded pools."""

from slgjax.envs.protocol import Environment, RolloutBatch, State, has_true_value
from slgjax.envs.replay import PoolExhaustedError, ReplayEnvironment, RewardPool

__all__ = [
    "Environment",
    "PoolExhaustedError",
    "ReplayEnvironment",
    "RewardPool",
    "RolloutBatch",
    "State",
    "has_true_value",
]
