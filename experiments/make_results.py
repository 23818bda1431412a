"""Build docs/RESULTS.md and its figures from the JSON outputs of the evidence experiments.

Inputs are the files that ``experiments/prediction_accuracy.py``
(``prediction_<name>.json``) and ``experiments/replay_search.py``
(``search_<name>.json``) write, by default every such file under
``experiments/results``. Every number in the page comes from those
files: the tables, and the sentences that say where a tail model fails and
where an algorithm does not beat best-of-N, are generated from them. Each
table is preceded by the command that regenerates its JSON file.

Outputs, each written atomically: ``docs/RESULTS.md`` and, under
``docs/results/``, ``prediction_<name>.png`` (error and band coverage against
``N``) and ``search_<name>.png`` (gain over best-of-N against ``N``).

Run from the repository root::

    python experiments/make_results.py
"""

import argparse
import io
import json
import logging
import os
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slgjax.io import write_atomic
from slgjax.tail.gpd_fit import MIN_EXCEEDANCES

LOG = logging.getLogger("make_results")

BASELINE_MODEL = "empirical_max"
# A 90% band that covers less often than this is called undercovering.
MIN_COVERAGE = 0.8
TWO_STAGE = ("slg_paper", "slg_reference")
METRIC_NAMES = {"best_reward": "best reward", "rm_at_1": "RM@1", "pass_at_n": "pass@N"}


def load(paths) -> list[dict]:
    """Read JSON result files, in sorted path order."""
    out = []
    for path in sorted(pathlib.Path(p) for p in paths):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        data["_path"] = str(path)
        out.append(data)
    return out


def _fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def _interval(mean, low, high, spec=".3f"):
    if mean is None:
        return "-"
    if low is None or high is None:
        return format(mean, spec)
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"


def _percent(share):
    """Format a share as a percentage, with a decimal below 1% so that no share reads 0%."""
    return f"{share:.1%}" if 0 < share < 0.01 else f"{share:.0%}"


def _plain_list(items):
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# Prediction accuracy.


def headline_budgets(result) -> tuple[int | None, int | None]:
    """Return the largest budget with child states and the largest budget of all."""
    rows = [row for row in result["rows"] if row["count"] > 0]
    child = [row["N"] for row in rows if row["kind"] == "child"]
    every = [row["N"] for row in rows if row["kind"] == "all"]
    return (max(child) if child else None), (max(every) if every else None)


def _row(result, model, size, budget, kind="all"):
    for row in result["rows"]:
        if (row["model"], row["m"], row["N"], row["kind"]) == (model, size, budget, kind):
            return row
    return None


