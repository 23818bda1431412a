"""Record reward pools of real problems for later replay (``slgjax sample``).

For each problem, in order, the recorder draws

1. ``root_rollouts`` full responses from the prompt (the root);
2. ``prefix_rollouts`` responses from the first-step prefix of each root
   response, when the environment reports prefixes;
3. ``num_children`` states from ``env.expand`` of the root and
   ``child_rollouts`` responses from each;

and appends one line per state to ``path`` in the JSON Lines format of
:mod:`slgjax.envs.replay_io`, so :func:`load_pools` returns a
:class:`~slgjax.envs.replay.ReplayEnvironment` whose root ``i`` is
``problems[i]``. State ids are the problem id for the root,
``"<id>#prefix<j>"`` for the prefix of root response ``j`` and
``"<id>#child<j>"`` for expanded children. Prefix states and children both
name the root as parent, so the replay draws ``expand`` children from both:
that matches a live environment where a child is a sampled first step.

The replay format rejects unknown fields. What it cannot store (problem id,
question, answer, the text of each prefix state) goes to a sidecar record
file ``<path>.meta.jsonl`` (:mod:`slgjax.records`). It has one record per
finished problem, with the byte range and SHA-256 of its lines in ``path``.
A rerun resumes after the last finished problem: lines of a problem that was
cut short by a crash are removed, and a change to a finished problem's lines
raises.
"""

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from slgjax.envs.protocol import check_rollout_batch
from slgjax.envs.replay import ReplayEnvironment
from slgjax.envs.replay_io import read_replay_jsonl
from slgjax.records import ConfigMismatchError, CorruptRecordError, RecordFile, read_records
from slgjax.rollout_log import grade_responses, response_text
from slgjax.runner import problem_code

