"""Measure how well each tail model predicts best-of-N values of recorded reward pools.

For every state of a pool file (the root of each problem and its recorded
children) the ground truth is the unbiased without-replacement estimate of
``V_N = E[max of N rewards]`` from the state's whole pool,
:func:`slgjax.scaling.empirical_best_of_n`, defined for ``N <= n`` (pool
size). The estimation sizes are ``m`` = 16, 32, 64 and 128 by default, and a
state takes part only where ``m <= n / 2``. For each ``m``, ``R`` subsamples of
``m`` rewards are drawn without replacement from each state's pool, with an
explicit key. From them every model of
:func:`slgjax.scaling.predict_best_of_n` predicts ``V_N`` on a grid of budgets:

- ``gaussian``: the Gaussian tail with the exact expected maximum ``E_N``;
- ``gaussian_quantile``: the same fit with ``Phi^-1(1 - 1/N)``, the rule of
  the authors' code (Li, Qian, Mou 2026, arXiv:2602.01485);
- ``gpd_zhang_stephens``, ``gpd_profile_mle``, ``gpd_pwm``: a GPD tail with
  each fitter;
- ``bayes_independent``, ``bayes_hierarchical``: the Bayesian GPD tail with
  the Laplace approximation, the hierarchical model pooling ``xi`` over the
  root and the children of a problem;
- ``empirical_max``: the naive baseline, the unbiased estimate from the ``m``
  samples for ``N <= m`` and their maximum beyond.

Reported per model, ``m``, ``N`` and state kind (all, root, child): the mean
and median absolute error in units of each state's reward standard deviation
(from its whole pool; states with zero spread are left out), the signed bias
in the same units, the coverage of the 90% band, the share of predictions
that are not finite (left out of the errors), the share of fits with a status
flag and the share of each flag, and, for the children of a problem, the
Spearman rank correlation between predicted and true ``V_N`` (what selecting a
state depends on),
averaged over the subsamples of a problem and then over problems.

Each finished (model, m) cell is appended to ``prediction_<name>.cells.jsonl``
under ``--out``, and a rerun with the same settings reads those cells back, so
an interrupted run resumes. The file is deleted once the outputs are written.

NOTE: with jaxlib 0.10 on CPU, a run sometimes stops in the hierarchical
Bayesian fits with every thread waiting and no CPU in use, inside XLA's
execution: 10 of 16 runs on 2 cores stopped so at m = 16 or 32. Synchronous
dispatch, single-threaded Eigen and XLA's older CPU runtime
(``--xla_cpu_use_thunk_runtime=false``) each failed to prevent it, and a fresh
process usually gets past the same cell. If no log line appears for several
minutes, kill the process (Ctrl-C may not reach it) and run the same command
again: it resumes from the last finished cell.

Outputs under ``--out`` (default ``experiments/results``, where the results
behind docs/RESULTS.md are committed), each written atomically:
``prediction_<name>.json`` (every number) and ``prediction_<name>.md`` (a
table).

Run from the repository root::

    python experiments/prediction_accuracy.py \\
        --pools experiments/data/pools/chain_sum_3002.head.jsonl
"""

import argparse
import hashlib
import json
import logging
import pathlib
import sys
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.envs.replay_io import read_replay_jsonl
from slgjax.io import write_atomic
from slgjax.records import RecordFile
from slgjax.sample_pools import metadata_path, read_pool_metadata
from slgjax.scaling import MODELS, empirical_best_of_n, predict_best_of_n
from slgjax.tail.status import Status

LOG = logging.getLogger("prediction_accuracy")

DEFAULT_SIZES = (16, 32, 64, 128)
KINDS = ("all", "root", "child")


