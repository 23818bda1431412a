"""Search algorithms that allocate a rollout budget among intermediate states.

Every algorithm takes a :class:`~slgjax.search.session.SearchSession` (built by
:func:`slgjax.search.driver.run_search`) and keyword-only hyperparameters, runs
all prompts of the session in lock step (one decision step per phase for the
whole batch), and returns one :class:`~slgjax.search.session.SearchResult` per
prompt. Every result reports the best response seen, estimation rollouts
included, and the session guarantees that no prompt spends more than ``N``.

Two-stage scaling-law guided search (SLG) comes in two forms:

- :func:`slg_paper`: ``K`` fresh states, ``m`` rollouts each, the rest of the
  budget on the state with the largest ``V_hat``.
- :func:`slg_reference`: the form the authors' code runs. ``m`` rollouts from
  the prompt, states are the first-step prefixes of the ``K`` best of them, and
  the prompt competes with its states.

Reference: M. Li, J. Qian, W. Mou, "Predicting and improving test-time scaling
laws via reward tail-guided search", arXiv:2602.01485 (2026).

The tree forms live in :mod:`slgjax.search.tree` and the baselines in
:mod:`slgjax.search.baselines`; both are re-exported here.
"""

import numpy as np

from slgjax.search._common import (
    HORIZONS,
    check_options,
    decide,
    horizon_of,
    record_decision,
    two_stage,
)
from slgjax.search.baselines import extreme_bandit, oracle, successive_halving, uniform_split
from slgjax.search.budget import resolve_allocation
from slgjax.search.session import ROOT, SearchSession
from slgjax.search.tree import slg_tree, slg_tree_ucb

__all__ = [
    "ALGORITHMS",
    "HORIZONS",
    "best_of_n",
    "decide",
    "extreme_bandit",
    "horizon_of",
    "oracle",
    "slg_paper",
    "slg_reference",
    "slg_tree",
    "slg_tree_ucb",
    "successive_halving",
    "two_stage",
    "uniform_split",
]


def best_of_n(session: SearchSession) -> list:
    """Best-of-N: spend the whole budget on full rollouts from the prompt."""
    prompts = range(session.num_prompts)
    session.rollout_many([(p, [session.roots[p]]) for p in prompts], session.budget, phase="bon")
    return session.results()


def slg_paper(
    session: SearchSession,
    *,
    num_states: int | None = None,
    samples_per_state: int | None = None,
    rule: str = "paper",
    value="gaussian",
    horizon: str = "remaining",
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
) -> list:
    """Two-stage SLG in the paper's form.

    1. Expand ``K`` states from the prompt (expansion costs no rollouts).
    2. Roll out ``m`` responses from each and compute ``V_hat(s_i)``.
    3. Pick ``I = argmax_i V_hat(s_i)`` (lowest index among ties).
    4. Spend the remaining ``N - K m`` rollouts on ``s_I``.
    5. Return the best response seen, estimation rollouts included.

    Args:
      session: the search session.
      num_states: ``K``; filled from ``rule`` when None.
      samples_per_state: ``m``; filled from ``rule`` when None.
      rule: ``"paper"`` (``m ~ (ln N)^3 / 5``, ``K ~ N / 2m``) or
        ``"reference"`` (the authors' code rule, clipped to fit ``N``).
      value: the state value, a name or a callable (see
        :mod:`slgjax.search.values`).
      horizon: ``"remaining"`` values states at ``N - K m`` rollouts,
        ``"total"`` at ``N``.
      tail_fraction: tail share of the Gaussian and GPD fits.
      upper_level: posterior quantile of ``"bayes_upper"``.

    Raises:
      ValueError: when ``K m > N`` for the given sizes.
    """
    allocation = resolve_allocation(
        session.budget, num_states=num_states, samples_per_state=samples_per_state, rule=rule
    )
    return two_stage(
        session,
        allocation=allocation,
        value=value,
        horizon=horizon,
        tail_fraction=tail_fraction,
        upper_level=upper_level,
    )


def _top_prefixes(rewards, batch, num_states, prompt):
    """Return the first-step prefixes of the ``num_states`` best root rollouts."""
    if batch.prefixes is None:
        raise ValueError(
            "slg_reference needs the first-step prefix of each root rollout, but the "
            f"environment returned prefixes=None for prompt {prompt}. Use an environment "
            "that reports prefixes (record pools with slgjax sample --prefix-rollouts), or "
            "pass select_prefixes=False to take the states from expand."
        )
    finite = np.where(np.isfinite(rewards[0]), rewards[0], -np.inf)
    order = np.argsort(-finite, kind="stable")[:num_states]
    prefixes = [batch.prefixes[0][j] for j in order]
    missing = [int(j) for j, prefix in zip(order, prefixes, strict=True) if prefix is None]
    if missing:
        raise ValueError(
            f"root rollouts {missing} of prompt {prompt} have no recorded prefix; "
            "slg_reference needs one for each of the best K rollouts."
        )
    return prefixes


