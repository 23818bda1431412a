"""The decision step of search: pure, jit-compiled functions of reward buffers.

:func:`select_state` scores the ``K`` explored states of each of ``B`` prompts
with a state value (see :mod:`slgjax.search.values`) and picks one per prompt.
It is compiled once per buffer shape ``[B, K, m]`` (and root width), value
function and value options; the budget and the keys are traced, so one
compilation serves every budget. Callers keep the number of shapes small by
padding ragged rewards into power-of-two buffers with :func:`pad_rewards`;
padded entries are masked and padded states get ``-inf``, so padding never
changes a decision.

Ties: every argmax here returns the lowest index among equal values, and the
root (the prompt itself) keeps the budget unless some state is strictly better.
"""

import collections
import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.search.values import check_value, state_values

__all__ = ["Decision", "bucket_size", "pad_rewards", "select_state", "select_ucb"]

# Counts how often each compiled function is traced; tests read it to check
# that a new budget does not trigger a new compilation.
_TRACES = collections.Counter()


class Decision(NamedTuple):
    """The choice made for each of ``B`` prompts.

    Attributes:
      index: int32[B], the chosen state (lowest index among ties). When every
        state has value ``-inf`` it is 0.
      values: float[B, K], ``V_hat`` of each state; ``-inf`` for a state with
        no valid reward (padded states included).
      root_value: float[B], ``V_hat`` of the root; ``-inf`` when no root
        rewards were given.
      use_root: bool[B], True when root rewards were given and no state has a
        strictly larger value than the root.
    """

    index: jax.Array
    values: jax.Array
    root_value: jax.Array
    use_root: jax.Array


def bucket_size(count: int) -> int:
    """Return the smallest power of two ``>= count`` (and ``>= 1``)."""
    count = max(int(count), 1)
    return 1 << (count - 1).bit_length()


def pad_rewards(
    groups: Sequence[Sequence[np.ndarray]], *, num_states=None, num_samples=None
) -> tuple[np.ndarray, np.ndarray]:
    """Pack ragged rewards into a padded ``[B, K, m]`` buffer and its mask.

    Args:
      groups: for each prompt, a sequence of 1-D reward arrays, one per state
        (lengths may differ). Non-finite rewards are kept but masked out.
      num_states: buffer width ``K``; defaults to the power of two at or above
        the largest number of states.
      num_samples: buffer depth ``m``; defaults to the power of two at or above
        the longest reward array.

    Returns:
      ``(rewards float64[B, K, m], mask bool[B, K, m])`` with zeros where masked.
    """
    max_states = max((len(states) for states in groups), default=0)
    max_samples = max((len(r) for states in groups for r in states), default=0)
    num_states = bucket_size(max_states) if num_states is None else int(num_states)
    num_samples = bucket_size(max_samples) if num_samples is None else int(num_samples)
    if max_states > num_states or max_samples > num_samples:
        raise ValueError(
            f"rewards of {max_states} states with up to {max_samples} samples do not fit a "
            f"buffer of num_states={num_states}, num_samples={num_samples}; pass larger sizes."
        )

    rewards = np.zeros((len(groups), num_states, num_samples))
    mask = np.zeros(rewards.shape, bool)
    for b, states in enumerate(groups):
        for k, row in enumerate(states):
            row = np.asarray(row, dtype=np.float64).reshape(-1)
            finite = np.isfinite(row)
            rewards[b, k, : len(row)] = np.where(finite, row, 0.0)
            mask[b, k, : len(row)] = finite
    return rewards, mask


def _batch_keys(key, batch):
    """Return ``batch`` keys from one key (split) or from a batch of keys."""
    if key is None:
        return None
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    single = key.ndim == (0 if typed else 1)
    if single:
        return jax.random.split(key, batch)
    if key.shape[0] != batch:
        raise ValueError(f"key has {key.shape[0]} entries for B={batch} prompts; pass one key.")
    return key


def _check_budget(budget, batch):
    budget = jnp.asarray(budget)
    if budget.ndim > 1 or (budget.ndim == 1 and budget.shape[0] != batch):
        raise ValueError(
            f"budget has shape {budget.shape}; pass a scalar or one budget per prompt ({batch},)."
        )
    if not isinstance(budget, jax.core.Tracer) and bool(jnp.any(budget < 1)):
        raise ValueError(f"budget={budget} must be >= 1 (the horizon of the predicted value).")
    return jnp.broadcast_to(budget.astype(jnp.result_type(float)), (batch,))


def _check_rewards(rewards, mask, name, ndim):
    rewards = jnp.asarray(rewards)
    if rewards.ndim != ndim:
        shape = "[B, K, m]" if ndim == 3 else "[B, m]"
        raise ValueError(f"{name} has shape {rewards.shape}; expected {shape}.")
    if not jnp.issubdtype(rewards.dtype, jnp.floating):
        rewards = rewards.astype(jnp.result_type(float))
    if mask is None:
        mask = jnp.ones(rewards.shape, bool)
    mask = jnp.asarray(mask, bool)
    if mask.shape != rewards.shape:
        raise ValueError(f"mask shape {mask.shape} does not match {name} shape {rewards.shape}.")
    return rewards, mask