class PoolArrays:
    """The pools of a pool file as padded arrays, one row per problem.

    Attributes:
      rewards: float64[P, S, n] rewards; state 0 of each problem is its root,
        states 1.. its recorded children in file order.
      mask: bool[P, S, n]; False for padding and for failed (NaN) rewards.
      state_ids: list of P lists of state ids (shorter lists are padded rows).
      problem_ids: the problem id of each row (the root id without a sidecar).
    """

    def __init__(self, rewards, mask, state_ids, problem_ids):
        self.rewards = rewards
        self.mask = mask
        self.state_ids = state_ids
        self.problem_ids = problem_ids

    @property
    def counts(self) -> np.ndarray:
        """int[P, S] valid rewards per state."""
        return self.mask.sum(axis=-1)

    @property
    def is_root(self) -> np.ndarray:
        """bool[P, S], True for each problem's root."""
        out = np.zeros(self.mask.shape[:2], bool)
        out[:, 0] = True
        return out


def load_pool_arrays(path) -> PoolArrays:
    """Read a replay pool file into :class:`PoolArrays`."""
    env = read_replay_jsonl(path)
    groups = [[root] + list(env.children.get(root, [])) for root in env.roots]
    num_states = max(len(group) for group in groups)
    size = max(env.pools[state].size for group in groups for state in group)

    rewards = np.zeros((len(groups), num_states, size))
    mask = np.zeros((len(groups), num_states, size), bool)
    for p, group in enumerate(groups):
        for s, state in enumerate(group):
            values = env.pools[state].rewards
            valid = np.isfinite(values)
            rewards[p, s, : values.size] = np.where(valid, values, 0.0)
            mask[p, s, : values.size] = valid

    problem_ids = list(env.roots)
    if metadata_path(path).is_file():
        records = read_pool_metadata(path)
        by_root = {record["states"][0]["state"]: record["problem_id"] for record in records}
        problem_ids = [by_root.get(root, root) for root in env.roots]
    return PoolArrays(rewards, mask, groups, problem_ids)


def default_budgets(size: int) -> list[int]:
    """Powers of two up to ``size``, and ``size`` itself."""
    budgets = [2**k for k in range(int(np.log2(size)) + 1)]
    return sorted(set(budgets) | {int(size)})


def pool_spread(pools: PoolArrays) -> np.ndarray:
    """float64[P, S] standard deviation (ddof 1) of each state's valid rewards; NaN below 2."""
    count = pools.counts
    mean = np.where(pools.mask, pools.rewards, 0.0).sum(-1) / np.maximum(count, 1)
    square = np.where(pools.mask, (pools.rewards - mean[..., None]) ** 2, 0.0).sum(-1)
    return np.where(count >= 2, np.sqrt(square / np.maximum(count - 1, 1)), np.nan)


def children_against_root(pools: PoolArrays, truth, spread, budgets) -> list[dict]:
    """Compare each child's full-pool ``V_N`` with its root's, per budget.

    Spending the budget on one child beats best-of-N from the prompt only where
    that child has a higher ``V_N`` than the root, so these numbers show how
    much room state selection has on the pools. Differences are in units of the
    root's reward standard deviation. A problem counts at a budget only where its
    root and at least one child have ``N`` rewards.

    Args:
      pools: the pools, root first in each problem.
      truth: float[P, S, G] full-pool ``V_N``, NaN where ``N > n``.
      spread: float[P, S] pool standard deviations from :func:`pool_spread`.
      budgets: the G budgets.
    """
    root_spread = spread[:, 0]
    rows = []
    for g, budget in enumerate(budgets):
        root = truth[:, 0, g]
        child = truth[:, 1:, g]
        present = (pools.counts[:, 1:] > 0) & np.isfinite(child)
        usable = np.isfinite(root) & (root_spread > 0) & present.any(axis=1)
        if not usable.any():
            continue
        above = (child > root[:, None]) & present
        best = np.where(present, child, -np.inf).max(axis=1)
        with np.errstate(invalid="ignore"):
            difference = (child - root[:, None]) / root_spread[:, None]
        rows.append(
            {
                "N": int(budget),
                "problems": int(usable.sum()),
                "child_above_root_share": float(above[usable].sum() / present[usable].sum()),
                "best_child_above_root_share": float(np.mean(best[usable] > root[usable])),
                "mean_child_minus_root": float(np.mean(difference[usable][present[usable]])),
            }
        )
    return rows


