"""NUTS over many independent prompts in one compiled program.

Each prompt has its own posterior, step size and mass matrix. The sampler is
NumPyro's functional NUTS kernel (``numpyro.infer.hmc.hmc``), run for one chain
by a ``lax.scan`` over warmup and sampling steps, then ``vmap``-ed over the
chains of a prompt and over the prompts. Chains start from draws of the
prompt's Laplace approximation (:mod:`slgjax.tail.bayes_laplace`).

Under ``vmap`` the NUTS tree-building loops run in lockstep, so one iteration
costs as much as the deepest tree in the batch. Whether batching prompts pays
depends on the hardware. On a shared 2-core CPU the gradient of one prompt's
potential already keeps a core busy, and ``benchmarks/bayes_fit.py`` measured
32 prompts at 1.0 to 1.5 times the throughput of a loop over prompts. A NUTS
run over the joint posterior of all prompts (one trajectory for the batch)
was slower than both, because its trajectories must suit the hardest prompt.
On an accelerator a single small prompt leaves the device mostly idle, so
batching should pay off more there; that was not measured.

Reference: M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014,
arXiv:1111.4246.
"""

import functools

import jax
import jax.numpy as jnp
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy

from slgjax.tail.bayes_laplace import laplace_draws, laplace_mode
from slgjax.tail.bayes_models import MODELS

__all__ = ["run_nuts"]


def _run_chain(
    key, y, mask, free, inverse_mass_matrix, *, model, options, num_warmup, num_samples, tuning
):
    """Run one NUTS chain on one prompt; return free draws [S, ...] and divergences [S]."""
    target_accept_prob, max_tree_depth, _ = tuning
    model_args = (y, mask)

    def potential_fn_gen(y, mask):
        return functools.partial(potential_energy, model, (y, mask), options)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")
    state = init_kernel(
        free,
        num_warmup,
        inverse_mass_matrix=inverse_mass_matrix,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        model_args=model_args,
        rng_key=key,
    )

    def warmup_step(state, _):
        return sample_kernel(state, model_args=model_args), None

    def sample_step(state, _):
        state = sample_kernel(state, model_args=model_args)
        return state, (state.z, state.diverging)

    state, _ = jax.lax.scan(warmup_step, state, None, length=num_warmup)
    _, (draws, diverging) = jax.lax.scan(sample_step, state, None, length=num_samples)
    return draws, diverging


def _chain_starts(key, y, mask, *, model, options, num_chains, num_newton_steps):
    """Start every chain at a draw of the Laplace approximation.

    Starting near the posterior, with the Laplace variances as the initial
    (diagonal) inverse mass matrix, shortens the first warmup trajectories;
    under ``vmap`` every chain waits for the longest one, so this matters
    more than it would for a single chain.
    """
    state, unravel = laplace_mode(y, mask, model=model, options=options, num_steps=num_newton_steps)
    flat = laplace_draws(key, state, num_chains)
    eye = jnp.eye(state.mode.shape[0], dtype=state.mode.dtype)
    inverse_chol = jax.scipy.linalg.solve_triangular(state.chol_precision, eye, lower=True)
    variances = jnp.sum(inverse_chol**2, axis=0)
    return jax.vmap(unravel)(flat), variances


@functools.partial(
    jax.jit,
    static_argnames=(
        "model_name",
        "options",
        "num_warmup",
        "num_samples",
        "num_chains",
        "tuning",
    ),
)
def run_nuts(keys, y, mask, *, model_name, options, num_warmup, num_samples, num_chains, tuning):
    """Sample the posteriors of P prompts with ``num_chains`` chains each.

    Args:
      keys: P random keys, one per prompt; prompt ``p`` splits ``keys[p]``
        into its chains, so its draws do not depend on the other prompts.
      y: float[P, K, m] exceedances.
      mask: bool[P, K, m].
      model_name: a key of :data:`~slgjax.tail.bayes_models.MODELS`.
      options: the model's keyword options as a tuple of ``(name, value)`` pairs.
      num_warmup, num_samples, num_chains: static sizes of the run.
      tuning: ``(target_accept_prob, (warmup depth, sampling depth),
        num_newton_steps)``; the depths bound the NUTS trees, and the last
        entry sets the Newton iterations of the Laplace chain starts.

    Returns:
      ``(sites, diverging)``: ``sites`` maps every sample and deterministic site
      name to an array [P, C, S, ...] of constrained values; ``diverging`` is
      bool[P, C, S].

    Recompiles for each new combination of array shapes and static arguments.
    """
    model = MODELS[model_name]
    options = dict(options)
    run = functools.partial(
        _run_chain,
        model=model,
        options=options,
        num_warmup=num_warmup,
        num_samples=num_samples,
        tuning=tuning,
    )

    def run_prompt(key, y, mask):
        key_start, key_chains = jax.random.split(key)
        starts, variances = _chain_starts(
            key_start,
            y,
            mask,
            model=model,
            options=options,
            num_chains=num_chains,
            num_newton_steps=tuning[2],
        )
        chain_keys = jax.random.split(key_chains, num_chains)
        return jax.vmap(run, in_axes=(0, None, None, 0, None))(
            chain_keys, y, mask, starts, variances
        )

    draws, diverging = jax.vmap(run_prompt)(keys, y, mask)

    def constrain(free, y, mask):
        return constrain_fn(model, (y, mask), options, free, return_deterministic=True)

    per_draw = jax.vmap(constrain, in_axes=(0, None, None))
    per_chain = jax.vmap(per_draw, in_axes=(0, None, None))
    sites = jax.vmap(per_chain)(draws, y, mask)
    return sites, diverging
