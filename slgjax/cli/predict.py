"""``slgjax predict FILE``: fit a tail model to m rewards per state and predict V_N.

For every state of the file, the command fits the chosen tail model to ``m``
of its rewards (the first ones, or a random subset), predicts the best-of-N
value ``V_N`` with its band for each budget. Where the state's whole pool
contains at least ``N`` rewards, it prints the unbiased empirical estimate from
the pool beside the prediction.
"""

import argparse
import logging
import math

import jax
import numpy as np

from slgjax import io
from slgjax.scaling import MODELS, empirical_best_of_n, predict_best_of_n
from slgjax.tail.status import describe

__all__ = ["add_parser", "run"]

logger = logging.getLogger("slgjax.predict")

# The fewest rewards a state may be fitted on: every tail model keeps at least
# two rewards in its tail and needs one below the threshold.
MIN_FIT_SIZE = 3


def _budgets(text):
    try:
        budgets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"budgets must be comma-separated integers, for example 1,4,16; got {text!r}"
        ) from None
    if not budgets or min(budgets) < 1:
        raise argparse.ArgumentTypeError(f"budgets must be integers >= 1; got {text!r}")
    return sorted(set(budgets))


def _band(text):
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"band must lie in [0, 1); got {text}")
    return value


def add_parser(subparsers):
    """Register the ``predict`` command and its options."""
    parser = subparsers.add_parser(
        "predict",
        help="predict best-of-N curves from a file of rewards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="JSONL (one record per state) or CSV (one reward per row)")
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), help="file format (default: by suffix)"
    )
    parser.add_argument(
        "--rewards-field",
        help="field with the rewards: a list per JSONL record (default 'rewards') or one number "
        "per CSV row (default 'reward')",
    )
    parser.add_argument("--state-field", default="state", help="field with the state id")
    parser.add_argument(
        "--prompt-field",
        default="prompt",
        help="field with the prompt id; pass '' when the file has none",
    )
    parser.add_argument("--model", choices=MODELS, default="gaussian", help="tail model")
    parser.add_argument(
        "--m", type=int, default=64, help="rewards per state used for the fit (default 64)"
    )
    parser.add_argument(
        "--subset",
        choices=("first", "random"),
        default="first",
        help="fit on the first m rewards of each state or on a random subset of m",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random subset, the bootstrap and the posterior",
    )
    parser.add_argument(
        "--budgets",
        type=_budgets,
        default=[1, 4, 16, 64, 256],
        help="comma-separated budgets N (default 1,4,16,64,256)",
    )
    parser.add_argument(
        "--band", type=_band, default=0.9, help="central probability of the band; 0 for none"
    )
    parser.add_argument(
        "--resamples", type=int, default=200, help="bootstrap replicates of the frequentist band"
    )
    parser.add_argument(
        "--tail-fraction", type=float, default=0.2, help="share of the m rewards kept in the tail"
    )
    parser.add_argument(
        "--gpd-method",
        choices=("expected_max", "return_level"),
        default="expected_max",
        help="GPD models: exact expected maximum or the return level Q(1 - 1/N)",
    )
    parser.add_argument(
        "--inference",
        choices=("laplace", "nuts"),
        default="laplace",
        help="Bayesian models: posterior approximation",
    )
    parser.add_argument("--output", help="write the table to this .csv or .json file")
    parser.add_argument(
        "--plot", help="write a PNG of predicted against empirical curves to this file"
    )
    parser.set_defaults(handler=run)
    return parser


def _select_fit_rewards(pools, m, subset, rng):
    """Return the m rewards of each pool that the model is fitted on."""
    too_small = [pool for pool in pools if len(pool.rewards) < m]
    if too_small:
        listed = ", ".join(f"{p.prompt}/{p.state} ({len(p.rewards)})" for p in too_small[:5])
        more = f" and {len(too_small) - 5} more" if len(too_small) > 5 else ""
        smallest = min(len(p.rewards) for p in too_small)
        raise io.InputError(
            f"{len(too_small)} state(s) contain fewer than --m {m} rewards: {listed}{more}; "
            f"lower --m to at most {smallest} or drop those states."
        )

    chosen = []
    for pool in pools:
        if subset == "random":
            picked = np.sort(rng.choice(len(pool.rewards), size=m, replace=False))
            chosen.append(io.StatePool(pool.prompt, pool.state, pool.rewards[picked]))
        else:
            chosen.append(io.StatePool(pool.prompt, pool.state, pool.rewards[:m]))
    return chosen


def _plot_budgets(budgets, largest_pool):
    """Budgets for the figure: the requested ones plus powers of two up to the pool size."""
    top = max(max(budgets), largest_pool)
    grid = [2**i for i in range(int(math.log2(top)) + 1)]
    return sorted(set(grid) | set(budgets))