def state_counts(pools: PoolArrays) -> dict:
    """Count the root and child states, and those left out for zero spread."""
    present = pools.counts > 0
    flat = ~(pool_spread(pools) > 0) & present
    return {
        "root": int(present[:, 0].sum()),
        "child": int(present[:, 1:].sum()),
        "zero_spread_root": int(flat[:, 0].sum()),
        "zero_spread_child": int(flat[:, 1:].sum()),
    }


def subsample(key, rewards, mask, eligible, *, size: int, replicates: int):
    """Draw ``replicates`` subsamples of ``size`` valid rewards per state, without replacement.

    Args:
      key: PRNG key of the draws.
      rewards: float[P, S, n] pools; mask: bool[P, S, n] valid entries.
      eligible: bool[P, S] states to draw from; others get an all-False mask.

    Returns:
      ``(float[R, P, S, m], bool[R, P, S, m])``.
    """
    shape = (replicates, *rewards.shape)
    noise = jax.random.uniform(key, shape)
    # Invalid entries sort last, so the first m indices are a uniform draw of valid ones.
    noise = jnp.where(jnp.asarray(mask)[None], noise, 2.0)
    index = jnp.argsort(noise, axis=-1)[..., :size]
    drawn = jnp.take_along_axis(jnp.broadcast_to(jnp.asarray(rewards), shape), index, axis=-1)
    drawn_mask = jnp.broadcast_to(jnp.asarray(eligible)[None, ..., None], drawn.shape)
    return np.asarray(drawn, np.float64), np.asarray(drawn_mask)


def masked_ranks(values, valid):
    """Average ranks (1-based, ties get the mean rank) of ``values`` along the last axis.

    Only entries with ``valid`` take part; the ranks of the others are 0.
    """
    lower = (values[..., None, :] < values[..., :, None]) & valid[..., None, :]
    equal = (values[..., None, :] == values[..., :, None]) & valid[..., None, :]
    ranks = lower.sum(-1) + (equal.sum(-1) + 1) / 2.0
    return np.where(valid, ranks, 0.0)


