"""Vectorized Monte Carlo of two-stage search in a simulated reward family.

:func:`simulate_search` runs ``R`` independent replications of several search
algorithms at one budget in one compiled function of a key. Replications are
vectorized with ``vmap`` inside chunks, and the chunks run in sequence under
``lax.map``, so memory grows with the chunk, not with ``R``. The decision of
each SLG variant is made by :func:`slgjax.search.policies.select_state`, the
same code that searches against live environments.

Algorithms, all with the total budget ``N`` (the rollouts counted include the
estimation rollouts, and every variant returns the best reward it has seen):

- ``"best_of_n"``: ``N`` rollouts from the prompt.
- ``"slg_paper"``: ``K`` fresh states, ``m`` rollouts each, then ``N - K m``
  rollouts from the state with the largest ``V_hat_N``.
- ``"slg_reference"``: the form of the authors' code. It draws ``m`` rollouts
  from the prompt, and the first-step prefixes of the ``K`` best of them become
  the states, with ``m`` rollouts each. The prompt competes with its own
  ``V_hat_N`` from its ``m`` rollouts and keeps the remaining ``N - (K + 1) m``
  rollouts unless a state is strictly better. In a two-level family a
  rollout's prefix is its state, so the ``k``-th best rollout contributes its
  own state parameter.
- ``"uniform_split"``: the same ``K`` states as ``slg_paper`` with ``N / K``
  rollouts each (the first ``N mod K`` states get one more).
- ``"oracle"``: knows every true ``V_N`` and spends all ``N`` rollouts on the best
  of the prompt and ``oracle_states`` fresh states, the first ``K`` of which are
  the states of ``slg_paper``.

Reference: M. Li, J. Qian, W. Mou, "Predicting and improving test-time scaling
laws via reward tail-guided search", arXiv:2602.01485 (2026).
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.envs.simulated._uniform import max_levels, open_uniform
from slgjax.envs.simulated.families import RewardFamily
from slgjax.search.policies import select_state
from slgjax.search.values import check_value

__all__ = [
    "ALGORITHMS",
    "HORIZONS",
    "default_chunk_size",
    "replication_keys",
    "simulate_replication",
    "simulate_search",
]

ALGORITHMS = ("best_of_n", "slg_paper", "slg_reference", "uniform_split", "oracle")
HORIZONS = ("remaining", "total")

# Rough size of the per-chunk reward buffers, in floats; keeps one chunk of the
# largest settings near a few hundred megabytes including temporaries.
_CHUNK_FLOATS = 2_000_000


@dataclasses.dataclass(frozen=True)
class _Config:
    budget: int
    num_states: int
    samples_per_state: int
    num_replications: int
    chunk_size: int
    algorithms: tuple
    value: object
    horizon: str
    oracle_states: int


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; it must be an integer >= {minimum}.")
    return int(value)


def default_chunk_size(num_replications, *, num_states, samples_per_state):
    """Return a chunk size that divides the work evenly and bounds the buffers.

    About ``2e6 / ((K + 1) m)`` replications run at once; the chunk is then
    shrunk so the last chunk is as full as the others.
    """
    per_replication = (num_states + 1) * samples_per_state + 64
    largest = max(1, min(num_replications, _CHUNK_FLOATS // per_replication))
    num_chunks = math.ceil(num_replications / largest)
    return math.ceil(num_replications / num_chunks)


def replication_keys(key, num_replications):
    """Return the key of each replication: replication ``r`` uses ``fold_in(key, r)``.

    So the first ``R`` replications do not depend on how many run, and one
    replication can be rerun alone with its key.
    """
    return jax.vmap(lambda index: jax.random.fold_in(key, index))(jnp.arange(num_replications))


def _validate(family, config):
    if not isinstance(family, RewardFamily):
        raise TypeError(
            f"family is a {type(family).__name__}; pass a RewardFamily such as "
            "GaussianFamily(mu0=0.0, sigma0=1.0, sigma1=1.0)."
        )
    unknown = [name for name in config.algorithms if name not in ALGORITHMS]
    if unknown or not config.algorithms:
        raise ValueError(f"algorithms={config.algorithms} is invalid; choose from {ALGORITHMS}.")
    budget, states, samples = config.budget, config.num_states, config.samples_per_state
    if "slg_paper" in config.algorithms and states * samples > budget:
        raise ValueError(
            f"slg_paper cannot explore K={states} states with m={samples} rollouts each "
            f"({states * samples} rollouts) within N={budget}; lower K or m."
        )
    if "uniform_split" in config.algorithms and states > budget:
        raise ValueError(
            f"uniform_split needs at least one rollout per state: K={states} > N={budget}."
        )
    if "slg_reference" in config.algorithms:
        if states > samples:
            raise ValueError(
                f"slg_reference takes its K={states} states from the prefixes of m={samples} "
                "root rollouts, so it needs K <= m."
            )
        if (states + 1) * samples > budget:
            raise ValueError(
                f"slg_reference explores the root and K={states} states with m={samples} "
                f"rollouts each ({(states + 1) * samples} rollouts), more than N={budget}; "
                "lower K or m."
            )


def simulate_search(
    key,
    family: RewardFamily,
    *,
    budget: int,
    num_states: int,
    samples_per_state: int,
    num_replications: int,
    algorithms=ALGORITHMS,
    value="gaussian",
    horizon: str = "remaining",
    oracle_states: int | None = None,
    chunk_size: int | None = None,
):
    """Run ``R`` replications of each algorithm and return their best rewards.

    Everything that sets a shape is static, so a new ``(N, K, m, R)``, algorithm
    set, value, chunk size or family class compiles anew. The key and the
    family's parameters are traced: a sweep over ``t`` compiles once.

    Args:
      key: a PRNG key; replication ``r`` uses ``fold_in(key, r)`` (see
        :func:`replication_keys`), so results do not depend on the chunk size.
      family: the reward family; its parameters are traced.
      budget: total rollouts ``N``.
      num_states: ``K``, states explored by the SLG variants and split by
        ``uniform_split``.
      samples_per_state: ``m``, estimation rollouts per state (and per root in
        ``slg_reference``).
      num_replications: ``R``.
      algorithms: names from :data:`ALGORITHMS` to run.
      value: the state value of :func:`~slgjax.search.policies.select_state`.
      horizon: ``"remaining"`` values states at the exploitation budget
        (``N - K m`` or ``N - (K + 1) m``, at least 1), as the algorithms of
        :mod:`slgjax.search` do by default; ``"total"`` at ``N``, as the
        authors' code does.
      oracle_states: fresh states the oracle chooses from besides the prompt;
        defaults to ``K``.
      chunk_size: replications vectorized at once; defaults to
        :func:`default_chunk_size`.

    Returns:
      A dict with float[R] best rewards under each requested algorithm's name;
      with ``"slg_reference"`` also ``"reference_used_root"``, bool[R], True
      where the prompt kept the budget.

    Raises:
      ValueError: when a budget cannot pay for an algorithm's exploration or a
        size is not a positive integer.
    """
    config = _make_config(
        key,
        family,
        budget=budget,
        num_states=num_states,
        samples_per_state=samples_per_state,
        num_replications=num_replications,
        algorithms=algorithms,
        value=value,
        horizon=horizon,
        oracle_states=oracle_states,
        chunk_size=chunk_size,
    )
    return _simulate(key, family, config)


def simulate_replication(
    key,
    family: RewardFamily,
    *,
    budget: int,
    num_states: int,
    samples_per_state: int,
    algorithms=ALGORITHMS,
    value="gaussian",
    horizon: str = "remaining",
    oracle_states: int | None = None,
):
    """Run one replication with exactly this key, without vectorization.

    ``simulate_replication(replication_keys(key, R)[r], ...)`` gives replication
    ``r`` of :func:`simulate_search` with the same ``key``; the arguments mean
    the same as there.

    Returns:
      A dict of scalars with the keys of :func:`simulate_search`.
    """
    config = _make_config(
        key,
        family,
        budget=budget,
        num_states=num_states,
        samples_per_state=samples_per_state,
        num_replications=1,
        algorithms=algorithms,
        value=value,
        horizon=horizon,
        oracle_states=oracle_states,
        chunk_size=1,
    )
    return _simulate_one(key, family, config)


def _make_config(
    key,
    family,
    *,
    budget,
    num_states,
    samples_per_state,
    num_replications,
    algorithms,
    value,
    horizon,
    oracle_states,
    chunk_size,
):
    if horizon not in HORIZONS:
        raise ValueError(f"horizon={horizon!r} is unknown; use one of {HORIZONS}.")
    budget = _check_int(budget, "budget", 1)
    num_states = _check_int(num_states, "num_states", 1)
    samples_per_state = _check_int(samples_per_state, "samples_per_state", 1)
    num_replications = _check_int(num_replications, "num_replications", 1)
    oracle_states = num_states if oracle_states is None else oracle_states
    oracle_states = _check_int(oracle_states, "oracle_states", 1)
    if chunk_size is None:
        chunk_size = default_chunk_size(
            num_replications, num_states=num_states, samples_per_state=samples_per_state
        )
    chunk_size = min(_check_int(chunk_size, "chunk_size", 1), num_replications)
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    check_value(value, key_required=False)
    config = _Config(
        budget,
        num_states,
        samples_per_state,
        num_replications,
        chunk_size,
        tuple(algorithms),
        value,
        horizon,
        oracle_states,
    )
    _validate(family, config)
    return config


def _shared_inputs(family, config, dtype):
    """Return the prompt's ``V_N`` (oracle only) and its fast quantile, computed once."""
    root_value = family.root_value(config.budget, dtype) if "oracle" in config.algorithms else None
    return root_value, family.root_quantile_interpolant(dtype)