def prediction_table(result) -> str:
    """Return the compact table of one prediction result: one row per model and ``m``."""
    child_budget, top_budget = headline_budgets(result)
    header = (
        f"| m | model | MAE, N={child_budget} | bias, N={child_budget} "
        f"| coverage, N={child_budget} | Spearman, N={child_budget} | MAE, N={top_budget} "
        f"| bias, N={top_budget} | coverage, N={top_budget} | not finite |"
    )
    lines = [header, "|" + "---|" * 10]
    for size in result["sizes"]:
        for model in result["models"]:
            near = _row(result, model, size, child_budget)
            child = _row(result, model, size, child_budget, "child")
            far = _row(result, model, size, top_budget)
            if far is None or far["count"] == 0:
                continue
            near_ok = near is not None and near["count"] > 0
            cells = [
                str(size),
                model,
                _fmt(near["mean_abs_error"]) if near_ok else "-",
                _fmt(near["bias"], "+.3f") if near_ok else "-",
                _fmt(near["coverage"], ".2f") if near_ok else "-",
                _fmt(child["spearman"], ".2f") if child is not None else "-",
                _fmt(far["mean_abs_error"]),
                _fmt(far["bias"], "+.3f"),
                _fmt(far["coverage"], ".2f"),
                _fmt(far["nonfinite_share"], ".2f"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prediction_findings(result) -> list[str]:
    """Return sentences on where each tail model fails, computed from the rows."""
    lines = []
    for size in result["sizes"]:
        rows = [r for r in result["rows"] if r["m"] == size and r["kind"] == "all" and r["count"]]
        if not rows:
            continue
        extrapolated = [r for r in rows if r["N"] > size]
        if not extrapolated:
            continue
        budget = max(r["N"] for r in extrapolated)
        at_budget = {r["model"]: r for r in extrapolated if r["N"] == budget}
        baseline = at_budget.get(BASELINE_MODEL)
        ranked = sorted(
            (r for r in at_budget.values() if r["mean_abs_error"] is not None),
            key=lambda r: r["mean_abs_error"],
        )
        if ranked:
            best, worst = ranked[0], ranked[-1]
            lines.append(
                f"- m = {size}, N = {budget}: the smallest mean absolute error is "
                f"{best['model']}'s ({best['mean_abs_error']:.3f} SD), the largest "
                f"{worst['model']}'s ({worst['mean_abs_error']:.3f} SD)."
            )
        if baseline is not None and baseline["mean_abs_error"] is not None:
            worse = [
                r["model"]
                for r in ranked
                if r["model"] != BASELINE_MODEL and r["mean_abs_error"] > baseline["mean_abs_error"]
            ]
            if worse:
                lines.append(
                    f"- m = {size}, N = {budget}: {_plain_list(worse)} predict worse than the "
                    f"naive sample maximum ({baseline['mean_abs_error']:.3f} SD)."
                )
        # Coverage and failures over every extrapolated budget, one line each.
        undercovered, failures = [], []
        for model in result["models"]:
            model_rows = [r for r in extrapolated if r["model"] == model]
            covered = [r for r in model_rows if r["coverage"] is not None]
            if covered and model != BASELINE_MODEL:
                worst = min(covered, key=lambda r: r["coverage"])
                if worst["coverage"] < MIN_COVERAGE:
                    undercovered.append(f"{model} ({worst['coverage']:.2f} at N = {worst['N']})")
            failed = [r for r in model_rows if r["nonfinite_share"]]
            if failed:
                worst = max(failed, key=lambda r: r["nonfinite_share"])
                failures.append(
                    f"{model} (up to {_percent(worst['nonfinite_share'])} at N = {worst['N']}, "
                    f"{_percent(worst['infinite_share'])} infinite)"
                )
        if undercovered:
            lines.append(
                f"- m = {size}: the 90% band covers less than {MIN_COVERAGE:.0%} of the true "
                f"values at some N > m for {_plain_list(undercovered)}; lowest coverage shown."
            )
        if failures:
            lines.append(
                f"- m = {size}: predictions that are not finite, left out of the errors: "
                f"{_plain_list(failures)}."
            )
    return lines


def best_model_lines(result) -> list[str]:
    """Return one sentence per ``m`` naming the models that predict best beyond ``N = m``.

    Errors are averaged over the budgets ``N > m`` with states of any kind. The
    Spearman correlation is averaged over the budgets ``N > m`` with child
    states. The naive baseline takes part in the ranking.
    """
    lines = []
    for size in result["sizes"]:
        errors, spearman = {}, {}
        for model in result["models"]:
            rows = [
                r
                for r in result["rows"]
                if r["model"] == model and r["m"] == size and r["N"] > size and r["count"]
            ]
            error = [r["mean_abs_error"] for r in rows if r["kind"] == "all"]
            if error and None not in error:
                errors[model] = float(np.mean(error))
            rank = [r["spearman"] for r in rows if r["kind"] == "child"]
            if rank and None not in rank:
                spearman[model] = float(np.mean(rank))
        if not errors:
            continue

        budgets = sorted({r["N"] for r in result["rows"] if r["m"] == size and r["N"] > size})
        ranked = sorted(errors, key=errors.get)
        order = ", ".join(f"{model} ({errors[model]:.3f})" for model in ranked)
        sentence = (
            f"- m = {size}, mean absolute error averaged over N = {budgets[0]} to "
            f"{budgets[-1]}, best first: {order}."
        )
        if spearman:
            best = max(spearman, key=spearman.get)
            sentence += (
                f" The best ranking of a problem's children is {best}'s "
                f"(mean Spearman {spearman[best]:.2f}"
                + (
                    ", the naive baseline)."
                    if best == BASELINE_MODEL
                    else f"; the naive baseline's is {_fmt(spearman.get(BASELINE_MODEL), '.2f')})."
                )
            )
        lines.append(sentence)
    return lines


def flag_lines(result) -> list[str]:
    """Return one sentence per ``m`` on the status flags of the fits.

    Flags belong to a fit, not to a budget, so they are read at the largest
    budget with states. A flag is named where it marks at least 5% of a model's fits.
    """
    lines = []
    for size in result["sizes"]:
        rows = [r for r in result["rows"] if r["m"] == size and r["kind"] == "all" and r["count"]]
        if not rows:
            continue
        budget = max(r["N"] for r in rows)
        parts = []
        for row in rows:
            if row["N"] != budget or not row.get("flagged_share"):
                continue
            flags = sorted(
                ((name, share) for name, share in row.get("flag_shares", {}).items()),
                key=lambda item: -item[1],
            )
            named = ", ".join(f"{name} {share:.0%}" for name, share in flags if share >= 0.05)
            parts.append(
                f"{row['model']} {row['flagged_share']:.0%}" + (f" ({named})" if named else "")
            )
        if parts:
            lines.append(f"- m = {size}: fits with a status flag: {'; '.join(parts)}.")
        exceedances = int(result["tail_fraction"] * size)
        if exceedances < MIN_EXCEEDANCES:
            lines.append(
                f"- m = {size}: the tail share {result['tail_fraction']:g} leaves about "
                f"{exceedances} exceedances, fewer than the {MIN_EXCEEDANCES} a GPD fit needs, "
                "so every GPD fitter falls back to the exponential tail and they agree."
            )
    return lines


def prediction_figure(result) -> Figure:
    """Draw the mean absolute error and the band coverage against ``N``, one column per ``m``."""
    sizes = [s for s in result["sizes"] if any(r["m"] == s and r["count"] for r in result["rows"])]
    figure = Figure(figsize=(3.6 * max(1, len(sizes)), 6.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, max(1, len(sizes)), squeeze=False)
    for column, size in enumerate(sizes):
        for model in result["models"]:
            rows = [
                r
                for r in result["rows"]
                if r["m"] == size and r["model"] == model and r["kind"] == "all" and r["count"]
            ]
            budgets = [r["N"] for r in rows]
            errors = [np.nan if r["mean_abs_error"] is None else r["mean_abs_error"] for r in rows]
            coverage = [np.nan if r["coverage"] is None else r["coverage"] for r in rows]
            axes[0, column].plot(budgets, errors, marker="o", ms=2, label=model)
            axes[1, column].plot(budgets, coverage, marker="o", ms=2, label=model)
        axes[0, column].axvline(size, color="gray", ls=":", lw=1)
        axes[1, column].axvline(size, color="gray", ls=":", lw=1)
        axes[1, column].axhline(result["band"], color="k", ls="--", lw=1)
        axes[0, column].set(xscale="log", title=f"m = {size}", ylabel="mean abs error (SD)")
        axes[1, column].set(xscale="log", xlabel="budget N", ylabel="band coverage", ylim=(0, 1.02))
    axes[0, -1].legend(fontsize=6)
    figure.suptitle(f"Best-of-N prediction: {result['name']} (dotted line: N = m)")
    return figure


# Search.


def _summary_row(result, algorithm, budget):
    for row in result["summary"]:
        if row["algorithm"] == algorithm and row["budget"] == budget:
            return row
    return None


def search_table(result, groups, extra_labels=()) -> str:
    """Return the summary rows of the given run groups, and of ``extra_labels``, as a table."""
    group_of = {run["label"]: run["group"] for run in result["runs"]}
    gains = {(g["algorithm"], g["budget"], g["metric"]): g for g in result["gains"]}
    header = (
        "| algorithm | N | best reward | RM@1 | pass@N | gain in best reward over BoN "
        "| wins | gain in RM@1 | root kept |"
    )
    lines = [header, "|" + "---|" * 9]
    for row in result["summary"]:
        if group_of.get(row["algorithm"]) not in groups and row["algorithm"] not in extra_labels:
            continue
        gain = gains.get((row["algorithm"], row["budget"], "best_reward"))
        rm_gain = gains.get((row["algorithm"], row["budget"], "rm_at_1"))
        cells = [
            row["algorithm"],
            str(row["budget"]),
            _interval(row["best_reward"], row["best_reward_low"], row["best_reward_high"]),
            _interval(row["rm_at_1"], row["rm_at_1_low"], row["rm_at_1_high"], ".2f"),
            _interval(row["pass_at_n"], row["pass_at_n_low"], row["pass_at_n_high"], ".2f"),
            "-"
            if gain is None
            else _interval(gain["difference"], gain["difference_low"], gain["difference_high"]),
            "-" if gain is None else f"{gain['wins']:.2f}",
            "-"
            if rm_gain is None
            else _interval(
                rm_gain["difference"], rm_gain["difference_low"], rm_gain["difference_high"], ".2f"
            ),
            _fmt(row.get("chose_root"), ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline_table(result, metric="best_reward") -> str:
    """Return the paired gain over best-of-N of each main algorithm, one column per budget.

    A dash marks a budget where the algorithm could not run.
    """
    group_of = {run["label"]: run["group"] for run in result["runs"]}
    gains = {(g["algorithm"], g["budget"]): g for g in result["gains"] if g["metric"] == metric}
    budgets = sorted({row["budget"] for row in result["summary"]})
    algorithms = sorted(
        {label for label, group in group_of.items() if group == "main" and label != "best_of_n"}
    )
    lines = [
        "| algorithm | " + " | ".join(f"N = {budget}" for budget in budgets) + " |",
        "|" + "---|" * (len(budgets) + 1),
    ]
    for algorithm in algorithms:
        cells = [algorithm]
        for budget in budgets:
            gain = gains.get((algorithm, budget))
            cells.append(
                "-"
                if gain is None
                else _interval(gain["difference"], gain["difference_low"], gain["difference_high"])
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gain_verdicts(result, metric="best_reward") -> dict[str, dict[str, list[int]]]:
    """Classify each algorithm's gain per budget: win, loss or no detectable difference."""
    out = {}
    for gain in result["gains"]:
        if gain["metric"] != metric or gain["difference_low"] is None:
            continue
        if gain["difference_low"] > 0:
            verdict = "win"
        elif gain["difference_high"] < 0:
            verdict = "loss"
        else:
            verdict = "tie"
        out.setdefault(gain["algorithm"], {"win": [], "tie": [], "loss": []})[verdict].append(
            gain["budget"]
        )
    return out


def search_findings(result, metric="best_reward") -> list[str]:
    """Return sentences on where SLG and the other algorithms beat best-of-N or not."""
    verdicts = gain_verdicts(result, metric)
    lines = []
    for algorithm in sorted(verdicts):
        parts = []
        names = {"win": "beats", "tie": "is not distinguishable from", "loss": "loses to"}
        for verdict in ("win", "tie", "loss"):
            budgets = verdicts[algorithm][verdict]
            if budgets:
                parts.append(
                    f"{names[verdict]} best-of-N at N = {_plain_list(str(b) for b in budgets)}"
                )
        lines.append(f"- {algorithm} {'; '.join(parts)}.")
    two_stage = [a for a in verdicts if a.split("[")[0] in TWO_STAGE and verdicts[a]["win"]]
    if verdicts and not two_stage:
        lines.append(
            f"- No form of two-stage SLG beats best-of-N in {METRIC_NAMES[metric]} at any budget "
            "(95% interval of the paired gain above zero)."
        )
    return lines


def interval_check(result) -> list[str]:
    """Report the oracle's gain where it kept the root in every search.

    There the oracle spends its whole budget on the prompt, as best-of-N does,
    only with other random draws, so its true gain is zero. An interval that
    excludes zero there shows how far intervals over this few problems can be
    trusted.
    """
    lines = []
    gains = {
        (g["algorithm"], g["budget"]): g for g in result["gains"] if g["metric"] == "best_reward"
    }
    for row in result["summary"]:
        if row["algorithm"] != "oracle" or row.get("chose_root") != 1.0:
            continue
        gain = gains.get(("oracle", row["budget"]))
        if gain is None or gain["difference_low"] is None:
            continue
        excludes = gain["difference_low"] > 0 or gain["difference_high"] < 0
        lines.append(
            f"- At N = {row['budget']} the oracle kept the root in every search, so it is "
            f"best-of-N with other draws and its true gain is zero; its interval "
            f"[{gain['difference_low']:.3f}, {gain['difference_high']:.3f}] "
            + (
                "excludes zero, so intervals over this few problems are too narrow."
                if excludes
                else "contains zero."
            )
        )
    return lines


def skipped_lines(result) -> list[str]:
    """Group the runs that could not run by reason, then by algorithm."""
    by_reason = {}
    for skip in result["skipped"]:
        reason = skip["reason"].rstrip(".")
        # Pool-exhaustion messages name one state and its counts; one line covers them all.
        if skip["error"] == "PoolExhaustedError":
            reason = "a state's pool is smaller than the rollouts the algorithm requests from it"
        budgets = by_reason.setdefault(reason, {}).setdefault(skip["algorithm"], [])
        budgets.append(str(skip["budget"]))
    lines = []
    for reason, algorithms in by_reason.items():
        cells = [f"{name} (N = {', '.join(budgets)})" for name, budgets in algorithms.items()]
        lines.append(f"- {reason}: {'; '.join(cells)}.")
    return lines


def search_figure(result) -> Figure:
    """Draw the gain in best reward over best-of-N against ``N`` for the main runs."""
    group_of = {run["label"]: run["group"] for run in result["runs"]}
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()

    algorithms = sorted(
        {g["algorithm"] for g in result["gains"] if group_of.get(g["algorithm"]) == "main"}
    )
    for offset, algorithm in enumerate(algorithms):
        rows = sorted(
            (
                g
                for g in result["gains"]
                if g["algorithm"] == algorithm and g["metric"] == "best_reward"
            ),
            key=lambda g: g["budget"],
        )
        if not rows:
            continue

        # Budgets are shifted a little per algorithm so that intervals do not overlap.
        budgets = np.array([g["budget"] for g in rows], float) * (1 + 0.02 * offset)
        mean = np.array([g["difference"] for g in rows])
        low = np.array(
            [g["difference_low"] if g["difference_low"] is not None else np.nan for g in rows]
        )
        high = np.array(
            [g["difference_high"] if g["difference_high"] is not None else np.nan for g in rows]
        )
        error = np.abs(np.stack([mean - low, high - mean]))
        axis.errorbar(budgets, mean, yerr=error, marker="o", ms=3, capsize=2, label=algorithm)

    axis.axhline(0.0, color="gray", lw=0.8)
    axis.set(xscale="log", xlabel="budget N", ylabel="best reward minus best-of-N")
    axis.set_title(f"Gain over best-of-N (95% interval): {result['name']}")
    axis.legend(fontsize=6)
    return figure


def synthetic_table(rows) -> str:
    """Return the synthetic check as a Markdown table."""
    lines = [
        "| t | N | K | m | algorithm | replay gain | simulator gain | replay | simulator |",
        "|" + "---|" * 9,
    ]
    for row in rows:
        cells = [
            f"{row['t']:g}",
            str(row["N"]),
            str(row["K"]),
            str(row["m"]),
            row["algorithm"],
            f"{row['replay_gain']:+.3f} ± {row['replay_gain_se']:.3f}",
            f"{row['simulator_gain']:+.3f} ± {row['simulator_gain_se']:.3f}",
            row["replay_verdict"],
            row["simulator_verdict"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The summary at the top of the page.


def _mean_error_ranking(result, size):
    """Return ``{model: mean absolute error}`` averaged over the budgets ``N > m``."""
    errors = {}
    for model in result["models"]:
        values = [
            r["mean_abs_error"]
            for r in result["rows"]
            if r["model"] == model
            and r["m"] == size
            and r["N"] > size
            and r["kind"] == "all"
            and r["count"]
        ]
        if values and None not in values:
            errors[model] = float(np.mean(values))
    return errors


def children_table(result) -> str:
    """Return the comparison of children's and roots' full-pool ``V_N`` as a table."""
    lines = [
        "| N | problems | children above their root | problems whose best child is above "
        "the root | mean child minus root (root SD) |",
        "|" + "---|" * 5,
    ]
    for row in result.get("children_against_root", []):
        lines.append(
            f"| {row['N']} | {row['problems']} | {row['child_above_root_share']:.2f} "
            f"| {row['best_child_above_root_share']:.2f} | {row['mean_child_minus_root']:+.2f} |"
        )
    return "\n".join(lines)


def _children_line(result) -> str | None:
    rows = result.get("children_against_root", [])
    if not rows:
        return None
    parts = [
        f"At N = {row['N']}, {row['child_above_root_share']:.0%} of the children have a higher "
        f"V_N than their root, and a child's V_N differs from the root's by "
        f"{row['mean_child_minus_root']:+.2f} root SD on average."
        for row in (rows[0], rows[-1])
    ]
    unique = list(dict.fromkeys(parts))
    return f"- Pools ({result['name']}): {' '.join(unique)}"


def summary_lines(predictions, searches) -> list[str]:
    """Return the page's opening bullets: the pools, the best predictor and the best search."""
    lines = [line for line in map(_children_line, predictions) if line]
    for result in predictions:
        overall, tail_best = {}, {}
        for size in result["sizes"]:
            errors = _mean_error_ranking(result, size)
            tail = {m: e for m, e in errors.items() if m != BASELINE_MODEL}
            if errors:
                overall.setdefault(min(errors, key=errors.get), []).append(str(size))
            if tail:
                tail_best.setdefault(min(tail, key=tail.get), []).append(str(size))
        if overall:
            best = [f"{model} at m = {_plain_list(sizes)}" for model, sizes in overall.items()]
            tails = [f"{model} at m = {_plain_list(sizes)}" for model, sizes in tail_best.items()]
            lines.append(
                f"- Prediction ({result['name']}): averaged over the budgets N > m, the "
                f"smallest mean absolute error is {_plain_list(best)} "
                f"({BASELINE_MODEL} is the naive baseline); among the tail models it is "
                f"{_plain_list(tails)}."
            )
    for result in searches:
        if "summary" not in result:
            continue
        verdicts = gain_verdicts(result)
        winners = sorted(a for a, v in verdicts.items() if v["win"] and a != "oracle")
        losers = sorted(a for a, v in verdicts.items() if v["loss"] and not v["win"])
        oracle = [
            g["difference"]
            for g in result["gains"]
            if g["algorithm"] == "oracle" and g["metric"] == "best_reward"
        ]
        lines.append(
            f"- Search ({result['name']}): "
            + (
                f"{_plain_list(winners)} beat best-of-N in best reward at some budget"
                if winners
                else "apart from the oracle, no algorithm beats best-of-N in best reward at "
                "any budget"
            )
            + (
                f"; {len(losers)} of {len(verdicts)} runs lose to it at some budget"
                if losers
                else ""
            )
            + "."
        )
        if oracle:
            lines.append(
                f"- Search ({result['name']}): the oracle, which spends the budget on the "
                "state of best whole-pool V_N in hindsight, gains at most "
                f"{max(oracle):.3f} in best reward over best-of-N at any budget."
            )
    return lines


# The page.


def _save_figure(figure, path):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    write_atomic(path, lambda stream: stream.write(buffer.getvalue()), binary=True)


def _relative(path, start):
    return os.path.relpath(path, start).replace(os.sep, "/")


def build_page(predictions, searches, *, plots_dir, page_dir) -> str:
    """Return the Markdown of the results page and write its figures."""
    text = [
        "# Results: tail prediction and search on recorded reward pools",
        "",
        "Generated by `python experiments/make_results.py` from the JSON files named below; "
        "do not edit by hand. Each section gives the command that regenerates its numbers. "
        "Intervals are 95% percentile bootstrap intervals over problems; errors of the "
        "tail models are in units of each state's reward standard deviation (SD).",
        "",
        "The pools are recorded rollouts of SmolLM2-135M-Instruct, the embedded default "
        "policy; the data card `experiments/data/pools/README.md` gives the problems, the "
        "generation settings and the scorer. They describe one small model on one easy "
        "task, not test-time scaling in general.",
        "",
        "## Summary",
        "",
        *summary_lines(predictions, searches),
        "",
    ]
    for result in predictions:
        name = result["name"]
        child_budget, top_budget = headline_budgets(result)
        text += [
            f"## Best-of-N prediction: {name}",
            "",
            f"Command: `{result['command']}` (the fits took "
            f"{sum(result['seconds'].values()):.0f} s on 2 shared CPU cores), which writes "
            f"`{result['_path']}`. "
            f"{result['num_problems']} problems; pool sizes: root {result['pool_sizes']['root']}, "
            f"children {result['pool_sizes']['child']}. "
            f"States without spread (left out): {result['states']['zero_spread_root']} of "
            f"{result['states']['root']} roots, {result['states']['zero_spread_child']} of "
            f"{result['states']['child']} children. R = {result['replicates']} subsamples "
            f"of m rewards per state; {result['band']:.0%} bands "
            f"({result['num_resamples']} bootstrap replicates for the frequentist models). "
            f"N = {child_budget} is the largest budget with child states, N = {top_budget} "
            "the largest of all (roots only). Spearman is the rank correlation of predicted "
            "and true V_N across the children of a problem.",
            "",
            prediction_table(result),
            "",
            "The recorded states against their root: the full-pool V_N of each child "
            "compared with the root's. Spending the budget on one child beats best-of-N from "
            "the prompt only where that child's V_N is above the root's.",
            "",
            children_table(result),
            "",
            "Which model predicts best (errors in SD, from the JSON file):",
            "",
            *best_model_lines(result),
            "",
            "Where the tail models fail (from the numbers above and in the JSON file):",
            "",
            *(prediction_findings(result) or ["- no model fails by these criteria."]),
            "",
            "Status flags of the fits (`slgjax.tail.Status`), where a fit used a fallback "
            "or met an edge case:",
            "",
            *(flag_lines(result) or ["- no fit carries a flag."]),
            "",
        ]
        for skip in result.get("skipped", []):
            text.append(f"- m = {skip['m']} was not run: {skip['reason']}.")
        if plots_dir is not None:
            figure_path = plots_dir / f"prediction_{name}.png"
            _save_figure(prediction_figure(result), figure_path)
            text += ["", f"![prediction error, {name}]({_relative(figure_path, page_dir)})", ""]

    for result in searches:
        name = result["name"]
        if "summary" in result:
            groups = sorted({run["group"] for run in result["runs"]})
            text += [
                f"## Search on replayed pools: {name}",
                "",
                f"Command: `{result['command']}` ({result['total_seconds']:.0f} s on 2 shared CPU "
                f"cores), which writes `{result['_path']}`. "
                f"{result['num_problems']} problems, R = {result['replications']} replications "
                f"each. First-step prefixes recorded: {'yes' if result['has_prefixes'] else 'no'}. "
                "`root kept` is the share of searches in which the prompt itself kept the "
                "budget. The oracle chooses in hindsight by the whole pools.",
                "",
            ]
            titles = {
                "main": "Every algorithm",
                "selection": (
                    "Ablation: prefix selection and root fallback (paper sizes, root estimated)"
                ),
                "rule": "Ablation: exact E_N against the quantile rule",
                "value": "Ablation: the tail model behind the state value",
            }
            if "main" in groups:
                text += [
                    "### Gain in best reward over best-of-N",
                    "",
                    "The paired difference to best-of-N in best reward, with its 95% interval; "
                    "the tables below give the rewards themselves, RM@1 and pass@N.",
                    "",
                    headline_table(result),
                    "",
                ]
            for group in ("main", "selection", "rule", "value"):
                if group in groups:
                    # The quantile rule is shown beside the exact-E_N runs it replaces.
                    extra = TWO_STAGE if group == "rule" else ()
                    text += [
                        f"### {titles[group]}",
                        "",
                        search_table(result, {group}, extra),
                        "",
                    ]
            text += ["Against best-of-N in best reward (from the paired intervals above):", ""]
            text += search_findings(result) + [""]
            checks = interval_check(result)
            if checks:
                text += ["A check of the intervals:", "", *checks, ""]
            rm_lines = search_findings(result, "rm_at_1")
            if rm_lines:
                text += ["Against best-of-N in RM@1:", "", *rm_lines, ""]
            if result["skipped"]:
                text += ["Runs that could not run, by reason:", "", *skipped_lines(result), ""]
            if plots_dir is not None and result["gains"]:
                figure_path = plots_dir / f"search_{name}.png"
                _save_figure(search_figure(result), figure_path)
                text += [f"![gain over best-of-N, {name}]({_relative(figure_path, page_dir)})", ""]
        if "synthetic" in result:
            rows = result["synthetic"]
            settings = result["synthetic_settings"]
            agree = sum(row["replay_verdict"] == row["simulator_verdict"] for row in rows)
            text += [
                "## Synthetic check of the replay",
                "",
                f"Command: `{result['command']}`. Pools from the two-level Gaussian model "
                f"(state means N(0, 1), rewards N(mean, t^2)), {settings['prompts']} prompts "
                f"with {settings['replications']} replications each, against "
                "`experiments/theory_check.py`'s vectorized simulator with "
                f"{settings['simulator_replications']} replications. Gains are in reward units, "
                "± one standard error; a verdict is a win or loss beyond 2 standard errors. "
                f"The verdicts agree in {agree} of {len(rows)} cells.",
                "",
                synthetic_table(rows),
                "",
            ]
    return "\n".join(text).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--inputs",
        type=pathlib.Path,
        default=pathlib.Path("experiments/results"),
        help="folder of prediction_*.json and search_*.json files",
    )
    parser.add_argument(
        "--output", type=pathlib.Path, default=pathlib.Path("docs/RESULTS.md"), help="the page"
    )
    parser.add_argument(
        "--plots",
        type=pathlib.Path,
        default=pathlib.Path("docs/results"),
        help="folder of the figures",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    predictions = load(args.inputs.glob("prediction_*.json"))
    searches = load(args.inputs.glob("search_*.json"))
    if not predictions and not searches:
        parser.error(f"{args.inputs} holds no prediction_*.json or search_*.json file.")
    args.plots.mkdir(parents=True, exist_ok=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    page = build_page(
        predictions, searches, plots_dir=args.plots, page_dir=args.output.resolve().parent
    )
    write_atomic(args.output, lambda stream: stream.write(page))
    LOG.info("wrote %s from %d files", args.output, len(predictions) + len(searches))
    return page


if __name__ == "__main__":
    main()