__all__ = ["PoolSizes", "load_pools", "metadata_path", "read_pool_metadata", "record_pools"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PoolSizes:
    """How many rollouts and states to record per problem.

    Attributes:
      root_rollouts: responses from the prompt, ``n``.
      prefix_rollouts: responses from the first-step prefix of each root
        response (0 records no prefix states).
      num_children: extra states from ``env.expand`` of the root.
      child_rollouts: responses from each extra state.
    """

    root_rollouts: int
    prefix_rollouts: int = 0
    num_children: int = 0
    child_rollouts: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{field.name}={value!r} must be a non-negative integer.")
        if self.root_rollouts < 1:
            raise ValueError(f"root_rollouts={self.root_rollouts} must be at least 1.")
        if (self.num_children > 0) != (self.child_rollouts > 0):
            raise ValueError(
                f"num_children={self.num_children} and child_rollouts={self.child_rollouts} "
                "must both be zero or both positive."
            )


def metadata_path(path: str | os.PathLike) -> pathlib.Path:
    """Return the sidecar path ``<path>.meta.jsonl`` of a pool file."""
    path = pathlib.Path(path)
    return path.with_name(path.name + ".meta.jsonl")


def _state_text(env, state) -> str | None:
    if isinstance(state, str):
        return state
    describe = getattr(env, "state_text", None)
    return str(describe(state)) if callable(describe) else None


def _jsonable_response(env, response):
    text = response_text(env, response)
    if text is not None:
        return text
    return np.asarray(response).tolist()


def _state_line(problem, env, state_id, rewards, responses, reported, **extra) -> dict:
    line = {"state": state_id, **extra}
    line["rewards"] = [float(r) if math.isfinite(r) else None for r in rewards]
    correct = grade_responses(problem, env, responses, reported)
    if all(flag is not None for flag in correct):
        line["correct"] = [bool(flag) for flag in correct]
    line["responses"] = [_jsonable_response(env, r) for r in responses]
    return line


def _reported(batch, row, num):
    return [None] * num if batch.correct is None else list(batch.correct[row])


def _sample_problem(env, problem, index, key, sizes: PoolSizes) -> tuple[list[dict], list[dict]]:
    """Draw the pools of one problem; return its replay lines and its state descriptions."""
    keys = [jax.random.fold_in(key, step) for step in range(3)]
    root = env.root(index)
    root_id = problem.id
    batch = env.rollout(keys[0], [root], sizes.root_rollouts)
    rewards = check_rollout_batch(batch, 1, sizes.root_rollouts)
    prefixes = list(batch.prefixes[0]) if batch.prefixes is not None else []
    if sizes.prefix_rollouts and batch.prefixes is None:
        logger.warning(
            "problem %s: the environment reports no prefixes, so no prefix states are "
            "recorded although prefix_rollouts=%d",
            problem.id,
            sizes.prefix_rollouts,
        )
    prefixes += [None] * (sizes.root_rollouts - len(prefixes))

    lines, states = [], [{"state": root_id, "kind": "root", "text": _state_text(env, root)}]
    recorded = [j for j, p in enumerate(prefixes) if p is not None] if sizes.prefix_rollouts else []
    prefix_ids = [f"{root_id}#prefix{j}" if j in recorded else None for j in range(len(prefixes))]
    root_line = _state_line(
        problem,
        env,
        root_id,
        rewards[0],
        batch.responses[0],
        _reported(batch, 0, sizes.root_rollouts),
        prompt=index,
    )
    if recorded:
        root_line["prefixes"] = prefix_ids
    lines.append(root_line)

    groups = []
    if recorded:
        groups.append(
            (
                "prefix",
                keys[1],
                [prefixes[j] for j in recorded],
                [prefix_ids[j] for j in recorded],
                sizes.prefix_rollouts,
            )
        )
    if sizes.num_children:
        children = env.expand(keys[2], [root], sizes.num_children)[0]
        child_ids = [f"{root_id}#child{j}" for j in range(len(children))]
        groups.append(
            ("child", jax.random.fold_in(keys[2], 1), children, child_ids, sizes.child_rollouts)
        )

    for kind, group_key, group_states, ids, num in groups:
        group = env.rollout(group_key, group_states, num)
        group_rewards = check_rollout_batch(group, len(group_states), num)
        for row, (state, state_id) in enumerate(zip(group_states, ids, strict=True)):
            lines.append(
                _state_line(
                    problem,
                    env,
                    state_id,
                    group_rewards[row],
                    group.responses[row],
                    _reported(group, row, num),
                    parent=root_id,
                )
            )
            states.append({"state": state_id, "kind": kind, "text": _state_text(env, state)})
    return lines, states


def _resume_point(path: pathlib.Path, meta: RecordFile, problems) -> int:
    """Check the finished problems and cut an unfinished tail; return the next problem index."""
    done = meta.records
    for position, record in enumerate(done):
        if position >= len(problems) or record["problem_id"] != problems[position].id:
            expected = problems[position].id if position < len(problems) else "<none>"
            raise ConfigMismatchError(
                f"{meta.path} line {record['_line']} records problem {record['problem_id']!r} "
                f"at position {position}, where the current list has {expected!r}. Resume "
                "with the same problems in the same order, or write to a new file."
            )
        if record["problem_digest"] != problems[position].digest():
            raise ConfigMismatchError(
                f"problem {record['problem_id']!r} has a different question or answer now than "
                f"when its pools were recorded in {path}; write to a new file."
            )
    end = done[-1]["pool_end"] if done else 0
    if not path.exists():
        if end:
            raise CorruptRecordError(f"{path} is missing, but {meta.path} lists finished problems.")
        return 0

    data = path.read_bytes()
    if len(data) < end:
        raise CorruptRecordError(
            f"{path} has {len(data)} bytes, but its finished problems end at byte {end}; "
            "the pool file was truncated. Start over with a new file."
        )
    for record in done:
        segment = data[record["pool_start"] : record["pool_end"]]
        if hashlib.sha256(segment).hexdigest() != record["pool_sha256"]:
            first = data[: record["pool_start"]].count(b"\n") + 1
            last = first + segment.count(b"\n") - 1
            raise CorruptRecordError(
                f"{path}: lines {first}-{last} (problem {record['problem_id']!r}) were changed "
                "after they were recorded; restore them or start over with a new file."
            )
    if len(data) > end:
        logger.warning(
            "%s: removing %d bytes after byte %d, the lines of a problem whose recording "
            "did not finish",
            path,
            len(data) - end,
            end,
        )
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    return len(done)


def record_pools(
    env,
    problems: Sequence,
    *,
    path: str | os.PathLike,
    key,
    sizes: PoolSizes,
    settings: Mapping | None = None,
) -> int:
    """Record reward pools for every problem not yet in ``path``; return how many were added.

    Args:
      env: an environment whose ``root(i)`` is the prompt of ``problems[i]``.
      problems: the problems, in a fixed order (the replay's prompt order).
      path: the pool file; its sidecar is :func:`metadata_path`.
      key: PRNG key; problem ``p`` draws with ``fold_in(key, problem_code(p.id))``.
      sizes: the pool sizes.
      settings: environment and sampling settings (JSON values), hashed with
        ``key`` and ``sizes``; a rerun with other settings raises.

    Raises:
      ConfigMismatchError: when the files hold pools of other settings or problems.
      CorruptRecordError: when a recorded line was changed or cut.
    """
    path = pathlib.Path(path)
    problems = list(problems)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key_data = jax.random.key_data(key)
    else:
        key_data = key
    header = {
        "sizes": dataclasses.asdict(sizes),
        "key": np.asarray(key_data).tolist(),
        "settings": dict(settings or {}),
    }
    meta = RecordFile(metadata_path(path), settings=header, key_fields=("problem_id",))
    start = _resume_point(path, meta, problems)

    added = 0
    for index in range(start, len(problems)):
        problem = problems[index]
        problem_key = jax.random.fold_in(key, problem_code(problem.id))
        lines, states = _sample_problem(env, problem, index, problem_key, sizes)
        text = "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines).encode()

        with open(path, "ab") as handle:
            begin = handle.tell()
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        meta.append(
            {
                "problem_id": problem.id,
                "problem_index": index,
                "problem_digest": problem.digest(),
                "question": problem.question,
                "answer": problem.answer,
                "states": states,
                "pool_start": begin,
                "pool_end": begin + len(text),
                "pool_sha256": hashlib.sha256(text).hexdigest(),
            }
        )
        added += 1
    return added


def load_pools(path: str | os.PathLike) -> ReplayEnvironment:
    """Return the :class:`~slgjax.envs.replay.ReplayEnvironment` of a recorded pool file."""
    return read_replay_jsonl(path)


def read_pool_metadata(path: str | os.PathLike) -> list[dict]:
    """Return the sidecar record of each finished problem of a pool file."""
    _, records = read_records(metadata_path(path))
    return records
