"""Baseline allocations to compare scaling-law guided search against.

- :func:`uniform_split`: the budget split evenly over ``K`` states.
- :func:`successive_halving`: halve the surviving states each round by
  ``V_hat`` (Karnin, Koren, Somekh 2013).
- :func:`extreme_bandit`: QoMax-ETC, an explore-then-commit rule for the
  extreme (max-reward) bandit (Baudry, Russac, Kaufmann 2022).
- :func:`oracle`: perfect information; the whole budget on the state of
  highest true value. Only for environments that define ``true_value``.

All take a :class:`~slgjax.search.session.SearchSession` and return one
:class:`~slgjax.search.session.SearchResult` per prompt, like the SLG forms.
"""

import math

import numpy as np

from slgjax.envs.protocol import has_true_value
from slgjax.search._common import check_options, decide, record_decision, two_stage
from slgjax.search.budget import explicit_allocation, resolve_allocation
from slgjax.search.session import ROOT, SearchSession, TraceStep
from slgjax.search.values import QoMaxValue

__all__ = ["extreme_bandit", "oracle", "successive_halving", "uniform_split"]


def _num_states(session, num_states, rule):
    if num_states is None:
        return resolve_allocation(session.budget, rule=rule).num_states
    return resolve_allocation(
        session.budget, num_states=num_states, samples_per_state=1, rule=rule
    ).num_states


def uniform_split(
    session: SearchSession, *, num_states: int | None = None, rule: str = "paper"
) -> list:
    """Split the budget evenly over ``K`` fresh states.

    Each state gets ``floor(N / K)`` rollouts and the first ``N mod K`` states
    one more.

    Args:
      session: the search session.
      num_states: ``K <= N``; the ``K`` of ``rule`` when None.
      rule: allocation rule that sets the default ``K``.
    """
    num_states = _num_states(session, num_states, rule)
    share, extra = divmod(session.budget, num_states)
    prompts = list(range(session.num_prompts))
    states = [session.expand(p, [session.roots[p]], num_states)[0] for p in prompts]
    session.rollout_many([(p, states[p]) for p in prompts], share, phase="uniform")
    if extra:
        session.rollout_many([(p, states[p][:extra]) for p in prompts], 1, phase="uniform")
    return session.results()


def successive_halving(
    session: SearchSession,
    *,
    num_states: int | None = None,
    rule: str = "paper",
    value="gaussian",
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
) -> list:
    """Successive halving over ``K`` fresh states, ranked by ``V_hat``.

    With ``R = ceil(log2 K)`` rounds, round ``r`` gives each of its ``|S_r|``
    surviving states ``floor(N / (|S_r| R))`` more rollouts and keeps the
    ``ceil(|S_r| / 2)`` states of largest ``V_hat`` (ties: the lower index). A
    state's value uses all its rollouts so far, at a horizon equal to the
    budget left after the round. The last survivor receives whatever budget
    is left.

    Reference: Z. Karnin, T. Koren, O. Somekh, "Almost optimal exploration in
    multi-armed bandits", ICML 2013.

    Args:
      session: the search session.
      num_states: ``K``; the ``K`` of ``rule`` when None.
      rule: allocation rule that sets the default ``K``.
      value: the state value, a name or a callable.
      tail_fraction: tail share of the Gaussian and GPD fits.
      upper_level: posterior quantile of ``"bayes_upper"``.

    Raises:
      ValueError: when the first round cannot give every state a rollout,
        ``N < K R``.
    """
    check_options(value)
    num_states = _num_states(session, num_states, rule)
    rounds = max(1, math.ceil(math.log2(num_states)))
    if session.budget < num_states * rounds:
        raise ValueError(
            f"successive_halving with K={num_states} states runs {rounds} rounds and needs "
            f"N >= K R = {num_states * rounds} to give each state a rollout in the first "
            f"round; got N={session.budget}. Lower num_states or raise the budget."
        )

    prompts = list(range(session.num_prompts))
    states = [session.expand(p, [session.roots[p]], num_states)[0] for p in prompts]
    rewards = [[np.zeros(0) for _ in range(num_states)] for _ in prompts]
    survivors = [list(range(num_states)) for _ in prompts]

    # The rollouts of a state that survives every round size one buffer for all rounds.
    max_samples, alive = 0, num_states
    for _ in range(rounds):
        max_samples += session.budget // (alive * rounds)
        alive = math.ceil(alive / 2)

    for _ in range(rounds):
        if len(survivors[0]) == 1:
            break
        share = session.budget // (len(survivors[0]) * rounds)
        requests = [(p, [states[p][k] for k in survivors[p]]) for p in prompts]
        drawn = session.rollout_many(requests, share, phase="halving")
        for p, (new, _) in zip(prompts, drawn, strict=True):
            for row, k in enumerate(survivors[p]):
                rewards[p][k] = np.concatenate([rewards[p][k], new[row]])

        horizons = [max(1, session.remaining(p)) for p in prompts]
        decision = decide(
            session,
            prompts,
            [[rewards[p][k] for k in survivors[p]] for p in prompts],
            value=value,
            horizons=horizons,
            tail_fraction=tail_fraction,
            upper_level=upper_level,
            min_states=num_states,
            min_samples=max_samples,
        )
        keep = math.ceil(len(survivors[0]) / 2)
        for p in prompts:
            count = len(survivors[p])
            order = np.argsort(-decision.values[p, :count], kind="stable")[:keep]
            record_decision(session, p, decision, p, count, int(order[0]))
            survivors[p] = [survivors[p][j] for j in sorted(order)]

    final = [(p, [states[p][survivors[p][0]]]) for p in prompts]
    session.rollout_many(final, session.remaining(0), phase="exploit")
    return session.results()


