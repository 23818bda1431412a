"""Host-side bookkeeping of one search over a batch of prompts.

A :class:`SearchSession` is the layer between an algorithm and its environment. Every
rollout goes through it, so it

- charges the prompt's :class:`~slgjax.search.budget.BudgetLedger` before the
  environment is called, which makes overspending impossible;
- derives the key of each environment call as ``fold_in(prompt_key, call)``,
  so the draws of one prompt depend only on its own key and calls, not on the
  other prompts of the batch;
- keeps the best response seen so far for each prompt, estimation rollouts
  included.

Non-finite rewards (failed rollouts) cost budget but never become the best.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from slgjax.envs.protocol import State, check_rollout_batch
from slgjax.search.budget import BudgetExceededError, BudgetLedger

__all__ = ["SearchResult", "SearchSession", "TraceStep", "ROOT"]

# Index recorded in a trace when the root (the prompt itself) was chosen.
ROOT = -1


class TraceStep(NamedTuple):
    """One step of a search, for inspection and plots.

    Attributes:
      phase: what the step did, such as ``"estimate"``, ``"select"`` or
        ``"exploit"``.
      rollouts: rollouts spent by the step (zero for a decision).
      num_states: number of states the step involved.
      chosen: index of the chosen state among those scored, ``ROOT`` (-1) for
        the root, or None for a step that chose nothing.
      values: the values ``V_hat`` behind a decision, or None.
      root_value: the root's value when it competed, or None.
    """

    phase: str
    rollouts: int
    num_states: int
    chosen: int | None = None
    values: tuple | None = None
    root_value: float | None = None


class SearchResult(NamedTuple):
    """Outcome of a search for one prompt.

    Attributes:
      best_reward: largest finite reward seen (``-inf`` if none was finite).
      best_response: the response with that reward (None if none).
      rollouts_spent: rollouts charged, never more than the budget.
      trace: list of :class:`TraceStep`.
      best_correct: correctness of the best response when the environment
        reports it, else None.
    """

    best_reward: float
    best_response: Any
    rollouts_spent: int
    trace: list
    best_correct: Any = None


class SearchSession:
    """Keys, budgets and best responses for a batch of prompts.

    Args:
      env: an environment (see :class:`slgjax.envs.protocol.Environment`).
      keys: one PRNG key per prompt.
      budget: the rollout budget ``N`` of each prompt.
      roots: the root state of each prompt.
    """

    def __init__(self, env, *, keys: Sequence, budget: int, roots: Sequence[State]):
        if len(keys) != len(roots):
            raise ValueError(f"got {len(keys)} keys for {len(roots)} prompts; pass one per prompt.")
        self.env = env
        self.roots = list(roots)
        self.ledgers = [BudgetLedger(budget) for _ in self.roots]
        self.budget = self.ledgers[0].budget if self.ledgers else int(budget)
        self.traces = [[] for _ in self.roots]
        self._keys = list(keys)
        self._calls = [0] * len(self.roots)
        self._best_reward = [-np.inf] * len(self.roots)
        self._best_response = [None] * len(self.roots)
        self._best_correct = [None] * len(self.roots)

    @property
    def num_prompts(self) -> int:
        """Number of prompts ``B`` in the batch."""
        return len(self.roots)

    def spent(self, prompt: int) -> int:
        """Rollouts charged so far to prompt ``prompt``."""
        return self.ledgers[prompt].spent

    def remaining(self, prompt: int) -> int:
        """Rollouts left to prompt ``prompt``."""
        return self.ledgers[prompt].remaining

    def next_key(self, prompt: int):
        """Return a fresh key of prompt ``prompt``: ``fold_in(key, number of calls so far)``."""
        key = jax.random.fold_in(self._keys[prompt], self._calls[prompt])
        self._calls[prompt] += 1
        return key

    def record(self, prompt: int, step: TraceStep):
        """Append ``step`` to the trace of prompt ``prompt``."""
        self.traces[prompt].append(step)

    def expand(self, prompt: int, states: Sequence[State], num_children: int) -> list[list[State]]:
        """Return ``num_children`` children of each state; expansion costs no rollouts."""
        children = self.env.expand(self.next_key(prompt), list(states), int(num_children))
        if len(children) != len(states) or any(len(c) != num_children for c in children):
            raise ValueError(
                f"environment expand returned {[len(c) for c in children]} children for "
                f"{len(states)} states; expected {num_children} each."
            )
        return [list(c) for c in children]

    def rollout(self, prompt: int, states: Sequence[State], num: int, *, phase: str):
        """Charge and run ``num`` rollouts from each state of one prompt.

        Returns:
          ``(rewards float64[S, num], batch)``; ``batch`` is the environment's
          :class:`RolloutBatch`, or None when nothing was drawn.
        """
        return self.rollout_many([(prompt, states)], num, phase=phase)[0]

    def rollout_many(self, requests: Sequence[tuple[int, Sequence[State]]], num: int, *, phase):
        """Run ``num`` rollouts from each state of several prompts.

        Each request is ``(prompt, states)``. Budgets are charged for all
        requests before any environment call; when one charge fails, none is
        kept and :class:`BudgetExceededError` is raised. An environment that defines
        ``rollout_many(keys, groups, num) -> list[RolloutBatch]`` gets one call
        for the whole batch; any other gets one ``rollout`` call per request.

        Returns:
          one ``(rewards, batch)`` pair per request, as :meth:`rollout`.
        """
        num = int(num)
        requests = [(int(prompt), list(states)) for prompt, states in requests]
        charged = []
        try:
            for prompt, states in requests:
                cost = len(states) * num
                self.ledgers[prompt].charge(cost, reason=f"{phase} of prompt {prompt}")
                charged.append((prompt, cost))
        except BudgetExceededError:
            for prompt, cost in charged:
                self.ledgers[prompt].spent -= cost
            raise
        for prompt, states in requests:
            self.record(prompt, TraceStep(phase, len(states) * num, len(states)))

        live = [(p, s) for p, s in requests if num > 0 and s]
        keys = [self.next_key(prompt) for prompt, _ in live]
        if live and callable(getattr(self.env, "rollout_many", None)):
            batches = self.env.rollout_many(keys, [s for _, s in live], num)
        else:
            batches = [self.env.rollout(k, s, num) for k, (_, s) in zip(keys, live, strict=True)]

        by_request = iter(zip(live, batches, strict=True))
        out = []
        for prompt, states in requests:
            if num == 0 or not states:
                out.append((np.zeros((len(states), num)), None))
                continue
            _, batch = next(by_request)
            rewards = check_rollout_batch(batch, len(states), num)
            self._update_best(prompt, rewards, batch)
            out.append((rewards, batch))
        return out

    def _update_best(self, prompt, rewards, batch):
        finite = np.where(np.isfinite(rewards), rewards, -np.inf)
        flat = int(np.argmax(finite))
        row, column = divmod(flat, rewards.shape[1])
        if finite[row, column] > self._best_reward[prompt]:
            self._best_reward[prompt] = float(finite[row, column])
            self._best_response[prompt] = batch.responses[row][column]
            correct = None if batch.correct is None else batch.correct[row][column]
            self._best_correct[prompt] = None if correct is None else bool(correct)

    def result(self, prompt: int) -> SearchResult:
        """Return the :class:`SearchResult` of prompt ``prompt`` so far."""
        return SearchResult(
            best_reward=self._best_reward[prompt],
            best_response=self._best_response[prompt],
            rollouts_spent=self.ledgers[prompt].spent,
            trace=list(self.traces[prompt]),
            best_correct=self._best_correct[prompt],
        )

    def results(self) -> list[SearchResult]:
        """Return the results of every prompt."""
        return [self.result(p) for p in range(self.num_prompts)]
