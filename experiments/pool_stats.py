"""Print the statistics table of the reward-pool data card (experiments/data/pools/README.md).

Reads a rescored replay file (``experiments/rescore_pools.py``) and the token
counts beside it, and prints a Markdown table: the share of correct responses
at the roots and at the children, how many problems and children have a correct
response, the mean and standard deviation of the rewards, the mean reward of
correct and of wrong responses, the AUROC of the rewards for correctness, and
the response lengths.

Run from the repository root::

    python experiments/pool_stats.py --pools experiments/data/pools/chain_sum_3002.head.jsonl
"""

import argparse
import gzip
import json
import pathlib

import numpy as np

from slgjax.envs.replay_io import read_replay_jsonl
from slgjax.metrics import auroc


def pool_statistics(pools_path, *, max_new_tokens: int) -> list[tuple[str, str]]:
    """Return the rows ``(statistic, value)`` of the card's table."""
    env = read_replay_jsonl(pools_path)
    roots = list(env.roots)
    children = [kid for root in roots for kid in env.children.get(root, [])]
    for state in roots + children:
        if env.pools[state].correct is None:
            raise ValueError(
                f"{pools_path}: state {state!r} records no correctness; pass a pool file "
                "recorded with a verifier, such as the output of experiments/rescore_pools.py."
            )

    def share_correct(states):
        return float(np.mean(np.concatenate([env.pools[s].correct for s in states])))

    def any_correct(states):
        return sum(bool(np.any(env.pools[s].correct)) for s in states)

    rewards = np.concatenate([env.pools[s].rewards for s in roots + children])
    correct = np.concatenate([env.pools[s].correct for s in roots + children]).astype(bool)

    tokens_path = pathlib.Path(str(pools_path) + ".tokens.json.gz")
    with gzip.open(tokens_path, "rt", encoding="utf-8") as handle:
        counts = np.concatenate([np.asarray(v) for v in json.load(handle)["tokens"].values()])

    return [
        ("share correct, root responses", f"{share_correct(roots):.3f}"),
        ("share correct, child responses", f"{share_correct(children):.3f}"),
        ("problems with a correct root response", f"{any_correct(roots)} of {len(roots)}"),
        ("children with a correct response", f"{any_correct(children)} of {len(children)}"),
        (
            "head score, mean and SD over all responses",
            f"{rewards.mean():.2f}, {rewards.std():.2f}",
        ),
        (
            "head score, mean of correct and of wrong responses",
            f"{rewards[correct].mean():.2f}, {rewards[~correct].mean():.2f}",
        ),
        ("head AUROC over all responses", f"{float(auroc(rewards, correct)):.3f}"),
        (
            "response length in tokens, mean and median",
            f"{counts.mean():.1f}, {np.median(counts):.1f}",
        ),
        (
            f"responses of {max_new_tokens} tokens or more (cut at the limit)",
            f"{np.mean(counts >= max_new_tokens):.1%}",
        ),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=pathlib.Path, required=True, help="rescored replay file")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=48,
        help="generation limit of the recording, in tokens",
    )
    args = parser.parse_args(argv)

    rows = pool_statistics(args.pools, max_new_tokens=args.max_new_tokens)
    lines = ["| statistic | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
