"""``slgjax sample``: record reward pools of real problems for the replay environment.

For each problem, the policy samples --root-rollouts responses from the prompt,
--prefix-rollouts responses from the first-step prefix of each of them, and
--child-rollouts responses from each of --num-children sampled first steps;
the scorer rewards every response. The pools go to --output in the replay
format (one state per line) with a sidecar <output>.meta.jsonl holding the
problems and the state texts. ``slgjax.sample_pools.load_pools(output)``
reads them back as a ReplayEnvironment. A rerun with the same file resumes
after the last finished problem.
"""

import argparse
import dataclasses
import sys

from slgjax.cli.live_options import (
    add_live_arguments,
    build_live_setup,
    check_live_options,
    live_settings,
    load_task,
)
from slgjax.io import InputError

__all__ = ["add_parser", "run"]


def _count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_parser(subparsers):
    """Register the ``sample`` command and its options."""
    parser = subparsers.add_parser(
        "sample",
        help="record reward pools of real problems for replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_live_arguments(parser)
    pools = parser.add_argument_group("pool sizes")
    pools.add_argument("--root-rollouts", type=_count, required=True, help="responses per prompt")
    pools.add_argument(
        "--prefix-rollouts",
        type=_count,
        default=0,
        help="responses from the first-step prefix of each root response",
    )
    pools.add_argument("--num-children", type=_count, default=0, help="sampled first steps")
    pools.add_argument("--child-rollouts", type=_count, default=0, help="responses per first step")
    parser.add_argument(
        "--output", required=True, help="pool file (JSON Lines), resumed if present"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)
    return parser


def run(args) -> int:
    """Execute ``slgjax sample``; return the exit status."""
    import jax
    import numpy as np

    from slgjax.cli.search import check_record_file, print_settings, progress_bar
    from slgjax.records import ConfigMismatchError, CorruptRecordError
    from slgjax.sample_pools import PoolSizes, metadata_path, read_pool_metadata, record_pools

    try:
        sizes = PoolSizes(
            root_rollouts=args.root_rollouts,
            prefix_rollouts=args.prefix_rollouts,
            num_children=args.num_children,
            child_rollouts=args.child_rollouts,
        )
    except ValueError as error:
        raise InputError(str(error)) from error
    check_live_options(args)
    task_options, problems = load_task(args)
    key = jax.random.key(args.seed)
    settings = {
        "task": args.task,
        "task_options": task_options,
        "seed": args.seed,
        "environment": live_settings(args),
    }
    # The header that record_pools writes to the sidecar file, checked before any model loads.
    header = {
        "sizes": dataclasses.asdict(sizes),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "settings": settings,
    }
    check_record_file(metadata_path(args.output), header)
    print_settings(settings, [], file=sys.stderr)

    try:
        done = len(read_pool_metadata(args.output))
    except (FileNotFoundError, ValueError):
        done = 0
    per_problem = sizes.root_rollouts * (1 + sizes.prefix_rollouts)
    per_problem += sizes.num_children * sizes.child_rollouts
    setup = build_live_setup(args, problems, task_options)

    bar = progress_bar(per_problem * max(0, len(problems) - done), args.no_progress)
    setup.environment.progress = bar.update
    try:
        added = record_pools(
            setup.environment,
            problems,
            path=args.output,
            key=key,
            sizes=sizes,
            settings=settings,
        )
    except (ConfigMismatchError, CorruptRecordError) as error:
        raise InputError(str(error)) from error
    finally:
        bar.close()
    print(f"recorded the pools of {added} problems ({len(problems)} in all) in {args.output}")
    return 0