def slg_reference(
    session: SearchSession,
    *,
    num_states: int | None = None,
    samples_per_state: int | None = None,
    rule: str = "reference",
    value="gaussian",
    horizon: str = "remaining",
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
    select_prefixes: bool = True,
    root_fallback: bool = True,
) -> list:
    """Two-stage SLG in the form of the authors' code, with its defects fixed.

    1. Roll out ``m`` responses from the prompt; the root's ``V_hat`` comes
       from them.
    2. The ``K`` states are the first-step prefixes of the ``K`` best of those
       rollouts by reward (ties: the earlier rollout first).
    3. Roll out ``m`` responses from each state; ``V_hat`` per state.
    4. The prompt competes: unless some state has a strictly larger ``V_hat``,
       the remaining budget goes to plain best-of-N from the prompt.
    5. Spend the remaining ``N - (K + 1) m`` rollouts on the winner, full
       responses from the prompt when the root wins; return the best seen.

    Unlike the authors' code, the total never exceeds ``N`` (the default rule
    is clipped, explicit sizes raise) and a state value that is NaN counts as
    ``-inf`` instead of losing every comparison.

    The two switches turn off the form's two mechanisms for ablations at the
    same cost: ``select_prefixes=False`` takes the ``K`` states from
    ``expand`` in step 2, and ``root_fallback=False`` drops step 4, so the
    best state always gets the remaining budget.

    Args:
      session: the search session.
      num_states: ``K <= m``; filled from ``rule`` when None.
      samples_per_state: ``m``; filled from ``rule`` when None.
      rule: ``"reference"`` (the authors' rule, clipped) or ``"paper"``.
      value: the state value, a name or a callable.
      horizon: ``"remaining"`` values states at ``N - (K + 1) m`` rollouts,
        ``"total"`` at ``N`` as the authors' code does.
      tail_fraction: tail share of the Gaussian and GPD fits.
      upper_level: posterior quantile of ``"bayes_upper"``.
      select_prefixes: take the states from the best root rollouts' prefixes
        (True) or from ``expand`` (False).
      root_fallback: let the prompt compete for the remaining budget.

    Raises:
      ValueError: when ``(K + 1) m > N``, or, when selecting prefixes, when
        ``K > m`` or the environment records no prefixes.
    """
    check_options(value, horizon)
    allocation = resolve_allocation(
        session.budget,
        num_states=num_states,
        samples_per_state=samples_per_state,
        rule=rule,
        root=True,
    )
    num_states, samples = allocation.num_states, allocation.samples_per_state
    if select_prefixes and num_states > samples:
        raise ValueError(
            f"slg_reference takes its K={num_states} states from the prefixes of m={samples} "
            "root rollouts, so K must be <= m; lower num_states or raise samples_per_state."
        )
    prompts = list(range(session.num_prompts))

    roots = session.rollout_many(
        [(p, [session.roots[p]]) for p in prompts], samples, phase="estimate_root"
    )
    if select_prefixes:
        states = [
            _top_prefixes(rewards, batch, num_states, p)
            for p, (rewards, batch) in zip(prompts, roots, strict=True)
        ]
    else:
        states = [session.expand(p, [session.roots[p]], num_states)[0] for p in prompts]

    estimates = session.rollout_many([(p, states[p]) for p in prompts], samples, phase="estimate")
    decision = decide(
        session,
        prompts,
        [list(rewards) for rewards, _ in estimates],
        value=value,
        horizons=[horizon_of(allocation, horizon)] * len(prompts),
        root_groups=[rewards[0] for rewards, _ in roots] if root_fallback else None,
        tail_fraction=tail_fraction,
        upper_level=upper_level,
    )

    targets = []
    for p in prompts:
        use_root = bool(decision.use_root[p])
        chosen = ROOT if use_root else int(decision.index[p])
        record_decision(session, p, decision, p, num_states, chosen)
        targets.append((p, [session.roots[p] if use_root else states[p][chosen]]))
    session.rollout_many(targets, allocation.exploitation, phase="exploit")
    return session.results()


ALGORITHMS = {
    "best_of_n": best_of_n,
    "slg_paper": slg_paper,
    "slg_reference": slg_reference,
    "slg_tree": slg_tree,
    "slg_tree_ucb": slg_tree_ucb,
    "uniform_split": uniform_split,
    "successive_halving": successive_halving,
    "extreme_bandit": extreme_bandit,
    "oracle": oracle,
}
