"""Budget rules for two-stage search and a ledger that counts every rollout.

The budget unit is one full rollout: a sampled response and its reward.
Two-stage search spends ``exploration`` rollouts estimating the value of ``K``
states with ``m`` samples each and ``exploitation = N - exploration`` rollouts
on the chosen state. The paper form explores ``K m`` rollouts; the
reference-code form also spends ``m`` rollouts on the prompt itself (the root),
so it explores ``(K + 1) m``.

Every rule here returns an allocation whose exploration never exceeds ``N``.
The authors' code does not guarantee that: with ``N = 50`` its rule gives
``m = 20, K = 2`` and spends ``(2 + 1) 20 = 60`` rollouts.

Reference: M. Li, J. Qian, W. Mou, "Predicting and improving test-time scaling
laws via reward tail-guided search", arXiv:2602.01485 (2026).
"""

import math
import numbers
from typing import NamedTuple

__all__ = [
    "Allocation",
    "BudgetExceededError",
    "BudgetLedger",
    "explicit_allocation",
    "paper_allocation",
    "reference_code_allocation",
    "resolve_allocation",
    "ALLOCATION_RULES",
]

ALLOCATION_RULES = ("paper", "reference")


class Allocation(NamedTuple):
    """Sizes of a two-stage search; all fields are Python ints.

    Attributes:
      num_states: ``K``, the number of intermediate states explored.
      samples_per_state: ``m``, rollouts per explored state (and per root).
      budget: ``N``, the total number of rollouts.
      exploration: rollouts spent estimating values, ``K m`` or ``(K + 1) m``
        when the root is estimated too.
      exploitation: ``N - exploration``, rollouts left for the chosen state.
    """

    num_states: int
    samples_per_state: int
    budget: int
    exploration: int
    exploitation: int

    @property
    def root(self) -> bool:
        """True when the exploration includes ``m`` rollouts from the root."""
        return self.exploration == (self.num_states + 1) * self.samples_per_state


def _check_count(value, name, *, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}={value} must be an integer >= {minimum}.")
    return value


def _make(budget, num_states, samples_per_state, root):
    exploration = (num_states + int(root)) * samples_per_state
    return Allocation(num_states, samples_per_state, budget, exploration, budget - exploration)


def explicit_allocation(budget, *, num_states, samples_per_state, root: bool = False) -> Allocation:
    """Return the allocation for a given ``(K, m)``, or raise when ``N`` cannot pay for it.

    Args:
      budget: total rollouts ``N >= 1``.
      num_states: ``K >= 1``.
      samples_per_state: ``m >= 1``.
      root: True when the root is estimated with ``m`` rollouts as well
        (the reference-code form).

    Raises:
      ValueError: when ``(K + root) m > N``; the message names ``N``, ``K``,
        ``m`` and the smallest budget that pays for the exploration.
    """
    budget = _check_count(budget, "budget")
    num_states = _check_count(num_states, "num_states")
    samples_per_state = _check_count(samples_per_state, "samples_per_state")

    needed = (num_states + int(root)) * samples_per_state
    if needed > budget:
        states = f"K={num_states} states" + (" and the root" if root else "")
        raise ValueError(
            f"budget N={budget} cannot pay for exploring {states} with "
            f"m={samples_per_state} rollouts each ({needed} rollouts); the smallest valid "
            f"budget is N={needed}, or lower K or m."
        )
    return _make(budget, num_states, samples_per_state, root)


def _paper_samples(budget):
    return max(1, round(math.log(budget) ** 3 / 5))


def _paper_states(budget, samples_per_state):
    return max(1, round(budget / (2 * samples_per_state)))


def _reference_samples(budget):
    return max(20, 5 * round(math.log(budget) ** 3 / 25))


