"""Run a search algorithm against an environment for a list of prompts."""

from collections.abc import Callable, Sequence

import jax

from slgjax.search.algorithms import ALGORITHMS
from slgjax.search.session import SearchResult, SearchSession

__all__ = ["prompt_keys", "run_search"]


def _check_key(key):
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"key must be a JAX PRNG key such as jax.random.key(0); got {type(key).__name__}."
        )
    typed = jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.shape != (() if typed else (2,)):
        raise ValueError(f"key has shape {key.shape}; pass one key, not a batch of keys.")


def prompt_keys(key, prompts: Sequence[int]) -> list:
    """Return the key of each prompt, ``fold_in(key, prompt_index)``.

    A prompt's key depends on its index only, so its search gives the same
    result whatever other prompts run with it and in whatever order.
    """
    return [jax.random.fold_in(key, int(p)) for p in prompts]


def run_search(
    algorithm: str | Callable,
    env,
    *,
    key,
    budget: int,
    prompts: Sequence[int],
    batch_size: int | None = None,
    **hyperparameters,
) -> list[SearchResult]:
    """Search each prompt with ``budget`` rollouts and return one result per prompt.

    The driver stays on the host: it builds a
    :class:`~slgjax.search.session.SearchSession` per batch of prompts, which
    moves rollouts between the environment and the algorithm and counts every
    one against its prompt's budget. Decisions run in the jit-compiled
    decision step of :mod:`slgjax.search.policies`.

    Args:
      algorithm: a name from :data:`slgjax.search.algorithms.ALGORITHMS` or a
        function ``(session, **hyperparameters) -> list[SearchResult]``.
      env: the environment (see :class:`slgjax.envs.protocol.Environment`).
      key: one PRNG key; prompt ``i`` uses ``fold_in(key, i)``.
      budget: rollouts ``N`` per prompt.
      prompts: prompt indices passed to ``env.root``.
      batch_size: prompts per session; all at once when None. Results do not
        depend on it.
      **hyperparameters: keyword arguments of the algorithm.

    Returns:
      One :class:`~slgjax.search.session.SearchResult` per prompt, in order.

    Raises:
      ValueError: for an unknown algorithm name or a bad budget; whatever the
        algorithm raises for its hyperparameters.
    """
    if isinstance(algorithm, str):
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm={algorithm!r} is unknown; use one of {sorted(ALGORITHMS)}."
            )
        algorithm = ALGORITHMS[algorithm]
    _check_key(key)
    prompts = [int(p) for p in prompts]
    if batch_size is None:
        batch_size = max(1, len(prompts))
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1.")

    results = []
    for start in range(0, len(prompts), int(batch_size)):
        batch = prompts[start : start + int(batch_size)]
        session = SearchSession(
            env,
            keys=prompt_keys(key, batch),
            budget=budget,
            roots=[env.root(p) for p in batch],
        )
        out = list(algorithm(session, **hyperparameters))
        if len(out) != len(batch):
            raise RuntimeError(
                f"algorithm returned {len(out)} results for {len(batch)} prompts; it must "
                "return one per prompt."
            )
        results.extend(out)
    return results
