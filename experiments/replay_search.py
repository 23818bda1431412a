"""Run every search algorithm of slgjax on recorded reward pools and compare it with best-of-N.

The pools (a replay file, :mod:`slgjax.envs.replay_io`, usually rescored by
``experiments/rescore_pools.py``) become a replay environment. Each algorithm
of :mod:`slgjax.search` runs at each budget ``N`` (16, 32, 64, 128, 256 by
default) on every problem, ``R`` times: replication ``r`` resets the
environment and uses the key ``fold_in(key(seed), r)``, the same for every
algorithm, so algorithms are compared on the same random draws where they
make the same calls.

Per problem the replications are averaged first; then
:func:`slgjax.summary.summarize` gives the mean over problems with a 95%
percentile bootstrap interval over problems of

- ``best_reward``: the largest reward seen, estimation rollouts included;
- ``rm_at_1``: whether the response of largest reward is correct;
- ``pass_at_n``: whether any response drawn is correct;
- ``rollouts`` and ``tokens`` spent (tokens only with a token file beside the pools);

and :func:`slgjax.summary.compare_to_baseline` gives the paired gain over
best-of-N with its interval. An algorithm that cannot run at a budget
(a pool too small for its allocation, a budget rule, missing prefixes) is
recorded with the error instead of stopping the run.

Runs, each labelled in the outputs:

- ``main``: ``best_of_n``, ``slg_paper``, ``slg_reference``, ``slg_tree``,
  ``slg_tree_ucb`` (default sizes, and ``m = 8`` so that small budgets can
  afford an expansion), ``uniform_split``, ``successive_halving``,
  ``extreme_bandit`` and ``oracle``. The replay's oracle values a state by the
  unbiased best-of-N estimate of its whole pool (:func:`empirical_best_of_n`),
  so it chooses in hindsight, and it can only choose states whose pool holds
  ``N`` rollouts.
- ``selection``: the reference form's two mechanisms switched on and off at the
  same sizes and cost: states from the prefixes of the best root rollouts or
  from ``expand``, and the root competing for the remaining budget or not.
  Sizes are the paper rule's, clipped to leave room for the root's ``m``
  rollouts (the reference rule leaves nothing to exploit at ``N <= 32``).
  The runs are ``slg_reference`` with its ``select_prefixes`` and
  ``root_fallback`` switches.
- ``rule``: the Gaussian value with the exact ``E_N`` against the quantile rule
  ``Phi^-1(1 - 1/N)`` of the authors' code, in both two-stage forms.
- ``value``: every state value of :mod:`slgjax.search.values` in both forms.

``--synthetic`` adds a check of the replay machinery: pools drawn from the
two-level Gaussian model of :mod:`slgjax.envs.simulated` (state means
``N(0, 1)``, rewards ``N(mean, t^2)``), one pool per root rollout's prefix, run
through the same replay and algorithms at the paper's sizes, and compared with
the sign of the gain over best-of-N that ``experiments/theory_check.py``
finds with its vectorized simulator for the same ``(t, N)``.

Outputs under ``--out`` (default ``experiments/results``, where the results
behind docs/RESULTS.md are committed), each written atomically:
``search_<name>.json`` (every number) and ``search_<name>.md``.

Run from the repository root::

    python experiments/replay_search.py \\
        --pools experiments/data/pools/chain_sum_3002.head.jsonl --synthetic
"""

import argparse
import gzip
import importlib.util
import json
import logging
import math
import pathlib
import sys
import time

import jax
import numpy as np

from slgjax.envs.replay import PoolExhaustedError, ReplayEnvironment, RewardPool
from slgjax.envs.replay_io import read_replay_jsonl
from slgjax.envs.simulated import GaussianFamily
from slgjax.io import write_atomic
from slgjax.sample_pools import metadata_path, read_pool_metadata
from slgjax.scaling import empirical_best_of_n
from slgjax.search import ROOT, VALUE_NAMES, paper_allocation, resolve_allocation, run_search
from slgjax.summary import compare_to_baseline, summarize

LOG = logging.getLogger("replay_search")

