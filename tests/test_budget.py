"""Tests of the (K, m) budget rules and the rollout ledger."""

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slgjax.search.budget import (
    BudgetExceededError,
    BudgetLedger,
    explicit_allocation,
    paper_allocation,
    reference_code_allocation,
    resolve_allocation,
)


def _authors_rule(budget):
    """The authors' unclipped rule, written out independently of the library."""
    m = max(20, int(round(math.log(budget) ** 3 / 5 / 5) * 5))
    k = max(2, min(int(round(budget / (2 * m))), int(budget / (m + 2))))
    return k, m


@pytest.mark.parametrize(
    "budget, expected",
    [(100, (2, 20)), (1000, (8, 66)), (10**4, (32, 156)), (10**6, (949, 527))],
)
def test_paper_allocation_values(budget, expected):
    allocation = paper_allocation(budget)
    assert (allocation.num_states, allocation.samples_per_state) == expected
    assert allocation.exploration == expected[0] * expected[1]
    assert allocation.exploration + allocation.exploitation == budget
    assert not allocation.root


def test_paper_allocation_never_over_budget():
    for budget in range(1, 3001):
        allocation = paper_allocation(budget)
        assert allocation.num_states >= 1
        assert allocation.samples_per_state >= 1
        assert allocation.exploration <= budget, budget
        assert allocation.exploitation == budget - allocation.exploration


def test_paper_allocation_budget_one():
    allocation = paper_allocation(1)
    assert allocation[:2] == (1, 1)
    assert allocation.exploitation == 0


@pytest.mark.parametrize("budget", [1000, 5000, 10**4])
def test_reference_rule_matches_authors(budget):
    k, m = _authors_rule(budget)
    assert (k + 1) * m <= budget
    allocation = reference_code_allocation(budget)
    assert (allocation.num_states, allocation.samples_per_state) == (k, m)
    assert allocation.root
    assert allocation.exploration == (k + 1) * m


def test_reference_rule_clips_authors_overrun():
    k, m = _authors_rule(50)
    assert (k + 1) * m == 60
    allocation = reference_code_allocation(50)
    assert allocation.samples_per_state == 20
    assert allocation.num_states == 1
    assert allocation.exploration == 40
    assert allocation.exploitation == 10


def test_reference_rule_never_over_budget():
    for budget in range(2, 5001):
        allocation = reference_code_allocation(budget)
        k, m = allocation.num_states, allocation.samples_per_state
        assert k >= 1
        assert m >= 1
        assert k <= m
        assert (k + 1) * m <= budget, budget
        assert allocation.exploration + allocation.exploitation == budget


def test_reference_rule_caps_states_at_samples():
    allocation = reference_code_allocation(10**6)
    assert allocation.num_states == allocation.samples_per_state == 525
    assert allocation.exploration == 526 * 525


def test_reference_rule_rejects_budget_one():
    with pytest.raises(ValueError, match="N=1.*smallest valid budget is N=2"):
        reference_code_allocation(1)


def test_explicit_allocation_fits():
    allocation = explicit_allocation(100, num_states=4, samples_per_state=20, root=True)
    assert allocation.exploration == 100
    assert allocation.exploitation == 0


def test_explicit_allocation_impossible_message():
    message = re.escape("N=99") + ".*" + re.escape("K=4") + ".*" + re.escape("m=20")
    message += ".*" + re.escape("smallest valid budget is N=100")
    with pytest.raises(ValueError, match=message):
        explicit_allocation(99, num_states=4, samples_per_state=20, root=True)
    with pytest.raises(ValueError, match=re.escape("smallest valid budget is N=80")):
        explicit_allocation(79, num_states=4, samples_per_state=20)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None, "10"])
def test_explicit_allocation_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        explicit_allocation(100, num_states=bad, samples_per_state=5)
    with pytest.raises(ValueError):
        explicit_allocation(bad, num_states=2, samples_per_state=5)


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(1, 10**7),
    num_states=st.integers(1, 5000),
    samples=st.integers(1, 5000),
    root=st.booleans(),
)
def test_explicit_allocation_property(budget, num_states, samples, root):
    needed = (num_states + root) * samples
    if needed > budget:
        with pytest.raises(ValueError, match=f"smallest valid budget is N={needed}"):
            explicit_allocation(budget, num_states=num_states, samples_per_state=samples, root=root)
        return
    allocation = explicit_allocation(
        budget, num_states=num_states, samples_per_state=samples, root=root
    )
    assert allocation.exploration == needed
    assert allocation.exploitation == budget - needed
    assert allocation.root == root


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(2, 10**8),
    num_states=st.one_of(st.none(), st.integers(1, 50)),
    samples=st.one_of(st.none(), st.integers(1, 50)),
    rule=st.sampled_from(["paper", "reference"]),
    root=st.booleans(),
)
def test_resolve_allocation_keeps_given_sizes(budget, num_states, samples, rule, root):
    try:
        allocation = resolve_allocation(
            budget, num_states=num_states, samples_per_state=samples, rule=rule, root=root
        )
    except ValueError as error:
        # Only sizes the caller fixed can make the budget too small.
        assert num_states is not None or samples is not None
        assert "smallest valid budget" in str(error)
        return
    assert allocation.exploration <= budget
    assert allocation.root == root
    if num_states is not None:
        assert allocation.num_states == num_states
    if samples is not None:
        assert allocation.samples_per_state == samples


def test_resolve_allocation_fills_from_rule():
    allocation = resolve_allocation(1000, samples_per_state=50, rule="paper")
    assert allocation.num_states == 10
    allocation = resolve_allocation(1000, rule="paper", root=True)
    assert allocation.root
    assert allocation.exploration <= 1000
    with pytest.raises(ValueError, match="rule='bogus'"):
        resolve_allocation(1000, rule="bogus")


def test_ledger_counts_and_rejects_overspend():
    ledger = BudgetLedger(10)
    assert ledger.charge(4) == 4
    assert ledger.charge(6) == 10
    assert ledger.remaining == 0
    with pytest.raises(BudgetExceededError, match="spend 11 of a budget of N=10"):
        ledger.charge(1, reason="exploit")
    assert ledger.spent == 10
    assert ledger.charge(0) == 10


def test_ledger_rejects_bad_counts():
    ledger = BudgetLedger(10)
    with pytest.raises(ValueError):
        ledger.charge(-1)
    with pytest.raises(ValueError):
        ledger.charge(1.5)
    with pytest.raises(ValueError):
        BudgetLedger(0)


def test_ledger_large_budgets():
    ledger = BudgetLedger(10**12)
    ledger.charge(10**12 - 1)
    assert ledger.remaining == 1
    with pytest.raises(BudgetExceededError):
        ledger.charge(2)
    allocation = paper_allocation(10**12)
    assert allocation.exploration + allocation.exploitation == 10**12
    assert allocation.exploration <= 10**12


def test_resolve_root_keeps_states_within_samples():
    for budget in (2, 3, 50, 1000, 10**6):
        allocation = resolve_allocation(budget, rule="paper", root=True)
        assert allocation.num_states <= allocation.samples_per_state
        assert allocation.exploration <= budget
    allocation = resolve_allocation(10**6, samples_per_state=100, rule="paper", root=True)
    assert allocation.num_states == 100
    allocation = resolve_allocation(1000, num_states=30, rule="paper", root=True)
    assert allocation.samples_per_state >= 30
    with pytest.raises(ValueError, match="smallest valid budget is N=2"):
        resolve_allocation(1, rule="paper", root=True)
