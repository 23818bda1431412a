"""``slgjax search``: run SLG and baselines on real problems at equal budgets.

For every budget N, algorithm and problem, the policy model samples and the
scorer rewards rollouts until N are spent. Each search appends one record to
the --output JSON Lines file (best reward, RM@1, pass@N, majority@N, tokens,
time). A rerun with the same file resumes: finished records are kept and
only missing ones run. The file's header stores every setting that shapes
the results, and a rerun with other settings is rejected.

Algorithms are given as NAME or LABEL=NAME (for example
``best_of_n,slg=slg_reference``). --num-states, --samples-per-state, --rule
and --value go to every algorithm that takes them; --set LABEL.KEY=VALUE
sets any other hyperparameter of one algorithm.
"""

import argparse
import inspect
import json
import logging
import pathlib
import sys

import numpy as np

from slgjax.cli.live_options import (
    add_live_arguments,
    build_live_setup,
    check_live_options,
    live_settings,
    load_task,
    parse_key_values,
)
from slgjax.io import InputError, write_atomic

__all__ = ["add_parser", "execute", "parse_algorithms", "progress_bar", "run"]

logger = logging.getLogger("slgjax.search")

SHARED_HYPERPARAMETERS = ("num_states", "samples_per_state", "rule", "value")
TABLE_METRICS = ("best_reward", "pass_at_n", "rm_at_1", "majority_at_n")


def _budgets(text):
    try:
        budgets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"budgets must be comma-separated integers, for example 16,64; got {text!r}"
        ) from None
    if not budgets or min(budgets) < 1:
        raise argparse.ArgumentTypeError(f"budgets must be integers >= 1; got {text!r}")
    return sorted(set(budgets))


def add_search_arguments(parser, *, defaults: dict | None = None):
    """Register the options of ``slgjax search`` (shared with ``slgjax demo``)."""
    defaults = defaults or {}
    add_live_arguments(parser, defaults=defaults)

    search = parser.add_argument_group("search")
    search.add_argument(
        "--budgets",
        type=_budgets,
        default=defaults.get("budgets"),
        required="budgets" not in defaults,
        help="comma-separated rollout budgets N",
    )
    search.add_argument(
        "--algorithms",
        default=defaults.get("algorithms", "best_of_n,slg_reference"),
        help="comma-separated NAME or LABEL=NAME entries (default %(default)s)",
    )

    search.add_argument("--num-states", type=int, default=defaults.get("num_states"), help="K")
    search.add_argument(
        "--samples-per-state", type=int, default=defaults.get("samples_per_state"), help="m"
    )
    search.add_argument("--rule", help="allocation rule for missing K or m: paper or reference")
    search.add_argument("--value", help="state value, such as gaussian, gpd or empirical_max")
    search.add_argument(
        "--set",
        action="append",
        metavar="LABEL.KEY=VALUE",
        help="a hyperparameter of one algorithm (JSON value), repeatable",
    )
    search.add_argument(
        "--batch-problems",
        type=int,
        help="problems searched together (default: all pending); records do not depend on it",
    )
    search.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar (on stderr)"
    )


