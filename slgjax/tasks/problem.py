"""One problem of a task: a question, its reference answer and how to grade a response."""

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from slgjax.tasks.grading import Verifier, math_verifier

__all__ = ["Problem"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A question with a reference answer.

    Attributes:
      id: unique, stable identifier, such as ``"gsm8k/test/17"``. Records and
        reward pools are keyed by it.
      question: the question text shown to the policy.
      answer: the reference answer as text (``"18"``, ``"3/4"``).
      source: the task it came from, such as ``"gsm8k"`` or ``"rg:chain_sum"``.
      metadata: anything else the source provides (the full GSM8K solution,
        the reasoning-gym entry).
      verifier: ``(question, response, answer) -> float`` grading a response;
        the default compares the final number of the response with the answer
        (:func:`slgjax.tasks.grading.math_verifier`).
    """

    id: str
    question: str
    answer: str
    source: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    verifier: Verifier = dataclasses.field(default=math_verifier, compare=False, repr=False)

    def __post_init__(self):
        for name in ("id", "question", "answer", "source"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"Problem.{name} must be a string; got {type(value).__name__}.")
        if not self.id:
            raise ValueError("Problem.id is empty; give every problem a unique, stable id.")

    def grade(self, response: str) -> float:
        """Return the verifier's reward of ``response``: 1.0 when correct, 0.0 otherwise."""
        return float(self.verifier(self.question, response, self.answer))

    def digest(self) -> str:
        """Return a short SHA-256 of the question and answer, to detect a changed problem."""
        text = f"{self.question}\0{self.answer}".encode()
        return hashlib.sha256(text).hexdigest()[:16]
