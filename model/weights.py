"""How the package says that a network runs without pretrained weights."""
from __future__ import annotations

import warnings


class RandomWeightsWarning(UserWarning):
    """A network was built with random weights because no pretrained source was given."""


def warn_random_weights(what: str, how_to_fix: str) -> None:
    warnings.warn(
        f"{what} uses RANDOM weights (no pretrained source given); {how_to_fix}",
        RandomWeightsWarning,
        stacklevel=3,
    )
