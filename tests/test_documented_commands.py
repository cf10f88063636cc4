"""Every command line the README and the `--help` examples show is one the CLI accepts as written."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from helpers import TINY_CLEARAIR, TINY_LOSS, TINY_NAFNET, TINY_PERCEIVER, TINY_RESTORER
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
            found = config
            for part in dotted.split("."):
                found = found[part]
            assert found == yaml.safe_load(value), word


def overrides(section: str, settings: dict) -> list[str]:
    return [f"{section}.{key}={json.dumps(value)}" for key, value in settings.items()]


# Appended to a documented line so it runs in seconds on a CPU, offline: later settings win.
TINY = {
    "build": ["--patch", "64", "--patches-per-image", "2", "--workers", "2"],
    "calibrate": ["--patch", "64", "--patches-per-image", "1", "--steps", "3"],
    "perceiver": overrides("model", TINY_PERCEIVER),
    "restorer": overrides("model", TINY_RESTORER) + overrides("loss", {**TINY_LOSS, "perceptual_pretrained": None}),
    "medium": overrides("model", {"backbone": "nafnet", "backbone_kwargs": TINY_NAFNET}),
    # The restorer presets use the authors' perceptual loss: its own VGG16 taps, not TINY_LOSS's timm depths.
    "restorer preset": overrides("model", TINY_RESTORER) + overrides("loss", {"perceptual_pretrained": None}),
    "clearair preset": overrides("model.clearair", TINY_CLEARAIR),
    "train": ["optim.steps=2", "optim.warmup_steps=1", "data.crop=32", "data.batch_size=2", "data.num_workers=0", "run.device=cpu"],
}


def photo_names(count: int) -> list[str]:
    """Photo file names that the default --splits put in both train and val."""
    from shards import split_of

    n = 0
    while len({split_of(f"p{i}.jpg", (("train", 0.9), ("val", 0.1))) for i in range(n)}) < 2 or n < count:
        n += 1
    return [f"p{i}.jpg" for i in range(n)]


def workspace(root: Path) -> None:
    """What a new user would have: photos, a photo.jpg, and benchmark folders in their layouts."""
    import cv2

    import degradations as D

    photos = list(D.builtin_photos().values())
    (root / "photos").mkdir()
    for i, name in enumerate(photo_names(3)):
        cv2.imwrite(str(root / "photos" / name), photos[i % len(photos)][:256, :256, ::-1])
    cv2.imwrite(str(root / "photo.jpg"), photos[0][:128, :128, ::-1])
    crops = [p[:48, :48] for p in photos[:4]]  # 4: the fewest the realism test takes
    layouts = {"Rain100L": ("rainy", "norain"), "SOTS/outdoor": ("hazy", "gt"), "GoPro/test": ("blur", "sharp"), "LOL/eval15": ("low", "high")}
    for i, crop in enumerate(crops):
        for folder in ("BSD68", "CBSD68"):
            (root / "data" / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "data" / folder / f"{i}.png"), crop[:, :, ::-1])
        for folder, (degraded, clean) in layouts.items():
            for sub, image in ((degraded, crop // 2), (clean, crop)):
                (root / "data" / folder / sub).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "data" / folder / sub / f"{i:03d}.png"), image[:, :, ::-1])


def runnable(line: str) -> list[str]:
    """The line's command, with TINY settings appended, as an argv for subprocess."""
    import sys

    words = shlex.split(line, comments=True)
    redirect = words[words.index(">") + 1] if ">" in words else None
    argv = argv_of(line)
    extra = TINY.get(argv[0], [])
    if argv[0] == "train" and "--print-config" not in argv:
        preset = argv[1] == "restorer" and "--config perceive-ir-" in line
        tiny = "clearair preset" if "--config clearair" in line else "restorer preset" if preset else argv[1]
        extra = TINY[tiny] + TINY["train"]
    head = [sys.executable, "-m", "pipeline.cli"]
    if words[0] == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", *words[1 : words.index("-m")], "--standalone", "-m", "pipeline.cli"]
    return [*head, *argv, *extra] + ([">", redirect] if redirect else [])


