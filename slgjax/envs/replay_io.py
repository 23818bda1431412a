"""Read and write replay pools as JSON Lines, one state per line.

Each line is a JSON object:

``state`` (string, required)
    unique id of the state.
``rewards`` (list of numbers or null, required)
    the recorded rewards; null marks a failed score and reads as NaN.
``parent`` (string, optional)
    the state this one is a child (a one-step prefix) of. States without a
    parent are roots, one per prompt.
``prompt`` (integer, optional, roots only)
    prompt index of a root. Either every root has one (0, 1, 2, ...) or none
    has, and then roots are numbered in file order.
``correct`` (list of booleans, optional), ``responses`` (list, optional),
``prefixes`` (list of state ids or null, optional)
    one entry per reward: whether the response is correct, the response
    itself, and the state id of its first-step prefix.

Children of a state are the states naming it as ``parent``, in file order.

Example line::

    {"state": "p0", "prompt": 0, "rewards": [0.1, 2.3], "prefixes": ["p0/a", "p0/b"]}
"""

import json
import math
import os

from slgjax.envs.replay import ReplayEnvironment, RewardPool

__all__ = ["read_replay_jsonl", "write_replay_jsonl"]

_FIELDS = {"state", "rewards", "parent", "prompt", "correct", "responses", "prefixes"}


def _fail(path, line, message):
    raise ValueError(f"{path}:{line}: {message}")


def _read_rewards(values, path, line):
    if not isinstance(values, list):
        _fail(path, line, f"'rewards' must be a list of numbers; got {type(values).__name__}.")
    out = []
    for i, v in enumerate(values):
        if v is None:
            out.append(math.nan)
        elif isinstance(v, bool) or not isinstance(v, int | float):
            _fail(path, line, f"rewards[{i}] is {v!r}; expected a number or null.")
        else:
            out.append(float(v))
    return out


def read_replay_jsonl(path: str | os.PathLike) -> ReplayEnvironment:
    """Build a :class:`~slgjax.envs.replay.ReplayEnvironment` from a JSON Lines file.

    Raises:
      ValueError: on a malformed line, a duplicate state, a parent or prefix
        naming no recorded state, or inconsistent prompt indices; the message
        gives the file and line number.
    """
    pools, parents, prompts, lines = {}, {}, {}, {}
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                _fail(path, number, f"invalid JSON: {error.msg}.")
            if not isinstance(record, dict):
                _fail(path, number, "each line must be a JSON object.")
            unknown = set(record) - _FIELDS
            if unknown:
                _fail(
                    path, number, f"unknown fields {sorted(unknown)}; allowed: {sorted(_FIELDS)}."
                )
            for required in ("state", "rewards"):
                if required not in record:
                    _fail(path, number, f"missing field {required!r}.")

            state = record["state"]
            if not isinstance(state, str):
                _fail(path, number, f"'state' must be a string; got {state!r}.")
            if state in pools:
                _fail(path, number, f"state {state!r} is already defined on line {lines[state]}.")
            rewards = _read_rewards(record["rewards"], path, number)
            try:
                pools[state] = RewardPool(
                    rewards,
                    correct=record.get("correct"),
                    responses=record.get("responses"),
                    prefixes=record.get("prefixes"),
                )
            except ValueError as error:
                _fail(path, number, str(error))
            lines[state] = number
            if record.get("parent") is not None:
                parents[state] = record["parent"]
                if "prompt" in record:
                    _fail(
                        path, number, "'prompt' is only allowed on roots (states without parent)."
                    )
            elif "prompt" in record:
                prompts[state] = record["prompt"]

    children = {}
    for state, parent in parents.items():
        if parent not in pools:
            _fail(path, lines[state], f"parent {parent!r} of state {state!r} is not defined.")
        children.setdefault(parent, []).append(state)
    for state, pool in pools.items():
        for prefix in pool.prefixes or ():
            if prefix is not None and prefix not in pools:
                _fail(path, lines[state], f"prefix {prefix!r} is not a defined state.")

    roots = [state for state in pools if state not in parents]
    if prompts:
        if len(prompts) != len(roots):
            missing = [s for s in roots if s not in prompts]
            _fail(
                path,
                lines[missing[0]],
                f"root {missing[0]!r} has no 'prompt' index while "
                "other roots have one; give every root an index or none.",
            )
        order = sorted(prompts.values())
        if order != list(range(len(roots))):
            _fail(path, 1, f"root prompt indices {order} must be 0, 1, ..., {len(roots) - 1}.")
        roots = sorted(roots, key=prompts.__getitem__)
    return ReplayEnvironment(pools, roots=roots, children=children)


def _jsonable_reward(value):
    return None if math.isnan(value) else float(value)


def write_replay_jsonl(path: str | os.PathLike, env: ReplayEnvironment) -> None:
    """Write the pools of ``env`` in the format :func:`read_replay_jsonl` reads.

    Roots get their prompt index and children their parent. Responses must
    be JSON values.

    Raises:
      ValueError: when a reward is infinite (JSON has no infinity), a state
        is not a string, or a state is neither a root nor a recorded child.
    """
    parents = {kid: parent for parent, kids in env.children.items() for kid in kids}
    root_index = {state: i for i, state in enumerate(env.roots)}
    with open(path, "w", encoding="utf-8") as handle:
        for state, pool in env.pools.items():
            if not isinstance(state, str):
                raise ValueError(
                    f"state {state!r} is not a string; JSON Lines pools need string ids."
                )
            if any(math.isinf(r) for r in pool.rewards):
                raise ValueError(
                    f"state {state!r} has an infinite reward, which JSON cannot store."
                )
            record = {"state": state, "rewards": [_jsonable_reward(r) for r in pool.rewards]}
            if state in parents:
                record["parent"] = parents[state]
            elif state in root_index:
                record["prompt"] = root_index[state]
            else:
                raise ValueError(
                    f"state {state!r} is neither a root nor a recorded child; the JSON Lines "
                    "format reads every state without a parent as a root. Add it to the "
                    "children of its parent."
                )
            if pool.correct is not None:
                record["correct"] = [bool(c) for c in pool.correct]
            if pool.responses is not None:
                record["responses"] = list(pool.responses)
            if pool.prefixes is not None:
                record["prefixes"] = list(pool.prefixes)
            handle.write(json.dumps(record) + "\n")
