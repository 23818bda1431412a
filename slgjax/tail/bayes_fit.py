"""Posterior draws of GPD tails: NUTS with chains vectorised across prompts, or Laplace.

:func:`fit_bayes_gpd` selects each state's exceedances over a threshold
(:func:`slgjax.tail.threshold.select_exceedances`), fits one of the models of
:mod:`slgjax.tail.bayes_models` and returns posterior draws of ``(xi, sigma)``
per state with MCMC diagnostics. Rewards ``[B, K, m]`` are ``B`` independent
prompts; all their posteriors are computed in one compiled program.
"""

import dataclasses
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

from slgjax.tail._validate import is_traced
from slgjax.tail.bayes_laplace import run_laplace
from slgjax.tail.bayes_nuts import run_nuts
from slgjax.tail.gpd_fit import MIN_EXCEEDANCES
from slgjax.tail.status import Status
from slgjax.tail.threshold import select_exceedances

__all__ = [
    "BayesGPDFit",
    "GPDPrior",
    "fit_bayes_gpd",
    "BAYES_MODELS",
    "BAYES_INFERENCE",
    "MAX_R_HAT",
    "MIN_ESS",
]

BAYES_MODELS = ("independent", "hierarchical")
BAYES_INFERENCE = ("nuts", "laplace")

# Thresholds of the convergence warning: split R-hat above MAX_R_HAT or a
# bulk effective sample size below MIN_ESS (Vehtari et al. 2021, arXiv:1903.08008).
MAX_R_HAT = 1.01
MIN_ESS = 100

_HYPER_SITES = ("xi_mean", "xi_tau", "log_sigma_mean", "log_sigma_tau")


@dataclasses.dataclass(frozen=True)
class GPDPrior:
    """Prior scales of the Bayesian GPD models (see :mod:`slgjax.tail.bayes_models`).

    Attributes:
      xi_scale: standard deviation of the normal prior on ``xi`` (independent
        model) or on the mean shape ``xi_0`` (hierarchical model).
      xi_tau_scale: scale of the half-normal prior on the spread of shapes
        across the states of a prompt (hierarchical model).
      log_sigma_scale: standard deviation of the normal prior on ``log sigma``
        around the log mean exceedance.
      log_sigma_tau_scale: scale of the half-normal prior on the spread of log
        scales across states (hierarchical model with ``pool_log_sigma``).
    """

    xi_scale: float = 0.3
    xi_tau_scale: float = 0.1
    log_sigma_scale: float = 1.0
    log_sigma_tau_scale: float = 0.5

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"{field.name}={value} must be positive; it is a prior scale.")


class BayesGPDFit(NamedTuple):
    """Posterior draws of a GPD tail for each state; batch shape ``S = rewards.shape[:-1]``.

    Attributes:
      xi_samples: float[S + (D,)] draws of the shape ``xi``; ``D`` is
        ``num_chains * num_samples`` for NUTS (chain-major) and
        ``num_samples`` for Laplace.
      sigma_samples: float[S + (D,)] draws of the scale ``sigma``.
      threshold: float[S], threshold ``u`` of the exceedances.
      exceedance_fraction: float[S], ``p_u``, the share of valid rewards above ``u``.
      num_exceedances: int32[S].
      status: int32[S] :class:`~slgjax.tail.status.Status` flags. The flags of
        the threshold selection are kept. ``FEW_EXCEEDANCES`` marks fewer than
        :data:`~slgjax.tail.gpd_fit.MIN_EXCEEDANCES` exceedances, where the
        prior carries the fit (no fallback rule is applied). ``DEGENERATE``
        marks two or more exceedances that are all equal, and
        ``INFINITE_MEAN`` a draw with ``xi >= 1``. ``NOT_CONVERGED`` marks a
        failed diagnostic of the state or of its prompt's shared parameters,
        or Laplace Newton iterations that did not converge.
      r_hat: dict from parameter name to split R-hat; ``"xi"`` and ``"sigma"``
        have shape ``S``, the hierarchical model's shared parameters
        (``"xi_mean"``, ``"xi_tau"`` and, with pooled scales,
        ``"log_sigma_mean"``, ``"log_sigma_tau"``) have the prompt shape
        ``S[:-1]``. ``None`` for Laplace, or when NUTS ran under a JAX
        transformation where the diagnostics cannot be computed.
      ess: dict of effective sample sizes (over all chains), keyed like ``r_hat``.
      num_divergent: int32[S] divergent NUTS transitions of the chains that
        sampled the state (for the hierarchical model, of its prompt); ``None``
        for Laplace.
    """

    xi_samples: jax.Array
    sigma_samples: jax.Array
    threshold: jax.Array
    exceedance_fraction: jax.Array
    num_exceedances: jax.Array
    status: jax.Array
    r_hat: dict | None
    ess: dict | None
    num_divergent: jax.Array | None = None


