"""Procedurally generated problems from reasoning-gym, each graded by its own checker.

Problems come from ``reasoning_gym.create_dataset(name, size=, seed=, ...)``
(``reasoning-gym==0.1.25``), so the same name, size, seed and settings always
give the same problems. A few datasets get small-number settings by default
(:data:`SMALL_SETTINGS`), which keep the arithmetic within reach of a small
policy; keyword arguments override them.
"""

import importlib
from collections.abc import Mapping
from typing import Any

from slgjax.tasks.grading import ReasoningGymVerifier
from slgjax.tasks.problem import Problem

__all__ = ["SMALL_SETTINGS", "load_reasoning_gym"]

SMALL_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    "chain_sum": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
    "basic_arithmetic": {
        "min_terms": 2,
        "max_terms": 3,
        "min_digits": 1,
        "max_digits": 2,
        "operators": ("+", "-", "*"),
    },
    "products": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2},
    "simple_equations": {"min_terms": 2, "max_terms": 3, "min_value": 1, "max_value": 20},
    "leg_counting": {"min_animals": 1, "max_animals": 3},
    "gsm_symbolic": {},
}


def _import_reasoning_gym():
    try:
        return importlib.import_module("reasoning_gym")
    except ImportError as error:
        raise ImportError(
            "reasoning-gym is not installed; run `pip install reasoning-gym==0.1.25`."
        ) from error


def load_reasoning_gym(name: str, *, size: int, seed: int, **settings) -> list[Problem]:
    """Generate ``size`` reasoning-gym problems of dataset ``name`` from ``seed``.

    Args:
      name: a reasoning-gym dataset name, such as ``"chain_sum"``.
      size: number of problems.
      seed: generator seed; the same seed gives the same problems.
      **settings: dataset settings; they override :data:`SMALL_SETTINGS`.

    Returns:
      Problems with ids ``"rg:<name>:<seed>:<index>"``, each graded by a
      :class:`~slgjax.tasks.grading.ReasoningGymVerifier`. ``metadata`` contains
      the entry's own metadata and the settings used.

    Raises:
      ValueError: for a bad size or seed, a name reasoning-gym does not know, or
        settings it rejects (reasoning-gym checks them with assertions).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r} must be a positive integer.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r} must be an integer; pass seed= explicitly.")
    reasoning_gym = _import_reasoning_gym()
    options = {**SMALL_SETTINGS.get(name, {}), **settings}
    try:
        dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **options)
    except (AssertionError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"reasoning-gym could not create dataset {name!r} with settings {options}: {error}"
        ) from error

    problems = []
    for index in range(size):
        entry = dataset[index]
        problems.append(
            Problem(
                id=f"rg:{name}:{seed}:{index}",
                question=str(entry["question"]),
                answer=str(entry["answer"]),
                source=f"rg:{name}",
                metadata={"entry": dict(entry.get("metadata", {})), "settings": options},
                verifier=ReasoningGymVerifier(dataset, entry),
            )
        )
    return problems
