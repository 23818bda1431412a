"""Parametric bootstrap of spliced tail models: simulate, refit, predict, take percentiles.

Each state's fitted model is a splice: the empirical distribution of its rewards
below the threshold (the body) and a parametric tail above it. One bootstrap
replicate draws ``m_valid`` rewards from that splice, independently per slot:

- with probability ``p_tail`` (the fraction of the state's rewards that the fit
  kept in its tail) a draw from the fitted tail;
- otherwise a reward picked uniformly from the state's body.

Refitting the same model to every replicate and predicting ``V_N`` gives a
sample of estimates whose percentiles form the band (the percentile bootstrap
interval). Replicates keep the mask
of the observed rewards, so ragged states stay ragged. All replicates and
states are drawn in one array of shape ``[R, ..., m]``; the fits and
predictions are vectorized over its leading axes.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from slgjax.tail.gpd import gpd_quantile_from_survival
from slgjax.tail.status import Status

__all__ = [
    "simulate_gaussian_splice",
    "simulate_gpd_splice",
    "resample_pool",
    "percentile_band",
]


def _ranked_descending(rewards, mask):
    """Return the valid rewards sorted from the largest down and their count."""
    ranked = -jnp.sort(jnp.where(mask, -rewards, jnp.inf), axis=-1)
    return ranked, jnp.sum(mask, axis=-1)


def _pick_ranks(u, ranked, first, last):
    """Pick entries of ``ranked`` at ranks ``first + floor(u (last - first))``, ``u`` in [0, 1)."""
    span = jnp.maximum(last - first, 1)[..., None]
    offset = jnp.minimum(jnp.floor(u * span).astype(jnp.int32), span - 1)
    index = jnp.clip(first[..., None] + offset, 0, ranked.shape[-1] - 1)
    return jnp.take_along_axis(jnp.broadcast_to(ranked, u.shape), index, axis=-1)


def _finite(values, dtype):
    """Clip to the finite float range so that refits never see an infinite reward."""
    largest = jnp.finfo(dtype).max
    return jnp.clip(jnp.nan_to_num(values, nan=0.0), -largest, largest)


def _splice(key, rewards, mask, *, tail_rank_end, body_rank_end, p_tail, draw_tail, num_resamples):
    """Draw ``[R, ..., m]`` rewards: the tail with probability ``p_tail``, else the body.

    ``draw_tail(u, ranked)`` maps uniforms ``u`` in [0, 1) of shape ``[R, ..., m]``
    to tail draws. One uniform array feeds every choice, because each separate
    random call adds its own copy of the threefry hash to the compiled program.
    """
    ranked, count = _ranked_descending(rewards, mask)
    shape = (num_resamples,) + rewards.shape
    u_choice, u_body, u_tail = jax.random.uniform(key, (3,) + shape, rewards.dtype)

    from_tail = u_choice < p_tail[..., None]
    body = _pick_ranks(u_body, ranked, tail_rank_end, body_rank_end)
    tail = draw_tail(u_tail, ranked)
    simulated = jnp.where(from_tail, tail, body)

    simulated = _finite(simulated, rewards.dtype)
    return jnp.where(mask, simulated, 0.0), jnp.broadcast_to(mask, shape), count


def simulate_gaussian_splice(key, fit, rewards, mask, *, num_resamples: int):
    """Simulate rewards from a fitted Gaussian tail spliced onto the empirical body.

    The fit reads the top share ``q = k / m_valid`` of a state as the top
    share of ``N(mu, sigma^2)``. A replicate therefore draws, with probability
    ``q``, from that normal truncated below at its own ``1 - q`` quantile
    ``mu + sigma Phi^-1(1 - q)``, as ``x = mu - sigma Phi^-1(u q)`` with ``u``
    uniform. Otherwise it picks one of the state's rewards outside its top
    ``k``. Truncating at the model's quantile rather than at the observed
    threshold keeps the replicates faithful to the fitted model when the
    observed tail is not Gaussian: the two points differ there, and a
    replicate built on the observed threshold would shift the whole band
    away from the fitted value. A degenerate fit (``sigma = 0``) puts every
    tail draw at ``mu``.

    Args:
      key: JAX random key.
      fit: a :class:`~slgjax.tail.gaussian.GaussianTailFit` of batch shape ``S``.
      rewards: float[S + (m,)] rewards the fit came from.
      mask: bool[S + (m,)] mask of valid rewards.
      num_resamples: number of replicates ``R``; static.

    Returns:
      ``(simulated, mask)``, each of shape ``[R] + S + [m]``.
    """
    return _simulate_gaussian_jit(key, fit, rewards, mask, num_resamples=num_resamples)


def _simulate_gaussian_impl(key, fit, rewards, mask, num_resamples):
    dtype = rewards.dtype
    count = jnp.sum(mask, axis=-1)
    k = fit.num_exceedances
    p_tail = k.astype(dtype) / jnp.maximum(count, 1).astype(dtype)

    positive = fit.sigma > 0
    safe_sigma = jnp.where(positive, fit.sigma, 1.0)
    mu = jnp.where(jnp.isfinite(fit.mu), fit.mu, 0.0)

    def draw_tail(u, ranked):
        s = jnp.clip(u * p_tail[..., None], jnp.finfo(dtype).tiny, 1.0)
        draws = mu[..., None] - safe_sigma[..., None] * ndtri(s)
        return jnp.where(positive[..., None], draws, mu[..., None])

    simulated, mask, _ = _splice(
        key,
        rewards,
        mask,
        tail_rank_end=k,
        body_rank_end=count,
        p_tail=p_tail,
        draw_tail=draw_tail,
        num_resamples=num_resamples,
    )
    return simulated, mask


_simulate_gaussian_jit = jax.jit(_simulate_gaussian_impl, static_argnames=("num_resamples",))


def simulate_gpd_splice(key, fit, rewards, mask, *, num_resamples: int):
    """Simulate rewards from a fitted GPD tail spliced onto the empirical body.

    With probability ``p_u`` (the fit's exceedance fraction) a draw is
    ``u + Y`` with ``Y ~ GPD(xi, sigma)``. Otherwise it is a reward picked
    uniformly from the state's rewards at or below the threshold ``u``. A
    degenerate fit (``sigma = 0``, all exceedances equal) resamples the
    observed exceedances instead, matching the empirical prediction used for
    such states.

    Args:
      key: JAX random key.
      fit: a :class:`~slgjax.tail.gpd_fit.GPDFit` of batch shape ``S``.
      rewards: float[S + (m,)] rewards the fit came from.
      mask: bool[S + (m,)] mask of valid rewards.
      num_resamples: number of replicates ``R``; static.

    Returns:
      ``(simulated, mask)``, each of shape ``[R] + S + [m]``.
    """
    return _simulate_gpd_jit(key, fit, rewards, mask, num_resamples=num_resamples)


def _simulate_gpd_impl(key, fit, rewards, mask, num_resamples):
    count = jnp.sum(mask, axis=-1)
    k = fit.num_exceedances
    threshold = jnp.where(jnp.isfinite(fit.threshold), fit.threshold, 0.0)
    degenerate = (fit.status & int(Status.DEGENERATE)) != 0
    sigma = jnp.where(degenerate, 1.0, jnp.maximum(fit.sigma, 0.0))
    xi = jnp.broadcast_to(fit.xi[..., None], rewards.shape)
    sigma = jnp.broadcast_to(sigma[..., None], rewards.shape)

    def draw_tail(u, ranked):
        # Inversion with survival s = 1 - u in (0, 1], exact for tiny s.
        survival = 1.0 - u
        draws = threshold[..., None] + gpd_quantile_from_survival(survival, xi=xi, sigma=sigma)
        observed = _pick_ranks(u, ranked, jnp.zeros_like(k), k)
        return jnp.where(degenerate[..., None], observed, draws)

    simulated, mask, _ = _splice(
        key,
        rewards,
        mask,
        tail_rank_end=k,
        body_rank_end=count,
        p_tail=fit.exceedance_fraction,
        draw_tail=draw_tail,
        num_resamples=num_resamples,
    )
    return simulated, mask


_simulate_gpd_jit = jax.jit(_simulate_gpd_impl, static_argnames=("num_resamples",))


def resample_pool(key, rewards, mask, *, num_resamples: int):
    """Draw ``m_valid`` rewards with replacement from each state's valid rewards.

    The nonparametric bootstrap used for the empirical baseline.

    Returns:
      ``(resampled, mask)``, each of shape ``[R] + rewards.shape``.
    """
    return _resample_jit(key, rewards, mask, num_resamples=num_resamples)


def _resample_impl(key, rewards, mask, num_resamples):
    ranked, count = _ranked_descending(rewards, mask)
    shape = (num_resamples,) + rewards.shape
    u = jax.random.uniform(key, shape, rewards.dtype)
    resampled = _pick_ranks(u, ranked, jnp.zeros_like(count), count)
    resampled = jnp.where(mask, resampled, 0.0)
    return resampled, jnp.broadcast_to(mask, shape)


_resample_jit = jax.jit(_resample_impl, static_argnames=("num_resamples",))


def percentile_band(values, *, band: float):
    """Return the ``(1 - band)/2`` and ``(1 + band)/2`` percentiles along axis 0.

    Order statistics are used without interpolation, the lower one rounded
    down and the upper one rounded up, so infinite replicates (a fitted
    ``xi >= 1``) give an infinite bound instead of NaN.

    Args:
      values: float[R, ...] bootstrap replicates.
      band: central probability of the band, in ``(0, 1)``.

    Returns:
      ``(lower, upper)``, each of shape ``values.shape[1:]``.
    """
    last = values.shape[0] - 1
    low = math.floor(0.5 * (1.0 - band) * last)
    high = math.ceil(0.5 * (1.0 + band) * last)
    return _order_statistics(values, low=low, high=high)


@functools.partial(jax.jit, static_argnames=("low", "high"))
def _order_statistics(values, low, high):
    ordered = jnp.sort(values, axis=0)
    return ordered[low], ordered[high]
