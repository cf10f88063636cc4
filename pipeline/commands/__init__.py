"""Subcommands of `perceive-ir`.

Each module defines HELP (one line), EXAMPLES (command lines shown by --help),
add_arguments(parser) and run(args) -> exit code. Imports inside run() keep
`perceive-ir --help` fast.
"""

COMMANDS = ["degrade", "preview", "calibrate", "build", "inspect", "train", "eval", "demo"]