@functools.partial(jax.jit, static_argnums=(2,))
def _simulate_one(key, family, config):
    root_value, root_quantile = _shared_inputs(family, config, jnp.result_type(float))
    return _replicate(key, family, config, root_value, root_quantile)


@functools.partial(jax.jit, static_argnums=(2,))
def _simulate(key, family, config):
    num_chunks = math.ceil(config.num_replications / config.chunk_size)
    keys = replication_keys(key, num_chunks * config.chunk_size)
    keys = keys.reshape((num_chunks, config.chunk_size) + keys.shape[1:])
    root_value, root_quantile = _shared_inputs(family, config, jnp.result_type(float))

    def replicate(key):
        return _replicate(key, family, config, root_value, root_quantile)

    def run_chunk(chunk_keys):
        return jax.vmap(replicate)(chunk_keys)

    results = jax.lax.map(run_chunk, keys)
    return {
        name: values.reshape((-1,) + values.shape[2:])[: config.num_replications]
        for name, values in results.items()
    }


def _uniform_layout(config):
    """Return the static ``name -> shape`` of every uniform one replication uses."""
    states, samples = config.num_states, config.samples_per_state
    algorithms = set(config.algorithms)
    layout = {}
    if "best_of_n" in algorithms:
        layout["best_of_n"] = ()
    if algorithms & {"slg_paper", "uniform_split", "oracle"}:
        layout["states"] = (states,)
    if "slg_paper" in algorithms:
        layout["paper_rewards"] = (states, samples)
        layout["paper_exploit"] = ()
    if "uniform_split" in algorithms:
        layout["uniform_split"] = (states,)
    if "oracle" in algorithms:
        layout["oracle_extra"] = (max(config.oracle_states - states, 0),)
        layout["oracle_state"] = ()
        layout["oracle_root"] = ()
    if "slg_reference" in algorithms:
        layout["reference_states"] = (samples,)
        layout["reference_root_rewards"] = (samples,)
        layout["reference_rewards"] = (states, samples)
        layout["reference_state_exploit"] = ()
        layout["reference_root_exploit"] = ()
    return layout


