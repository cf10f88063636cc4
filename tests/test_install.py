"""The install `make` makes: folders in the working directory named like the packages hide nothing."""

from __future__ import annotations

import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGES = ("shards", "model", "pipeline", "degradations")


def lenient_editable_install() -> bool:
    return any(list(Path(p).glob("__editable___perceive_ir*_finder.py")) for p in site.getsitepackages())


@pytest.mark.skipif(lenient_editable_install(), reason="perceive-ir is installed in lenient editable mode; `make` installs strict")
def test_folders_named_like_the_packages_in_the_working_directory_break_nothing(small_build, tmp_path):
    for name in PACKAGES:
        (tmp_path / name / "train").mkdir(parents=True)  # a data folder, as `--out shards/` makes
    script = tmp_path / "read.py"
    script.write_text(textwrap.dedent(f"""
        from pipeline import make_loader

        if __name__ == "__main__":
            loader = make_loader({str(small_build)!r}, mode="triplets", batch_size=2, crop=32, num_workers=2)
            batch = next(iter(loader))
            print("batch", tuple(batch["lq"].shape))
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "batch (2, 3, 32, 32)" in done.stdout, done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "inspect", str(small_build), "--no-histograms"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "samples" in done.stdout, done.stderr[-2000:]


def test_the_console_script_runs_a_command():
    """The `perceive-ir` script the install makes (the documented-command tests call `main` in-process)."""
    script = Path(sys.executable).with_name("perceive-ir")
    if not script.is_file():
        pytest.skip(f"no console script beside {sys.executable}: perceive-ir is not installed in this environment")
    done = subprocess.run([str(script), "degrade", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "perceive-ir degrade" in done.stdout, done.stderr[-2000:]