def _check_arguments(model, inference, num_samples, num_warmup, num_chains, prior):
    if model not in BAYES_MODELS:
        raise ValueError(f"model={model!r} is unknown; use one of {BAYES_MODELS}.")
    if inference not in BAYES_INFERENCE:
        raise ValueError(f"inference={inference!r} is unknown; use one of {BAYES_INFERENCE}.")
    if not isinstance(prior, GPDPrior):
        raise ValueError(f"prior={prior!r} must be a GPDPrior.")
    if inference == "nuts":
        if num_samples < 4:
            raise ValueError(
                f"num_samples={num_samples} is too small for split R-hat; use at least 4 "
                "(a few hundred for usable estimates)."
            )
        if num_warmup < 1:
            raise ValueError(f"num_warmup={num_warmup} must be >= 1.")
        if num_chains < 1:
            raise ValueError(f"num_chains={num_chains} must be >= 1.")
    elif num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1.")


def _nuts_tuning(target_accept_prob, max_tree_depth, num_newton_steps):
    """Check the sampler settings and return them as the static tuple of ``run_nuts``."""
    if not 0.0 < float(target_accept_prob) < 1.0:
        raise ValueError(
            f"target_accept_prob={target_accept_prob} is outside (0, 1); 0.8 is the usual value."
        )
    depths = max_tree_depth if isinstance(max_tree_depth, tuple) else (max_tree_depth,) * 2
    if len(depths) != 2 or not all(isinstance(d, int) and d >= 1 for d in depths):
        raise ValueError(
            f"max_tree_depth={max_tree_depth!r} must be a positive int or a pair "
            "(warmup depth, sampling depth) of positive ints."
        )
    if num_newton_steps < 1:
        raise ValueError(f"num_newton_steps={num_newton_steps} must be >= 1.")
    return float(target_accept_prob), tuple(depths), int(num_newton_steps)


def _prompt_batch(rewards, mask):
    """Return rewards and mask as [B, K, m] and the original batch shape."""
    rewards = jnp.asarray(rewards)
    if rewards.ndim not in (1, 2, 3):
        raise ValueError(
            f"rewards has shape {rewards.shape}; pass [m] (one state), [K, m] (the states of "
            "one prompt) or [B, K, m] (B prompts)."
        )
    batch_shape = rewards.shape[:-1]
    leading = (1,) * (3 - rewards.ndim)
    rewards = rewards.reshape(leading + rewards.shape)
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != batch_shape + rewards.shape[-1:]:
            raise ValueError(
                f"mask shape {mask.shape} does not match rewards shape "
                f"{batch_shape + rewards.shape[-1:]}; pass one boolean per reward."
            )
        mask = mask.reshape(rewards.shape)
    return rewards, mask, batch_shape


def _model_options(model, pool_log_sigma, prior):
    options = {"xi_scale": prior.xi_scale, "log_sigma_scale": prior.log_sigma_scale}
    if model == "hierarchical":
        options.update(
            pool_log_sigma=bool(pool_log_sigma),
            xi_tau_scale=prior.xi_tau_scale,
            log_sigma_tau_scale=prior.log_sigma_tau_scale,
        )
    return tuple(sorted(options.items()))


def _exceedance_status(exceedances):
    y, mask = exceedances.y, exceedances.mask
    count = exceedances.num_exceedances
    largest = jnp.max(jnp.where(mask, y, -jnp.inf), axis=-1)
    smallest = jnp.min(jnp.where(mask, y, jnp.inf), axis=-1)
    status = exceedances.status
    status |= jnp.where(count < MIN_EXCEEDANCES, int(Status.FEW_EXCEEDANCES), 0)
    status |= jnp.where((count >= 2) & (largest == smallest), int(Status.DEGENERATE), 0)
    return status.astype(jnp.int32)


def _nuts_diagnostics(sites, num_prompts, num_states):
    """Return split R-hat, ESS and the failed states of NUTS draws [P, C, S, ...].

    Per-state parameters get values [B, K] and the hierarchical model's shared
    parameters values [B]; a state fails when its own diagnostics or those of
    its prompt's shared parameters fail.
    """
    names = ("xi", "sigma") + tuple(name for name in _HYPER_SITES if name in sites)
    r_hat, ess = {}, {}
    for name in names:
        shape = (num_prompts, num_states) if name in ("xi", "sigma") else (num_prompts,)
        draws = np.moveaxis(np.asarray(sites[name]), (1, 2), (0, 1))
        r_hat[name] = jnp.asarray(split_gelman_rubin(draws)).reshape(shape)
        ess[name] = jnp.asarray(effective_sample_size(draws)).reshape(shape)

    failed = _failed(r_hat["xi"], ess["xi"]) | _failed(r_hat["sigma"], ess["sigma"])
    for name in names[2:]:
        failed = failed | _failed(r_hat[name], ess[name])[:, None]
    return r_hat, ess, failed


