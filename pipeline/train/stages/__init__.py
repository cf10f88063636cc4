"""Training stages: a registry of `Stage`s, each one module and one YAML file of defaults.

A stage says what it trains and how: its defaults (base.yaml under NAME.yaml),
the loader mode of its training batches, the `Task` the loop runs (model,
loss, validation), its evaluation on a shard split, how a trained model is
loaded back, and what is exported at the end. A new stage is a module here
with a `@register_stage` class and its YAML file.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import torch
import yaml
from torch import nn

import degradations as D
from model import RandomWeightsWarning
from model.seeding import seeded_torch  # noqa: F401 (callers of the stages use it from here too)
from pipeline.train.config import merge
from pipeline.train.trainer import Task


class Stage:
    """One training stage; see the module docstring."""

    name: ClassVar[str]
    mode: ClassVar[str]  # loader mode of the training batches (pipeline.data.modes); data.mode may override it

    def defaults(self) -> dict[str, Any]:
        """base.yaml, then this stage's NAME.yaml over it."""
        return merge(_yaml("base.yaml"), _yaml(f"{self.name}.yaml"), allow_new=True)

    def task(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> Task:
        raise NotImplementedError

    def validation_mode(self, config: Mapping[str, Any]) -> str:
        """The loader mode of the validation batches."""
        return "triplets"

    def runs(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The training runs one command makes, each a full config (a cross-fold stage makes one per fold)."""
        return [dict(config)]

    def where(self, config: Mapping[str, Any]) -> Callable[[Any], Any] | None:
        """Which training samples a run may see (keys -> boolean mask); None: all of the split."""
        return None

    def evaluate(self, model: nn.Module, loader: Any, limit: int = 0) -> Any:
        """Metrics of a model on triplet batches of a shard split."""
        raise NotImplementedError

    def load_trained(self, path: str | Path, device: torch.device) -> nn.Module:
        """The trained model of a run (its folder, or the file the stage exports), in eval mode."""
        raise NotImplementedError

    def export(self, model: nn.Module, out: Path, config: Mapping[str, Any]) -> None:
        """Write what later stages or users load, into the run folder (rank 0, after training)."""


STAGES: dict[str, Stage] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    STAGES[cls.name] = cls()
    return cls


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise D.UserError(f"unknown training stage {name!r}; stages are {', '.join(sorted(STAGES))}")
    return STAGES[name]


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load(resources.files(__name__).joinpath(name).read_text())


def build_model(factory: Callable[..., nn.Module], config: Mapping[str, Any], section: str = "model", *, weights_follow: bool = False) -> nn.Module:
    """`factory(**config)`, warning once about random weights (not at all when `weights_follow`: a
    checkpoint is loaded into it next); a config the model rejects is a UserError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if weights_follow else "once", RandomWeightsWarning)
        try:
            return factory(**config)
        except (TypeError, ValueError) as err:
            raise D.UserError(f"{section} config: {err}") from err


from pipeline.train.stages import medium, perceiver, restorer  # noqa: E402, F401  (register the built-in stages)