def select_state(
    rewards,
    mask=None,
    *,
    value="gaussian",
    budget,
    root_rewards=None,
    root_mask=None,
    key=None,
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
) -> Decision:
    """Pick the state with the largest value ``V_hat_N`` for each prompt.

    .. math::

        I = \\min \\arg\\max_i \\hat V_N(s_i), \\qquad
        \\text{use\\_root} = \\neg\\big(\\hat V_N(s_I) > \\hat V_N(x)\\big).

    Args:
      rewards: float[B, K, m] estimation rewards of ``K`` states per prompt.
        Non-finite rewards count as missing.
      mask: optional bool[B, K, m]; False marks a missing sample or a padded
        state. A state with no valid reward gets value ``-inf`` and is chosen
        only when every state does (index 0 then).
      value: a name from :data:`slgjax.search.values.VALUE_NAMES` or a
        callable; static (a new one compiles anew).
      budget: the horizon ``N`` of the values, a scalar or int/float[B];
        traced, so changing it does not recompile.
      root_rewards: optional float[B, m_root] rollouts from the prompt itself.
        With them the root competes: it keeps the budget unless some state
        has a strictly larger value.
      root_mask: optional bool[B, m_root].
      key: a PRNG key (split across prompts) or one key per prompt, for
        values that sample; None otherwise.
      tail_fraction: share of the samples in the tail of the Gaussian and GPD
        fits; static.
      upper_level: posterior quantile of ``"bayes_upper"``; static.

    Returns:
      A :class:`Decision`.
    """
    check_value(value, key)
    rewards, mask = _check_rewards(rewards, mask, "rewards", 3)
    batch = rewards.shape[0]
    if root_rewards is not None:
        root_rewards, root_mask = _check_rewards(root_rewards, root_mask, "root_rewards", 2)
        if root_rewards.shape[0] != batch:
            raise ValueError(
                f"root_rewards has {root_rewards.shape[0]} rows for B={batch} prompts."
            )
    elif root_mask is not None:
        raise ValueError("root_mask was given without root_rewards.")
    budget = _check_budget(budget, batch)
    keys = _batch_keys(key, batch)
    return _decide(
        rewards,
        mask,
        root_rewards,
        root_mask,
        budget,
        keys,
        value=value,
        tail_fraction=float(tail_fraction),
        upper_level=float(upper_level),
    )


@functools.partial(jax.jit, static_argnames=("value", "tail_fraction", "upper_level"))
def _decide(
    rewards, mask, root_rewards, root_mask, budget, keys, *, value, tail_fraction, upper_level
):
    _TRACES["select_state"] += 1
    options = dict(value=value, tail_fraction=tail_fraction, upper_level=upper_level)

    def decide_one(rewards, mask, root_rewards, root_mask, budget, key):
        state_key = root_key = None
        if key is not None:
            state_key, root_key = jax.random.split(key)
        values = state_values(rewards, mask, budget=budget, key=state_key, **options)
        index = jnp.argmax(values).astype(jnp.int32)

        if root_rewards is None:
            return Decision(index, values, jnp.asarray(-jnp.inf, values.dtype), jnp.bool_(False))
        root_value = state_values(
            root_rewards[None], root_mask[None], budget=budget, key=root_key, **options
        )[0]
        use_root = ~(values[index] > root_value)
        return Decision(index, values, root_value, use_root)

    return jax.vmap(decide_one)(rewards, mask, root_rewards, root_mask, budget, keys)


def select_ucb(values, visits, parent_visits, *, exploration_constant: float = 0.5):
    """Pick the node with the largest upper confidence score.

    .. math::

        \\text{score}(s) = \\hat V(s) + c \\sqrt{\\frac{\\ln(n_{parent(s)} + 1)}{n_s + 1}}

    Args:
      values: float[n] node values; ``-inf`` marks a node that cannot be
        picked (padding, or no valid reward).
      visits: int[n] expansions of each node so far.
      parent_visits: int[n] expansions of each node's parent.
      exploration_constant: ``c``; traced.

    Returns:
      ``(index int32, scores float[n])``; the lowest index wins ties.
    """
    return _ucb(
        jnp.asarray(values, jnp.result_type(float)),
        jnp.asarray(visits, jnp.result_type(float)),
        jnp.asarray(parent_visits, jnp.result_type(float)),
        jnp.asarray(exploration_constant, jnp.result_type(float)),
    )


@jax.jit
def _ucb(values, visits, parent_visits, exploration_constant):
    _TRACES["select_ucb"] += 1
    bonus = exploration_constant * jnp.sqrt(jnp.log(parent_visits + 1.0) / (visits + 1.0))
    pickable = values > -jnp.inf
    scores = jnp.where(pickable, values + bonus, -jnp.inf)
    return jnp.argmax(scores).astype(jnp.int32), scores
