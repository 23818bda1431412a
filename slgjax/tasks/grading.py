"""Verifiers: grade a response against a reference answer with a 0/1 reward.

Every verifier here is a callable ``(question, response, answer) -> float``,
the :class:`slgjax.lm.scorers.Verifier` protocol, so it plugs into
:class:`slgjax.lm.scorers.VerifierScorer`. The protocol is restated here
instead of imported because importing ``slgjax.lm`` loads the model stack.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from slgjax.tasks.extraction import canonical_answer, extract_answer, parse_answer

__all__ = [
    "ProblemVerifier",
    "ReasoningGymVerifier",
    "Verifier",
    "is_correct",
    "math_verifier",
]


@runtime_checkable
class Verifier(Protocol):
    """A ground-truth check: a reward (0 or 1 here) for a response given the answer."""

    def __call__(self, question: str, response: str, answer: str) -> float: ...


def is_correct(response: str, answer: str) -> bool:
    """Return True when the final answer of ``response`` equals ``answer``.

    Both sides go through :func:`slgjax.tasks.extraction.canonical_answer`, so
    numbers compare exactly as fractions and text compares without case or
    spaces. A response without a final answer is wrong.
    """
    predicted = parse_answer(response)
    return predicted is not None and predicted == canonical_answer(answer)


def math_verifier(question: str, response: str, answer: str) -> float:
    """Return 1.0 when the response's final answer equals the reference answer, else 0.0.

    The question is not used; the signature follows the verifier protocol.
    """
    del question
    return 1.0 if is_correct(response, answer) else 0.0


class ReasoningGymVerifier:
    """Grade with a reasoning-gym dataset's own ``score_answer``.

    The response's final answer is extracted first, because reasoning-gym
    scorers expect the bare answer. It is scored both as written and in
    canonical form, and the larger score counts. Reasoning-gym gives partial credit for
    near misses (0.33 for ``"7."`` against ``"7"`` in ``basic_arithmetic``),
    so with ``binary=True`` only a score of 1 counts as correct.

    Args:
      dataset: the reasoning-gym dataset that produced the entry.
      entry: the dataset entry of this problem (``question``, ``answer``,
        ``metadata``).
      binary: return 1.0 or 0.0 instead of the raw score.
    """

    def __init__(self, dataset, entry: Mapping[str, Any], *, binary: bool = True):
        if not callable(getattr(dataset, "score_answer", None)):
            raise TypeError(
                f"dataset {type(dataset).__name__} has no score_answer method; pass a "
                "reasoning-gym dataset."
            )
        self.dataset = dataset
        self.entry = entry
        self.binary = bool(binary)

    def __call__(self, question: str, response: str, answer: str) -> float:
        del question, answer
        extracted = extract_answer(response)
        if extracted is None:
            return 0.0
        candidates = {extracted, canonical_answer(extracted)}
        score = max(float(self.dataset.score_answer(c, self.entry) or 0.0) for c in candidates)
        if self.binary:
            return 1.0 if score >= 1.0 else 0.0
        return score


class ProblemVerifier:
    """Grade each question with the verifier of its own problem.

    Useful with :class:`slgjax.lm.scorers.VerifierScorer`, which calls one
    verifier for every prompt: this one looks the question up and dispatches
    to ``problem.verifier``.

    Args:
      problems: the problems; questions must be unique.

    Raises:
      ValueError: when two problems share a question.
    """

    def __init__(self, problems: Sequence):
        self._by_question = {}
        for problem in problems:
            if problem.question in self._by_question:
                other = self._by_question[problem.question]
                raise ValueError(
                    f"problems {other.id!r} and {problem.id!r} have the same question; "
                    "ProblemVerifier needs unique questions."
                )
            self._by_question[problem.question] = problem

    def __call__(self, question: str, response: str, answer: str) -> float:
        problem = self._by_question.get(question)
        if problem is None:
            raise ValueError(f"no problem has the question {question[:60]!r}.")
        return float(problem.verifier(question, response, answer))