def _failed(r_hat, ess):
    """True where R-hat is above MAX_R_HAT, not finite, or ESS is below MIN_ESS."""
    return ~(r_hat <= MAX_R_HAT) | ~(ess >= MIN_ESS)


def _convergence_message(r_hat, ess):
    worst_r_hat = max(r_hat, key=lambda name: float(jnp.nanmax(r_hat[name])))
    worst_ess = min(ess, key=lambda name: float(jnp.nanmin(ess[name])))
    return (
        f"NUTS did not converge: max split R-hat {float(jnp.nanmax(r_hat[worst_r_hat])):.3f} "
        f"(at '{worst_r_hat}', limit {MAX_R_HAT}), min effective sample size "
        f"{float(jnp.nanmin(ess[worst_ess])):.0f} (at '{worst_ess}', limit {MIN_ESS}). "
        "Increase num_warmup, num_samples or num_chains; the affected states carry "
        "Status.NOT_CONVERGED."
    )


def _to_batch(value, batch_shape):
    """Reshape per-state [B, K] values to the batch shape and per-prompt [B] ones to its prefix."""
    return value.reshape(batch_shape if value.ndim == 2 else batch_shape[:-1])


def fit_bayes_gpd(
    key,
    rewards,
    mask=None,
    *,
    model: str = "independent",
    inference: str = "nuts",
    tail_fraction: float | None = None,
    num_exceedances: int | None = None,
    num_samples: int = 500,
    num_warmup: int = 500,
    num_chains: int = 4,
    pool_log_sigma: bool = False,
    prior: GPDPrior = GPDPrior(),
    target_accept_prob: float = 0.8,
    max_tree_depth: int | tuple[int, int] = (6, 10),
    num_newton_steps: int = 30,
) -> BayesGPDFit:
    """Fit a Bayesian GPD tail to each state's exceedances and return posterior draws.

    Args:
      key: a JAX random key. Prompt ``b`` of rewards ``[B, K, m]`` uses
        ``jax.random.split(key, B)[b]``, and rewards ``[K, m]`` or ``[m]`` use
        ``key`` itself. A loop that calls this function on ``rewards[b]`` with
        ``jax.random.split(key, B)[b]`` therefore runs the same computation. Laplace
        draws then agree to float rounding. NUTS draws do not: batching changes
        the rounding of sums over states, and NUTS amplifies such differences
        along a chain, so the loop samples the same posterior with different
        draws.
      rewards: float[m], [K, m] or [B, K, m] rewards; ``B`` prompts, each with
        ``K`` states of ``m`` samples.
      mask: optional bool array of the same shape; False marks a missing sample.
      model: ``"independent"`` (a separate ``(xi, sigma)`` per state) or
        ``"hierarchical"`` (shapes pooled across the K states of a prompt).
      inference: ``"nuts"`` or ``"laplace"`` (MAP estimate and a Gaussian
        approximation in the free coordinates; cheap enough inside a search).
      tail_fraction: share of each state's valid rewards kept as exceedances
        (0.2 when neither this nor ``num_exceedances`` is given).
      num_exceedances: requested number of exceedances per state, instead of
        ``tail_fraction``.
      num_samples: NUTS draws per chain after warmup, or Laplace draws.
      num_warmup: NUTS warmup (adaptation) steps per chain.
      num_chains: NUTS chains per posterior.
      pool_log_sigma: hierarchical model only; also pool the log scales.
      prior: prior scales, a :class:`GPDPrior`.
      target_accept_prob: NUTS step-size adaptation target.
      max_tree_depth: NUTS maximum tree depth (at most ``2^depth - 1`` leapfrog
        steps per draw), an int or ``(warmup depth, sampling depth)`` as in
        NumPyro. The default caps warmup at depth 6: under ``vmap`` every
        chain of the batch waits for the deepest tree, and the deep trees of
        early warmup, when step sizes are still being tuned, cost the batch
        about a quarter of its time (``benchmarks/bayes_fit.py``).
      num_newton_steps: damped Newton iterations of the MAP search (Laplace
        inference, and the chain starts of NUTS).

    Returns:
      A :class:`BayesGPDFit` with batch shape ``rewards.shape[:-1]``.

    Warns:
      UserWarning: after NUTS, when any split R-hat exceeds :data:`MAX_R_HAT`
        or any effective sample size is below :data:`MIN_ESS`.

    The independent model runs one posterior per state, the hierarchical one
    per prompt. NUTS chains start from draws of the Laplace approximation,
    with its variances as the initial inverse mass matrix. Each new shape of
    ``rewards`` and each new value of an integer or string argument compiles
    once. Under ``jax.jit`` only ``inference="laplace"`` is useful; NUTS then
    returns no diagnostics and issues no warning.
    """
    _check_arguments(model, inference, num_samples, num_warmup, num_chains, prior)
    tuning = _nuts_tuning(target_accept_prob, max_tree_depth, num_newton_steps)
    rewards, mask, batch_shape = _prompt_batch(rewards, mask)
    exceedances = select_exceedances(
        rewards, mask, tail_fraction=tail_fraction, num_exceedances=num_exceedances
    )
    num_prompts, num_states, width = exceedances.y.shape

    # The independent model runs one posterior per state, the hierarchical one per prompt.
    if len(batch_shape) == 2:
        prompt_keys = jax.random.split(key, num_prompts)
    else:
        prompt_keys = jnp.asarray(key)[None]
    if model == "independent":
        state_keys = jax.vmap(lambda k: jax.random.split(k, num_states))(prompt_keys)
        run_keys = state_keys.reshape((num_prompts * num_states,) + state_keys.shape[2:])
        y = exceedances.y.reshape(num_prompts * num_states, 1, width)
        y_mask = exceedances.mask.reshape(num_prompts * num_states, 1, width)
    else:
        run_keys, y, y_mask = prompt_keys, exceedances.y, exceedances.mask

    options = _model_options(model, pool_log_sigma, prior)
    status = _exceedance_status(exceedances)
    r_hat = ess = num_divergent = None

    if inference == "laplace":
        sites, converged = run_laplace(
            run_keys,
            y,
            y_mask,
            model_name=model,
            options=options,
            num_samples=num_samples,
            num_steps=tuning[2],
        )
        # [P, D, K'] -> [B, K, D]
        xi = jnp.moveaxis(sites["xi"], -1, 1).reshape(num_prompts, num_states, num_samples)
        sigma = jnp.moveaxis(sites["sigma"], -1, 1).reshape(num_prompts, num_states, num_samples)
        not_converged = ~converged.reshape(num_prompts, -1)
        status |= jnp.where(not_converged, int(Status.NOT_CONVERGED), 0).astype(jnp.int32)
    else:
        sites, diverging = run_nuts(
            run_keys,
            y,
            y_mask,
            model_name=model,
            options=options,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            tuning=tuning,
        )

        # [P, C, S, K'] -> [B, K, C * S], chain-major.
        num_draws = num_chains * num_samples
        xi = jnp.moveaxis(sites["xi"], -1, 1).reshape(num_prompts, num_states, num_draws)
        sigma = jnp.moveaxis(sites["sigma"], -1, 1).reshape(num_prompts, num_states, num_draws)
        divergent = jnp.sum(diverging, axis=(1, 2), dtype=jnp.int32).reshape(num_prompts, -1)
        num_divergent = jnp.broadcast_to(divergent, (num_prompts, num_states))

        if not is_traced(xi):
            r_hat, ess, failed = _nuts_diagnostics(sites, num_prompts, num_states)
            status |= jnp.where(failed, int(Status.NOT_CONVERGED), 0).astype(jnp.int32)
            if bool(jnp.any(failed)):
                warnings.warn(_convergence_message(r_hat, ess), UserWarning, stacklevel=2)
            r_hat = {name: _to_batch(value, batch_shape) for name, value in r_hat.items()}
            ess = {name: _to_batch(value, batch_shape) for name, value in ess.items()}

    status |= jnp.where(jnp.any(xi >= 1, axis=-1), int(Status.INFINITE_MEAN), 0).astype(jnp.int32)

    def batch(value):
        return value.reshape(batch_shape + value.shape[2:])

    return BayesGPDFit(
        xi_samples=batch(xi),
        sigma_samples=batch(sigma),
        threshold=batch(exceedances.threshold),
        exceedance_fraction=batch(exceedances.exceedance_fraction),
        num_exceedances=batch(exceedances.num_exceedances),
        status=batch(status),
        r_hat=r_hat,
        ess=ess,
        num_divergent=None if num_divergent is None else batch(num_divergent),
    )