def run_session(root: Path, lines: list[str]) -> None:
    """Run each line in `root` (HOME is `root`, so `~` is that folder; `/tmp/` is `root/tmp/`).

    `perceive-ir` lines run in this process, through the same `main` the console script calls (a
    new interpreter per line cost three minutes of imports), so they share one interpreter's state
    as no two shell commands do; torchrun lines run as processes, and test_install runs the
    installed console script."""
    import os
    import subprocess

    env = {**os.environ, "HOME": str(root), "PYTHONWARNINGS": "ignore"}
    for line in lines:
        argv = runnable(line.replace(" /tmp/", f" {root}/tmp/"))
        out = None
        if ">" in argv:
            out, argv = root / argv[-1], argv[: argv.index(">")]
        argv = [os.path.expanduser(a).replace(os.path.expanduser("~"), str(root)) if a.startswith("~") else a for a in argv]
        if argv[2] == "torch.distributed.run":
            done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        else:
            code, stdout, stderr = _in_process(argv[3:], root)
        assert code == 0, f"{line}\n{stderr[-3000:]}"
        if out is not None:
            out.write_text(stdout)


def _in_process(argv: list[str], root: Path) -> tuple[int, str, str]:
    """`perceive-ir ARGV` run by `main` in `root` with HOME=root: (exit status, stdout, stderr)."""
    import contextlib
    import io
    import os
    import warnings

    stdout, stderr = io.StringIO(), io.StringIO()
    home, cwd = os.environ.get("HOME"), os.getcwd()
    os.environ["HOME"] = str(root)
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse's way out
                code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(cwd)
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home
    return code, stdout.getvalue(), stderr.getvalue()


def test_every_readme_command_runs_as_written_in_a_fresh_folder(tmp_path):
    """A new user's session: each shell line of the README, in order, in a folder that also holds
    data/ and photos/ (tiny settings appended)."""
    workspace(tmp_path)
    run_session(tmp_path, readme_lines())
    assert (tmp_path / "restored" / "p0.jpg").is_file() and (tmp_path / "runs/restorer/last.pt").is_file()


# Help examples that cannot run here, and why.
NOT_HERE = {
    "--scheduler tcp://": "needs a running dask scheduler",
    "--device cuda": "needs a GPU",
    "perceive-ir demo": "minutes long: the slow test runs the demo",
    "--quality deqa": "needs transformers and DeQA-Score's 8 B weights",
}


def test_every_help_example_runs_as_written(tmp_path):
    """Each command's --help examples, command by command in order, in a fresh folder holding what
    they name (photos, benchmark folders, a file list, a shards/ build, restorer.yaml)."""
    import cv2

    workspace(tmp_path)
    photos = sorted((tmp_path / "photos").iterdir())
    (tmp_path / "files.txt").write_text("".join(f"photos/{p.name}\n" for p in photos))
    image = cv2.imread(str(photos[0]))
    for name in ("hazy.jpg", "big.png"):
        cv2.imwrite(str(tmp_path / name), image)
    lines = [line for line in help_lines() if not any(marker in line for marker in NOT_HERE)]
    # What the others read first: recipes, a calibration, builds (a stable sort keeps the rest in order).
    makers = ("degrade", "calibrate", "build")
    lines.sort(key=lambda line: makers.index(argv_of(line)[0]) if argv_of(line)[0] in makers else len(makers))
    first_train = next(i for i, line in enumerate(lines) if argv_of(line)[0] == "train")
    run_session(tmp_path, lines[:first_train])
    # What the training examples name: a build at shards/ and a saved configuration.
    (tmp_path / "shards").symlink_to(tmp_path / "data/shards")
    run_session(tmp_path, ["perceive-ir train restorer data.source=shards/ --print-config > restorer.yaml"])
    run_session(tmp_path, lines[first_train:])
    assert (tmp_path / "out.png").is_file() and (tmp_path / "results/all_in_one.json").is_file()
