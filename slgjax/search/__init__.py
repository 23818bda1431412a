"""Allocation of a rollout budget among intermediate states: SLG and baselines."""

from slgjax.search.algorithms import (
    ALGORITHMS,
    best_of_n,
    extreme_bandit,
    oracle,
    slg_paper,
    slg_reference,
    slg_tree,
    slg_tree_ucb,
    successive_halving,
    uniform_split,
)
from slgjax.search.budget import (
    Allocation,
    BudgetExceededError,
    BudgetLedger,
    explicit_allocation,
    paper_allocation,
    reference_code_allocation,
    resolve_allocation,
)
from slgjax.search.driver import prompt_keys, run_search
from slgjax.search.policies import Decision, pad_rewards, select_state, select_ucb
from slgjax.search.session import ROOT, SearchResult, SearchSession, TraceStep
from slgjax.search.values import VALUE_NAMES, QoMaxValue, state_values

__all__ = [
    "ALGORITHMS",
    "Allocation",
    "BudgetExceededError",
    "BudgetLedger",
    "Decision",
    "QoMaxValue",
    "ROOT",
    "SearchResult",
    "SearchSession",
    "TraceStep",
    "VALUE_NAMES",
    "best_of_n",
    "explicit_allocation",
    "extreme_bandit",
    "oracle",
    "pad_rewards",
    "paper_allocation",
    "prompt_keys",
    "reference_code_allocation",
    "resolve_allocation",
    "run_search",
    "select_state",
    "select_ucb",
    "slg_paper",
    "slg_reference",
    "slg_tree",
    "slg_tree_ucb",
    "state_values",
    "successive_halving",
    "uniform_split",
]