DEFAULT_BUDGETS = (16, 32, 64, 128, 256)
METRICS = ("best_reward", "rm_at_1", "pass_at_n", "rollouts", "tokens")
GAIN_METRICS = ("best_reward", "rm_at_1", "pass_at_n")
BASELINE = "best_of_n"
# (t, N) cells of the synthetic check; theory_check.py finds SLG's paper form
# losing to best-of-N and the reference form winning in all three.
SYNTHETIC_CELLS = ((0.5, 100), (1.0, 100), (2.0, 100))
SYNTHETIC_ALGORITHMS = ("slg_paper", "slg_reference", "uniform_split")
THEORY_CHECK = pathlib.Path(__file__).resolve().parent / "theory_check.py"


class EvidenceReplay(ReplayEnvironment):
    """A replay environment that also tracks correctness and tokens and values states.

    Besides :class:`~slgjax.envs.replay.ReplayEnvironment`, it

    - records, per prompt since the last reset, whether any drawn response was
      correct and how many tokens the drawn responses have;
    - defines ``true_value(state, N)``: the unbiased best-of-N estimate of the
      state's whole pool, ``-inf`` where ``N`` exceeds the pool, for the
      hindsight oracle;
    - sets ``max_depth`` to the depth of the recorded tree, so the tree
      searches never expand a state without recorded children.

    Args:
      pools, roots, children: as for the replay environment; responses are
        replaced by pool indices, which index ``tokens``.
      tokens: optional ``{state: [token count per recorded response]}``.
      budgets: the budgets ``true_value`` is asked for.
    """

    def __init__(self, pools, *, roots, children=None, tokens=None, budgets=()):
        pools = {
            state: RewardPool(pool.rewards, correct=pool.correct, prefixes=pool.prefixes)
            for state, pool in pools.items()
        }
        self._prompt_of = {}
        for index, root in enumerate(roots):
            stack = [root]
            while stack:
                state = stack.pop()
                self._prompt_of[state] = index
                stack.extend((children or {}).get(state, []))
        for state, pool in pools.items():
            for prefix in pool.prefixes if pool.prefixes is not None else ():
                if prefix is not None and state in self._prompt_of:
                    self._prompt_of.setdefault(prefix, self._prompt_of[state])
        self.tokens = tokens
        super().__init__(pools, roots=roots, children=children)
        self.max_depth = self._depth(roots)
        self._values = self._pool_values(sorted({int(n) for n in budgets}))

    def _depth(self, roots):
        depth, frontier = 0, list(roots)
        while True:
            frontier = [kid for state in frontier for kid in self.children.get(state, [])]
            if not frontier:
                return depth
            depth += 1

    def _pool_values(self, budgets):
        if not budgets:
            return {}
        states = list(self.pools)
        size = max(self.pools[state].size for state in states)
        rewards = np.zeros((len(states), size))
        mask = np.zeros((len(states), size), bool)
        for row, state in enumerate(states):
            values = self.pools[state].rewards
            mask[row, : values.size] = np.isfinite(values)
            rewards[row, : values.size] = np.where(mask[row, : values.size], values, 0.0)
        table = np.asarray(empirical_best_of_n(rewards, mask, n=budgets, strict=False))
        table = np.where(np.isnan(table), -np.inf, table)
        return {
            (state, budget): float(table[row, column])
            for row, state in enumerate(states)
            for column, budget in enumerate(budgets)
        }

    def reset(self):
        super().reset()
        self.any_correct = {}
        self.num_tokens = {}

    def true_value(self, state, budget) -> float:
        """Unbiased best-of-N estimate of the state's whole pool; ``-inf`` when ``N > n``."""
        key = (state, int(budget))
        if key not in self._values:
            raise ValueError(
                f"true_value of budget {budget} was not precomputed; pass it in budgets=."
            )
        return self._values[key]

    def rollout(self, key, states, num):
        batch = super().rollout(key, states, num)
        for row, state in enumerate(states):
            prompt = self._prompt_of.get(state)
            if batch.correct is not None and batch.correct[row] is not None:
                flags = [bool(flag) for flag in batch.correct[row] if flag is not None]
                if flags:
                    self.any_correct[prompt] = self.any_correct.get(prompt, False) or any(flags)
            if self.tokens is not None and state in self.tokens:
                counts = self.tokens[state]
                spent = sum(int(counts[int(i)]) for i in batch.responses[row])
                self.num_tokens[prompt] = self.num_tokens.get(prompt, 0) + spent
        return batch


