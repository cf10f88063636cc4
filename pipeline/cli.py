"""The `perceive-ir` command line: one subcommand per module in `pipeline.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipeline.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceive-ir",
        description="Graded degradations, tiered shards and training for all-in-one image restoration.",
        epilog="Run `perceive-ir COMMAND --help` for an example of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"pipeline.commands.{name}")
        p = sub.add_parser(
            name.replace("_", "-"),
            help=module.HELP,
            description=module.HELP,
            epilog="example:\n  " + "\n  ".join(module.EXAMPLES),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `perceive-ir inspect OUT | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as err:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f"perceive-ir {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
