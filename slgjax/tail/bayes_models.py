"""NumPyro models of GPD exceedances for the K states of one prompt.

Both models take exceedances ``y`` of shape ``[K, m]`` over each state's
threshold and a boolean ``mask`` of the same shape (False marks padding, so
states may have different numbers of exceedances). The observed site ``y``
is a :class:`~slgjax.tail.bayes_dist.GPDExceedances` vector per state, which
ignores padding and evaluates the likelihood in its cheap joint form.

**Support constraint.** A state's exceedances lie inside the GPD support only
when ``xi_k > -sigma_k / max(y_k)``. Both models sample ``xi_k`` through a
transform that maps a free real variable onto that open half-line, so NUTS and
the Laplace optimiser never propose a point where an observation falls outside
the support. With ``xi_k = loc + scale * eps_k`` and the bound
``a_k = (-sigma_k / max(y_k) - loc) / scale`` on ``eps_k``, the free variable
``v_k`` maps to

.. math::

    \\epsilon_k = a_k + \\operatorname{softplus}(v_k - a_k)
               = v_k + \\operatorname{softplus}(a_k - v_k),

which is the identity far above the bound and behaves like ``a_k + exp(v_k - a_k)``
near it, so posteriors that sit close to the bound (bounded rewards with
``xi`` near ``-1``) stay well resolved.

**Induced prior.** The models add ``log N(eps_k; 0, 1)`` plus the log-Jacobian
of the transform, without the truncation's normaliser. The prior density on
``(sigma, xi)`` is therefore the unrestricted prior (``xi_k ~ N(0, xi_scale^2)``
or ``N(xi_mean, xi_tau^2)``) times the indicator of the support constraint.
Because the likelihood is zero outside the constraint anyway, the posterior is
exactly the posterior under the unrestricted prior, and the transform only
changes the coordinates the sampler moves in. Read as a proper prior, the restriction
tilts the prior on ``sigma_k`` by ``P(xi_k > -sigma_k / max(y_k))``, a factor
above 0.99 whenever ``sigma_k / max(y_k) > 0.7`` at the default ``xi_scale``.
A state without exceedances has no constraint and keeps the unrestricted prior.

**Scale prior.** ``log sigma_k ~ N(log(mean(y_k)), log_sigma_scale^2)``: a
weakly informative prior centred on the mean exceedance, which equals
``sigma / (1 - xi)`` and so is within a factor of two of ``sigma`` for
``-1 < xi < 1/2``. Every latent is sampled in standardised form, so a free
value of zero is a sensible starting point at any reward scale.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from slgjax.tail.bayes_dist import GPDExceedances

__all__ = [
    "gpd_model_independent",
    "gpd_model_hierarchical",
    "free_latent_shapes",
    "restrict_shape",
    "MODELS",
]


def _exceedance_summary(y, mask):
    """Return the per-state log mean exceedance and the largest exceedance.

    A state without a positive exceedance gets a log mean of zero and a
    largest exceedance of zero, which the support transform reads as "no
    constraint".
    """
    valid_y = jnp.where(mask, y, 0.0)
    count = jnp.sum(mask, axis=-1)
    mean = jnp.sum(valid_y, axis=-1) / jnp.maximum(count, 1)
    log_mean = jnp.log(jnp.where(mean > 0, mean, 1.0))
    return log_mean, jnp.max(valid_y, axis=-1)


def _pooled_log_mean(y, mask):
    valid_y = jnp.where(mask, y, 0.0)
    mean = jnp.sum(valid_y) / jnp.maximum(jnp.sum(mask), 1)
    return jnp.log(jnp.where(mean > 0, mean, 1.0))


def restrict_shape(free, *, loc, scale, sigma, max_y):
    """Map a free variable onto ``xi > -sigma / max_y`` with ``xi = loc + scale * eps``.

    Args:
      free: unconstrained values ``v``, any shape.
      loc, scale: location and (positive) scale of ``xi`` in standardised form.
      sigma: GPD scale of each state.
      max_y: largest exceedance of each state; zero means no constraint.

    Returns:
      ``(xi, eps, log_jacobian)``, where ``log_jacobian = log d eps / d v``.
      Near the bound ``xi`` is formed as ``lower + scale * softplus(v - a)``,
      which keeps its distance to the bound precise, and it stays at least
      four ulps above the bound, so ``1 + xi max_y / sigma > 0`` is true after
      rounding too. ``eps`` and the Jacobian ignore that last adjustment,
      which only moves points closer to the bound than float resolution.
    """
    bounded = max_y > 0
    lower = -sigma / jnp.where(bounded, max_y, 1.0)
    bound = jnp.where(bounded, (lower - loc) / scale, 0.0)
    gap = free - bound

    far = gap > 0
    safe_far_gap = jnp.where(far, gap, 1.0)
    safe_near_gap = jnp.where(far, -1.0, gap)
    eps_far = free + jax.nn.softplus(-safe_far_gap)
    eps_near = bound + jax.nn.softplus(safe_near_gap)
    xi_far = loc + scale * eps_far
    xi_near = lower + scale * jax.nn.softplus(safe_near_gap)

    # Keep xi a few ulps above the bound: a point closer than float resolution
    # would round onto it and put the largest exceedance on the endpoint.
    resolution = 4 * jnp.finfo(jnp.result_type(lower)).eps
    xi_near = jnp.maximum(xi_near, lower * (1 - resolution))

    eps = jnp.where(bounded, jnp.where(far, eps_far, eps_near), free)
    xi = jnp.where(bounded, jnp.where(far, xi_far, xi_near), loc + scale * free)
    log_jacobian = jnp.where(bounded, jax.nn.log_sigmoid(gap), 0.0)
    return xi, eps, log_jacobian


def _sample_shape(name, *, loc, scale, sigma, max_y):
    """Sample ``xi`` inside the support constraint under a normal prior (see module doc)."""
    free = numpyro.sample(name, dist.ImproperUniform(constraints.real, (), ()))
    xi, eps, log_jacobian = restrict_shape(free, loc=loc, scale=scale, sigma=sigma, max_y=max_y)
    numpyro.factor(f"{name}_prior", dist.Normal(0.0, 1.0).log_prob(eps) + log_jacobian)
    return numpyro.deterministic("xi", xi)


def _observe(y, mask, xi, sigma):
    # One masked vector per state: padding is ignored, and the likelihood is
    # the cheap joint form of gpd_exceedance_log_likelihood.
    numpyro.sample("y", GPDExceedances(xi, sigma, mask), obs=jnp.where(mask, y, 0.0))


def gpd_model_independent(y, mask, *, xi_scale=0.3, log_sigma_scale=1.0):
    """GPD exceedances with a separate ``(xi_k, sigma_k)`` for every state.

    Priors: ``xi_k ~ N(0, xi_scale^2)`` restricted to ``xi_k > -sigma_k / max(y_k)``
    and ``log sigma_k ~ N(log mean(y_k), log_sigma_scale^2)`` (module doc).

    Args:
      y: float[K, m] exceedances (``>= 0`` under the mask).
      mask: bool[K, m]; False marks padding.
      xi_scale: prior standard deviation of ``xi``.
      log_sigma_scale: prior standard deviation of ``log sigma``.

    Sites: free ``log_sigma_std`` and ``xi_free`` [K]; deterministic ``sigma``
    and ``xi`` [K]; observed ``y``, one :class:`~slgjax.tail.bayes_dist.GPDExceedances`
    vector per state.
    """
    num_states = y.shape[0]
    log_mean, max_y = _exceedance_summary(y, mask)

    with numpyro.plate("states", num_states):
        log_sigma_std = numpyro.sample("log_sigma_std", dist.Normal(0.0, 1.0))
        sigma = numpyro.deterministic("sigma", jnp.exp(log_mean + log_sigma_scale * log_sigma_std))
        xi = _sample_shape("xi_free", loc=0.0, scale=xi_scale, sigma=sigma, max_y=max_y)

    _observe(y, mask, xi, sigma)


def gpd_model_hierarchical(
    y,
    mask,
    *,
    pool_log_sigma=False,
    xi_scale=0.3,
    xi_tau_scale=0.1,
    log_sigma_scale=1.0,
    log_sigma_tau_scale=0.5,
):
    """GPD exceedances whose shapes ``xi_k`` are pooled across the K states.

    Non-centred hierarchy: ``xi_0 ~ N(0, xi_scale^2)``,
    ``tau ~ HalfNormal(xi_tau_scale)``, ``xi_k = xi_0 + tau eps_k`` with
    ``eps_k ~ N(0, 1)`` restricted so that ``xi_k > -sigma_k / max(y_k)``
    (module doc). Without pooling of scales, ``log sigma_k`` has the prior of
    :func:`gpd_model_independent`. With ``pool_log_sigma=True``,
    ``log sigma_k = mu + tau_s eta_k`` with ``mu ~ N(log mean(y), log_sigma_scale^2)``
    over all of the prompt's exceedances, ``tau_s ~ HalfNormal(log_sigma_tau_scale)``
    and ``eta_k ~ N(0, 1)``.

    The K states share a policy and a reward model, so their tail shapes are
    related; pooling lets states with few exceedances borrow strength.

    Args:
      y: float[K, m] exceedances (``>= 0`` under the mask).
      mask: bool[K, m]; False marks padding.
      pool_log_sigma: also pool the log scales across states.
      xi_scale: prior standard deviation of the mean shape ``xi_0``.
      xi_tau_scale: scale of the half-normal prior on the spread ``tau`` of shapes.
      log_sigma_scale: prior standard deviation of ``log sigma`` (or of its mean).
      log_sigma_tau_scale: scale of the half-normal prior on the spread of log scales.

    Sites: free ``xi_mean_std``, ``xi_tau_std`` (positive), ``xi_free`` [K],
    ``log_sigma_std`` [K] and, when pooling, ``log_sigma_mean_std`` and
    ``log_sigma_tau_std`` (positive); deterministic ``xi_mean``, ``xi_tau``,
    ``xi`` and ``sigma`` [K] (and ``log_sigma_mean``, ``log_sigma_tau``).
    """
    num_states = y.shape[0]
    log_mean, max_y = _exceedance_summary(y, mask)

    xi_mean_std = numpyro.sample("xi_mean_std", dist.Normal(0.0, 1.0))
    xi_mean = numpyro.deterministic("xi_mean", xi_scale * xi_mean_std)
    xi_tau_std = numpyro.sample("xi_tau_std", dist.HalfNormal(1.0))
    xi_tau = numpyro.deterministic("xi_tau", xi_tau_scale * xi_tau_std)
    # A tau that underflows to zero would put the bound on eps at infinity.
    xi_tau = jnp.maximum(xi_tau, jnp.finfo(jnp.result_type(xi_tau)).tiny)

    if pool_log_sigma:
        log_sigma_mean_std = numpyro.sample("log_sigma_mean_std", dist.Normal(0.0, 1.0))
        log_sigma_mean = numpyro.deterministic(
            "log_sigma_mean", _pooled_log_mean(y, mask) + log_sigma_scale * log_sigma_mean_std
        )
        log_sigma_tau_std = numpyro.sample("log_sigma_tau_std", dist.HalfNormal(1.0))
        log_sigma_tau = numpyro.deterministic(
            "log_sigma_tau", log_sigma_tau_scale * log_sigma_tau_std
        )

    with numpyro.plate("states", num_states):
        log_sigma_std = numpyro.sample("log_sigma_std", dist.Normal(0.0, 1.0))
        if pool_log_sigma:
            log_sigma = log_sigma_mean + log_sigma_tau * log_sigma_std
        else:
            log_sigma = log_mean + log_sigma_scale * log_sigma_std
        sigma = numpyro.deterministic("sigma", jnp.exp(log_sigma))
        xi = _sample_shape("xi_free", loc=xi_mean, scale=xi_tau, sigma=sigma, max_y=max_y)

    _observe(y, mask, xi, sigma)


MODELS = {"independent": gpd_model_independent, "hierarchical": gpd_model_hierarchical}


def free_latent_shapes(model, y, mask, **options):
    """Return ``{site name: shape}`` of the model's free (unobserved) sample sites.

    The sites of both models are real or positive, so the unconstrained shape
    equals the site's shape. Runs the model once in Python with each latent
    set to its unconstrained value zero; nothing is sampled.
    """

    def at_zero(site):
        if site["type"] != "sample" or site["is_observed"]:
            return None
        fn = site["fn"]
        return dist.biject_to(fn.support)(jnp.zeros(fn.shape()))

    with numpyro.handlers.trace() as trace, numpyro.handlers.substitute(substitute_fn=at_zero):
        model(y, mask, **options)
    return {
        name: tuple(site["value"].shape)
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