def load_environment(path, *, budgets) -> tuple[EvidenceReplay, list[str]]:
    """Read a pool file (and its token file, if any) into an :class:`EvidenceReplay`."""
    path = pathlib.Path(path)
    env = read_replay_jsonl(path)
    tokens = None
    token_file = path.with_name(path.name + ".tokens.json.gz")
    if token_file.is_file():
        with gzip.open(token_file, "rt", encoding="utf-8") as handle:
            tokens = json.load(handle)["tokens"]
    problem_ids = list(env.roots)
    if metadata_path(path).is_file():
        by_root = {
            record["states"][0]["state"]: record["problem_id"]
            for record in read_pool_metadata(path)
        }
        problem_ids = [by_root.get(root, root) for root in env.roots]
    replay = EvidenceReplay(
        env.pools, roots=env.roots, children=env.children, tokens=tokens, budgets=budgets
    )
    return replay, problem_ids


def pool_fitted_sizes(env, budget) -> dict:
    """Return the paper rule's ``m`` and the smallest ``K >=`` the rule's that fits the pools.

    The chosen state receives ``m + N - K m`` rollouts, so with child pools of
    ``n`` rollouts ``K`` must satisfy ``m + N - K m <= n``; ``K`` is raised from
    the paper rule's value until it does.

    Raises:
      ValueError: when no ``K`` up to the number of recorded children fits.
    """
    allocation = paper_allocation(budget)
    samples = allocation.samples_per_state
    kids = [env.children.get(root, []) for root in env.roots]
    most_states = min(len(group) for group in kids)
    smallest = min((env.pools[kid].size for group in kids for kid in group), default=0)
    for num_states in range(allocation.num_states, most_states + 1):
        if num_states * samples <= budget and budget - (num_states - 1) * samples <= smallest:
            return {"num_states": num_states, "samples_per_state": samples}
    raise ValueError(
        f"no K <= {most_states} recorded children with m = {samples} leaves the chosen state "
        f"at most {smallest} rollouts at N = {budget}; record larger child pools."
    )


def check_paper_form_fits(env, algorithm, budget, hyperparameters):
    """Raise before any rollout when a paper-form run must exhaust a child pool.

    ``slg_paper`` and ``extreme_bandit`` spend ``m + N - K m`` rollouts on the
    chosen child, so a child pool smaller than that always runs out; checking
    first saves the decisions made before the exploitation fails.

    Raises:
      PoolExhaustedError: when the smallest recorded child pool is too small.
    """
    if algorithm not in ("slg_paper", "extreme_bandit"):
        return
    allocation = resolve_allocation(
        budget,
        num_states=hyperparameters.get("num_states"),
        samples_per_state=hyperparameters.get("samples_per_state"),
        rule=hyperparameters.get("rule", "paper"),
    )
    needed = allocation.samples_per_state + allocation.exploitation
    kids = [kid for root in env.roots for kid in env.children.get(root, [])]
    smallest = min((env.pools[kid].size for kid in kids), default=0)
    if needed > smallest:
        raise PoolExhaustedError(
            f"{algorithm} at N = {budget} with K = {allocation.num_states}, "
            f"m = {allocation.samples_per_state} spends {needed} rollouts on the chosen state, "
            f"but the smallest recorded child pool has {smallest}."
        )


def _run(label, group, algorithm, **hyperparameters):
    return {
        "label": label,
        "group": group,
        "algorithm": algorithm,
        "hyperparameters": hyperparameters,
    }


def default_runs(values=VALUE_NAMES) -> list[dict]:
    """Return the runs of the main comparison and the ablations."""
    runs = [
        _run("best_of_n", "main", "best_of_n"),
        _run("slg_paper", "main", "slg_paper"),
        {**_run("slg_paper[K fits pools]", "main", "slg_paper"), "sizes": pool_fitted_sizes},
        _run("slg_reference", "main", "slg_reference"),
        _run("slg_tree", "main", "slg_tree"),
        _run("slg_tree[m=8]", "main", "slg_tree", samples_per_state=8),
        _run("slg_tree_ucb", "main", "slg_tree_ucb"),
        _run("slg_tree_ucb[m=8]", "main", "slg_tree_ucb", samples_per_state=8),
        _run("uniform_split", "main", "uniform_split"),
        _run("successive_halving", "main", "successive_halving"),
        _run("extreme_bandit", "main", "extreme_bandit"),
        _run("oracle", "main", "oracle"),
    ]
    for prefixes in (True, False):
        for fallback in (True, False):
            switches = f"prefixes={'on' if prefixes else 'off'},root={'on' if fallback else 'off'}"
            label = f"ablation[{switches}]"
            runs.append(
                _run(
                    label,
                    "selection",
                    "slg_reference",
                    select_prefixes=prefixes,
                    root_fallback=fallback,
                    rule="paper",
                )
            )
    for form in ("slg_paper", "slg_reference"):
        runs.append(
            _run(f"{form}[value=gaussian_quantile]", "rule", form, value="gaussian_quantile")
        )
        for value in values:
            if value not in ("gaussian", "gaussian_quantile"):
                runs.append(_run(f"{form}[value={value}]", "value", form, value=value))
    return runs


