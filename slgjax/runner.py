"""Run search algorithms on real problems at equal budgets, with resumable records.

For every budget ``N``, algorithm and problem, the runner searches the
problem with ``N`` rollouts (:func:`slgjax.search.driver.run_search`) and
appends one record to a JSON Lines file (:mod:`slgjax.records`):

- ``best_reward``: the largest reward seen (None when no reward was finite);
- ``rm_at_1``: 1.0 when the best-scored response is correct;
- ``pass_at_n``: 1.0 when any sampled response is correct;
- ``majority_at_n``: 1.0 when the most frequent final answer is correct;
- ``rollouts``, ``tokens``, ``wall_time_s``: what the search spent.

Every algorithm gets the same budget and the same key for a given problem
and budget: prompt code ``c`` (from a hash of the problem id) searches with
``fold_in(fold_in(key(seed), N), c)``, so all algorithms face the same
random stream (common random numbers) and a record does not depend on
which other problems run, their order, or the batch size.

A rerun with the same file skips the (problem, algorithm, budget) records it
has. Settings that shape the results (task, seed, environment and sampling
settings) are stored in the file's header; different settings raise
:class:`~slgjax.records.ConfigMismatchError`. Algorithms and budgets may be
added to an existing file, but an algorithm label whose hyperparameters
changed raises too.
"""

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from slgjax.records import (
    ConfigMismatchError,
    RecordFile,
    canonical_json,
    diff_settings,
    finite_or_none,
)
from slgjax.records import config_hash as settings_hash
from slgjax.rollout_log import LoggingEnvironment, response_metrics, response_text
from slgjax.search.algorithms import ALGORITHMS
from slgjax.search.driver import run_search

__all__ = [
    "AlgorithmSpec",
    "ExperimentConfig",
    "KEY_FIELDS",
    "problem_code",
    "run_experiment",
]

logger = logging.getLogger(__name__)

KEY_FIELDS = ("problem_id", "algorithm", "budget")


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm of an experiment.

    Attributes:
      label: the name in records and tables (``"slg_ref_gpd"``); unique.
      name: a key of :data:`slgjax.search.algorithms.ALGORITHMS`.
      hyperparameters: keyword arguments of the algorithm (JSON values).
    """

    label: str
    name: str
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.name not in ALGORITHMS:
            raise ValueError(
                f"algorithm {self.label!r} names {self.name!r}; use one of {sorted(ALGORITHMS)}."
            )
        canonical_json(dict(self.hyperparameters))

    def as_settings(self) -> dict:
        """Return the name and hyperparameters as JSON values."""
        return {"name": self.name, "hyperparameters": dict(self.hyperparameters)}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that shapes an experiment's records.

    Attributes:
      task: task name of :func:`slgjax.tasks.load_problems`.
      task_options: its options (size and seed of a reasoning-gym task, the
        fields of a file task).
      algorithms: the algorithms, with unique labels.
      budgets: rollout budgets ``N``.
      seed: seed of the root PRNG key.
      environment: settings of the environment, such as the policy and
        scorer paths, the sampling temperature, top-p and step length
        (JSON values). They are hashed with the rest, so list every
        setting that changes rewards or responses.
    """

    task: str
    algorithms: tuple[AlgorithmSpec, ...]
    budgets: tuple[int, ...]
    seed: int
    task_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    environment: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        object.__setattr__(self, "budgets", tuple(self.budgets))
        labels = [spec.label for spec in self.algorithms]
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"algorithm labels {labels} must be non-empty and unique.")
        for budget in self.budgets:
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
                raise ValueError(f"budget {budget!r} must be a positive integer.")
        if not self.budgets or len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"budgets {self.budgets} must be non-empty and unique.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed={self.seed!r} must be an integer.")
        canonical_json({"task": dict(self.task_options), "environment": dict(self.environment)})

    def shared_settings(self) -> dict:
        """Return the settings stored in the record file's header."""
        return {
            "task": self.task,
            "task_options": dict(self.task_options),
            "seed": self.seed,
            "environment": dict(self.environment),
        }

    def load_problems(self, *, limit: int | None = None) -> list:
        """Load the task's problems with :func:`slgjax.tasks.load_problems`."""
        from slgjax.tasks.registry import load_problems

        return load_problems(self.task, limit=limit, **self.task_options)