def _format_number(value):
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _print_table(rows):
    headers = [
        "prompt",
        "state",
        "m",
        "pool",
        "N",
        "predicted",
        "lower",
        "upper",
        "empirical",
        "status",
    ]
    cells = [
        [
            row["prompt"],
            row["state"],
            str(row["m"]),
            str(row["pool"]),
            str(row["N"]),
            _format_number(row["predicted"]),
            _format_number(row["lower"]),
            _format_number(row["upper"]),
            _format_number(row["empirical"]),
            row["status"],
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for cell in cells:
        print("  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)))


def run(args) -> int:
    """Execute ``slgjax predict``; return the exit status."""
    if args.m < MIN_FIT_SIZE:
        raise io.InputError(f"--m {args.m} is too small; fit on at least {MIN_FIT_SIZE} rewards.")
    if args.resamples < 2:
        raise io.InputError(f"--resamples {args.resamples} must be >= 2.")
    if not 0.0 < args.tail_fraction <= 1.0:
        raise io.InputError(f"--tail-fraction {args.tail_fraction} must lie in (0, 1].")

    pools = io.read_reward_pools(
        args.file,
        rewards_field=args.rewards_field,
        state_field=args.state_field,
        prompt_field=args.prompt_field,
        file_format=args.format,
    )
    logger.info("read %d states from %s", len(pools), args.file)

    rng = np.random.default_rng(args.seed)
    fit_pools = _select_fit_rewards(pools, args.m, args.subset, rng)
    fit_rewards, fit_mask, index = io.stack_pools(fit_pools, size=args.m)
    pool_rewards, pool_mask, _ = io.stack_pools(pools)
    largest_pool = pool_rewards.shape[-1]

    budgets = list(args.budgets)
    all_budgets = _plot_budgets(budgets, largest_pool) if args.plot else budgets
    band = args.band if args.band > 0 else None
    logger.info(
        "fitting %s on %d rewards per state (%s), band %s", args.model, args.m, args.subset, band
    )

    prediction = predict_best_of_n(
        fit_rewards,
        fit_mask,
        n=np.asarray(all_budgets),
        model=args.model,
        key=jax.random.key(args.seed),
        band=band,
        num_resamples=args.resamples,
        tail_fraction=args.tail_fraction,
        gpd_method=args.gpd_method,
        inference=args.inference,
    )
    empirical = empirical_best_of_n(
        pool_rewards, pool_mask, n=np.asarray(all_budgets), strict=False
    )

    value = np.asarray(prediction.value)
    lower = None if prediction.lower is None else np.asarray(prediction.lower)
    upper = None if prediction.upper is None else np.asarray(prediction.upper)
    empirical = np.asarray(empirical)
    status = np.asarray(prediction.status)

    rows = []
    for pool, (b, k) in zip(pools, index, strict=True):
        for j, budget in enumerate(all_budgets):
            if budget not in budgets:
                continue
            rows.append(
                {
                    "prompt": pool.prompt,
                    "state": pool.state,
                    "model": args.model,
                    "m": args.m,
                    "pool": len(pool.rewards),
                    "N": budget,
                    "predicted": float(value[b, k, j]),
                    "lower": None if lower is None else float(lower[b, k, j]),
                    "upper": None if upper is None else float(upper[b, k, j]),
                    "empirical": float(empirical[b, k, j]),
                    "status": describe(int(status[b, k])),
                }
            )
    _print_table(rows)

    if args.output:
        io.write_rows(args.output, rows)
        logger.info("wrote %d rows to %s", len(rows), args.output)

    if args.plot:
        _write_plot(args, pools, index, all_budgets, value, lower, upper, empirical)
    return 0


def _write_plot(args, pools, index, budgets, value, lower, upper, empirical):
    from slgjax.plots import best_of_n_figure

    if max(len(pool.rewards) for pool in pools) <= args.m:
        logger.warning(
            "no pool contains more than --m %d rewards, so the empirical curve cannot check "
            "the extrapolation beyond m",
            args.m,
        )

    def per_state(array):
        return None if array is None else np.stack([array[b, k] for b, k in index])

    titles = [f"{pool.prompt}/{pool.state}" if pool.prompt else pool.state for pool in pools]
    figure = best_of_n_figure(
        np.asarray(budgets),
        per_state(value),
        lower=per_state(lower),
        upper=per_state(upper),
        empirical=per_state(empirical),
        titles=titles,
        fit_size=[args.m] * len(pools),
        model_name=args.model,
    )
    if len(pools) > 16:
        logger.warning("the plot shows the first 16 of %d states", len(pools))
    io.write_atomic(
        args.plot, lambda stream: figure.savefig(stream, format="png", dpi=110), binary=True
    )
    logger.info("wrote the plot to %s", args.plot)