def _split_uniforms(key, layout, dtype):
    """Draw every uniform of one replication at once and cut it by ``layout``.

    One draw per replication keeps the compiled program small: each
    ``jax.random`` call site compiles its own copy of the PRNG.
    """
    sizes = [math.prod(shape) for shape in layout.values()]
    flat = open_uniform(key, (sum(sizes),), dtype)
    offsets = np.cumsum([0] + sizes)
    return {
        name: flat[offsets[i] : offsets[i + 1]].reshape(shape)
        for i, (name, shape) in enumerate(layout.items())
    }


def _needs_key(value):
    if callable(value):
        return True
    try:
        check_value(value, None)
    except ValueError:
        return True
    return False


def _replicate(key, family, config, root_value, root_quantile):
    """Run one replication of every requested algorithm; returns scalars."""
    budget = config.budget
    dtype = jnp.result_type(float)
    u = _split_uniforms(key, _uniform_layout(config), dtype)
    out = {}

    if "best_of_n" in config.algorithms:
        out["best_of_n"] = root_quantile(*max_levels(u["best_of_n"], budget))

    if "states" in u:
        theta = family.states_from_uniform(u["states"])
        if "slg_paper" in config.algorithms:
            select_key = jax.random.fold_in(key, 1) if _needs_key(config.value) else None
            out["slg_paper"] = _slg_paper(u, select_key, family, config, theta)
        if "uniform_split" in config.algorithms:
            counts = np.full(theta.shape, budget // theta.shape[0])
            counts += np.arange(theta.shape[0]) < budget % theta.shape[0]
            maxima = family.max_from_uniform(theta, u["uniform_split"], counts)
            out["uniform_split"] = jnp.max(maxima)
        if "oracle" in config.algorithms:
            out["oracle"] = _oracle(u, family, config, theta, root_value, root_quantile)

    if "slg_reference" in config.algorithms:
        select_key = jax.random.fold_in(key, 2) if _needs_key(config.value) else None
        out["slg_reference"], out["reference_used_root"] = _slg_reference(
            u, select_key, family, config, root_quantile
        )
    return out


def _horizon(config, remaining):
    return config.budget if config.horizon == "total" else max(1, remaining)


def _slg_paper(u, select_key, family, config, theta):
    rewards = family.rewards_from_uniform(theta[:, None], u["paper_rewards"])
    remaining = config.budget - config.num_states * config.samples_per_state
    horizon = _horizon(config, remaining)
    decision = select_state(rewards[None], value=config.value, budget=horizon, key=select_key)
    best_seen = jnp.max(rewards)
    if remaining == 0:
        return best_seen
    chosen = theta[decision.index[0]]
    return jnp.maximum(best_seen, family.max_from_uniform(chosen, u["paper_exploit"], remaining))


def _slg_reference(u, select_key, family, config, root_quantile):
    states, samples = config.num_states, config.samples_per_state
    root_theta = family.states_from_uniform(u["reference_states"])
    root_rewards = family.rewards_from_uniform(root_theta, u["reference_root_rewards"])

    # The K best root rollouts, by reward; their prefixes are their states.
    _, best = jax.lax.top_k(root_rewards, states)
    theta = root_theta[best]
    rewards = family.rewards_from_uniform(theta[:, None], u["reference_rewards"])
    remaining = config.budget - (states + 1) * samples
    decision = select_state(
        rewards[None],
        value=config.value,
        budget=_horizon(config, remaining),
        root_rewards=root_rewards[None],
        key=select_key,
    )
    use_root = decision.use_root[0]
    best_seen = jnp.maximum(jnp.max(root_rewards), jnp.max(rewards))

    if remaining == 0:
        return best_seen, use_root
    chosen = theta[decision.index[0]]
    from_state = family.max_from_uniform(chosen, u["reference_state_exploit"], remaining)
    from_root = root_quantile(*max_levels(u["reference_root_exploit"], remaining))
    exploited = jnp.where(use_root, from_root, from_state)
    return jnp.maximum(best_seen, exploited), use_root


def _oracle(u, family, config, theta, root_value, root_quantile):
    extra = family.states_from_uniform(u["oracle_extra"])
    candidates = jnp.concatenate([theta, extra])[: config.oracle_states]
    values = family.state_value(candidates, config.budget)
    best = jnp.argmax(values)
    from_state = family.max_from_uniform(candidates[best], u["oracle_state"], config.budget)
    from_root = root_quantile(*max_levels(u["oracle_root"], config.budget))
    return jnp.where(values[best] > root_value, from_state, from_root)