def spearman(predicted, truth, valid):
    """Spearman rank correlation along the last axis over the ``valid`` entries.

    Returns NaN where fewer than 3 entries are valid or either side has no
    spread after ranking.
    """
    count = valid.sum(-1)
    x = masked_ranks(predicted, valid)
    y = masked_ranks(truth, valid)
    mean_x = x.sum(-1, keepdims=True) / np.maximum(count[..., None], 1)
    mean_y = y.sum(-1, keepdims=True) / np.maximum(count[..., None], 1)
    dx = np.where(valid, x - mean_x, 0.0)
    dy = np.where(valid, y - mean_y, 0.0)
    denominator = np.sqrt((dx * dx).sum(-1) * (dy * dy).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (dx * dy).sum(-1) / denominator
    return np.where((count >= 3) & (denominator > 0), rho, np.nan)


def _mean_or_none(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()) if values.size else None


def flag_shares(status) -> dict[str, float]:
    """Return the share of fits that carry each status flag, for the flags that occur."""
    if status.size == 0:
        return {}
    shares = {}
    for flag in Status:
        if flag == Status.OK:
            continue
        share = float(np.mean((status & int(flag)) != 0))
        if share > 0:
            shares[flag.name] = share
    return shares


def evaluate(prediction, truth, spread, eligible, is_root, budgets):
    """Return the metric rows of one model and one ``m``.

    Args:
      prediction: dict of ``value``, ``lower``, ``upper`` float[R, P, S, G]
        (bands may be None) and ``status`` int[R, P, S].
      truth: float[P, S, G] full-pool values, NaN where ``N > n``.
      spread: float[P, S] pool standard deviations.
      eligible: bool[P, S] states that were subsampled.
      is_root: bool[P, S].
      budgets: the G budgets.

    Returns:
      One dict per budget and kind.
    """
    value = prediction["value"]
    usable = eligible & np.isfinite(spread) & (spread > 0)
    defined = np.broadcast_to(usable[None, ..., None] & np.isfinite(truth)[None], value.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = (value - truth[None]) / spread[None, ..., None]
    finite = np.isfinite(value)
    covered = None
    if prediction["lower"] is not None:
        with np.errstate(invalid="ignore"):
            covered = (prediction["lower"] <= truth[None]) & (truth[None] <= prediction["upper"])
    flagged = np.broadcast_to((prediction["status"] != 0)[..., None], value.shape)
    status = np.broadcast_to(prediction["status"][..., None], value.shape)

    # Spearman across the children of each problem (states moved to the last axis),
    # averaged over the subsamples of each problem.
    children = np.moveaxis(defined[:, :, 1:] & finite[:, :, 1:], 2, -1)
    child_truth = np.broadcast_to(np.moveaxis(truth[:, 1:], 1, -1)[None], children.shape)
    rho = spearman(np.moveaxis(value[:, :, 1:], 2, -1), child_truth, children)
    defined_rho = np.isfinite(rho)
    rho_count = defined_rho.sum(axis=0)
    per_problem = np.where(
        rho_count > 0,
        np.where(defined_rho, rho, 0.0).sum(axis=0) / np.maximum(rho_count, 1),
        np.nan,
    )  # [P, G]

    kinds = {"all": np.ones_like(is_root), "root": is_root, "child": ~is_root}
    rows = []
    for g, budget in enumerate(budgets):
        for kind in KINDS:
            selected = defined[..., g] & kinds[kind][None]
            total = int(selected.sum())
            good = selected & finite[..., g]
            errors = error[..., g][good]
            infinite = selected & np.isinf(value[..., g])
            row = {
                "N": int(budget),
                "kind": kind,
                "count": total,
                "nonfinite_share": _mean_or_none(~finite[..., g][selected]),
                "infinite_share": _mean_or_none(infinite[selected]),
                "mean_abs_error": _mean_or_none(np.abs(errors)),
                "median_abs_error": float(np.median(np.abs(errors))) if errors.size else None,
                "bias": _mean_or_none(errors),
                "coverage": _mean_or_none(covered[..., g][selected])
                if covered is not None
                else None,
                "flagged_share": _mean_or_none(flagged[..., g][selected]),
                "flag_shares": flag_shares(status[..., g][selected]),
                "spearman": None,
                "spearman_problems": 0,
            }
            if kind == "child":
                column = per_problem[:, g]
                column = column[np.isfinite(column)]
                row["spearman"] = _mean_or_none(column)
                row["spearman_problems"] = int(column.size)
            rows.append(row)
    return rows


def _model_key(key, model, size):
    return jax.random.fold_in(jax.random.fold_in(key, zlib.crc32(model.encode())), size)


def predict(model, rewards, mask, budgets, *, key, band, num_resamples, tail_fraction):
    """Run one model on ``[R, P, S, m]`` subsamples and return its prediction arrays."""
    replicates, problems = rewards.shape[:2]
    flat = rewards.reshape(replicates * problems, *rewards.shape[2:])
    flat_mask = mask.reshape(flat.shape)
    out = predict_best_of_n(
        flat,
        flat_mask,
        n=np.asarray(budgets),
        model=model,
        key=key,
        band=band,
        num_resamples=num_resamples,
        tail_fraction=tail_fraction,
    )

    def unflatten(array):
        if array is None:
            return None
        array = np.asarray(array, np.float64)
        return array.reshape(replicates, problems, *array.shape[1:])

    status = np.asarray(out.status).reshape(replicates, problems, -1)
    return {
        "value": unflatten(out.value),
        "lower": unflatten(out.lower),
        "upper": unflatten(out.upper),
        "status": status,
    }


def run(
    pools: PoolArrays,
    *,
    key,
    sizes,
    budgets,
    models,
    replicates: int,
    band: float,
    num_resamples: int,
    tail_fraction: float,
    cells: RecordFile | None = None,
) -> dict:
    """Run every model at every size and return the result dict (rows, skips, timings).

    With ``cells``, the rows of each finished (model, m) cell are appended to
    that record file, and cells already in it are read back instead of
    computed, so an interrupted run resumes where it stopped.
    """
    truth = np.asarray(
        empirical_best_of_n(pools.rewards, pools.mask, n=np.asarray(budgets), strict=False),
        np.float64,
    )
    spread = pool_spread(pools)
    rows, skipped, seconds = [], [], {}
    for size in sizes:
        eligible = pools.counts >= 2 * size
        if not eligible.any():
            skipped.append(
                {"m": int(size), "reason": f"no state has a pool of at least 2m = {2 * size}"}
            )
            continue
        # Keep only the state columns where some problem is eligible.
        columns = np.flatnonzero(eligible.any(axis=0))
        rewards, mask = pools.rewards[:, columns], pools.mask[:, columns]
        drawn, drawn_mask = subsample(
            jax.random.fold_in(key, size),
            rewards,
            mask,
            eligible[:, columns],
            size=size,
            replicates=replicates,
        )
        for model in models:
            if cells is not None and (model, int(size)) in cells:
                (cell,) = [c for c in cells.records if (c["model"], c["m"]) == (model, size)]
                rows += cell["rows"]
                seconds[f"{model}/m={size}"] = cell["seconds"]
                LOG.info("m=%d %s: read from %s", size, model, cells.path)
                continue
            started = time.perf_counter()
            prediction = predict(
                model,
                drawn,
                drawn_mask,
                budgets,
                key=_model_key(key, model, size),
                band=band,
                num_resamples=num_resamples,
                tail_fraction=tail_fraction,
            )
            elapsed = time.perf_counter() - started
            seconds[f"{model}/m={size}"] = round(elapsed, 2)
            cell_rows = [
                {"model": model, "m": int(size), **row}
                for row in evaluate(
                    prediction,
                    truth[:, columns],
                    spread[:, columns],
                    eligible[:, columns],
                    pools.is_root[:, columns],
                    budgets,
                )
            ]
            rows += cell_rows
            if cells is not None:
                cells.append(
                    {
                        "model": model,
                        "m": int(size),
                        "rows": cell_rows,
                        "seconds": round(elapsed, 2),
                    }
                )
            LOG.info("m=%d %s: %.1f s", size, model, elapsed)
    return {
        "rows": rows,
        "skipped": skipped,
        "seconds": seconds,
        "children_against_root": children_against_root(pools, truth, spread, budgets),
    }


def _cell(value, fmt):
    return "-" if value is None else format(value, fmt)


def markdown_table(rows, *, kind="all", budgets=None) -> str:
    """Return the rows of one kind as a Markdown table (errors in state standard deviations)."""
    header = (
        "| m | N | model | states | mean abs err | median abs err | bias | 90% band coverage "
        "| Spearman (children) | not finite | flagged |"
    )
    lines = [header, "|" + "---|" * 11]
    children = {(r["model"], r["m"], r["N"]): r for r in rows if r["kind"] == "child"}
    for row in rows:
        if row["kind"] != kind or row["count"] == 0:
            continue
        if budgets is not None and row["N"] not in budgets:
            continue
        child = children.get((row["model"], row["m"], row["N"]), {})
        cells = [
            str(row["m"]),
            str(row["N"]),
            row["model"],
            str(row["count"]),
            _cell(row["mean_abs_error"], ".3f"),
            _cell(row["median_abs_error"], ".3f"),
            _cell(row["bias"], "+.3f"),
            _cell(row["coverage"], ".2f"),
            _cell(child.get("spearman"), ".2f"),
            _cell(row["nonfinite_share"], ".2f"),
            _cell(row["flagged_share"], ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_text(path, text):
    write_atomic(path, lambda stream: stream.write(text))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=pathlib.Path, required=True, help="replay pool file")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("experiments/results"),
        help="output directory (created if missing)",
    )
    parser.add_argument(
        "--name", default=None, help="output name stem (default: the pool file name without .jsonl)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="estimation sizes m"
    )
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=None,
        help="budgets N (default: powers of two up to the largest pool, and its size)",
    )
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="tail models to run"
    )
    parser.add_argument("--replicates", type=int, default=20, help="subsamples R per state")
    parser.add_argument("--band", type=float, default=0.9, help="central probability of the band")
    parser.add_argument(
        "--num-resamples",
        type=int,
        default=100,
        help="bootstrap replicates of the frequentist bands",
    )
    parser.add_argument("--tail-fraction", type=float, default=0.2, help="tail share of each fit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the PRNG key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.replicates < 1:
        parser.error(f"--replicates {args.replicates} must be >= 1.")
    if any(size < 2 for size in args.sizes):
        parser.error(f"--sizes {args.sizes}: every m must be >= 2.")

    started = time.perf_counter()
    pools = load_pool_arrays(args.pools)
    budgets = sorted(set(args.budgets or default_budgets(pools.rewards.shape[-1])))
    name = args.name or args.pools.name.removesuffix(".jsonl")
    args.out.mkdir(parents=True, exist_ok=True)
    cells_path = args.out / f"prediction_{name}.cells.jsonl"
    cell_settings = {
        "pools_sha256": hashlib.sha256(args.pools.read_bytes()).hexdigest(),
        "budgets": budgets,
        "replicates": args.replicates,
        "band": args.band,
        "num_resamples": args.num_resamples,
        "tail_fraction": args.tail_fraction,
        "seed": args.seed,
    }
    cells = RecordFile(cells_path, settings=cell_settings, key_fields=("model", "m"))
    result = run(
        pools,
        key=jax.random.key(args.seed),
        sizes=sorted(set(args.sizes)),
        budgets=budgets,
        models=args.models,
        replicates=args.replicates,
        band=args.band,
        num_resamples=args.num_resamples,
        tail_fraction=args.tail_fraction,
        cells=cells,
    )
    command = "python experiments/prediction_accuracy.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    output = {
        "command": command.strip(),
        "pools": str(args.pools),
        "name": name,
        "num_problems": len(pools.problem_ids),
        "problem_ids": pools.problem_ids,
        "states": state_counts(pools),
        "pool_sizes": {
            "root": sorted({int(c) for c in pools.counts[:, 0]}),
            "child": sorted({int(c) for c in pools.counts[:, 1:][pools.counts[:, 1:] > 0]}),
        },
        "sizes": sorted(set(args.sizes)),
        "budgets": budgets,
        "models": args.models,
        "replicates": args.replicates,
        "band": args.band,
        "num_resamples": args.num_resamples,
        "tail_fraction": args.tail_fraction,
        "seed": args.seed,
        **result,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"prediction_{name}.json"
    _write_text(json_path, json.dumps(output, indent=1) + "\n")
    text = [
        f"# Best-of-N prediction accuracy: {name}",
        "",
        f"Generated by `{output['command']}` in {output['total_seconds']:.0f} s. "
        f"{output['num_problems']} problems, R = {args.replicates} subsamples per state. "
        "Errors are in units of each state's reward standard deviation; `not finite` "
        "predictions are left out of the errors. States whose pool has no spread are left "
        f"out: {output['states']['zero_spread_root']} of {output['states']['root']} roots and "
        f"{output['states']['zero_spread_child']} of {output['states']['child']} children.",
        "",
        markdown_table(result["rows"]),
        "",
    ]
    for skip in result["skipped"]:
        text.append(f"- m = {skip['m']} skipped: {skip['reason']}.")
    _write_text(args.out / f"prediction_{name}.md", "\n".join(text) + "\n")
    # The cells are all in the JSON file now; a later run starts afresh.
    cells_path.unlink()
    LOG.info("wrote %s in %.0f s", json_path, output["total_seconds"])
    return output


if __name__ == "__main__":
    main()
