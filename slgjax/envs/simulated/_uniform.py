"""Uniform levels strictly inside (0, 1) for inverse-CDF sampling."""

import jax
import jax.numpy as jnp

__all__ = ["open_uniform", "levels", "max_levels"]


def open_uniform(key, shape, dtype=None):
    """Draw uniforms on the midpoints of JAX's uniform grid, so never 0 or 1.

    ``jax.random.uniform`` returns multiples of ``2^-nmant`` in ``[0, 1)``;
    shifting by half a step makes the draw symmetric about 1/2 and keeps both
    ``log u`` and ``log(1 - u)`` finite. A level drawn this way is at most
    ``1 - 2^-(nmant + 1)`` (about ``1 - 6e-8`` in float32), which truncates a
    single draw's tail at that level.
    """
    dtype = dtype or jnp.result_type(float)
    half_step = 2.0 ** -(jnp.finfo(dtype).nmant + 1)
    return jax.random.uniform(key, shape, dtype) + jnp.asarray(half_step, dtype)


def levels(u):
    """Return ``(p, s) = (u, 1 - u)`` for uniforms from :func:`open_uniform`.

    Both are exact on that grid where they matter: ``p`` is ``u`` itself, and
    ``1 - u`` is exact for ``u >= 1/2``, the half where quantile functions read
    the upper-tail complement ``s``.
    """
    return u, 1.0 - u


def max_levels(u, num_draws):
    """Map uniforms to the level ``(p, s)`` of the maximum of ``num_draws`` uniforms.

    The maximum of ``n`` uniforms has the law of ``u^(1/n)``, so the maximum of
    ``n`` draws from a distribution with quantile ``Q`` is ``Q(u^(1/n))``: one
    draw replaces ``n``. ``s = 1 - p`` comes from ``expm1``, so it stays precise
    for ``n`` up to about 10^9.
    """
    log_p = jnp.log(u) / jnp.asarray(num_draws, u.dtype)
    return jnp.exp(log_p), -jnp.expm1(log_p)