def _replication_metrics(env, results, prompts):
    out = []
    for prompt, result in zip(prompts, results, strict=True):
        # None where the root never competed for the budget.
        choices = [
            step.chosen == ROOT
            for step in result.trace
            if step.phase == "select" and step.root_value is not None
        ]
        chose_root = float(any(choices)) if choices else None
        expansions = sum(step.phase == "tree_select" for step in result.trace)
        out.append(
            {
                "best_reward": float(result.best_reward),
                "rm_at_1": None if result.best_correct is None else float(result.best_correct),
                "pass_at_n": (
                    float(env.any_correct[prompt]) if prompt in env.any_correct else None
                ),
                "rollouts": float(result.rollouts_spent),
                "tokens": (float(env.num_tokens[prompt]) if prompt in env.num_tokens else None),
                "chose_root": chose_root,
                "tree_expansions": float(expansions),
            }
        )
    return out


def _average(rows):
    keys = rows[0].keys()
    out = {}
    for key in keys:
        values = [row[key] for row in rows if row[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def run_cell(env, run, *, budget, prompts, problem_ids, key, replications):
    """Run one algorithm at one budget.

    Returns:
      ``(records, hyperparameters)``: one record per problem, and the
      hyperparameters the algorithm ran with (per-budget sizes included).

    Raises:
      PoolExhaustedError, ValueError, TypeError: when the algorithm cannot run.
    """
    hyperparameters = dict(run["hyperparameters"])
    if "sizes" in run:
        hyperparameters.update(run["sizes"](env, budget))
    check_paper_form_fits(env, run["algorithm"], budget, hyperparameters)
    per_problem = [[] for _ in prompts]
    for replication in range(replications):
        env.reset()
        results = run_search(
            run["algorithm"],
            env,
            key=jax.random.fold_in(key, replication),
            budget=budget,
            prompts=prompts,
            **hyperparameters,
        )
        for index, metrics in enumerate(_replication_metrics(env, results, prompts)):
            per_problem[index].append(metrics)
    records = [
        {
            "algorithm": run["label"],
            "budget": budget,
            "problem_id": problem_ids[p],
            **_average(rows),
        }
        for p, rows in zip(prompts, per_problem, strict=True)
    ]
    return records, hyperparameters


def run_all(env, runs, *, budgets, problem_ids, key, replications):
    """Run every run at every budget; return ``(records, skipped, timings)``."""
    prompts = list(range(len(env.roots)))
    records, skipped, timings = [], [], []
    for run in runs:
        for budget in budgets:
            started = time.perf_counter()
            try:
                cell, hyperparameters = run_cell(
                    env,
                    run,
                    budget=budget,
                    prompts=prompts,
                    problem_ids=problem_ids,
                    key=key,
                    replications=replications,
                )
            except (PoolExhaustedError, ValueError, TypeError) as error:
                skipped.append(
                    {
                        "algorithm": run["label"],
                        "group": run["group"],
                        "budget": budget,
                        "error": type(error).__name__,
                        "reason": str(error),
                    }
                )
                LOG.info("%s N=%d cannot run: %s", run["label"], budget, error)
                continue
            for record in cell:
                record["group"] = run["group"]
            records.extend(cell)
            seconds = time.perf_counter() - started
            timings.append(
                {
                    "algorithm": run["label"],
                    "budget": budget,
                    "seconds": round(seconds, 2),
                    "hyperparameters": {
                        name: value
                        for name, value in hyperparameters.items()
                        if isinstance(value, int | float | str | bool)
                    },
                }
            )
            LOG.info("%s N=%d: %.1f s", run["label"], budget, seconds)
    return records, skipped, timings


def summarize_records(records, *, key):
    """Return ``(summary rows, gain rows)``; gains are paired differences to best-of-N."""
    summary_key, gain_key = jax.random.split(key)
    rows = summarize(records, key=summary_key, metrics=METRICS + ("chose_root", "tree_expansions"))
    gains = []
    if any(record["algorithm"] == BASELINE for record in records):
        for metric in GAIN_METRICS:
            if all(record.get(metric) is None for record in records):
                continue
            for row in compare_to_baseline(records, baseline=BASELINE, key=gain_key, metric=metric):
                gains.append({"metric": metric, **row})
    return rows, gains


# The synthetic check.


def synthetic_environment(key, *, t: float, budget: int, num_prompts: int) -> EvidenceReplay:
    """Draw replay pools from the two-level Gaussian model with ``sigma0 = 1``, ``sigma1 = t``.

    Each prompt has a root pool of ``N`` rollouts. Rollout ``j`` passes through
    its own state ``theta_j ~ N(0, 1)``, and that state's pool of ``N``
    rollouts is recorded as the rollout's prefix state and as a child of the root.
    """
    family = GaussianFamily(mu0=0.0, sigma0=1.0, sigma1=float(t))
    state_key, root_key, child_key = jax.random.split(key, 3)
    theta = family.sample_states(state_key, (num_prompts, budget))
    root = np.asarray(family.sample(root_key, theta, (num_prompts, budget)), np.float64)
    child = np.asarray(
        family.sample(child_key, theta[..., None], (num_prompts, budget, budget)), np.float64
    )
    pools, roots, children = {}, [], {}
    for b in range(num_prompts):
        root_id = f"p{b}"
        kids = [f"p{b}/s{j}" for j in range(budget)]
        pools[root_id] = RewardPool(root[b], prefixes=kids)
        for j, kid in enumerate(kids):
            pools[kid] = RewardPool(child[b, j])
        roots.append(root_id)
        children[root_id] = kids
    return EvidenceReplay(pools, roots=roots, children=children)


def _load_theory_check():
    spec = importlib.util.spec_from_file_location("theory_check", THEORY_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _verdict(difference, error):
    if difference > 2.0 * error:
        return "win"
    if difference < -2.0 * error:
        return "loss"
    return "tie"


def synthetic_check(key, *, cells, num_prompts, replications, simulator_replications):
    """Run the replay on two-level Gaussian pools and compare signs with the simulator.

    For each ``(t, N)``, every algorithm uses the paper rule's sizes
    ``m = round((ln N)^3 / 5)`` and ``K = round(N / 2m)``, as
    ``experiments/theory_check.py`` does. The replay gain of an algorithm is the mean over
    prompts of its per-prompt mean minus best-of-N's, with the standard error
    over prompts; the simulator's gain is its mean minus the closed-form
    best-of-N value. Each gets a verdict: win or loss beyond 2 standard
    errors, else tie.
    """
    theory = _load_theory_check()
    inverse = theory.ExpectedMaxInverse()
    rows = []
    for index, (t, budget) in enumerate(cells):
        cell_key = jax.random.fold_in(key, index)
        allocation = paper_allocation(budget)
        sizes = {
            "num_states": allocation.num_states,
            "samples_per_state": allocation.samples_per_state,
        }
        env = synthetic_environment(
            jax.random.fold_in(cell_key, 0), t=t, budget=budget, num_prompts=num_prompts
        )
        runs = [_run(BASELINE, "synthetic", BASELINE)]
        runs += [_run("slg_paper", "synthetic", "slg_paper", **sizes)]
        runs += [_run("slg_reference", "synthetic", "slg_reference", **sizes)]
        runs += [
            _run("uniform_split", "synthetic", "uniform_split", num_states=sizes["num_states"])
        ]
        per_algorithm = {}
        for run in runs:
            records, _ = run_cell(
                env,
                run,
                budget=budget,
                prompts=list(range(num_prompts)),
                problem_ids=list(range(num_prompts)),
                key=jax.random.fold_in(cell_key, 1),
                replications=replications,
            )
            per_algorithm[run["label"]] = np.array([r["best_reward"] for r in records])

        simulated = theory.run_setting(
            jax.random.fold_in(cell_key, 2), t, budget, simulator_replications, "remaining", inverse
        )
        bon = per_algorithm[BASELINE]
        for name in SYNTHETIC_ALGORITHMS:
            difference = per_algorithm[name] - bon
            gain = float(difference.mean())
            error = float(difference.std(ddof=1) / math.sqrt(difference.size))
            sim_gain = float(simulated[f"{name}_gap"])
            sim_error = float(simulated[f"{name}_se"])
            rows.append(
                {
                    "t": t,
                    "N": budget,
                    "K": sizes["num_states"],
                    "m": sizes["samples_per_state"],
                    "algorithm": name,
                    "replay_mean": float(per_algorithm[name].mean()),
                    "replay_best_of_n": float(bon.mean()),
                    "replay_gain": gain,
                    "replay_gain_se": error,
                    "replay_verdict": _verdict(gain, error),
                    "simulator_gain": sim_gain,
                    "simulator_gain_se": sim_error,
                    "simulator_verdict": _verdict(sim_gain, sim_error),
                    "bon_closed_form": float(simulated["bon_closed"]),
                }
            )
            rows[-1]["agree"] = rows[-1]["replay_verdict"] == rows[-1]["simulator_verdict"]
        LOG.info("synthetic t=%g N=%d done", t, budget)
    return rows


# Outputs.


def _cell(row, metric, digits=3):
    mean = row.get(metric)
    if mean is None or mean != mean:
        return "-"
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    if low is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown_summary(rows, gains, *, groups=None, group_of=None) -> str:
    """Return one Markdown table: means with intervals and the paired gain in best reward."""
    gain = {(g["algorithm"], g["budget"]): g for g in gains if g["metric"] == "best_reward"}
    header = (
        "| algorithm | N | problems | best reward | RM@1 | pass@N | gain in best reward "
        "| wins | chose root |"
    )
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        if groups is not None and group_of.get(row["algorithm"]) not in groups:
            continue
        difference = gain.get((row["algorithm"], row["budget"]))
        cells = [
            row["algorithm"],
            str(row["budget"]),
            str(row["num_problems"]),
            _cell(row, "best_reward"),
            _cell(row, "rm_at_1", 2),
            _cell(row, "pass_at_n", 2),
            "-"
            if difference is None
            else _cell(
                {
                    "d": difference["difference"],
                    "d_low": difference["difference_low"],
                    "d_high": difference["difference_high"],
                },
                "d",
            ),
            "-" if difference is None else f"{difference['wins']:.2f}",
            _cell(row, "chose_root", 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def skipped_lines(skipped) -> list[str]:
    """Return one line per algorithm and error: the budgets and the first message."""
    groups = {}
    for skip in skipped:
        entry = groups.setdefault((skip["algorithm"], skip["error"]), [[], skip["reason"]])
        entry[0].append(str(skip["budget"]))
    return [
        f"- {algorithm} at N = {', '.join(budgets)}: {reason}"
        for (algorithm, _), (budgets, reason) in groups.items()
    ]


def markdown_synthetic(rows) -> str:
    """Return the synthetic check as a Markdown table."""
    lines = [
        "| t | N | K | m | algorithm | replay gain | simulator gain | replay | simulator | agree |",
        "|" + "---|" * 10,
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
            "yes" if row["agree"] else "no",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _clean(value):
    """Replace non-finite floats by None, recursively, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def _write_text(path, text):
    write_atomic(path, lambda stream: stream.write(text))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=pathlib.Path, default=None, help="replay pool file")
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
        "--budgets", type=int, nargs="+", default=list(DEFAULT_BUDGETS), help="budgets N"
    )
    parser.add_argument("--replications", type=int, default=20, help="replications R per problem")
    parser.add_argument(
        "--groups",
        nargs="+",
        choices=("main", "selection", "rule", "value"),
        default=["main", "selection", "rule", "value"],
        help="which runs to make",
    )
    parser.add_argument(
        "--values",
        nargs="+",
        choices=VALUE_NAMES,
        default=list(VALUE_NAMES),
        help="state values of the 'value' runs",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the PRNG key")
    parser.add_argument(
        "--synthetic", action="store_true", help="also run the check on two-level Gaussian pools"
    )
    parser.add_argument(
        "--synthetic-prompts", type=int, default=200, help="prompts per synthetic cell"
    )
    parser.add_argument(
        "--synthetic-replications", type=int, default=5, help="replications per synthetic prompt"
    )
    parser.add_argument(
        "--synthetic-cells",
        nargs="+",
        default=None,
        help="synthetic (t, N) cells as t:N, for example 1:100 (default: 0.5:100 1:100 2:100)",
    )
    parser.add_argument(
        "--simulator-replications",
        type=int,
        default=4000,
        help="replications of the vectorized simulator per synthetic cell",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.pools is None and not args.synthetic:
        parser.error("pass --pools, --synthetic or both.")
    if args.replications < 1:
        parser.error(f"--replications {args.replications} must be >= 1.")
    cells = SYNTHETIC_CELLS
    if args.synthetic_cells:
        try:
            cells = tuple(
                (float(cell.split(":")[0]), int(cell.split(":")[1]))
                for cell in args.synthetic_cells
            )
        except (ValueError, IndexError):
            parser.error(f"--synthetic-cells {args.synthetic_cells}: write each cell as t:N.")

    started = time.perf_counter()
    key = jax.random.key(args.seed)
    budgets = sorted(set(args.budgets))
    command = "python experiments/replay_search.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    name = args.name or (
        args.pools.name.removesuffix(".jsonl") if args.pools is not None else "synthetic"
    )
    output = {
        "command": command.strip(),
        "pools": None if args.pools is None else str(args.pools),
        "name": name,
        "budgets": budgets,
        "replications": args.replications,
        "seed": args.seed,
    }

    group_of = {}
    if args.pools is not None:
        env, problem_ids = load_environment(args.pools, budgets=budgets)
        runs = [run for run in default_runs(args.values) if run["group"] in args.groups]
        group_of = {run["label"]: run["group"] for run in runs}
        records, skipped, timings = run_all(
            env,
            runs,
            budgets=budgets,
            problem_ids=problem_ids,
            key=jax.random.fold_in(key, 0),
            replications=args.replications,
        )
        rows, gains = summarize_records(records, key=jax.random.fold_in(key, 1))
        output.update(
            num_problems=len(problem_ids),
            problem_ids=problem_ids,
            has_prefixes=any(pool.prefixes is not None for pool in env.pools.values()),
            has_tokens=env.tokens is not None,
            runs=[
                {
                    "label": run["label"],
                    "group": run["group"],
                    "hyperparameters": run["hyperparameters"],
                    "sizes_per_budget": "sizes" in run,
                }
                for run in runs
            ],
            summary=rows,
            gains=gains,
            skipped=skipped,
            timings=timings,
            records=records,
        )

    if args.synthetic:
        output["synthetic"] = synthetic_check(
            jax.random.fold_in(key, 2),
            cells=cells,
            num_prompts=args.synthetic_prompts,
            replications=args.synthetic_replications,
            simulator_replications=args.simulator_replications,
        )
        output["synthetic_settings"] = {
            "cells": [list(cell) for cell in cells],
            "prompts": args.synthetic_prompts,
            "replications": args.synthetic_replications,
            "simulator_replications": args.simulator_replications,
        }
    output["total_seconds"] = round(time.perf_counter() - started, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"search_{name}.json"
    _write_text(json_path, json.dumps(_clean(output), indent=1) + "\n")

    text = [f"# Search on replayed pools: {name}", "", f"Generated by `{output['command']}`.", ""]
    if "summary" in output:
        text += [
            f"{output['num_problems']} problems, R = {args.replications} replications each; "
            "means over problems with 95% bootstrap intervals over problems; the gain is "
            "the paired difference to best-of-N in best reward.",
            "",
        ]
        for group in args.groups:
            text += [f"## Runs: {group}", ""]
            text += [
                markdown_summary(
                    output["summary"], output["gains"], groups={group}, group_of=group_of
                ),
                "",
            ]
        if output["skipped"]:
            text += ["## Runs that cannot run", "", *skipped_lines(output["skipped"]), ""]
    if "synthetic" in output:
        text += [
            "## Synthetic check: two-level Gaussian pools",
            "",
            markdown_synthetic(output["synthetic"]),
            "",
        ]
    _write_text(args.out / f"search_{name}.md", "\n".join(text))
    LOG.info("wrote %s in %.0f s", json_path, output["total_seconds"])
    return output


if __name__ == "__main__":
    main()
