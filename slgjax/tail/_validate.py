"""Eager checks of reward arrays shared by the tail estimators."""

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["as_rewards_and_mask", "is_traced"]


def is_traced(*arrays) -> bool:
    """Return True when any argument is a JAX tracer (inside jit, vmap or grad)."""
    return any(isinstance(a, jax.core.Tracer) for a in arrays)


def as_rewards_and_mask(rewards, mask=None, *, name="rewards"):
    """Return float rewards and a boolean mask of the same shape.

    Concrete inputs are checked eagerly: a non-finite reward under the mask
    raises a ``ValueError`` that names its position, and a mask whose shape
    differs from the rewards raises too. Traced inputs cannot be checked, so
    non-finite entries are dropped from the mask instead; a state left with no
    valid entries then reports ``Status.EMPTY``.
    """
    rewards = jnp.asarray(rewards)
    if not jnp.issubdtype(rewards.dtype, jnp.floating):
        rewards = rewards.astype(jnp.result_type(float))
    if rewards.ndim == 0:
        raise ValueError(f"{name} must have at least one axis of samples [..., m]; got a scalar.")
    if rewards.shape[-1] == 0:
        raise ValueError(
            f"{name} has shape {rewards.shape}, with no samples on its last axis; pass at "
            "least one reward per state (mask out the missing ones instead)."
        )

    if mask is None:
        mask = jnp.ones(rewards.shape, bool)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != rewards.shape:
            raise ValueError(
                f"mask shape {mask.shape} does not match {name} shape {rewards.shape}; "
                "pass a boolean mask with one entry per reward."
            )
        mask = mask.astype(bool)

    if not is_traced(rewards, mask):
        bad = np.argwhere(np.asarray(mask) & ~np.isfinite(np.asarray(rewards)))
        if bad.size:
            position = tuple(int(i) for i in bad[0])
            value = np.asarray(rewards)[position]
            raise ValueError(
                f"{name}{list(position)} is {value}; every reward under the mask must be "
                f"finite ({len(bad)} non-finite in total). Drop those samples or set their "
                "mask entries to False."
            )

    mask = mask & jnp.isfinite(rewards)
    return rewards, mask
