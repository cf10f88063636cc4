"""The `perceive-ir` command line: one subcommand per module of this package.

Each command module defines HELP (one line), EXAMPLES (command lines shown by
--help), add_arguments(parser) and run(args) -> exit code; run() parses what
argparse cannot and calls one library function. Imports inside run() keep
`perceive-ir --help` fast.

A `degradations.UserError` (bad input, a missing file, a folder that is no
build) is printed as one line and exits with status 2; anything else is a bug
and shows its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ["degrade", "preview", "calibrate", "build", "inspect", "train", "render_medium", "precompute", "eval", "benchmarks", "realism", "restore", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceive-ir",
        description="Graded degradations, tiered shards and training for all-in-one image restoration.",
        epilog="Run `perceive-ir COMMAND --help` for an example of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"pipeline.cli.{name}")
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


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line; exits with argparse's usage message when it does not parse."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # KEY=VALUE overrides may stand anywhere on a command line that takes them, not only
        # right after the positional arguments (where argparse alone would want them).
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides = [*args.overrides, *extras]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from degradations import UserError

    args = parse(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `perceive-ir inspect OUT | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except UserError as err:  # the user's to fix: one clear line, no traceback
        print(f"perceive-ir {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {err.filename}" if err.filename else ""
        print(f"perceive-ir {args.command}: error: no space left on the device{where}; free space and rerun "
              "(builds and training runs resume)", file=sys.stderr)
        return 2