def extreme_bandit(
    session: SearchSession,
    *,
    num_states: int | None = None,
    samples_per_state: int | None = None,
    rule: str = "paper",
    num_batches: int = 4,
    quantile: float = 0.5,
) -> list:
    """QoMax-ETC: explore ``K`` states, then commit to the largest Quantile of Maxima.

    Each state gets ``m`` exploration rollouts, cut into ``num_batches``
    batches; its QoMax is the ``quantile`` level of the batch maxima (see
    :class:`~slgjax.search.values.QoMaxValue`). The remaining ``N - K m``
    rollouts go to the state with the largest QoMax. This is the two-stage
    schedule of :func:`~slgjax.search.algorithms.slg_paper` with QoMax as the
    state value, so the two differ only in how they score states.

    Reference: D. Baudry, Y. Russac, E. Kaufmann, "Efficient Algorithms for
    Extreme Bandits", AISTATS 2022, arXiv:2203.10883.

    Args:
      session: the search session.
      num_states: ``K``; filled from ``rule`` when None.
      samples_per_state: ``m`` exploration rollouts per state; filled from
        ``rule`` when None.
      rule: allocation rule for the missing sizes.
      num_batches: batches per state; at most ``m`` of them are filled.
      quantile: level of the quantile over the batch maxima.
    """
    allocation = resolve_allocation(
        session.budget, num_states=num_states, samples_per_state=samples_per_state, rule=rule
    )
    value = QoMaxValue(num_batches=num_batches, quantile=quantile)
    return two_stage(session, allocation=allocation, value=value)


def oracle(
    session: SearchSession,
    *,
    num_states: int | None = None,
    rule: str = "paper",
    include_root: bool = True,
) -> list:
    """Perfect information: the whole budget on the state of highest true value.

    Expands ``K`` states exactly as :func:`~slgjax.search.algorithms.slg_paper`
    does (the same first call with the same key, so both see the same
    states), reads ``V_N(s) = env.true_value(s, N)`` for each and, when
    ``include_root`` is True, for the prompt itself, and spends all ``N``
    rollouts on the best (the root wins ties, then the lower index).

    Args:
      session: the search session; its environment must define
        ``true_value(state, budget)``.
      num_states: ``K``; the ``K`` of ``rule`` when None.
      rule: allocation rule that sets the default ``K``.
      include_root: whether plain best-of-N from the prompt is a candidate.

    Raises:
      TypeError: when the environment has no ``true_value``.
    """
    if not has_true_value(session.env):
        raise TypeError(
            f"oracle needs env.true_value(state, budget), which {type(session.env).__name__} "
            "does not define; use it with a simulated environment."
        )
    if num_states is None:
        num_states = resolve_allocation(session.budget, rule=rule).num_states
    else:
        explicit_allocation(session.budget, num_states=num_states, samples_per_state=1)

    prompts = list(range(session.num_prompts))
    targets = []
    for p in prompts:
        states = session.expand(p, [session.roots[p]], num_states)[0]
        values = [float(session.env.true_value(s, session.budget)) for s in states]
        best = int(np.argmax(values))
        chosen, target = best, states[best]
        root_value = None
        if include_root:
            root_value = float(session.env.true_value(session.roots[p], session.budget))
            if not values[best] > root_value:
                chosen, target = ROOT, session.roots[p]
        step = TraceStep("select", 0, num_states, chosen, tuple(values), root_value)
        session.record(p, step)
        targets.append((p, [target]))
    session.rollout_many(targets, session.budget, phase="exploit")
    return session.results()