def _reference_states(budget, samples_per_state):
    return max(2, min(round(budget / (2 * samples_per_state)), budget // (samples_per_state + 2)))


def paper_allocation(budget) -> Allocation:
    """Return the paper's sizes ``m ~ (ln N)^3 / 5`` and ``K ~ N / (2 m)``.

    ``m = max(1, round((ln N)^3 / 5))`` and ``K = max(1, round(N / (2 m)))``,
    with Python's ``round`` (half to even). When ``K m`` would exceed ``N``
    (only for tiny ``N``) ``K`` is lowered first, then ``m``, so the
    exploration always fits: ``N = 1`` gives ``K = m = 1`` and no exploitation.

    Examples: ``N = 100`` gives ``(K, m) = (2, 20)``; ``N = 1000`` gives ``(8, 66)``;
    ``N = 10^6`` gives ``(949, 527)``.
    """
    budget = _check_count(budget, "budget")
    samples_per_state = min(_paper_samples(budget), budget)
    num_states = min(_paper_states(budget, samples_per_state), budget // samples_per_state)
    return _make(budget, num_states, samples_per_state, root=False)


def reference_code_allocation(budget) -> Allocation:
    """Return the sizes of the authors' code, clipped so that ``(K + 1) m <= N``.

    The authors' rule is ``m = max(20, 5 round((ln N)^3 / 25))`` and
    ``K = max(2, min(round(N / 2m), floor(N / (m + 2))))``. slgjax then applies
    three clips, in this order:

    1. ``K <= m``, because the states are prefixes of the ``m`` root rollouts
       (the authors' code silently keeps ``min(K, m)`` of them as well);
    2. ``K`` is lowered, down to 1, until ``(K + 1) m <= N``;
    3. if ``2 m > N`` still, ``m = floor(N / 2)``.

    Raises:
      ValueError: for ``N < 2``, because the root and one state need at least
        one rollout each.
    """
    budget = _check_count(budget, "budget")
    if budget < 2:
        raise ValueError(
            f"budget N={budget} cannot pay for the reference-code form, which explores "
            "the root and at least K=1 state with m>=1 rollouts each; the smallest valid "
            "budget is N=2. Use best-of-N for N=1."
        )
    samples_per_state = _reference_samples(budget)
    num_states = min(_reference_states(budget, samples_per_state), samples_per_state)
    num_states = max(1, min(num_states, budget // samples_per_state - 1))
    samples_per_state = min(samples_per_state, budget // (num_states + 1))
    return _make(budget, num_states, samples_per_state, root=True)


def resolve_allocation(
    budget, *, num_states=None, samples_per_state=None, rule: str = "paper", root: bool = False
) -> Allocation:
    """Return the allocation for an algorithm's hyperparameters.

    Sizes given by the caller are kept exactly and raise when ``N`` cannot pay
    for them (see :func:`explicit_allocation`). Missing sizes come from
    ``rule`` (``"paper"`` or ``"reference"``). When both are missing, the result
    is that rule's allocation. When one is missing, the rule's formula fills it
    from the other and the result is clipped to fit the budget. With ``root``,
    filled-in sizes also keep ``K <= m``, because the reference-code form takes
    its states from the prefixes of the ``m`` root rollouts.

    Args:
      budget: total rollouts ``N``.
      num_states: ``K`` or None.
      samples_per_state: ``m`` or None.
      rule: the rule that fills missing sizes.
      root: True when the root is estimated too (the reference-code form).
    """
    if rule not in ALLOCATION_RULES:
        raise ValueError(f"rule={rule!r} is unknown; use one of {ALLOCATION_RULES}.")
    budget = _check_count(budget, "budget")
    if root and budget < 2:
        raise ValueError(
            f"budget N={budget} cannot pay for exploring the root and at least K=1 state with "
            "m>=1 rollouts each; the smallest valid budget is N=2. Use best-of-N for N=1."
        )

    if num_states is None and samples_per_state is None:
        base = paper_allocation(budget) if rule == "paper" else reference_code_allocation(budget)
        if root == base.root:
            return base
        num_states, samples_per_state = base.num_states, base.samples_per_state
        if root:
            # The root's m rollouts supply the states, so K <= m, and the root needs room.
            num_states = min(num_states, samples_per_state)
            num_states = max(1, min(num_states, budget // samples_per_state - 1))
            samples_per_state = min(samples_per_state, budget // (num_states + 1))
        return explicit_allocation(
            budget, num_states=num_states, samples_per_state=samples_per_state, root=root
        )

    extra = int(root)
    if samples_per_state is None:
        num_states = _check_count(num_states, "num_states")
        guess = _paper_samples(budget) if rule == "paper" else _reference_samples(budget)
        if root:
            guess = max(guess, num_states)
        samples_per_state = max(1, min(guess, budget // (num_states + extra)))
    elif num_states is None:
        samples_per_state = _check_count(samples_per_state, "samples_per_state")
        if rule == "paper":
            guess = _paper_states(budget, samples_per_state)
        else:
            guess = _reference_states(budget, samples_per_state)
        if root:
            guess = min(guess, samples_per_state)
        num_states = max(1, min(guess, budget // samples_per_state - extra))
    return explicit_allocation(
        budget, num_states=num_states, samples_per_state=samples_per_state, root=root
    )


class BudgetExceededError(RuntimeError):
    """Raised when an algorithm requests more rollouts than its budget has left."""


class BudgetLedger:
    """Counts the rollouts of one search and rejects any that would overspend.

    Args:
      budget: total rollouts ``N >= 1``.

    Attributes:
      budget: ``N``.
      spent: rollouts charged so far.
    """

    def __init__(self, budget):
        self.budget = _check_count(budget, "budget")
        self.spent = 0

    @property
    def remaining(self) -> int:
        """Rollouts still available, ``N - spent``."""
        return self.budget - self.spent

    def charge(self, count, *, reason: str = "rollouts") -> int:
        """Record ``count`` rollouts and return the new total spent.

        Raises:
          ValueError: when ``count`` is not a non-negative integer.
          BudgetExceededError: when the charge would take ``spent`` past
            ``budget``; nothing is recorded then.
        """
        count = _check_count(count, "count", minimum=0)
        if self.spent + count > self.budget:
            raise BudgetExceededError(
                f"{reason}: charging {count} rollouts would spend {self.spent + count} of a "
                f"budget of N={self.budget} ({self.remaining} left). The algorithm requested "
                "more rollouts than its budget, which is a bug in the algorithm."
            )
        self.spent += count
        return self.spent

    def __repr__(self):
        return f"BudgetLedger(budget={self.budget}, spent={self.spent})"
