"""Steps shared by the search algorithms: value horizons, the batched decision, two stages."""

import jax
import numpy as np

from slgjax.search.budget import Allocation
from slgjax.search.policies import bucket_size, pad_rewards, select_state
from slgjax.search.session import SearchSession, TraceStep
from slgjax.search.values import check_value

__all__ = ["HORIZONS", "check_options", "decide", "horizon_of", "record_decision", "two_stage"]

HORIZONS = ("remaining", "total")


def horizon_of(allocation: Allocation, horizon: str) -> int:
    """Return the budget at which states are valued.

    ``"remaining"`` values a state at the rollouts it would receive, the
    exploitation budget (at least 1); ``"total"`` uses ``N``, as the authors'
    code does.
    """
    if horizon not in HORIZONS:
        raise ValueError(f"horizon={horizon!r} is unknown; use one of {HORIZONS}.")
    if horizon == "total":
        return allocation.budget
    return max(1, allocation.exploitation)


def check_options(value, horizon="remaining"):
    """Raise ``ValueError`` for an unknown value or horizon before any rollout is spent."""
    check_value(value, key_required=False)
    if horizon not in HORIZONS:
        raise ValueError(f"horizon={horizon!r} is unknown; use one of {HORIZONS}.")


def decide(
    session: SearchSession,
    prompts,
    groups,
    *,
    value,
    horizons,
    root_groups=None,
    tail_fraction=0.2,
    upper_level=0.9,
    min_batch=1,
    min_states=1,
    min_samples=1,
):
    """Run the jit-compiled decision step for several prompts at once.

    Args:
      session: the search session; one key per prompt is drawn from it.
      prompts: prompt indices, one per group.
      groups: for each prompt, a sequence of 1-D reward arrays, one per state.
      value: the state value (see :mod:`slgjax.search.values`).
      horizons: the budget of the values, one per prompt.
      root_groups: optional 1-D root reward array per prompt.
      tail_fraction: tail share of the Gaussian and GPD fits.
      upper_level: posterior quantile of ``"bayes_upper"``.
      min_batch: smallest padded number of rows; callers with varying batch
        sizes pass their largest to compile once.
      min_states: smallest padded number of states, for the same reason.
      min_samples: smallest padded number of samples per state, likewise.

    Returns:
      The :class:`~slgjax.search.policies.Decision` as NumPy arrays, one row
      per prompt. Without ``root_groups``, ``use_root`` is False and
      ``root_value`` is ``-inf``.
    """
    # Pad prompts, states and samples to powers of two, and always pass a
    # (masked) root, so that one compilation serves many calls.
    batch = len(groups)
    padded_batch = bucket_size(max(batch, min_batch))
    max_states = max((len(states) for states in groups), default=1)
    num_states = bucket_size(max(max_states, min_states))
    roots = [[]] * batch if root_groups is None else [[r] for r in root_groups]
    blank = [[]] * (padded_batch - batch)
    longest = max((len(r) for states in list(groups) + roots for r in states), default=1)
    num_samples = bucket_size(max(longest, min_samples))
    rewards, mask = pad_rewards(
        list(groups) + blank, num_states=num_states, num_samples=num_samples
    )
    root_rewards, root_mask = pad_rewards(roots + blank, num_states=1, num_samples=num_samples)

    keys = [session.next_key(p) for p in prompts]
    keys = jax.numpy.stack(keys + keys[:1] * (padded_batch - batch))
    horizons = np.concatenate([np.asarray(horizons, np.float64), np.ones(padded_batch - batch)])
    decision = select_state(
        rewards,
        mask,
        value=value,
        budget=horizons,
        root_rewards=root_rewards[:, 0],
        root_mask=root_mask[:, 0],
        key=keys,
        tail_fraction=tail_fraction,
        upper_level=upper_level,
    )
    decision = jax.tree.map(lambda a: np.asarray(a)[:batch], decision)
    if root_groups is None:
        decision = decision._replace(
            root_value=np.full(batch, -np.inf, decision.values.dtype),
            use_root=np.zeros(batch, bool),
        )
    return decision


def record_decision(session, prompt, decision, row, num_states, chosen):
    values = tuple(float(v) for v in decision.values[row, :num_states])
    root_value = float(decision.root_value[row])
    session.record(
        prompt,
        TraceStep(
            "select",
            0,
            num_states,
            chosen=chosen,
            values=values,
            root_value=None if np.isneginf(root_value) else root_value,
        ),
    )


def two_stage(
    session: SearchSession,
    *,
    allocation: Allocation,
    value="gaussian",
    horizon: str = "remaining",
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
) -> list:
    """Expand ``K`` states, estimate each with ``m`` rollouts, exploit the argmax.

    The shared core of :func:`slg_paper` and the QoMax-ETC baseline.
    """
    check_options(value, horizon)
    num_states, samples = allocation.num_states, allocation.samples_per_state
    prompts = list(range(session.num_prompts))
    states = [session.expand(p, [session.roots[p]], num_states)[0] for p in prompts]

    estimates = session.rollout_many([(p, states[p]) for p in prompts], samples, phase="estimate")
    decision = decide(
        session,
        prompts,
        [list(rewards) for rewards, _ in estimates],
        value=value,
        horizons=[horizon_of(allocation, horizon)] * len(prompts),
        tail_fraction=tail_fraction,
        upper_level=upper_level,
    )

    targets = []
    for p in prompts:
        chosen = int(decision.index[p])
        record_decision(session, p, decision, p, num_states, chosen)
        targets.append((p, [states[p][chosen]]))
    session.rollout_many(targets, allocation.exploitation, phase="exploit")
    return session.results()