def add_parser(subparsers):
    """Register the ``search`` command and its options."""
    parser = subparsers.add_parser(
        "search",
        help="run SLG and baselines on real problems at equal budgets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_search_arguments(parser)
    parser.add_argument(
        "--output", required=True, help="JSON Lines record file, resumed if present"
    )
    parser.add_argument("--plot", help="write a PNG of the metrics against the budget")
    parser.set_defaults(handler=run)
    return parser


def parse_algorithms(args):
    """Return the :class:`~slgjax.runner.AlgorithmSpec` list of the parsed options."""
    from slgjax.runner import AlgorithmSpec
    from slgjax.search.algorithms import ALGORITHMS

    entries = [part.strip() for part in args.algorithms.split(",") if part.strip()]
    if not entries:
        raise InputError("--algorithms is empty; name at least one algorithm.")
    named = []
    for entry in entries:
        label, _, name = entry.rpartition("=")
        label = label or name
        if name not in ALGORITHMS:
            raise InputError(f"unknown algorithm {name!r}; use one of {sorted(ALGORITHMS)}.")
        named.append((label, name))
    labels = [label for label, _ in named]
    if len(set(labels)) != len(labels):
        raise InputError(f"algorithm labels {labels} repeat; give each a unique LABEL=NAME.")

    specific = {}
    for key, value in parse_key_values(args.set, option="--set").items():
        label, dot, field = key.partition(".")
        if not dot or label not in labels:
            raise InputError(f"--set {key}=...: expected LABEL.KEY with LABEL one of {labels}.")
        specific.setdefault(label, {})[field] = value

    specs = []
    for label, name in named:
        accepted = [
            parameter.name
            for parameter in inspect.signature(ALGORITHMS[name]).parameters.values()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        hyperparameters = {
            field: getattr(args, field)
            for field in SHARED_HYPERPARAMETERS
            if field in accepted and getattr(args, field) is not None
        }
        for field, value in specific.get(label, {}).items():
            if field not in accepted:
                raise InputError(
                    f"algorithm {label!r} ({name}) has no hyperparameter {field!r}; it takes "
                    f"{accepted}."
                )
            hyperparameters[field] = value
        specs.append(AlgorithmSpec(label, name, hyperparameters))
    return specs


class _DryEnvironment:
    """Cheap stand-in for the live environment, to check hyperparameters before loading models.

    It has no ``true_value``, like the live environment, so algorithms that need
    one fail here too.
    """

    def root(self, prompt_index):
        return (int(prompt_index),)

    def expand(self, key, states, num_children):
        return [[(*state, child) for child in range(num_children)] for state in states]

    def rollout(self, key, states, num):
        from slgjax.envs.protocol import RolloutBatch

        rng = np.random.default_rng(len(states) * 1000 + num)
        rewards = rng.normal(size=(len(states), num))
        responses = [[f"response {j}" for j in range(num)] for _ in states]
        prefixes = [[(*state, 10**6 + j) for j in range(num)] for state in states]
        return RolloutBatch(rewards, responses, prefixes)


def check_algorithms(specs, budgets):
    """Run every algorithm at every budget on a dry environment; raise InputError on failure."""
    import jax

    from slgjax.search.driver import run_search

    for spec in specs:
        for budget in budgets:
            try:
                run_search(
                    spec.name,
                    _DryEnvironment(),
                    key=jax.random.key(0),
                    budget=budget,
                    prompts=[0],
                    **spec.hyperparameters,
                )
            except (ValueError, TypeError) as error:
                raise InputError(
                    f"algorithm {spec.label!r} cannot run at budget N={budget}: {error}"
                ) from error


def _pending_rollouts(path, problems, specs, budgets) -> int:
    from slgjax.records import read_records

    done = set()
    try:
        _, records = read_records(path)
        done = {(r["problem_id"], r["algorithm"], r["budget"]) for r in records}
    except (FileNotFoundError, ValueError):
        pass
    return sum(
        budget
        for budget in budgets
        for spec in specs
        for problem in problems
        if (problem.id, spec.label, budget) not in done
    )


def print_summary(records, *, seed: int, baseline: str | None, file=None):
    """Print the table of means per algorithm and budget, and paired differences to a baseline."""
    import jax

    from slgjax.summary import compare_to_baseline, format_table, summarize

    file = file or sys.stdout
    key = jax.random.key(seed)
    rows = summarize(records, key=key, metrics=(*TABLE_METRICS, "tokens", "wall_time_s"))
    print(format_table(rows, metrics=TABLE_METRICS), file=file)
    if baseline is not None and any(r["algorithm"] != baseline for r in records):
        print(f"\nbest reward minus {baseline}, paired over problems:", file=file)
        for row in compare_to_baseline(records, baseline=baseline, key=key):
            low, high = row["difference_low"], row["difference_high"]
            interval = "" if low is None else f" [{low:+.3f}, {high:+.3f}]"
            print(
                f"  {row['algorithm']} N={row['budget']}: {row['difference']:+.3f}{interval}, "
                f"better on {row['wins']:.0%} of {row['num_problems']} problems",
                file=file,
            )
    return rows


def write_plot(rows, path):
    """Write a PNG of best reward, pass@N and RM@1 against the budget."""
    from slgjax.plots_search import metric_vs_budget_figure

    figure = metric_vs_budget_figure(rows, metrics=("best_reward", "pass_at_n", "rm_at_1"))
    write_atomic(path, lambda stream: figure.savefig(stream, format="png", dpi=110), binary=True)


def check_record_file(path, settings):
    """Raise InputError when ``path`` exists with records of other settings; create nothing."""
    from slgjax.records import CorruptRecordError, config_hash, diff_settings, read_records

    if not pathlib.Path(path).is_file() or pathlib.Path(path).stat().st_size == 0:
        return
    try:
        header, _ = read_records(path)
    except CorruptRecordError as error:
        raise InputError(str(error)) from error
    stored = header["settings"]
    if header["config_hash"] != config_hash(settings):
        differences = "\n  ".join(diff_settings(stored, settings))
        raise InputError(
            f"{path} contains records made with other settings:\n  {differences}\n"
            "Write to a new --output, or delete or move the file to start over."
        )


def execute(args, *, output) -> tuple[list[dict], dict]:
    """Run the search experiment of the parsed options; return its records and settings."""
    from slgjax.records import ConfigMismatchError, CorruptRecordError
    from slgjax.runner import ExperimentConfig, run_experiment

    specs = parse_algorithms(args)
    check_live_options(args)
    check_algorithms(specs, args.budgets)
    task_options, problems = load_task(args)
    if args.batch_problems is not None and args.batch_problems < 1:
        raise InputError(f"--batch-problems {args.batch_problems} must be >= 1.")
    config = ExperimentConfig(
        task=args.task,
        task_options=task_options,
        algorithms=tuple(specs),
        budgets=tuple(args.budgets),
        seed=args.seed,
        environment=live_settings(args),
    )
    check_record_file(output, config.shared_settings())
    print_settings(config.shared_settings(), specs, file=sys.stderr)

    setup = build_live_setup(args, problems, task_options)
    bar = progress_bar(_pending_rollouts(output, problems, specs, args.budgets), args.no_progress)
    setup.environment.progress = bar.update
    try:
        records = run_experiment(
            setup.environment, problems, config, path=output, batch_size=args.batch_problems
        )
    except (ConfigMismatchError, CorruptRecordError) as error:
        raise InputError(str(error)) from error
    finally:
        bar.close()
    stats = setup.environment.stats
    logger.info("environment work: %s", stats)
    if stats.rollouts:
        print(
            f"{stats.rollouts} rollouts in {stats.sample_seconds:.0f} s of sampling and "
            f"{stats.score_seconds:.0f} s of scoring ({stats.scored} responses scored)",
            file=sys.stderr,
        )
    return records, config.shared_settings()


def progress_bar(total: int, hidden: bool):
    """Return a tqdm bar on stderr that counts rollouts and shows rollouts per second."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="rollout",
        disable=hidden or total == 0,
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} rollouts "
        "[{elapsed}<{remaining}, {rate_noinv_fmt}]",
    )


def print_settings(settings, specs, *, file):
    """Print the settings that shape the records, one per line."""
    print("settings:", file=file)
    for key, value in settings.items():
        print(f"  {key}: {json.dumps(value)}", file=file)
    for spec in specs:
        print(f"  algorithm {spec.label}: {json.dumps(spec.as_settings())}", file=file)


def run(args) -> int:
    """Execute ``slgjax search``; return the exit status."""
    records, _ = execute(args, output=args.output)
    baseline = "best_of_n" if any(r["algorithm"] == "best_of_n" for r in records) else None
    rows = print_summary(records, seed=args.seed, baseline=baseline)
    print(f"\nrecords: {args.output}")
    if args.plot and rows:
        write_plot(rows, args.plot)
        print(f"plot: {args.plot}")
    return 0
