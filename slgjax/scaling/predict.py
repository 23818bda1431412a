"""Predict best-of-N values ``V_N = E[max of N rewards]`` from m samples, with a band.

One entry point, :func:`predict_best_of_n`, covers every tail model of
:mod:`slgjax.tail` and a naive baseline:

===========================  ==============================================================
``model``                    prediction of ``V_N``
===========================  ==============================================================
``"gaussian"``               ``mu + sigma E_N``, ``E_N`` the exact expected maximum of N
                             standard normals (truncated-normal moment fit)
``"gaussian_quantile"``      ``mu + sigma Phi^-1(1 - 1/N)``, the rule of the reference
                             code of Li, Qian and Mou (2026, arXiv:2602.01485)
``"gpd_zhang_stephens"``     spliced model: empirical body, GPD tail fitted by the
``"gpd_profile_mle"``        named estimator; exact expected maximum by default, or the
``"gpd_pwm"``                return level ``Q(1 - 1/N)`` with ``gpd_method="return_level"``
``"bayes_independent"``      posterior mean of ``V_N`` under a Bayesian GPD tail, per state
``"bayes_hierarchical"``     the same with the shape ``xi`` pooled across the states of a
                             prompt (rewards ``[K, m]`` or ``[B, K, m]``)
``"empirical_max"``          the unbiased without-replacement estimate for ``N <= m``,
                             the sample maximum beyond (no extrapolation)
===========================  ==============================================================

Bands: for the frequentist models, a percentile parametric bootstrap
(:mod:`slgjax.scaling.bootstrap`; a nonparametric one for ``"empirical_max"``);
for the Bayesian models, the central posterior credible interval.

NOTE: percentile bands undercover where their width grows with the fitted
tail parameter and the estimator is biased, because a sample whose estimate
is low also gets a narrow band. On 200 states of m = 200 rewards (40 in the
tail), the 90% band covered 85-87% for ``"gaussian"`` and 66% for
``"gpd_profile_mle"`` at N = 1024 on GPD(xi = -0.2) rewards (tests/test_scaling.py,
``test_band_coverage``).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from slgjax.scaling import bootstrap
from slgjax.scaling.empirical import _empirical_jit, check_budgets, check_not_empty
from slgjax.tail._validate import as_rewards_and_mask
from slgjax.tail.gaussian import fit_gaussian_tail, gaussian_tail_value
from slgjax.tail.status import Status

__all__ = ["BestOfNPrediction", "predict_best_of_n", "MODELS"]

GAUSSIAN_MODELS = {"gaussian": "expected_max", "gaussian_quantile": "quantile"}
GPD_MODELS = {
    "gpd_zhang_stephens": "zhang_stephens",
    "gpd_profile_mle": "profile_mle",
    "gpd_pwm": "pwm",
}
BAYES_MODELS = {"bayes_independent": "independent", "bayes_hierarchical": "hierarchical"}
MODELS = (*GAUSSIAN_MODELS, *GPD_MODELS, *BAYES_MODELS, "empirical_max")


class BestOfNPrediction(NamedTuple):
    """Predicted best-of-N values with an uncertainty band.

    Attributes:
      value: float[S + n.shape], the predicted ``V_N`` of each state ``S`` and
        budget. ``+inf`` where a fitted GPD shape ``xi >= 1`` makes the
        expected maximum infinite.
      lower: float[S + n.shape] lower end of the band, or None when
        ``band=None`` was passed.
      upper: float[S + n.shape] upper end of the band, or None.
      status: int32[S] :class:`~slgjax.tail.status.Status` flags of the fit.
      fit: the fitted model (``GaussianTailFit``, ``GPDFit``, ``BayesGPDFit``),
        or None for ``"empirical_max"``.
    """

    value: jax.Array
    lower: jax.Array | None
    upper: jax.Array | None
    status: jax.Array
    fit: Any


def _check_options(model, band, key, num_resamples, gpd_method):
    if model not in MODELS:
        raise ValueError(f"model={model!r} is unknown; use one of {MODELS}.")
    if band is not None and not 0.0 < float(band) < 1.0:
        raise ValueError(
            f"band={band} is outside (0, 1); it is the central probability of the band, "
            "for example 0.9. Pass band=None to skip the band."
        )
    needs_key = model in BAYES_MODELS or band is not None
    if needs_key and key is None:
        raise ValueError(
            f"model={model!r} with band={band} needs a random key; pass "
            "key=jax.random.key(seed), or band=None for a frequentist point prediction."
        )
    if band is not None and model not in BAYES_MODELS and int(num_resamples) < 2:
        raise ValueError(f"num_resamples={num_resamples} must be >= 2 for a bootstrap band.")
    if gpd_method not in ("expected_max", "return_level"):
        raise ValueError(
            f"gpd_method={gpd_method!r} is unknown; use 'expected_max' or 'return_level'."
        )


def predict_best_of_n(
    rewards,
    mask=None,
    *,
    n,
    model: str = "gaussian",
    key=None,
    band: float | None = 0.9,
    num_resamples: int = 200,
    tail_fraction: float = 0.2,
    gpd_method: str = "expected_max",
    inference: str = "laplace",
    num_samples: int | None = None,
    num_chains: int | None = None,
) -> BestOfNPrediction:
    """Fit a tail model to each state's rewards and predict ``V_N`` with a band.

    Args:
      rewards: float[..., m] rewards; leading axes are states (``[m]``,
        ``[K, m]`` or ``[B, K, m]``). The hierarchical model pools over the
        second-to-last axis (the K states of a prompt).
      mask: optional bool[..., m]; False marks a missing sample.
      n: budgets ``N >= 1``, an int or an int array of any shape.
      model: one of :data:`MODELS` (table in the module docstring).
      key: JAX random key, required for the Bayesian models and for any band.
      band: central probability of the band, or None for no band (then
        ``lower`` and ``upper`` are None).
      num_resamples: bootstrap replicates ``R`` for the frequentist bands.
      tail_fraction: share of each state's rewards kept in the tail.
      gpd_method: ``"expected_max"`` (exact expected maximum of the spliced
        model) or ``"return_level"`` (``Q(1 - 1/N)``); GPD and Bayesian models.
      inference: ``"laplace"`` (fast) or ``"nuts"``; Bayesian models only.
      num_samples: posterior draws per chain (None: the Bayesian fit's default).
      num_chains: NUTS chains (None: the Bayesian fit's default).

    Returns:
      A :class:`BestOfNPrediction`; values have shape ``rewards.shape[:-1] + n.shape``.

    Raises:
      ValueError: for an unknown model or option, a band outside ``(0, 1)``, a
        missing key, a budget below one, an empty sample axis, or a non-finite
        reward (the message names its position).
    """
    _check_options(model, band, key, num_resamples, gpd_method)
    rewards, mask = as_rewards_and_mask(rewards, mask)
    check_not_empty(rewards)
    n = check_budgets(n)

    if model in GAUSSIAN_MODELS:
        return _predict_gaussian(
            rewards, mask, n, GAUSSIAN_MODELS[model], key, band, num_resamples, tail_fraction
        )
    if model in GPD_MODELS:
        return _predict_gpd(
            rewards,
            mask,
            n,
            GPD_MODELS[model],
            key,
            band,
            num_resamples,
            tail_fraction,
            gpd_method,
        )
    if model in BAYES_MODELS:
        return _predict_bayes(
            rewards,
            mask,
            n,
            BAYES_MODELS[model],
            key,
            band,
            tail_fraction,
            gpd_method,
            inference,
            num_samples,
            num_chains,
        )
    return _predict_empirical(rewards, mask, n, key, band, num_resamples)


# Budgets are checked eagerly by predict_best_of_n; one compiled program then
# serves the point prediction and, with a leading resample axis, the band.
_gaussian_value = jax.jit(gaussian_tail_value, static_argnames=("method",))


def _predict_gaussian(rewards, mask, n, method, key, band, num_resamples, tail_fraction):
    fit = fit_gaussian_tail(rewards, mask, tail_fraction=tail_fraction)
    value = _gaussian_value(fit, n, method=method)
    if band is None:
        return BestOfNPrediction(value, None, None, fit.status, fit)

    simulated, simulated_mask = bootstrap.simulate_gaussian_splice(
        key, fit, rewards, mask, num_resamples=num_resamples
    )
    refit = fit_gaussian_tail(simulated, simulated_mask, tail_fraction=tail_fraction)
    replicates = _gaussian_value(refit, n, method=method)
    lower, upper = bootstrap.percentile_band(replicates, band=band)
    return BestOfNPrediction(value, lower, upper, fit.status, fit)


def _predict_gpd(rewards, mask, n, method, key, band, num_resamples, tail_fraction, gpd_method):
    from slgjax.tail.gpd_fit import fit_gpd
    from slgjax.tail.gpd_predict import gpd_tail_value

    fit = fit_gpd(rewards, mask, method=method, tail_fraction=tail_fraction)
    value = gpd_tail_value(fit, rewards, mask, n, method=gpd_method)
    if band is None:
        return BestOfNPrediction(value, None, None, fit.status, fit)

    simulated, simulated_mask = bootstrap.simulate_gpd_splice(
        key, fit, rewards, mask, num_resamples=num_resamples
    )
    refit = fit_gpd(simulated, simulated_mask, method=method, tail_fraction=tail_fraction)
    replicates = gpd_tail_value(refit, simulated, simulated_mask, n, method=gpd_method)
    lower, upper = bootstrap.percentile_band(replicates, band=band)
    return BestOfNPrediction(value, lower, upper, fit.status, fit)


def _predict_bayes(
    rewards,
    mask,
    n,
    model,
    key,
    band,
    tail_fraction,
    gpd_method,
    inference,
    num_samples,
    num_chains,
):
    from slgjax.tail.bayes import bayes_tail_posterior, fit_bayes_gpd

    options = {}
    if num_samples is not None:
        options["num_samples"] = num_samples
    if num_chains is not None:
        options["num_chains"] = num_chains
    fit = fit_bayes_gpd(
        key,
        rewards,
        mask,
        model=model,
        inference=inference,
        tail_fraction=tail_fraction,
        **options,
    )
    posterior = bayes_tail_posterior(
        fit, rewards, mask, n, credible_mass=0.9 if band is None else band, method=gpd_method
    )
    if band is None:
        return BestOfNPrediction(posterior.mean, None, None, posterior.status, fit)
    return BestOfNPrediction(
        posterior.mean, posterior.lower, posterior.upper, posterior.status, fit
    )


@jax.jit
def _empirical_or_max(rewards, mask, n):
    """Return the unbiased estimate where ``N <= m_valid``, the sample maximum elsewhere."""
    values = _empirical_jit(rewards, mask, n)
    top = jnp.max(jnp.where(mask, rewards, -jnp.inf), axis=-1)
    top = top[(...,) + (None,) * n.ndim]
    values = jnp.where(jnp.isnan(values), top, values)
    status = jnp.where(jnp.any(mask, axis=-1), 0, int(Status.EMPTY)).astype(jnp.int32)
    return values, status


def _predict_empirical(rewards, mask, n, key, band, num_resamples):
    value, status = _empirical_or_max(rewards, mask, n)
    if band is None:
        return BestOfNPrediction(value, None, None, status, None)

    resampled, resampled_mask = bootstrap.resample_pool(
        key, rewards, mask, num_resamples=num_resamples
    )
    replicates, _ = _empirical_or_max(resampled, resampled_mask, n)
    lower, upper = bootstrap.percentile_band(replicates, band=band)
    return BestOfNPrediction(value, lower, upper, status, None)
