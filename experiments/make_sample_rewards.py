"""Write tests/data/sample_rewards.jsonl: 4 prompts x 4 states x 512 rewards from known laws.

Each prompt draws its states from one family, with parameters that differ
between states, so that the file exercises every kind of tail:

- ``beta``: a bounded reward-model-like score, ``lo + (hi - lo) * Beta(a, b)``
  (upper tail of GPD type with ``xi = -1/b``);
- ``normal``: ``N(mu, sigma^2)`` (the Gaussian tail model is exact);
- ``heavy``: ``mu + sigma * t_nu`` with Student-t degrees of freedom ``nu``
  (GPD tail with ``xi = 1/nu``);
- ``mixed``: one state of each kind above plus a 0/1 verifier reward.

Rewards are rounded to 4 decimals. Run from the repository root:
``python experiments/make_sample_rewards.py``; the output is byte-identical
for a given seed.
"""

import argparse
import json
import os

import numpy as np

NUM_REWARDS = 512


def _beta(rng, a, b, lo, hi):
    return {"family": "beta", "params": {"a": a, "b": b, "lo": lo, "hi": hi}}, lo + (
        hi - lo
    ) * rng.beta(a, b, NUM_REWARDS)


def _normal(rng, mu, sigma):
    return {"family": "normal", "params": {"mu": mu, "sigma": sigma}}, rng.normal(
        mu, sigma, NUM_REWARDS
    )


def _heavy(rng, mu, sigma, nu):
    return {"family": "student_t", "params": {"mu": mu, "sigma": sigma, "nu": nu}}, (
        mu + sigma * rng.standard_t(nu, NUM_REWARDS)
    )


def _bernoulli(rng, p):
    return {"family": "bernoulli", "params": {"p": p}}, rng.binomial(1, p, NUM_REWARDS).astype(
        float
    )


def make_records(seed):
    """Return the 16 JSON records of the sample file."""
    rng = np.random.default_rng(seed)
    prompts = {
        "beta": [
            lambda: _beta(rng, 2.0, 5.0, -4.0, 6.0),
            lambda: _beta(rng, 3.0, 3.0, -4.0, 6.0),
            lambda: _beta(rng, 5.0, 2.0, -4.0, 6.0),
            lambda: _beta(rng, 2.0, 2.0, -4.0, 6.0),
        ],
        "normal": [
            lambda: _normal(rng, 0.0, 1.0),
            lambda: _normal(rng, 0.5, 0.7),
            lambda: _normal(rng, -0.3, 1.5),
            lambda: _normal(rng, 1.0, 0.4),
        ],
        "heavy": [
            lambda: _heavy(rng, 0.0, 1.0, 3.0),
            lambda: _heavy(rng, 0.5, 0.5, 5.0),
            lambda: _heavy(rng, -1.0, 1.0, 10.0),
            lambda: _heavy(rng, 0.0, 0.3, 4.0),
        ],
        "mixed": [
            lambda: _beta(rng, 4.0, 3.0, 0.0, 1.0),
            lambda: _normal(rng, 2.0, 0.5),
            lambda: _heavy(rng, 1.0, 0.2, 6.0),
            lambda: _bernoulli(rng, 0.15),
        ],
    }

    records = []
    for prompt, makers in prompts.items():
        for index, make in enumerate(makers):
            meta, rewards = make()
            records.append(
                {
                    "prompt": prompt,
                    "state": f"s{index}",
                    **meta,
                    "rewards": [round(float(r), 4) for r in rewards],
                }
            )
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20260201)
    parser.add_argument("--output", default=os.path.join("tests", "data", "sample_rewards.jsonl"))
    args = parser.parse_args()

    records = make_records(args.seed)
    with open(args.output, "w", encoding="utf-8") as stream:
        for record in records:
            stream.write(json.dumps(record) + "\n")
    print(f"wrote {len(records)} records to {args.output} ({os.path.getsize(args.output)} bytes)")


if __name__ == "__main__":
    main()
