"""The `builtin` source: colour photographs that ship inside scikit-image."""

from __future__ import annotations

import numpy as np

from degradations.errors import UserError
from degradations.image import as_rgb_uint8

# Real colour photographs present offline in every scikit-image install
# (colorwheel and logo are drawings; lily, skin and friends need a download).
BUILTIN_PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")


def builtin_photo(name: str) -> np.ndarray:
    """One builtin photo as uint8 RGB."""
    if name not in BUILTIN_PHOTOS:
        raise UserError(f"unknown builtin photo {name!r}; available: {', '.join(BUILTIN_PHOTOS)}")
    import skimage.data

    return as_rgb_uint8(getattr(skimage.data, name)(), what=f"builtin photo {name}")


def builtin_photos() -> dict[str, np.ndarray]:
    """All builtin photos by name, in a fixed order."""
    return {name: builtin_photo(name) for name in BUILTIN_PHOTOS}
