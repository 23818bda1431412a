"""Command-line interface: ``slgjax <command> ...``.

Each command lives in its own module of this package and provides
``add_parser(subparsers)``, which registers its arguments and sets
``run(args) -> int`` as the handler. Add a command by writing such a module
and listing it in :data:`COMMANDS`.
"""

import argparse
import importlib
import logging
import sys

from slgjax.io import InputError

__all__ = ["build_parser", "main", "COMMANDS"]

COMMANDS = ("predict", "search", "sample", "demo")

logger = logging.getLogger("slgjax")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="slgjax",
        description=(
            "Reward-tail estimation, best-of-N scaling-law prediction and "
            "scaling-law guided search."
        ),
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress (-v) or details (-vv)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        command = importlib.import_module(f"slgjax.cli.{name}").add_parser(subparsers)
        # Accept -v after the command name too; SUPPRESS keeps the top-level count otherwise.
        command.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def main(argv=None) -> int:
    """Run the command named in ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Input errors (a missing file or field, a malformed record, too few
    rewards) print one line to stderr and return 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)

    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(level)

    try:
        return args.handler(args)
    except InputError as error:
        logger.debug("input error", exc_info=True)
        print(f"slgjax {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
