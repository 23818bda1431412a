"""Problem sets and labelled responses for training and evaluating the reward head.

The policy is the embedded SmolLM2-135M-Instruct, prompted and sampled exactly
as ``slgjax demo`` prompts and samples it, so the head is trained on the
responses it will later score. Every response is labelled 0 or 1 by the
problem's own reasoning-gym checker.

Evaluation problems are fixed first. Training problems come from other seeds,
and any training problem whose arithmetic expression also appears in an
evaluation set is dropped, because small settings repeat expressions across
seeds.

Responses are appended to checksummed record files (:class:`slgjax.records.RecordFile`)
in chunks of problems, each chunk sampled with its own key folded from the
split's seed, so an interrupted run resumes where it stopped and gives the
same responses as an uninterrupted one.
"""

import dataclasses
import time

import jax
import numpy as np

from slgjax.records import RecordFile
from slgjax.tasks.procedural import load_reasoning_gym
from slgjax.tasks.prompts import DEFAULT_TEMPLATE, encode_prompt

__all__ = [
    "EVALUATION_SETS",
    "HELDOUT_SETS",
    "SAMPLING",
    "TRAINING_SETS",
    "ProblemSet",
    "load_split",
    "sample_split",
]

TWO_ONE_DIGIT_TERMS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}


@dataclasses.dataclass(frozen=True)
class ProblemSet:
    """A reasoning-gym dataset, its size, seed and settings."""

    name: str
    size: int
    seed: int
    settings: tuple = ()

    def load(self):
        return load_reasoning_gym(self.name, size=self.size, seed=self.seed, **dict(self.settings))

    def describe(self) -> dict:
        return {"task": self.name, "size": self.size, "seed": self.seed, **dict(self.settings)}


def _two_one_digit(size, seed):
    return ProblemSet("chain_sum", size, seed, tuple(TWO_ONE_DIGIT_TERMS.items()))


# Held out for the head's evaluation.
HELDOUT_SETS = (
    _two_one_digit(16, 2001),
    ProblemSet("chain_sum", 16, 2002),
    ProblemSet("basic_arithmetic", 16, 2003),
)

# Problems of other experiments that the head must never see in training: the
# demo's problems (seed 0) and the reward pools of the evidence experiments.
EVALUATION_SETS = HELDOUT_SETS + (
    _two_one_digit(12, 0),
    _two_one_digit(40, 3001),
    ProblemSet("chain_sum", 40, 3002),
)

TRAINING_SETS = (
    _two_one_digit(120, 1001),
    ProblemSet("chain_sum", 200, 1002),
    ProblemSet("basic_arithmetic", 120, 1003),
)

# The settings of `slgjax demo` (slgjax/cli/demo.py).
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 48}


def _expression(problem) -> str:
    return "".join(str(problem.metadata["entry"]["expression"]).split())


def load_split(split: str):
    """Return the problems of ``"train"`` or ``"heldout"``, with training overlaps removed."""
    if split == "heldout":
        return [problem for problem_set in HELDOUT_SETS for problem in problem_set.load()]
    if split != "train":
        raise ValueError(f"split={split!r}; use 'train' or 'heldout'.")

    reserved = {
        _expression(problem) for problem_set in EVALUATION_SETS for problem in problem_set.load()
    }
    problems, seen = [], set()
    for problem_set in TRAINING_SETS:
        for problem in problem_set.load():
            expression = _expression(problem)
            if expression in reserved or expression in seen:
                continue
            seen.add(expression)
            problems.append(problem)
    return problems


def split_settings(split: str, *, samples: int, seed: int, policy: str) -> dict:
    """Everything that shapes a split's responses, stored in its record file's header."""
    sets = HELDOUT_SETS if split == "heldout" else TRAINING_SETS
    return {
        "split": split,
        "problem_sets": [problem_set.describe() for problem_set in sets],
        "excluded": [problem_set.describe() for problem_set in EVALUATION_SETS]
        if split == "train"
        else [],
        "samples_per_problem": samples,
        "seed": seed,
        "policy": policy,
        "template": DEFAULT_TEMPLATE,
        "sampling": SAMPLING,
    }


def sample_split(
    path, problems, *, policy, tokenizer, settings: dict, samples: int, seed: int, chunk: int
):
    """Sample ``samples`` responses per problem and append them, labelled, to ``path``.

    Args:
      path: the record file; finished chunks already in it are skipped.
      problems: the split's problems, in a fixed order.
      policy, tokenizer: the loaded policy and its tokenizer.
      settings: the split's settings (see :func:`split_settings`).
      samples: responses per problem.
      seed: seed of the split's root key; chunk ``c`` uses ``fold_in(key, c)``.
      chunk: problems per sampler call.

    Returns:
      The records of all problems, in file order.
    """
    from slgjax.lm.sampler import Sampler, decode_rollouts
    from slgjax.lm.sampling import SamplingConfig

    records = RecordFile(path, settings=settings, key_fields=("problem_id",))
    sampler = Sampler(policy, tokenizer, min_bucket=64)
    config = SamplingConfig(**SAMPLING)
    root = jax.random.key(seed)
    began = time.perf_counter()

    for start in range(0, len(problems), chunk):
        group = problems[start : start + chunk]
        if all((problem.id,) in records for problem in group):
            continue

        prompts = [encode_prompt(tokenizer, problem.question) for problem in group]
        key = jax.random.fold_in(root, start // chunk)
        generation = sampler.generate(prompts, key=key, config=config, num_samples=samples)
        texts = decode_rollouts(tokenizer, generation)
        lengths = np.asarray(generation.lengths).tolist()
        reasons = np.asarray(generation.finish_reasons).tolist()

        for offset, problem in enumerate(group):
            rows = slice(offset * samples, (offset + 1) * samples)
            responses = texts[rows]
            if (problem.id,) in records:
                continue
            records.append(
                {
                    "problem_id": problem.id,
                    "question": problem.question,
                    "answer": problem.answer,
                    "responses": responses,
                    "correct": [problem.grade(text) for text in responses],
                    "tokens": lengths[rows],
                    "finish_reasons": reasons[rows],
                }
            )
        done = min(start + chunk, len(problems))
        print(
            f"{settings['split']}: {done}/{len(problems)} problems, "
            f"{time.perf_counter() - began:.0f} s",
            flush=True,
        )
    return records.records
