"""Log every rollout of a search by problem, and grade the logged responses.

:class:`LoggingEnvironment` wraps an environment for the experiment runner.
Its states are :class:`TaggedState` pairs of the problem index and the inner
state, so every rollout is attributed to its problem even when the search
runs many problems in one batch. From the log, :func:`response_metrics`
computes pass@N (any sampled answer correct) and majority@N (the most
frequent final answer correct).

Environments may offer three optional methods that the log uses:

- ``decode(response) -> str``, the text of a response that is not a string;
- ``num_tokens(response) -> int``, the generated tokens of a response
  (without it, the length of a non-string response counts, and string
  responses count as unknown);
- ``state_text(state) -> str``, the text of a prefix state.
"""

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from slgjax.envs.protocol import RolloutBatch, check_rollout_batch
from slgjax.tasks.extraction import parse_answer

__all__ = [
    "LoggingEnvironment",
    "ResponseLog",
    "TaggedState",
    "grade_responses",
    "majority_vote",
    "response_metrics",
    "response_text",
    "response_tokens",
]


class TaggedState(NamedTuple):
    """A state of the inner environment with the index of the problem it belongs to."""

    problem: int
    state: Any


@dataclasses.dataclass
class ResponseLog:
    """Every rollout of one problem, in sampling order.

    Attributes:
      rewards: reward of each response.
      responses: the responses as the environment returned them.
      correct: correctness reported by the environment, None where it
        reported none.
    """

    rewards: list = dataclasses.field(default_factory=list)
    responses: list = dataclasses.field(default_factory=list)
    correct: list = dataclasses.field(default_factory=list)


def response_text(env, response) -> str | None:
    """Return the text of ``response``: itself if a string, else ``env.decode``, else None."""
    if isinstance(response, str):
        return response
    decode = getattr(env, "decode", None)
    return str(decode(response)) if callable(decode) else None


def response_tokens(env, response) -> int | None:
    """Return the generated tokens of ``response``, or None when the count is unknown."""
    count = getattr(env, "num_tokens", None)
    if callable(count):
        return int(count(response))
    if isinstance(response, str) or not hasattr(response, "__len__"):
        return None
    return len(response)


def grade_responses(problem, env, responses: Sequence, reported: Sequence) -> list[bool | None]:
    """Return the correctness of each response.

    The environment's own report wins; otherwise the response text is graded
    with ``problem.grade``. None marks a response that neither allows.
    """
    out = []
    for response, flag in zip(responses, reported, strict=True):
        if flag is not None:
            out.append(bool(flag))
            continue
        text = response_text(env, response)
        out.append(None if text is None else problem.grade(text) >= 1.0)
    return out


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, int | None]:
    """Return the most frequent answer and the index of its first occurrence.

    None entries (no final answer) do not vote. A tie goes to the answer that
    appeared first. Returns ``(None, None)`` when nobody voted.
    """
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None, None
    top = max(counts.values())
    for index, answer in enumerate(answers):
        if answer is not None and counts[answer] == top:
            return answer, index
    raise AssertionError("majority_vote found no occurrence of a counted answer")


def response_metrics(problem, env, log: ResponseLog) -> dict:
    """Return pass@N, majority@N and counts from every rollout of one problem.

    Returns:
      A dict with ``pass_at_n`` (1.0 when any response is correct),
      ``majority_at_n`` (1.0 when the most frequent final answer is correct),
      ``majority_answer``, ``num_correct``, ``num_responses`` and ``tokens``.
      A metric is None when the correctness of some response is unknown;
      ``tokens`` is None when some response has no token count.
    """
    correct = grade_responses(problem, env, log.responses, log.correct)
    known = all(flag is not None for flag in correct)
    texts = [response_text(env, response) for response in log.responses]
    answers = [None if text is None else parse_answer(text) for text in texts]
    answer, first = majority_vote(answers)

    if not known or any(text is None for text in texts):
        majority = None
    else:
        majority = 0.0 if first is None else float(correct[first])
    counts = [response_tokens(env, response) for response in log.responses]
    return {
        "pass_at_n": float(any(correct)) if known else None,
        "majority_at_n": majority,
        "majority_answer": answer,
        "num_correct": int(sum(bool(flag) for flag in correct)) if known else None,
        "num_responses": len(log.responses),
        "tokens": None if any(c is None for c in counts) else int(sum(counts)),
    }


class LoggingEnvironment:
    """Wrap an environment so that every rollout is logged by problem.

    ``root(code)`` takes a problem code from ``codes`` (the search driver
    passes prompt codes through to ``root``) and returns the root of problem
    ``codes.index(code)`` tagged with that index. Expansions and rollout
    prefixes stay tagged, so each rollout lands in the log of its problem.
    ``rollout_many`` and ``true_value`` are forwarded when the inner
    environment defines them.

    Args:
      env: the inner environment.
      codes: the prompt code of each problem index.
    """

    def __init__(self, env, codes: Sequence[int]):
        self.env = env
        self._index = {int(code): index for index, code in enumerate(codes)}
        self.logs: dict[int, ResponseLog] = collections.defaultdict(ResponseLog)
        if callable(getattr(env, "rollout_many", None)):
            self.rollout_many = self._rollout_many
        if callable(getattr(env, "true_value", None)):
            self.true_value = self._true_value

    def clear(self):
        """Forget the logged rollouts."""
        self.logs.clear()

    def root(self, prompt_index: int) -> TaggedState:
        problem = self._index[int(prompt_index)]
        return TaggedState(problem, self.env.root(problem))

    def expand(self, key, states: Sequence[TaggedState], num_children: int):
        children = self.env.expand(key, [s.state for s in states], num_children)
        return [
            [TaggedState(parent.problem, child) for child in row]
            for parent, row in zip(states, children, strict=True)
        ]

    def rollout(self, key, states: Sequence[TaggedState], num: int) -> RolloutBatch:
        batch = self.env.rollout(key, [s.state for s in states], num)
        return self._log(states, batch, num)

    def _rollout_many(self, keys, groups, num):
        inner = [[s.state for s in states] for states in groups]
        batches = self.env.rollout_many(keys, inner, num)
        return [self._log(states, b, num) for states, b in zip(groups, batches, strict=True)]

    def _true_value(self, state: TaggedState, budget: int) -> float:
        return self.env.true_value(state.state, budget)

    def _log(self, states: Sequence[TaggedState], batch: RolloutBatch, num: int) -> RolloutBatch:
        rewards = check_rollout_batch(batch, len(states), num)
        for row, state in enumerate(states):
            log = self.logs[state.problem]
            log.rewards.extend(float(r) for r in rewards[row])
            log.responses.extend(batch.responses[row])
            if batch.correct is None:
                log.correct.extend([None] * num)
            else:
                log.correct.extend(None if c is None else bool(c) for c in batch.correct[row])

        prefixes = batch.prefixes
        if prefixes is not None:
            prefixes = [
                [None if p is None else TaggedState(state.problem, p) for p in row]
                for state, row in zip(states, prefixes, strict=True)
            ]
        return batch._replace(rewards=np.asarray(rewards), prefixes=prefixes)
