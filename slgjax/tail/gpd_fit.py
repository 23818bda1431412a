"""Fit a generalized Pareto tail to exceedances: Zhang-Stephens, profile MLE, PWM.

All three estimators work on masked, ragged exceedances ``y[..., W]`` and are
vectorized over the leading axes with fixed-size work per state, so each input
shape and method compiles once.

Each fit divides the exceedances by their maximum and multiplies the fitted
scale back at the end; :mod:`slgjax.tail.gpd_profile` gives the profile
likelihood that the Zhang-Stephens and profile-MLE fits share.

Fallbacks, applied to every method:

- fewer than :data:`MIN_EXCEEDANCES` exceedances: the exponential MLE,
  ``xi = 0`` and ``sigma = mean(y)`` (zero without exceedances), flagged
  ``FEW_EXCEEDANCES``;
- all exceedances equal (two or more) or all zero: ``xi = 0``, ``sigma = 0``,
  flagged ``DEGENERATE``; :mod:`slgjax.tail.gpd_predict` then uses the empirical
  distribution of the rewards. :func:`fit_gpd` also flags ``DEGENERATE`` when
  ties at the threshold leave no exceedance (constant rewards, or 0/1 rewards
  with more ones than requested exceedances);
- a fitted ``xi >= 1`` (possible for Zhang-Stephens and the profile MLE;
  PWM always gives ``xi < 1``): flagged ``INFINITE_MEAN``, because the
  expected maximum does not exist.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.tail._validate import as_rewards_and_mask, is_traced
from slgjax.tail.gpd_profile import profile, summarize
from slgjax.tail.status import Status
from slgjax.tail.threshold import _check_request, _select_impl, _static_width

__all__ = ["GPDFit", "fit_gpd", "fit_gpd_exceedances", "GPD_METHODS", "MIN_EXCEEDANCES"]

GPD_METHODS = ("zhang_stephens", "profile_mle", "pwm")
MIN_EXCEEDANCES = 5

# Profile MLE search: grid points over t = log(1 + e) and safeguarded Newton steps.
_GRID_SIZE = 16
_NEWTON_STEPS = 6
_XI_SEARCH_MAX = 4.0


class GPDFit(NamedTuple):
    """A fitted GPD tail for each state; every field has the batch shape ``S``.

    Attributes:
      xi: shape parameter.
      sigma: scale parameter; zero for a degenerate state.
      threshold: threshold ``u`` (``-inf`` for a state with no valid rewards).
      exceedance_fraction: ``p_u``, the share of valid rewards above ``u``.
      num_exceedances: number of rewards above ``u``, int32.
      status: :class:`~slgjax.tail.status.Status` flags, int32.
    """

    xi: jax.Array
    sigma: jax.Array
    threshold: jax.Array
    exceedance_fraction: jax.Array
    num_exceedances: jax.Array
    status: jax.Array


def _check_method(method):
    if method not in GPD_METHODS:
        raise ValueError(f"method={method!r} is unknown; use one of {GPD_METHODS}.")


def fit_gpd_exceedances(y, mask=None, *, method: str = "zhang_stephens"):
    """Fit ``GPD(xi, sigma)`` to exceedances over a threshold.

    Args:
      y: float[..., W] exceedances, ``>= 0`` under the mask; leading axes are
        states. Under tracing, negative entries are clipped to zero.
      mask: optional bool[..., W]; False marks a missing entry.
      method: ``"zhang_stephens"`` (empirical Bayes, Zhang and Stephens 2009),
        ``"profile_mle"`` (maximum likelihood with ``xi >= -1``, Grimshaw 1993)
        or ``"pwm"`` (probability-weighted moments, Hosking and Wallis 1987).
        See the functions ``_zhang_stephens``, ``_profile_mle`` and ``_pwm``.

    Returns:
      ``(xi, sigma, status)``, each of the batch shape ``y.shape[:-1]``, with
      the fallbacks of the module docstring.
    """
    _check_method(method)
    y, mask = as_rewards_and_mask(y, mask, name="y")
    if not is_traced(y, mask):
        negative = np.asarray(mask) & (np.asarray(y) < 0)
        if np.any(negative):
            position = tuple(int(i) for i in np.argwhere(negative)[0])
            raise ValueError(
                f"y{list(position)} is {np.asarray(y)[position]}; exceedances must be >= 0. "
                "Subtract the threshold from rewards above it, or use fit_gpd on the rewards."
            )
    return _fit_exceedances_jit(y, mask, method=method)


def fit_gpd(
    rewards,
    mask=None,
    *,
    method: str = "zhang_stephens",
    tail_fraction: float = 0.2,
    num_exceedances=None,
) -> GPDFit:
    """Select exceedances over a threshold and fit a GPD to them, per state.

    Args:
      rewards: float[..., m] rewards; leading axes are states (``[m]``,
        ``[K, m]``, ``[B, K, m]``).
      mask: optional bool[..., m]; False marks a missing sample.
      method: one of :data:`GPD_METHODS`, see :func:`fit_gpd_exceedances`.
      tail_fraction: share of the valid rewards requested as exceedances.
      num_exceedances: requested count (a Python int or an int array over the
        batch); when given it replaces ``tail_fraction``.

    Returns:
      A :class:`GPDFit` with batch shape ``rewards.shape[:-1]``. The threshold
      rule and its tie rule are those of
      :func:`~slgjax.tail.threshold.select_exceedances`; the status combines
      the flags of the selection and of the fit. One compilation per input
      shape, method and value of ``tail_fraction`` or integer
      ``num_exceedances``.
    """
    _check_method(method)
    if num_exceedances is not None:
        tail_fraction = None
    _check_request(tail_fraction, num_exceedances)
    rewards, mask = as_rewards_and_mask(rewards, mask)

    width = _static_width(rewards.shape[-1], tail_fraction, num_exceedances)
    if num_exceedances is None:
        request = jnp.asarray(tail_fraction, rewards.dtype)
    else:
        request = jnp.asarray(num_exceedances, jnp.int32)
    return _fit_gpd_jit(
        rewards,
        mask,
        request,
        width=width,
        by_count=num_exceedances is not None,
        method=method,
    )


def _fit_gpd_impl(rewards, mask, request, width, by_count, method):
    exceedances = _select_impl(rewards, mask, request, width, by_count)
    xi, sigma, status = _fit_exceedances_impl(exceedances.y, exceedances.mask, method)

    # Ties that leave no reward above the threshold mean the requested tail
    # has zero spread, as with constant rewards.
    tied_tail = (exceedances.num_exceedances == 0) & (
        (exceedances.status & int(Status.TIES_AT_THRESHOLD)) != 0
    )
    status |= jnp.where(tied_tail, int(Status.DEGENERATE), 0)
    return GPDFit(
        xi=xi,
        sigma=sigma,
        threshold=exceedances.threshold,
        exceedance_fraction=exceedances.exceedance_fraction,
        num_exceedances=exceedances.num_exceedances,
        status=status | exceedances.status,
    )


def _fit_exceedances_impl(y, mask, method):
    dtype = y.dtype
    width = y.shape[-1]
    y = jnp.where(mask, jnp.maximum(y, 0.0), 0.0)
    count = jnp.sum(mask, axis=-1, dtype=jnp.int32)
    y_max = jnp.max(y, axis=-1)
    y_min = jnp.min(jnp.where(mask, y, jnp.inf), axis=-1)

    few = count < MIN_EXCEEDANCES
    no_spread = y_min >= y_max
    degenerate = (count >= 1) & no_spread & ((count >= 2) | (y_max <= 0))
    use_fit = ~few & ~degenerate

    # States that take a fallback get a fixed well-posed sample instead, so
    # that the fitters' values and gradients stay finite there.
    dummy = jnp.arange(1, width + 1, dtype=dtype) / width
    scale = jnp.where(use_fit, y_max, 1.0)
    z = jnp.where(use_fit[..., None], y / scale[..., None], dummy)
    z_mask = jnp.where(use_fit[..., None], mask, True)
    n = jnp.sum(z_mask, axis=-1).astype(dtype)
    z = jnp.where(z_mask, z, 0.0)

    fitter = {"zhang_stephens": _zhang_stephens, "profile_mle": _profile_mle, "pwm": _pwm}[method]
    xi_fit, sigma_fit, status_fit = fitter(z, z_mask, n)

    mean_y = jnp.sum(y, axis=-1) / jnp.maximum(count, 1).astype(dtype)
    xi = jnp.where(use_fit, xi_fit, 0.0)
    sigma = jnp.where(use_fit, sigma_fit * scale, jnp.where(degenerate, 0.0, mean_y))

    status = jnp.where(use_fit, status_fit, 0)
    status |= jnp.where(few, int(Status.FEW_EXCEEDANCES), 0)
    status |= jnp.where(degenerate, int(Status.DEGENERATE), 0)
    status |= jnp.where(xi >= 1, int(Status.INFINITE_MEAN), 0)
    return xi, sigma, status.astype(jnp.int32)


_fit_exceedances_jit = jax.jit(_fit_exceedances_impl, static_argnames=("method",))
_fit_gpd_jit = jax.jit(_fit_gpd_impl, static_argnames=("width", "by_count", "method"))


# ---------------------------------------------------------------------------
# The three estimators. Each takes normalized exceedances z (max 1, zero where
# masked), their mask and count, and returns (xi, sigma in units of max(y), status).


def _zhang_stephens(z, mask, n):
    """Zhang and Stephens (2009) empirical Bayes estimate.

    The posterior mean of ``theta`` over ``M = 30 + floor(sqrt(n))`` grid points

    .. math::

        \\theta_j = \\frac{1}{z_{(n)}} + \\frac{1 - \\sqrt{M / (j - 1/2)}}{3\\, z_{(q)}},
        \\qquad w_j \\propto \\exp(n f(\\theta_j)),

    with ``z_(q)`` the lower quartile ``z_(floor(n/4 + 1/2))``, then
    ``xi = mean log1p(-theta z)`` and ``sigma = -xi / theta`` at that mean. The
    paper writes the shape as ``k = -xi``. The loo R package notes that the
    paper used ``20 + floor(sqrt(n))`` points and uses ``80 + floor(sqrt(n))``
    itself; more points move the estimate little. No small-sample shrinkage
    is applied: the one in PSIS (toward ``xi = 0.5``, Vehtari et al. 2024,
    arXiv:1507.02646) suits importance ratios, not bounded reward tails.

    Reference: J. Zhang and M. A. Stephens, "A new and efficient estimation
    method for the generalized Pareto distribution", Technometrics 51 (2009).
    """
    width = z.shape[-1]
    dtype = z.dtype
    sample = summarize(z, n)

    ascending = jnp.sort(jnp.where(mask, z, jnp.inf), axis=-1)
    quartile_index = jnp.floor(n / 4 + 0.5).astype(jnp.int32) - 1
    quartile_index = jnp.clip(quartile_index, 0, width - 1)
    quartile = jnp.take_along_axis(ascending, quartile_index[..., None], axis=-1)[..., 0]
    quartile = jnp.where(quartile > 0, quartile, 1.0)

    # 1 + e_j = 1 - theta_j is formed directly so that log1p(e_j) stays exact.
    max_points = 30 + int(np.floor(np.sqrt(width)))
    num_points = 30.0 + jnp.floor(jnp.sqrt(n))
    j = jnp.arange(1, max_points + 1, dtype=dtype)
    on_grid = j <= num_points[..., None]
    safe_j = jnp.where(on_grid, j, 1.0)
    gap = (jnp.sqrt(num_points[..., None] / (safe_j - 0.5)) - 1.0) / (3.0 * quartile[..., None])
    e = gap - 1.0

    _, _, f = profile(sample, e, jnp.log(gap))
    log_weight = jnp.where(on_grid, n[..., None] * f, -jnp.inf)
    weight = jax.nn.softmax(log_weight, axis=-1)
    e_mean = jnp.sum(weight * e, axis=-1)

    xi, sigma, _ = profile(sample, e_mean[..., None], jnp.log1p(e_mean)[..., None])
    status = jnp.zeros(n.shape, jnp.int32)
    return xi[..., 0], sigma[..., 0], status


def _profile_mle(z, mask, n):
    """Maximum likelihood constrained to ``xi >= -1``, on the profile likelihood.

    Grimshaw's reduction to one parameter: maximize the profile ``f(e)`` of
    :mod:`slgjax.tail.gpd_profile` over ``t = log(1 + e)``, from
    ``-(log n + 3)`` up to a point where ``xi >= 4``. A grid of ``_GRID_SIZE``
    points picks the best feasible cell (``xi >= -1``), and ``_NEWTON_STEPS``
    Newton steps on ``f'(t) = 0`` refine it. Each step stays inside a bracket,
    which bisection shrinks when Newton would leave it.

    The likelihood is unbounded as ``xi -> -inf``. Within ``xi >= -1`` its
    supremum is either an interior maximum or the boundary solution
    ``xi = -1``, ``sigma = max(y)`` (uniform on ``[0, max y]``, log-likelihood
    ``-n log max(y)``), whichever is larger. Flags: ``XI_BOUNDARY`` for the
    boundary solution, ``AT_SEARCH_BOUND`` for a maximum in an outer grid
    cell, ``NOT_CONVERGED`` when the last Newton step exceeds ``1e-4`` in ``t``.

    The grid runs in float32 whatever the input dtype, because it only has to
    find the right cell; the Newton steps run in the input dtype.
    ``benchmarks/tail_fit.py`` compares the attained log-likelihood with
    scipy's ``genpareto.fit`` in both float32 and float64.

    Reference: S. D. Grimshaw, "Computing maximum likelihood estimates for the
    generalized Pareto distribution", Technometrics 35 (1993).
    """
    dtype = z.dtype
    sample = summarize(z, n)
    # For t > 0, xi(t) >= (n+ / n) (t + mean log z) over the n+ positive z, so
    # at the upper end xi is at least _XI_SEARCH_MAX.
    log_n = jnp.log(jnp.maximum(n, 2.0))
    positive = z > 0
    num_positive = jnp.maximum(jnp.sum(positive, axis=-1), 1).astype(dtype)
    mean_log = jnp.sum(jnp.where(positive, jnp.log(jnp.where(positive, z, 1.0)), 0.0), axis=-1)
    mean_log = mean_log / num_positive
    low = -(log_n + 3.0)
    high = _XI_SEARCH_MAX * n / num_positive - mean_log + 1.0
    fractions = jnp.linspace(0.0, 1.0, _GRID_SIZE, dtype=dtype)
    grid = low[..., None] + (high - low)[..., None] * fractions

    # The grid only has to find the cell of the maximum, which float32 does
    # as well as float64 at a fraction of the cost.
    coarse_dtype = jnp.float32
    coarse = jax.tree.map(lambda a: a.astype(coarse_dtype), sample)
    coarse_grid = grid.astype(coarse_dtype)
    xi_grid, sigma_grid, f_grid = (
        a.astype(dtype) for a in profile(coarse, jnp.expm1(coarse_grid), coarse_grid)
    )
    f_grid = jnp.where(xi_grid >= -1.0, f_grid, -jnp.inf)
    best = jnp.argmax(f_grid, axis=-1)

    def take(values, index):
        return jnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]

    below = jnp.maximum(best - 1, 0)
    above = jnp.minimum(best + 1, _GRID_SIZE - 1)
    lower, upper = take(grid, below), take(grid, above)

    # Close to xi = -1 the maximum can lie below the grid; at the lowest cell
    # the bracket reaches twice as far down.
    lower = jnp.where(best == 0, 2.0 * low, lower)

    # Start at the vertex of the parabola through the best cell and its
    # neighbours, or at the best grid point where that parabola is not concave.
    f_below, f_best, f_above = take(f_grid, below), take(f_grid, best), take(f_grid, above)
    spacing = (high - low) / (_GRID_SIZE - 1)
    bend = f_below - 2.0 * f_best + f_above
    concave = jnp.isfinite(bend) & (bend < 0) & (below < best) & (best < above)
    rise = jnp.where(concave, f_below - f_above, 0.0)
    offset = 0.5 * spacing * rise / jnp.where(concave, bend, -1.0)
    start = jnp.clip(take(grid, best) + jnp.where(concave, offset, 0.0), lower, upper)

    noise = 16 * np.finfo(dtype).eps

    def newton_step(carry, _):
        t, lower, upper, best_xi, best_sigma, best_f = carry
        xi, sigma, f, df, d2f = (
            a[..., 0]
            for a in profile(sample, jnp.expm1(t)[..., None], t[..., None], derivatives=True)
        )
        # Later iterates are more precise, so they replace the best point
        # unless they are worse by more than the rounding error of f.
        improved = (xi >= -1.0) & (f >= best_f - noise * (1.0 + jnp.abs(best_f)))
        best_xi = jnp.where(improved, xi, best_xi)
        best_sigma = jnp.where(improved, sigma, best_sigma)
        best_f = jnp.where(improved, f, best_f)

        # Derivatives in t = log(1 + e), with de/dt = 1 + e.
        growth = jnp.exp(t)
        slope = growth * df
        curvature = growth * df + growth**2 * d2f

        # A zero slope keeps both ends, so a converged point stays put.
        lower = jnp.where(slope > 0, t, lower)
        upper = jnp.where(slope < 0, t, upper)
        concave = curvature < 0
        proposal = t - slope / jnp.where(concave, curvature, -1.0)
        accept = concave & (proposal >= lower) & (proposal <= upper)
        t_next = jnp.where(accept, proposal, 0.5 * (lower + upper))
        carry = (t_next, lower, upper, best_xi, best_sigma, best_f)
        return carry, jnp.abs(t_next - t)

    # Any Newton iterate within the grid's rounding error replaces the grid point.
    f_start = f_best - 16 * np.finfo(coarse_dtype).eps * (1.0 + jnp.abs(f_best))
    initial = (start, lower, upper, take(xi_grid, best), take(sigma_grid, best), f_start)
    (_, _, _, xi, sigma, f), steps = jax.lax.scan(newton_step, initial, None, length=_NEWTON_STEPS)

    # The boundary solution has f = -log(1) = 0 in units of max(y).
    boundary = ~(f > 0.0)
    xi = jnp.where(boundary, -1.0, xi)
    sigma = jnp.where(boundary, 1.0, sigma)

    # A step of 1e-4 in t moves xi and sigma by about 1e-4 relative, far below
    # their standard errors for any sample size that fits in memory.
    tolerance = 1e-4
    edge = (best == 0) | (best == _GRID_SIZE - 1)
    status = jnp.where(boundary, int(Status.XI_BOUNDARY), 0)
    status |= jnp.where(~boundary & edge, int(Status.AT_SEARCH_BOUND), 0)
    status |= jnp.where(~boundary & (steps[-1] > tolerance), int(Status.NOT_CONVERGED), 0)
    return xi, sigma, status.astype(jnp.int32)


def _pwm(z, mask, n):
    """Probability-weighted moments estimate.

    With the exceedances sorted ascending and plotting positions
    ``p_i = (i - 0.35) / n``, ``a_0 = mean(z)`` and
    ``a_1 = mean((1 - p_i) z_(i))``:

    .. math::

        \\xi = 2 - \\frac{a_0}{a_0 - 2 a_1}, \\qquad
        \\sigma = \\frac{2 a_0 a_1}{a_0 - 2 a_1}.

    The estimate always has ``xi < 1``; it may fall below ``-1`` and may put
    ``max(y)`` beyond the fitted upper endpoint.

    Reference: J. R. M. Hosking and J. R. Wallis, "Parameter and quantile
    estimation for the generalized Pareto distribution", Technometrics 29 (1987).
    """
    dtype = z.dtype
    ascending = jnp.sort(jnp.where(mask, z, jnp.inf), axis=-1)
    rank = jnp.arange(1, z.shape[-1] + 1, dtype=dtype)
    valid = rank <= n[..., None]
    ascending = jnp.where(valid, ascending, 0.0)
    plotting = (rank - 0.35) / n[..., None]

    a0 = jnp.sum(ascending, axis=-1) / n
    a1 = jnp.sum(jnp.where(valid, (1.0 - plotting) * ascending, 0.0), axis=-1) / n
    denominator = a0 - 2.0 * a1
    xi = 2.0 - a0 / denominator
    sigma = 2.0 * a0 * a1 / denominator
    return xi, sigma, jnp.zeros(n.shape, jnp.int32)
