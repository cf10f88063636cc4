"""Users add degradation types without forking: the decorator and the entry-point group."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import degradations as D


@D.register
class Vignette(D.Degradation):
    """Darken towards the corners: a plugin type defined outside the package."""

    name = "test_vignette"
    required = ("strength",)

    def params(self, rng, severity):
        return {"strength": D.lerp(0.0, 0.9, severity)}

    def apply(self, image, params, rng):
        h, w = image.shape[:2]
        y, x = np.ogrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
        gain = 1 - params["strength"] * np.clip((x**2 + y**2) / 2, 0, 1)
        return (image * gain[:, :, None]).astype(np.uint8)


def test_decorated_type_runs_replays_and_chains():
    image = D.builtin_photo("chelsea")
    assert "test_vignette" in D.available()
    out, recipe = D.degrade(image, "test_vignette", 0.8, seed=1)
    assert out[0, 0].sum() < image[0, 0].sum()
    assert np.array_equal(D.replay(image, recipe), out)
    chained, recipe = D.degrade(image, "test_vignette+noise", 0.5, seed=1)
    assert [s.type for s in recipe.steps] == ["noise", "test_vignette"]  # plugins follow the canonical types


def test_entry_point_registers_a_type(tmp_path):
    """An installed distribution declaring the entry point adds its type in a fresh process."""
    pkg = tmp_path / "fogplugin.py"
    pkg.write_text(textwrap.dedent('''
        import degradations as D

        class Fog(D.Degradation):
            name = "fog_plugin"
            required = ("density",)
            def params(self, rng, severity):
                return {"density": severity}
            def apply(self, image, params, rng):
                return (image * (1 - params["density"]) + 255 * params["density"]).astype("uint8")
    '''))
    dist = tmp_path / "fogplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fogplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[perceive_ir.degradations]\nfog_plugin = fogplugin:Fog\n")
    code = (
        "import degradations as D, numpy as np\n"
        "out, r = D.degrade(np.zeros((8, 8, 3), np.uint8), 'fog_plugin', 0.5)\n"
        "print(D.available().count('fog_plugin'), int(out[0, 0, 0]), r.type)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert run.stdout.split() == ["1", "127", "fog_plugin"]


def test_a_plugin_cannot_take_a_builtin_name():
    class Noise(D.Degradation):  # same class name as the built-in, another module
        name = "noise"

    with pytest.raises(ValueError, match="already registered"):
        D.register(Noise)
    assert type(D.get("noise")).__module__ == "degradations.types.noise"