def problem_code(problem_id: str) -> int:
    """Return a 31-bit integer code of a problem id, its prompt code for key derivation."""
    digest = hashlib.sha256(problem_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _problem_codes(problems) -> list[int]:
    codes, owners = [], {}
    for problem in problems:
        code = problem_code(problem.id)
        if code in owners:
            raise ValueError(
                f"problem ids {owners[code]!r} and {problem.id!r} are repeated or share the "
                f"prompt code {code}; problem ids must be unique."
            )
        owners[code] = problem.id
        codes.append(code)
    return codes


def _record_settings(shared: Mapping, spec: Mapping) -> str:
    return settings_hash({**shared, "algorithm": spec})


def _check_existing(store: RecordFile, config: ExperimentConfig, problems) -> None:
    """Raise when stored records disagree with the current algorithms or problems."""
    specs = {spec.label: spec.as_settings() for spec in config.algorithms}
    digests = {problem.id: problem.digest() for problem in problems}
    for record in store.records:
        label = record["algorithm"]
        if label in specs and record.get("algorithm_spec") != specs[label]:
            differences = diff_settings(
                {label: record.get("algorithm_spec")}, {label: specs[label]}
            )
            raise ConfigMismatchError(
                f"{store.path}: algorithm {label!r} has other hyperparameters than the records "
                f"of it on line {record['_line']}:\n  " + "\n  ".join(differences) + "\n"
                "Give the changed algorithm a new label, or write to a new file."
            )
        stored = record.get("problem_digest")
        if record["problem_id"] in digests and stored != digests[record["problem_id"]]:
            raise ConfigMismatchError(
                f"{store.path}: problem {record['problem_id']!r} (line {record['_line']}) has "
                "a different question or answer now than when it was recorded. Write to a new "
                "file."
            )


def _build_record(problem, index, spec, budget, result, log, env, elapsed, batch_size):
    metrics = response_metrics(problem, env, log)
    best_text = response_text(env, result.best_response)
    if result.best_correct is not None:
        rm_at_1 = float(result.best_correct)
    elif best_text is not None:
        rm_at_1 = float(problem.grade(best_text) >= 1.0)
    else:
        rm_at_1 = None
    trace = [[step.phase, int(step.rollouts), step.chosen] for step in result.trace]
    return {
        "problem_id": problem.id,
        "problem_index": index,
        "problem_digest": problem.digest(),
        "algorithm": spec.label,
        "algorithm_spec": spec.as_settings(),
        "budget": budget,
        "best_reward": finite_or_none(result.best_reward),
        "best_response": best_text,
        "rm_at_1": rm_at_1,
        **metrics,
        "rollouts": int(result.rollouts_spent),
        "wall_time_s": elapsed / batch_size,
        "batch_prompts": batch_size,
        "trace": trace,
    }


def run_experiment(
    env,
    problems: Sequence,
    config: ExperimentConfig,
    *,
    path: str | os.PathLike,
    batch_size: int | None = None,
) -> list[dict]:
    """Run every algorithm of ``config`` on every problem at every budget; resume from ``path``.

    Args:
      env: an environment whose ``root(i)`` is the prompt of ``problems[i]``
        (see :class:`slgjax.envs.protocol.Environment`). Its ``reset()`` is
        called before each batch when it has one (replay pools are reused).
      problems: :class:`~slgjax.tasks.Problem` objects with unique ids.
      config: the experiment settings.
      path: the JSON Lines record file, created or resumed.
      batch_size: problems searched together; all pending ones when None.
        Results do not depend on it, only the granularity of resumption and
        of ``wall_time_s`` (a batch's time split evenly among its problems).

    Returns:
      The records of ``path`` that belong to the current algorithms and
      budgets, old and new.

    Raises:
      ConfigMismatchError: when ``path`` contains records of other settings.
      CorruptRecordError: when a line of ``path`` is damaged.
      Exception: whatever the environment or an algorithm raises; the
        records finished before it are already on disk.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer or None.")
    problems = list(problems)
    codes = _problem_codes(problems)
    shared = config.shared_settings()
    store = RecordFile(path, settings=shared, key_fields=KEY_FIELDS)
    _check_existing(store, config, problems)

    logging_env = LoggingEnvironment(env, codes)
    root_key = jax.random.key(config.seed)
    for budget in config.budgets:
        budget_key = jax.random.fold_in(root_key, budget)
        for spec in config.algorithms:
            pending = [
                index
                for index, problem in enumerate(problems)
                if (problem.id, spec.label, budget) not in store
            ]
            if not pending:
                continue
            size = batch_size or len(pending)
            logger.info("running %s at N=%d on %d problems", spec.label, budget, len(pending))
            for start in range(0, len(pending), size):
                chunk = pending[start : start + size]
                if callable(getattr(env, "reset", None)):
                    env.reset()
                logging_env.clear()

                began = time.perf_counter()
                results = run_search(
                    spec.name,
                    logging_env,
                    key=budget_key,
                    budget=budget,
                    prompts=[codes[i] for i in chunk],
                    **spec.hyperparameters,
                )
                elapsed = time.perf_counter() - began

                for index, result in zip(chunk, results, strict=True):
                    record = _build_record(
                        problems[index],
                        index,
                        spec,
                        budget,
                        result,
                        logging_env.logs[index],
                        env,
                        elapsed,
                        len(chunk),
                    )
                    record["run_hash"] = _record_settings(shared, spec.as_settings())
                    store.append(record)

    labels = {spec.label for spec in config.algorithms}
    ids = {problem.id for problem in problems}
    return [
        record
        for record in store.records
        if record["algorithm"] in labels
        and record["budget"] in config.budgets
        and record["problem_id"] in ids
    ]
