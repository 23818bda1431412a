"""Read reward pools from JSONL or CSV files and write result tables atomically.

Two layouts are read:

- JSONL (``.jsonl``, ``.ndjson``, ``.json``): one record per state, with a
  list of rewards, a state id and, optionally, a prompt id, for example
  ``{"prompt": "p0", "state": "s1", "rewards": [0.12, 0.57, ...]}``.
- CSV (``.csv``): one reward per row, with prompt, state and reward columns.
  Rows of the same (prompt, state) pair form one pool, in file order.

Only the CLI, the runner and this module touch files.
"""

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "InputError",
    "StatePool",
    "detect_format",
    "read_reward_pools",
    "stack_pools",
    "write_atomic",
    "write_rows",
]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)


class InputError(ValueError):
    """An input file is missing, malformed, or lacks the requested fields or rewards."""


@dataclass(frozen=True)
class StatePool:
    """The observed rewards of one state.

    Attributes:
      prompt: prompt id (an empty string when the file has no prompt field).
      state: state id, unique within its prompt.
      rewards: float64[n] rewards in file order.
    """

    prompt: str
    state: str
    rewards: np.ndarray


def detect_format(path, file_format=None) -> str:
    """Return ``"jsonl"`` or ``"csv"`` from ``file_format`` or the file suffix."""
    if file_format is not None:
        if file_format not in ("jsonl", "csv"):
            raise InputError(f"format {file_format!r} is unknown; use 'jsonl' or 'csv'.")
        return file_format
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise InputError(
        f"cannot tell the format of {path} from its suffix {suffix!r}; name it .jsonl or .csv, "
        "or pass the format explicitly."
    )


def _check_field(field, available, path, where):
    if field not in available:
        raise InputError(
            f"{path}: field {field!r} not found in {where}; available fields: "
            f"{', '.join(sorted(available))}."
        )


def _as_reward(value, path, where):
    try:
        reward = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {where} is {value!r}, not a number.") from None
    if not math.isfinite(reward):
        raise InputError(f"{path}: {where} is {reward}; every reward must be finite.")
    return reward


def _read_jsonl(path, rewards_field, state_field, prompt_field):
    pools = []
    seen = {}
    with open(path, encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{line_number}: invalid JSON ({error.msg}).") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{line_number}: expected a JSON object per line.")

            where = f"line {line_number}"
            _check_field(rewards_field, record, path, where)
            _check_field(state_field, record, path, where)
            if prompt_field:
                _check_field(prompt_field, record, path, where)

            values = record[rewards_field]
            if not isinstance(values, list):
                raise InputError(
                    f"{path}:{line_number}: field {rewards_field!r} must be a list of rewards; "
                    f"got {type(values).__name__}."
                )
            rewards = [
                _as_reward(v, path, f"line {line_number}, {rewards_field}[{i}]")
                for i, v in enumerate(values)
            ]

            prompt = str(record[prompt_field]) if prompt_field else ""
            state = str(record[state_field])
            if (prompt, state) in seen:
                raise InputError(
                    f"{path}:{line_number}: state {state!r} of prompt {prompt!r} already "
                    f"appeared on line {seen[prompt, state]}; give each state one record."
                )
            seen[prompt, state] = line_number
            pools.append(StatePool(prompt, state, np.asarray(rewards, np.float64)))
    return pools


def _read_csv(path, rewards_field, state_field, prompt_field):
    grouped = {}
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        if not columns:
            return []
        for field in (rewards_field, state_field, prompt_field):
            if field:
                _check_field(field, columns, path, "the CSV header")

        for row_number, row in enumerate(reader, start=2):
            prompt = row[prompt_field] if prompt_field else ""
            key = (prompt, row[state_field])
            reward = _as_reward(row[rewards_field], path, f"line {row_number}, {rewards_field}")
            grouped.setdefault(key, []).append(reward)
    return [StatePool(p, s, np.asarray(r, np.float64)) for (p, s), r in grouped.items()]


def read_reward_pools(
    path,
    *,
    rewards_field: str | None = None,
    state_field: str = "state",
    prompt_field: str | None = "prompt",
    file_format: str | None = None,
) -> list[StatePool]:
    """Read the reward pool of every state from a JSONL or CSV file.

    Args:
      path: file to read.
      rewards_field: the rewards field; defaults to ``"rewards"`` (a list per
        JSONL record) or ``"reward"`` (one number per CSV row).
      state_field: the state id field.
      prompt_field: the prompt id field; None or an empty string when the file
        has none (every state then belongs to one unnamed prompt).
      file_format: ``"jsonl"`` or ``"csv"``; None picks it from the suffix.

    Returns:
      One :class:`StatePool` per state, in the order of first appearance.

    Raises:
      InputError: for a missing or empty file, invalid JSON, a field missing
        from a record (the message lists the available fields), a reward that
        is not a finite number, or a duplicated JSONL state.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found.")
    file_format = detect_format(path, file_format)
    if rewards_field is None:
        rewards_field = "rewards" if file_format == "jsonl" else "reward"

    reader = _read_jsonl if file_format == "jsonl" else _read_csv
    pools = reader(path, rewards_field, state_field, prompt_field or None)
    if not pools:
        raise InputError(f"{path}: the file contains no rewards.")
    return pools


def stack_pools(pools, *, size=None):
    """Group pools by prompt into padded arrays ``[B, K, n]`` with a mask.

    Args:
      pools: a list of :class:`StatePool`.
      size: the padded pool width ``n``; defaults to the largest pool.

    Returns:
      ``(rewards, mask, index)``: float64[B, K, n] rewards (zero where padded),
      bool[B, K, n] mask, and for each input pool its ``(b, k)`` position.
      Prompts are in order of first appearance; states keep their order
      within a prompt. Pools longer than ``size`` are cut to their first
      ``size`` rewards.
    """
    prompts = list(dict.fromkeys(pool.prompt for pool in pools))
    slots = {prompt: 0 for prompt in prompts}
    index = []
    for pool in pools:
        index.append((prompts.index(pool.prompt), slots[pool.prompt]))
        slots[pool.prompt] += 1

    width = size if size is not None else max(len(pool.rewards) for pool in pools)
    shape = (len(prompts), max(slots.values()), width)
    rewards = np.zeros(shape, np.float64)
    mask = np.zeros(shape, bool)
    for pool, (b, k) in zip(pools, index, strict=True):
        values = pool.rewards[:width]
        rewards[b, k, : len(values)] = values
        mask[b, k, : len(values)] = True
    return rewards, mask, index


def write_atomic(path, write: Callable, *, binary=False):
    """Write a file through ``write(stream)`` so that readers never see it half written.

    The content goes to a temporary file in the same folder, which then
    replaces ``path`` with ``os.replace``; on an error the temporary file is
    removed and ``path`` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        # mkstemp creates the file readable by its owner only; give the result
        # the permissions that a plain open() would, under the user's umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        mode = "wb" if binary else "w"
        options = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(descriptor, mode, **options) as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_rows(path, rows: list[dict]):
    """Write rows of a table as CSV (``.csv``) or JSON (``.json``), atomically.

    JSON gets a list of objects; non-finite floats are written as null.
    """
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"output {path}: use a .csv or .json file name.")

    def write_csv(stream):
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)

    def write_json(stream):
        clean = [
            {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in row.items()
            }
            for row in rows
        ]
        json.dump(clean, stream, indent=1)
        stream.write("\n")

    write_atomic(path, write_csv if suffix == ".csv" else write_json)
