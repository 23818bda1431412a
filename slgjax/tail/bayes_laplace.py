"""MAP estimate and Laplace approximation of the GPD posteriors, vectorised over prompts.

The free (unconstrained) latents ``x`` of a model are optimised by damped
Newton steps (Levenberg-Marquardt: ``(H + lambda I) dx = -g``, ``lambda``
shrinks after an accepted step and grows after a rejected one) on the
potential ``U(x) = -log p(x, y)``. The posterior is then approximated by
``N(x_map, H^{-1})`` with ``H = jax.hessian(U)(x_map)``; draws from it are
pushed through the models' transforms, so every draw satisfies the support
constraint. The approximation lives in the free coordinates, where the
support transform has already removed the hard boundary.

The models have at most a few dozen free latents per prompt, so a dense
Hessian costs little and a fixed number of Newton steps runs under ``vmap``
without data-dependent loops.

Reference: L. Tierney, J. B. Kadane, "Accurate approximations for posterior
moments and marginal densities", JASA 81(393), 1986.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import constrain_fn, potential_energy

from slgjax.tail.bayes_models import MODELS, free_latent_shapes

__all__ = ["LaplaceState", "laplace_mode", "laplace_draws", "run_laplace"]

# A Newton decrement g^T H^-1 g below this means the remaining gain in log
# density is negligible next to the posterior spread (one unit per dimension).
_DECREMENT_TOLERANCE = 1e-3


class LaplaceState(NamedTuple):
    """Mode and curvature of one prompt's posterior in free coordinates.

    Attributes:
      mode: float[d] free latents at the MAP estimate.
      chol_precision: float[d, d] lower Cholesky factor of the Hessian of the
        potential at the mode. When that Hessian is not positive definite,
        its eigenvalues below a floor are raised to the floor first.
      converged: bool, True when the Newton decrement fell below tolerance and
        the Hessian was positive definite.
    """

    mode: jax.Array
    chol_precision: jax.Array
    converged: jax.Array


def _flat_potential(model, options, y, mask):
    shapes = free_latent_shapes(model, y, mask, **options)
    zeros = {name: jnp.zeros(shape, y.dtype) for name, shape in shapes.items()}
    x0, unravel = ravel_pytree(zeros)

    def potential(x):
        return potential_energy(model, (y, mask), options, unravel(x))

    return potential, x0, unravel


def _positive_definite_cholesky(hessian):
    """Return ``(L, ok)``: the Cholesky factor, with eigenvalues floored if needed."""
    hessian = 0.5 * (hessian + hessian.T)
    chol = jnp.linalg.cholesky(hessian)
    ok = jnp.all(jnp.isfinite(chol))

    eigenvalues, eigenvectors = jnp.linalg.eigh(jnp.where(jnp.isfinite(hessian), hessian, 0.0))
    floor = jnp.maximum(1e-3 * jnp.max(jnp.abs(eigenvalues)), 1e-6)
    repaired = (eigenvectors * jnp.maximum(eigenvalues, floor)) @ eigenvectors.T
    repaired_chol = jnp.linalg.cholesky(0.5 * (repaired + repaired.T))
    return jnp.where(ok, chol, repaired_chol), ok


def laplace_mode(y, mask, *, model, options, num_steps):
    """Find the MAP estimate of one prompt and the curvature there.

    Args:
      y: float[K, m] exceedances; mask: bool[K, m].
      model: a NumPyro model from :mod:`slgjax.tail.bayes_models`.
      options: dict of the model's keyword options.
      num_steps: number of damped Newton iterations.

    Returns:
      ``(LaplaceState, unravel)``; ``unravel`` maps a flat free vector to the
      dict of free sites.
    """
    potential, x0, unravel = _flat_potential(model, options, y, mask)
    value_and_grad = jax.value_and_grad(potential)
    hessian_fn = jax.hessian(potential)
    identity = jnp.eye(x0.shape[0], dtype=x0.dtype)

    def newton_step(carry, _):
        x, value, grad, hessian, damping = carry
        chol = jnp.linalg.cholesky(hessian + damping * identity)
        step = -jax.scipy.linalg.cho_solve((chol, True), grad)
        step_ok = jnp.all(jnp.isfinite(step))
        candidate = x + jnp.where(step_ok, step, 0.0)
        new_value, new_grad = value_and_grad(candidate)
        accept = step_ok & jnp.isfinite(new_value) & (new_value <= value)
        new_hessian = hessian_fn(candidate)
        accept = accept & jnp.all(jnp.isfinite(new_hessian)) & jnp.all(jnp.isfinite(new_grad))

        x = jnp.where(accept, candidate, x)
        value = jnp.where(accept, new_value, value)
        grad = jnp.where(accept, new_grad, grad)
        hessian = jnp.where(accept, new_hessian, hessian)
        damping = jnp.where(accept, jnp.maximum(damping * 0.25, 1e-8), damping * 8.0)
        return (x, value, grad, hessian, damping), None

    value, grad = value_and_grad(x0)
    carry = (x0, value, grad, hessian_fn(x0), jnp.asarray(1.0, x0.dtype))
    (mode, _, grad, hessian, _), _ = jax.lax.scan(newton_step, carry, None, length=num_steps)

    chol, positive_definite = _positive_definite_cholesky(hessian)
    scaled_grad = jax.scipy.linalg.solve_triangular(chol, grad, lower=True)
    decrement = jnp.sum(scaled_grad**2)
    converged = positive_definite & (decrement < _DECREMENT_TOLERANCE)
    return LaplaceState(mode, chol, converged), unravel


def laplace_draws(key, state, num_samples):
    """Draw ``num_samples`` free vectors from ``N(mode, H^{-1})``; float[S, d]."""
    noise = jax.random.normal(key, (num_samples, state.mode.shape[0]), state.mode.dtype)
    # H = L L^T, so x = mode + L^{-T} e has covariance H^{-1}.
    offsets = jax.scipy.linalg.solve_triangular(state.chol_precision.T, noise.T, lower=False)
    return state.mode + offsets.T


@functools.partial(jax.jit, static_argnames=("model_name", "options", "num_samples", "num_steps"))
def run_laplace(keys, y, mask, *, model_name, options, num_samples, num_steps):
    """Laplace-approximate the posteriors of P prompts and draw from them.

    Args:
      keys: P random keys, one per prompt.
      y: float[P, K, m] exceedances; mask: bool[P, K, m].
      model_name: a key of :data:`~slgjax.tail.bayes_models.MODELS`.
      options: the model's keyword options as a tuple of ``(name, value)`` pairs.
      num_samples: draws per prompt (static).
      num_steps: damped Newton iterations (static).

    Returns:
      ``(sites, converged)``: ``sites`` maps every sample and deterministic
      site to constrained draws [P, S, ...]; ``converged`` is bool[P].

    NOTE: with jaxlib 0.10 on CPU, a call on a large batch of the hierarchical
    model (600 prompts of 9 states) sometimes never returns, every thread
    waiting and no CPU in use. The cause is not known: synchronous dispatch,
    single-threaded Eigen and XLA's older CPU runtime did not prevent it, and
    the same call usually succeeds in a fresh process.
    """
    model = MODELS[model_name]
    options = dict(options)

    def one_prompt(key, y, mask):
        state, unravel = laplace_mode(y, mask, model=model, options=options, num_steps=num_steps)
        flat = laplace_draws(key, state, num_samples)

        def constrain(x):
            free = unravel(x)
            return constrain_fn(model, (y, mask), options, free, return_deterministic=True)

        return jax.vmap(constrain)(flat), state.converged

    return jax.vmap(one_prompt)(keys, y, mask)
