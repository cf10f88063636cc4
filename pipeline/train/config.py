"""Training configuration: defaults as data, a YAML file over them, `key.sub=value` overrides on top."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

import degradations as D


def merge(base: Mapping[str, Any], update: Mapping[str, Any], where: str = "", *, allow_new: bool = False) -> dict[str, Any]:
    """`base` updated by `update`, recursively; a key that `base` lacks is an error naming it
    (unless `allow_new`: a stage's defaults add sections to the shared ones).

    A section whose default is an empty dict (backbone_kwargs and the like) is
    free-form: it is replaced whole, not checked key by key.
    """
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in out:
            if not allow_new:
                raise D.UserError(f"unknown config key {path!r}; known at this level: {', '.join(sorted(out))}")
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and out[key] and isinstance(value, Mapping):
            out[key] = merge(out[key], value, f"{path}.", allow_new=allow_new)
        else:
            out[key] = _coerce(out[key], copy.deepcopy(value), path)
    return out


def _coerce(default: Any, value: Any, path: str) -> Any:
    """Numbers where the default is a number: YAML 1.1 reads `5e-4` (no dot) as a string."""
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not isinstance(value, str):
        return value
    try:
        return float(value) if isinstance(default, float) or not value.lstrip("-").isdigit() else int(value)
    except ValueError:
        raise D.UserError(f"config key {path!r} takes a number, got {value!r}") from None


def parse_override(text: str) -> dict[str, Any]:
    """`optim.lr=3e-4` -> {"optim": {"lr": 0.0003}}; the value is read as YAML."""
    if "=" not in text:
        raise D.UserError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    value: Any = _yaml(raw, f"override {text!r}") if raw else None
    for part in reversed(dotted.strip().split(".")):
        value = {part: value}
    return value


def presets() -> dict[str, Path]:
    """The shipped presets by name (pipeline/train/presets/NAME.yaml): the papers' recipes as config files."""
    folder = resources.files("pipeline.train").joinpath("presets")
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml")}


def resolve(
    defaults: Mapping[str, Any], path: str | Path | None, overrides: Sequence[str] = (), stage: str | None = None,
) -> dict[str, Any]:
    """Defaults, then the YAML file at `path` (if any: a file, or the name of a shipped preset), then
    each override in order. A preset names the stage it is for (its `preset.stage`); another `stage` is refused."""
    config = copy.deepcopy(dict(defaults))
    if path:
        shipped = presets()
        if not Path(path).is_file() and str(path) in shipped:
            path = shipped[str(path)]
        if not Path(path).is_file():
            raise D.InputNotFound(f"config file {path} does not exist (shipped presets: {', '.join(sorted(shipped))})")
        loaded = _yaml(Path(path).read_text(), str(path)) or {}
        if not isinstance(loaded, Mapping):
            raise D.UserError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
        loaded = dict(loaded)
        meta = loaded.pop("preset", None) or {}
        if stage and meta.get("stage") not in (None, stage):
            raise D.UserError(f"{path} is a preset of the {meta['stage']} stage, not of {stage}: `perceive-ir train {meta['stage']} --config ...`")
        config = merge(config, loaded)
    for text in overrides:
        config = merge(config, parse_override(text))
    return config


PROVIDER_PATH_ARGS = ("perceiver", "cfe", "checkpoint")  # ClearAIR provider arguments that name local files
PATH_KEYS = (  # settings that name local files
    ("data", "source"), ("data", "provider_cache"), ("run", "out"), ("loss", "perceiver"), ("model", "map_perceiver"),
    *(("model", "clearair", f"{kind}_kwargs", arg) for kind in ("quality", "regions", "task") for arg in PROVIDER_PATH_ARGS),
)


def absolute_path(value: Any) -> Any:
    """A local path made absolute; URLs, URL lists, pipes, nulls and non-strings as they are."""
    if isinstance(value, str) and value and "://" not in value and not value.startswith("pipe:"):
        return str(Path(value).expanduser().absolute())
    return value


def absolute_paths(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with the local paths of PATH_KEYS made absolute (URLs, URL lists and nulls stay as they are)."""
    out = copy.deepcopy(dict(config))
    for *sections, key in PATH_KEYS:
        parent = out
        for section in sections:
            parent = parent.get(section) if isinstance(parent, Mapping) else None
        if isinstance(parent, Mapping) and key in parent:
            parent[key] = absolute_path(parent[key])
    return out


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise D.UserError(f"{where} is not valid YAML: {err}") from None


def dump(config: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dict(config), sort_keys=False))
