"""Every command line the README and the `--help` examples show is one the CLI accepts as written."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import COMMANDS, main, parse

README = Path(__file__).parent.parent / "README.md"


def readme_lines() -> list[str]:
    """Command lines of the README's shell blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(("perceive-ir ", "torchrun ")):
                lines.append(line)
    return lines


def help_lines() -> list[str]:
    return [line for name in COMMANDS for line in importlib.import_module(f"pipeline.cli.{name}").EXAMPLES if not line.startswith("#")]


def argv_of(line: str) -> list[str]:
    """The arguments after `perceive-ir` (or `torchrun ... -m pipeline.cli`), up to a shell redirection."""
    words = shlex.split(line, comments=True)
    if ">" in words:
        words = words[: words.index(">")]
    if words[0] == "torchrun":
        words = words[words.index("pipeline.cli") :]
    return words[1:]


DOCUMENTED = sorted(set(readme_lines()) | set(help_lines()))


def test_the_readme_shows_commands():
    assert len(readme_lines()) >= 15 and any(line.startswith("torchrun") for line in readme_lines())


@pytest.mark.parametrize("line", DOCUMENTED)
def test_documented_command_line_parses(line):
    argv = argv_of(line)
    assert parse(argv).command == argv[0]


@pytest.mark.parametrize("line", [line for line in DOCUMENTED if argv_of(line)[0] == "train"])
def test_documented_training_command_resolves_every_setting_it_names(line, capsys, tmp_path):
    argv = argv_of(line)
    config_file = next((argv[i + 1] for i, w in enumerate(argv) if w == "--config"), None)
    if config_file:  # the file the README writes with --print-config
        assert main([*argv[: argv.index("--config")], "--print-config"]) == 0
        (tmp_path / "c.yaml").write_text(capsys.readouterr().out)
        argv[argv.index(config_file)] = str(tmp_path / "c.yaml")
    assert main([*argv, "--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    for word in argv:
        if "=" in word and not word.startswith("-"):
            dotted, value = word.split("=", 1)
            section, key = dotted.split(".", 1)
            assert config[section][key] == yaml.safe_load(value), word
